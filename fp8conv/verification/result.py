"""The verification result: per-output and per-layer statistics, gates, kernels, conversion decisions.

:meth:`VerificationResult.to_json` is the content of ``report.json`` (schema
``fp8conv/report/report.schema.json``, version :data:`SCHEMA_VERSION`); ``report.md`` and
``report.html`` are rendered from that JSON alone. JSON has no infinities: an infinite value (SQNR of
identical tensors) is written as the string ``"inf"`` (or ``"-inf"``), a NaN as ``null``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fp8conv._version import __version__
from fp8conv.verification.metrics import HISTOGRAM_EDGES, ErrorStats, LabelAccuracy, TopKAgreement
from fp8conv.verification.provenance import collect_provenance

__all__ = [
    "SCHEMA_VERSION",
    "GateResult",
    "LayerReport",
    "OutputReport",
    "VerificationResult",
    "json_number",
    "json_safe",
]

SCHEMA_VERSION = "1.3"
"""Version of the report.json schema (major bumps break readers; minor ones add keys)."""


def json_number(value: float | None) -> float | str | None:
    """A float for JSON: ``inf`` → ``"inf"``, ``-inf`` → ``"-inf"``, NaN and None → None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def json_safe(value: Any) -> Any:
    """Recursively apply :func:`json_number` to every float of a JSON-like structure."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One gate checked on one output.

    Attributes:
        name: Gate name (``min_sqnr``, …, or ``nonfinite``).
        output: The output it was checked on (None when it could not be applied to any).
        metric: The metric compared (a key of the output's report entry).
        comparison: ``>=`` (minimum gates) or ``<=`` (maximum gates).
        threshold: The threshold.
        value: The measured value (None when it could not be measured).
        passed: Whether the gate passed.
        source: Where the threshold came from: ``default``, ``config``, ``cli`` or ``api``.
        decision_value: For rate gates, the 95 % lower confidence bound the decision used (pp).
        note: Why a gate could not be applied, or how a rate was counted.
    """

    name: str
    output: str | None
    metric: str
    comparison: str
    threshold: float
    value: float | None
    passed: bool
    source: str
    decision_value: float | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON view (infinite values as the strings ``"inf"``/``"-inf"``)."""
        data = dataclasses.asdict(self)
        data["value"] = json_number(self.value)
        data["threshold"] = json_number(self.threshold)
        return data


def _range(stats: ErrorStats) -> list[float] | None:
    return [stats.ref_min, stats.ref_max] if stats.count else None


@dataclasses.dataclass
class OutputReport:
    """Statistics of one graph output.

    Attributes:
        name: Output name.
        shape: Shape of the output in the first batch.
        dtype: NumPy dtype name.
        total: Deployed candidate (fused, at the chosen optimization level) vs the reference.
        quantization: The candidate's QDQ graph without fusion vs the reference: quantization error.
        kernel: Deployed candidate vs its unfused QDQ graph: kernel error (fusion, integer arithmetic).
        topk: Top-k agreement, for classifier outputs.
        accuracy: Label accuracy, for classifier outputs when labels were given.
        task: ``classification``, ``embedding`` or ``regression`` (:mod:`~fp8conv.verification.tasks`): top-1
            and accuracy are measured and gated only for classification.
        task_reason: Why that task (``--task``, or the inference rule that decided).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    total: ErrorStats = dataclasses.field(default_factory=ErrorStats)
    quantization: ErrorStats = dataclasses.field(default_factory=ErrorStats)
    kernel: ErrorStats = dataclasses.field(default_factory=ErrorStats)
    topk: TopKAgreement | None = None
    accuracy: LabelAccuracy | None = None
    task: str = "classification"
    task_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON view (see the schema's ``outputs`` items)."""
        topk, accuracy = self.topk, self.accuracy
        top1 = topk.top1_agreement if topk else None
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "elements": self.total.count,
            "sqnr_db": self.total.sqnr_db,
            "cosine": self.total.cosine,
            "max_abs_err": self.total.max_abs_err,
            "mean_abs_err": self.total.mean_abs_err,
            "relative_error": self.total.relative_error,
            "nonfinite_mismatch": self.total.nonfinite_mismatch,
            "reference_range": _range(self.total),
            "quantization_sqnr_db": self.quantization.sqnr_db,
            "quantization_cosine": self.quantization.cosine,
            "quantization_max_abs_err": self.quantization.max_abs_err,
            "kernel_sqnr_db": self.kernel.sqnr_db,
            "kernel_max_abs_err": self.kernel.max_abs_err,
            "kernel_mismatched_elements": self.kernel.count - self.kernel.zero_errors,
            "classifier": topk is not None,
            "task": self.task,
            "task_reason": self.task_reason,
            "classes": topk.classes if topk else None,
            "top1_agreement": top1,
            "top5_agreement": topk.top5_agreement if topk else None,
            "top1_drop_pp": 100.0 * (1.0 - top1) if top1 is not None else None,
            "top1_flips": topk.top1_flips if topk else None,
            "reference_accuracy": accuracy.reference_accuracy if accuracy else None,
            "candidate_accuracy": accuracy.candidate_accuracy if accuracy else None,
            "accuracy_drop_pp": accuracy.drop_pp if accuracy else None,
            "error_histogram": {
                "log10_edges": [round(float(v), 6) for v in np.log10(HISTOGRAM_EDGES)],
                "total": self.total.histogram_json(),
                "quantization": self.quantization.histogram_json(),
                "kernel": self.kernel.histogram_json(),
            },
        }


@dataclasses.dataclass
class LayerReport:
    """Quantization error of one intermediate tensor present in both graphs (same name).

    Attributes:
        index: Position in the candidate's graph order (0-based, among matched tensors).
        tensor: Tensor name.
        node: Name of the candidate node that produces it.
        op_type: Op type of that node.
        stats: Unfused candidate QDQ graph vs the reference.
        rank: 1 for the lowest SQNR (set after the run).
        below_threshold: SQNR under the ``min_layer_sqnr`` gate (always False when that gate is off: layer
            numbers are diagnostics then).
        first_below_threshold: The first tensor in graph order that is below the gate.
        activation: The conversion's record of the activation quantizer that reads or writes this
            tensor (dtype, method, low, high, scale, zero_point), when known.
        weight: The conversion's record of the layer that produces this tensor (node, op_type,
            precision, weight_range, weight_bits, reason), when known.
    """

    index: int
    tensor: str
    node: str
    op_type: str
    stats: ErrorStats = dataclasses.field(default_factory=ErrorStats)
    rank: int = 0
    below_threshold: bool = False
    first_below_threshold: bool = False
    activation: dict[str, Any] | None = None
    weight: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON view (see the schema's ``layers`` items)."""
        return {
            "index": self.index,
            "tensor": self.tensor,
            "node": self.node,
            "op_type": self.op_type,
            "sqnr_db": self.stats.sqnr_db,
            "cosine": self.stats.cosine,
            "max_abs_err": self.stats.max_abs_err,
            "mean_abs_err": self.stats.mean_abs_err,
            "relative_error": self.stats.relative_error,
            "nonfinite_mismatch": self.stats.nonfinite_mismatch,
            "reference_range": _range(self.stats),
            "rank": self.rank,
            "below_threshold": self.below_threshold,
            "first_below_threshold": self.first_below_threshold,
            "activation": self.activation,
            "weight": self.weight,
        }


@dataclasses.dataclass
class VerificationResult:
    """Everything :func:`fp8conv.verify` found; :meth:`to_json` is ``report.json``.

    Attributes:
        verified: False when verification was skipped (then ``outputs``/``layers``/``gates`` are empty).
        reference: Facts about the reference: ``path``, ``dialects``, ``quant_points``.
        candidate: Facts about the candidate: ``path``, ``optimization_level``.
        data: The inputs: ``source``, ``samples``, ``batch_size``, ``random``, ``labels``, ``dropped``.
        outputs: Per graph output.
        layers: Per matched intermediate tensor, in graph order.
        skipped_layers: Tensors present in both graphs that could not be compared, with the reason.
        layer_threshold_db: The ``min_layer_sqnr`` gate the layers are marked against (None: off, and the
            per-layer numbers are diagnostics that fail nothing).
        gates: Every gate checked.
        gate_settings: The thresholds used (``Gates.to_json()``).
        kernels: The candidate's integer-kernel audit (counts of integer vs float Conv/MatMul/Gemm).
        conversion: ``ConversionResult.to_json()`` when the candidate was converted in the same run.
        warnings: Things the reader must know (random inputs, dropped samples, output matching).
        seconds: Wall time of the verification.
        verification_data: What the data is to the conversion
            (:func:`~fp8conv.verification.inputs.data_role`: ``source`` ``calibration``, ``separate``,
            ``random`` or ``unknown``, ``path``, ``warning``); None when nothing was verified.
        provenance: Versions, CPU, UTC time, command line and file digests
            (:func:`~fp8conv.verification.provenance.collect_provenance`); collected at construction
            when not given, with ``golden_outputs`` and ``execution_providers`` added to it.
        golden_outputs: What was done with golden outputs (:meth:`~fp8conv.verification.golden.GoldenOutputs.finish`:
            ``mode`` ``saved`` or ``loaded``, ``path``, ...); None when the reference ran without them.
        execution_providers: The onnxruntime execution providers of the candidate's runs, the reference's and
            the audit's; None when nothing was verified.
    """

    verified: bool
    reference: dict[str, Any]
    candidate: dict[str, Any]
    data: dict[str, Any] | None
    outputs: list[OutputReport] = dataclasses.field(default_factory=list)
    layers: list[LayerReport] = dataclasses.field(default_factory=list)
    skipped_layers: list[dict[str, str]] = dataclasses.field(default_factory=list)
    layer_threshold_db: float | None = None
    gates: list[GateResult] = dataclasses.field(default_factory=list)
    gate_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    kernels: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    verification_data: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    golden_outputs: dict[str, Any] | None = None
    execution_providers: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.provenance is None:
            self.provenance = collect_provenance(self._files())
            if self.golden_outputs is not None:
                digest = (self.provenance["files"].get("golden_outputs") or {}).get("sha256")
                self.provenance["golden_outputs"] = {**self.golden_outputs, "sha256": digest}
            if self.execution_providers is not None:
                self.provenance["execution_providers"] = dict(self.execution_providers)

    def _files(self) -> dict[str, str | None]:
        """The files the report is about, by role: reference, candidate, data and calibration data."""
        data = self.data or {}
        calibration = (self.conversion or {}).get("calibration_source")
        files = {
            "reference": self.reference.get("path"),
            "candidate": self.candidate.get("path"),
            "data": None if data.get("random") else data.get("source"),
        }
        if calibration and calibration != files["data"]:
            files["calibration_data"] = calibration
        if self.golden_outputs is not None:
            files["golden_outputs"] = self.golden_outputs.get("path")
        return files

    @property
    def passed(self) -> bool:
        """True when no gate failed (also when verification was skipped: check :attr:`verified`)."""
        return all(gate.passed for gate in self.gates)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this result: 0 when every gate passed, 1 otherwise."""
        return 0 if self.passed else 1

    def __repr__(self) -> str:
        """One line: passed or failed, gates, samples, each output's SQNR (not the histograms)."""
        if not self.verified:
            why = self.warnings[0] if self.warnings else "skipped"
            return (
                f"<VerificationResult not verified ({why}); {len(self.failed_gates)} of {len(self.gates)} gates failed>"
            )
        verdict = "passed" if self.passed else f"FAILED ({', '.join(gate.name for gate in self.failed_gates)})"
        samples = (self.data or {}).get("samples")
        outputs = ", ".join(f"{output.name} {output.total.sqnr_db:.1f} dB" for output in self.outputs[:3])
        more = f" (+{len(self.outputs) - 3} more)" if len(self.outputs) > 3 else ""
        return f"<VerificationResult {verdict}: {len(self.gates)} gates, {samples} samples, SQNR {outputs}{more}>"

    @property
    def failed_gates(self) -> list[GateResult]:
        """The gates that failed."""
        return [gate for gate in self.gates if not gate.passed]

    @property
    def first_failing_layer(self) -> LayerReport | None:
        """The first layer in graph order below the ``min_layer_sqnr`` gate (None when it is off or none is)."""
        return next((layer for layer in self.layers if layer.first_below_threshold), None)

    @property
    def lowest_layer(self) -> LayerReport | None:
        """The layer with the lowest SQNR (a diagnostic; None when no layer was compared)."""
        return next(iter(self.worst_layers(1)), None)

    def worst_layers(self, count: int = 10) -> list[LayerReport]:
        """The ``count`` layers with the lowest SQNR, worst first."""
        return sorted(self.layers, key=lambda layer: layer.rank)[:count]

    def to_json(self) -> dict[str, Any]:
        """The ``report.json`` document (JSON-safe: no NaN or infinity)."""
        first, lowest = self.first_failing_layer, self.lowest_layer
        document = {
            "schema_version": SCHEMA_VERSION,
            "fp8conv_version": __version__,
            "passed": self.passed,
            "verified": self.verified,
            "reference": self.reference,
            "candidate": self.candidate,
            "data": self.data,
            "outputs": [output.to_json() for output in self.outputs],
            "layers": [layer.to_json() for layer in self.layers],
            "skipped_layers": list(self.skipped_layers),
            "layer_threshold_db": self.layer_threshold_db,
            "first_failing_layer": first.tensor if first else None,
            "lowest_layer": {
                "tensor": lowest.tensor,
                "node": lowest.node,
                "op_type": lowest.op_type,
                "index": lowest.index,
                "sqnr_db": lowest.stats.sqnr_db,
            }
            if lowest
            else None,
            "gates": [gate.to_json() for gate in self.gates],
            "gate_settings": self.gate_settings,
            "kernels": self.kernels,
            "conversion": self.conversion,
            "warnings": list(self.warnings),
            "seconds": self.seconds,
            "verification_data": self.verification_data,
            "provenance": self.provenance,
        }
        return json_safe(document)
