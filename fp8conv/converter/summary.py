"""The short text summary ``fp8conv MODEL --to …`` prints after a conversion."""

from __future__ import annotations

from fp8conv.converter.grouping import group_by_message, name_list, quantizer_lines, subject, weight_method_lines
from fp8conv.converter.pipeline import ConversionResult
from fp8conv.converter.postconditions import written_model
from fp8conv.runtime.audit import KernelRecord

__all__ = ["conversion_summary"]

_AUTO_INT16_LINES = 5


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1024:.1f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def conversion_summary(result: ConversionResult) -> str:
    """A few lines: layers converted, integer kernels, sizes, time, notes and warnings.

    The counts are the written model's (:class:`~fp8conv.converter.postconditions.WrittenModel`: the layers
    whose weights it stores as integers, and their widths) and the kernel audit's, not the plan's. A
    reason shared by several layers is one line naming the first few; the audit's float kernels of
    layers the plan keeps float are not repeated (their warning or note says why).
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
    lines += _auto_int16_lines(result)
    methods = weight_method_lines(result.weight_methods)
    lines += [f"weights      {line}" for line in methods[:1]] + [
        f"  {line}" if not line.startswith("  ") else line for line in methods[1:]
    ]
    placement = quantizer_lines(result.fp8_quantizers)
    lines += [f"placement    {line}" for line in placement[:1]] + [f"  {line}" for line in placement[1:]]
    if result.audit is not None:
        lines += _kernel_lines(result)
    lines.append(
        f"size         {_size(result.source.size_bytes)} -> {_size(result.output_size_bytes)}; "
        f"time {result.seconds:.1f} s"
    )
    lines.extend(f"note: {note}" for note in result.notes)
    lines.extend(f"warning: {warning}" for warning in result.warnings)
    return "\n".join(lines)


def _kernel_lines(result: ConversionResult) -> list[str]:
    audit = result.audit
    planned_float = {layer.node for layer in result.layers if layer.precision == "float"}
    floats = [record for record in audit.float_records() if record.node not in planned_float]
    kept = len(audit.float_records()) - len(floats)
    total = audit.integer_count + audit.float_count
    line = f"kernels      {audit.integer_count}/{total} Conv/MatMul/Gemm on integer kernels"
    lines = [line + (f" ({kept} kept float by the plan)" if kept else "")]
    lines += _grouped_records(floats, "  float: {subject}: {reason}")
    # A layer the plan keeps float that onnxruntime runs on an integer kernel anyway (it quantized the weight).
    overruled = [record for record in audit.records if record.integer and record.node in planned_float]
    lines += _grouped_records(overruled, "  warning: {subject} planned float: {reason}")
    return lines


def _grouped_records(records: list[KernelRecord], template: str) -> list[str]:
    """One ``template`` line per distinct audit reason (``warning:`` prefix dropped), naming its layers."""
    labels = {record.node: f"{record.node} ({record.op_type} as {record.kernel})" for record in records}
    reasons = ((record.node, (record.reason or "?").removeprefix("warning: ")) for record in records)
    return [
        template.format(subject=subject(nodes, "layer", labels[nodes[0]]), reason=reason)
        for nodes, reason in group_by_message(reasons)
    ]


def _auto_int16_lines(result: ConversionResult) -> list[str]:
    """``auto INT16`` lines: which activation groups became INT16, at what INT8 SQNR, and who reads them."""
    groups = result.auto_int16
    if not groups:
        return []
    threshold = result.config.auto_int16_below_db
    readers = {node for group in groups for node in group["layers"]}
    plural = "s" if len(groups) != 1 else ""
    line = f"auto INT16   {len(groups)} activation group{plural} with INT8 SQNR below {threshold:g} dB became INT16"
    if readers:
        line += f", read by {len(readers)} layer{'s' if len(readers) != 1 else ''}"
    lines = [line]
    ordered = sorted(groups, key=lambda group: group["int8_sqnr_db"])
    for group in ordered[:_AUTO_INT16_LINES]:
        lines.append(
            f"  {name_list(group['tensors'])}: INT8 SQNR {group['int8_sqnr_db']:.1f} dB"
            + (f"; read by {name_list(group['layers'])}" if group["layers"] else "")
        )
    if len(ordered) > _AUTO_INT16_LINES:
        rest = ordered[_AUTO_INT16_LINES:]
        lines.append(
            f"  … and {len(rest)} more ({rest[0]['int8_sqnr_db']:.1f} to {rest[-1]['int8_sqnr_db']:.1f} dB; "
            "every group in report.json's conversion.auto_int16)"
        )
    return lines
