"""The short text summary ``fp8conv MODEL --to …`` prints after a conversion."""

from __future__ import annotations

from fp8conv.converter.pipeline import ConversionResult
from fp8conv.converter.postconditions import written_model

__all__ = ["conversion_summary"]


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1024:.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def conversion_summary(result: ConversionResult) -> str:
    """A few lines: layers converted, integer kernels, sizes, time, warnings.

    The counts are the written model's (:class:`~fp8conv.converter.postconditions.WrittenModel`: the layers
    whose weights it stores as integers, and their widths) and the kernel audit's, not the plan's.
    """
    written = result.written if result.written is not None else written_model(result.model)
    converted = written.converted
    lines = [
        f"{result.source.path} -> {result.output_path} ({result.config.target.value})",
        f"layers       {len(converted)}/{len(written.layers)} converted"
        + (f" ({', '.join(written.precisions)})" if converted else ""),
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
