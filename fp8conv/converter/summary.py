"""The short text summary ``fp8conv MODEL --to …`` prints after a conversion."""

from __future__ import annotations

from fp8conv.converter.pipeline import ConversionResult
from fp8conv.converter.written import layer_weight_types

__all__ = ["conversion_summary"]


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1024:.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def conversion_summary(result: ConversionResult) -> str:
    """A few lines: layers converted (and the integer weight types in the file), integer kernels, sizes, time."""
    layers = result.layers
    converted = [layer for layer in layers if layer.precision != "float"]
    # The label names the integer weights the written model holds, never what the plan intended.
    written = sorted({t for _, t in layer_weight_types(result.model) if t not in (None, "float")})
    lines = [
        f"{result.source.path} -> {result.output_path} ({result.config.target.value})",
        f"layers       {len(converted)}/{len(layers)} converted"
        + (f" ({', '.join(written)} weights)" if written else ""),
        f"calibration  {result.calibration_samples} samples, activations {result.config.activations_range.value}, "
        f"weights {result.config.weights_range.value} ({result.config.weight_bits}-bit)",
    ]
    if result.audit is not None:
        audit = result.audit
        lines.append(
            f"kernels      {audit.integer_count}/{audit.integer_count + audit.float_count} Conv/MatMul/Gemm on "
            "integer kernels"
        )
        for record in audit.float_records():
            lines.append(f"  float: {record.node} ({record.op_type} as {record.kernel}): {record.reason}")
    lines.append(
        f"size         {_size(result.source.size_bytes)} -> {_size(result.output_size_bytes)}; "
        f"time {result.seconds:.1f} s"
    )
    lines.extend(f"warning: {warning}" for warning in result.warnings)
    return "\n".join(lines)
