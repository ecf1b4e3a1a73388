"""``fp8conv inspect``: what a model is and which FP8 quantization points it has."""

from __future__ import annotations

import dataclasses
import logging

from fp8conv.converter.loading import LoadedModel, ModelInput, SourceInfo, load
from fp8conv.passes.canonical import QuantPoint
from fp8conv.passes.overrides import LayerNames, layer_names
from fp8conv.passes.plan import layer_nodes

__all__ = ["INSPECT_SCHEMA_VERSION", "Inspection", "inspect"]

logger = logging.getLogger(__name__)

INSPECT_SCHEMA_VERSION = "1.1"
"""Version of the ``inspect --json`` document, ``MAJOR.MINOR`` as a string like report.json's ``schema_version``.

1.1 added ``names`` to each layer: every name the override patterns are searched in.
"""


@dataclasses.dataclass(frozen=True)
class Inspection:
    """The facts ``fp8conv inspect`` shows.

    Attributes:
        source: File facts (opset, IR version, size, external data).
        dialects: FP8 dialects found.
        quant_points: Quantization points in graph order.
        integer_qdq: Integer Q/DQ nodes kept as they are.
        layers: Every Conv / MatMul / Gemm with the names ``--keep-float``, ``--int16`` and ``--int4``
            patterns are matched against (:mod:`fp8conv.passes.overrides`).
    """

    source: SourceInfo
    dialects: tuple[str, ...]
    quant_points: tuple[QuantPoint, ...]
    integer_qdq: tuple[str, ...]
    layers: tuple[LayerNames, ...] = ()

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> Inspection:
        """Build from a loaded model."""
        layers = tuple(layer_names(node) for node in layer_nodes(loaded.model.graph))
        return cls(loaded.source, loaded.dialects, tuple(loaded.quant_points), loaded.integer_qdq, layers)

    def to_json(self) -> dict[str, object]:
        """A stable JSON document (``schema_version`` :data:`INSPECT_SCHEMA_VERSION`)."""
        return {
            "schema_version": INSPECT_SCHEMA_VERSION,
            "path": str(self.source.path) if self.source.path else None,
            "opset": self.source.opset,
            "ir_version": self.source.ir_version,
            "producer": self.source.producer,
            "size_bytes": self.source.size_bytes,
            "external_data": list(self.source.external_data),
            "dialects": list(self.dialects),
            "quant_points": [point.to_json() for point in self.quant_points],
            "integer_qdq": list(self.integer_qdq),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def to_text(self) -> str:
        """A human-readable summary and table."""
        source = self.source
        counts = {role: sum(point.role == role for point in self.quant_points) for role in ("weight", "activation")}
        lines = [
            f"model        {source.path or '(in memory)'}",
            f"opset        ai.onnx {source.opset}, IR version {source.ir_version}"
            + (f", producer {source.producer}" if source.producer else ""),
            f"size         {_human_size(source.size_bytes)}"
            + (f" (external data: {', '.join(source.external_data)})" if source.external_data else ""),
            f"dialects     {', '.join(self.dialects) or 'none (no FP8 quantization found)'}",
            f"quant points {len(self.quant_points)} ({counts['weight']} weight, {counts['activation']} activation)",
        ]
        if self.integer_qdq:
            lines.append(f"integer Q/DQ {len(self.integer_qdq)} nodes kept as they are")
        lines.append(
            f"layers       {len(self.layers)} Conv/MatMul/Gemm"
            + (
                " (--keep-float, --int16 and --int4 patterns are searched in every name of a row)"
                if self.layers
                else ""
            )
        )
        if self.quant_points:
            lines.append("")
            lines.extend(_table(self.quant_points))
        if self.layers:
            lines.append("")
            lines.extend(_layer_table(self.layers))
        return "\n".join(lines)


def inspect(model: ModelInput) -> Inspection:
    """Load a model and describe its FP8 quantization.

    Args:
        model: A path, ``onnx.ModelProto``, ``onnx_ir.Model`` or ``onnx_graphsurgeon.Graph``.

    Returns:
        The inspection.

    Raises:
        Fp8ConvError: See :func:`fp8conv.load`.
    """
    return Inspection.from_loaded(load(model))


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _layer_table(layers: tuple[LayerNames, ...]) -> list[str]:
    """Every name the override patterns search, one row per layer: the stored weight, then the rest of its path."""
    rows = [
        (layer.node, layer.op_type, layer.weight or "-", layer.output, ", ".join(layer.weights[1:]) or "-")
        for layer in layers
    ]
    return _columns(("layer", "op", "weight", "output", "weight path (to the layer)"), rows)


def _table(points: tuple[QuantPoint, ...]) -> list[str]:
    headers = ("tensor", "role", "consumer", "format", "granularity", "scale range")
    rows = []
    for point in points:
        low, high = point.scale_range
        scale = f"{low:.4g}" if low == high else f"{low:.4g} .. {high:.4g}"
        granularity = point.spec.granularity
        if point.spec.axis is not None:
            granularity += f" (axis {point.spec.axis}" + (
                f", block {point.spec.block_size})" if point.spec.block_size else ")"
            )
        rows.append(
            (point.tensor, point.role, ",".join(point.consumers) or "-", point.spec.format.name, granularity, scale)
        )
    return _columns(headers, rows)


def _columns(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
