"""What the kernel audit reports: a :class:`KernelRecord` per Conv / MatMul / Gemm, in a :class:`KernelAudit`."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["KernelAudit", "KernelRecord"]


@dataclasses.dataclass(frozen=True)
class KernelRecord:
    """How onnxruntime runs one Conv / MatMul / Gemm of the emitted model.

    Attributes:
        node: The node's name in the emitted model (``<op>(<first output>)`` when it has none).
        op_type: Its op type in the emitted model: ``Conv``, ``MatMul`` or ``Gemm``.
        kernel: The op type it runs as after optimization, e.g. ``QLinearConv``, ``MatMulNBits``, ``Conv``;
            empty when it was not found in the optimized graph.
        integer: Whether ``kernel`` computes on integers.
        reason: For a float kernel, why onnxruntime did not fuse it (every violated condition, separated
            by ``"; "``); for an integer kernel ``None``, or a ``warning: …`` about a known hazard.
        kernel_domain: Domain of the optimized node (``""`` for ai.onnx; ``com.microsoft`` for the NHWC
            ``QLinearConv`` of ``ORT_ENABLE_ALL``, ``com.microsoft.nchwc`` for blocked-layout float Conv).
        optimized_node: Name of the optimized node the record was mapped to (``None`` if not found).
        expected_kernel: The integer kernel onnxruntime's fusion rules predict for the node's pattern in the
            emitted model (:func:`fp8conv.runtime.fusion_rules.expected_kernel`); ``None`` where they predict
            float. A planned integer layer has one.
    """

    node: str
    op_type: str
    kernel: str
    integer: bool
    reason: str | None
    kernel_domain: str = ""
    optimized_node: str | None = None
    expected_kernel: str | None = None

    @property
    def as_expected(self) -> bool:
        """Whether onnxruntime did what the fusion rules predict: an integer kernel where they predict one.

        A node the rules predict float that onnxruntime fused anyway also counts (a bonus, not a broken rule).
        """
        return self.integer or self.expected_kernel is None


@dataclasses.dataclass(frozen=True)
class KernelAudit:
    """Result of :func:`audit_integer_kernels`: one record per Conv / MatMul / Gemm, in graph order.

    Attributes:
        records: The records.
        optimization_level: The level audited (a key of :data:`~fp8conv.runtime.ort_backend.OPTIMIZATION_LEVELS`).
    """

    records: tuple[KernelRecord, ...]
    optimization_level: str

    @property
    def integer_count(self) -> int:
        """Number of nodes that run as integer kernels."""
        return sum(1 for r in self.records if r.integer)

    @property
    def float_count(self) -> int:
        """Number of nodes that run in float (or were not found)."""
        return len(self.records) - self.integer_count

    @property
    def fraction_integer(self) -> float:
        """Fraction of audited nodes that run as integer kernels (0.0 when there are none)."""
        return self.integer_count / len(self.records) if self.records else 0.0

    def counts_by_op(self) -> dict[str, dict[str, int]]:
        """Counts per emitted op type.

        Returns:
            ``{op_type: {"integer": n, "float": m}}`` for every op type present.
        """
        counts: dict[str, dict[str, int]] = {}
        for record in self.records:
            entry = counts.setdefault(record.op_type, {"integer": 0, "float": 0})
            entry["integer" if record.integer else "float"] += 1
        return counts

    def float_records(self) -> tuple[KernelRecord, ...]:
        """The records of nodes that do not run as integer kernels."""
        return tuple(r for r in self.records if not r.integer)

    def unexpected(self) -> tuple[KernelRecord, ...]:
        """The records of nodes the fusion rules put on an integer kernel that onnxruntime runs in float."""
        return tuple(r for r in self.records if not r.as_expected)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable summary with every record.

        Returns:
            A dict with ``optimization_level``, the counts, ``fraction_integer``, ``counts_by_op`` and
            ``records`` (a list of dicts with the :class:`KernelRecord` fields).
        """
        return {
            "optimization_level": self.optimization_level,
            "integer_count": self.integer_count,
            "float_count": self.float_count,
            "fraction_integer": self.fraction_integer,
            "counts_by_op": self.counts_by_op(),
            "records": [dataclasses.asdict(r) for r in self.records],
        }
