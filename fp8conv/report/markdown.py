"""``report.md``: the verdict first, then what a reviewer needs in a CI comment.

After the verdict line: what was compared (paths relative to the provenance root; a warning when the data
is the calibration data), failed gates, outputs with a legend, the worst 10 layers, integer-kernel counts
(float kernels grouped by reason, at most 10 lines), warnings and a provenance line. Rendered from the
report.json document alone, short enough for a pull-request comment (GitHub's limit is 65 536 characters;
a report stays under ~5 KB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fp8conv.converter.grouping import quantizer_lines, weight_method_lines
from fp8conv.report.formatting import (
    OUTPUT_LEGEND,
    db,
    display_path,
    float_kernel_groups,
    is_classification,
    kernel_summary,
    layer_summary,
    num,
    pct,
    reference_notes,
    verdict,
    worst_layers,
)

__all__ = ["render_markdown"]

_ICON = {"PASSED": "✅", "FAILED": "❌", "NOT VERIFIED": "⚠️"}
_KERNEL_LINES = 10
_FOOTER_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _gate_value(gate: Mapping[str, Any]) -> str:
    value = db(gate["value"]) if gate["metric"].endswith("_db") else num(gate["value"])
    if gate.get("decision_value") is not None:
        value += f" (95 % bound {num(gate['decision_value'], 3)})"
    return value


def render_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown report for a report.json document.

    Args:
        report: ``VerificationResult.to_json()`` (or a parsed report.json).

    Returns:
        Markdown text whose first line is the verdict.
    """
    word, detail = verdict(report)
    lines = [f"## {_ICON[word]} fp8conv verification {word}: {detail}", ""]
    reference, candidate, data = report["reference"], report["candidate"], report["data"]
    if report["verified"]:
        kind = "FP8, exact reference" if reference.get("quant_points") else "no FP8 points"
        labels = ", with labels" if data["labels"] else ""
        random = " **random inputs**" if data["random"] else ""
        role = (report.get("verification_data") or {}).get("source")
        calibration = " (**the calibration data**)" if role == "calibration" else ""
        source = data["source"] if data["random"] else f"`{display_path(report, 'data', data['source'])}`"
        lines.append(
            f"`{display_path(report, 'reference', reference['path'])}` ({kind}) vs "
            f"`{display_path(report, 'candidate', candidate['path'])}` on onnxruntime "
            f"(optimization level `{candidate['optimization_level']}`), {data['samples']}{random} samples from "
            f"{source}{calibration}{labels}."
        )
        lines += [f"{line[0].upper()}{line[1:]}." for line in reference_notes(report, "`")]
        lines.append("")
    failed = [gate for gate in report["gates"] if not gate["passed"]]
    if failed:
        lines.append("**Failed gates**")
        lines.append("")
        rows = [
            [
                gate["name"],
                f"`{gate['output']}`" if gate["output"] else "–",
                f"{gate['comparison']} {num(gate['threshold'])}",
                _gate_value(gate),
                gate.get("note") or "",
            ]
            for gate in failed
        ]
        lines += _table(["gate", "output", "threshold", "value", "note"], rows)
        lines.append("")
    if report["verified"]:
        lines += _outputs(report["outputs"])
        lines += _layers(report)
    kernels = report["kernels"] or {}
    lines.append(f"**Kernels** ({kernels.get('optimization_level', '–')}): {kernel_summary(report['kernels'])}.")
    groups = float_kernel_groups(kernels.get("records", []), code="`")
    lines += [f"- {line}" for line in groups[:_KERNEL_LINES]]
    if len(groups) > _KERNEL_LINES:
        rest = groups[_KERNEL_LINES:]
        lines.append(f"- … and {len(rest)} more reasons (report.html lists every layer)")
    placement = quantizer_lines((report.get("conversion") or {}).get("fp8_quantizers") or [], code="`")
    if placement:
        lines.append("")
        lines.append(f"**Placement**: {placement[0]}.")
        lines += [f"- {line}" for line in placement[1:]]
    methods = weight_method_lines((report.get("conversion") or {}).get("weight_methods"))
    if methods:
        lines.append("")
        lines.append(f"**Weights**: {methods[0]}.")
        lines += [f"- {line.strip()}" for line in methods[1:]]
    warnings = list(report["warnings"])[1 if not report["verified"] else 0 :]
    if warnings:
        lines.append("")
        lines.append("**Warnings**")
        lines.append("")
        lines += [f"- {warning}" for warning in warnings]
    lines.append("")
    lines.append(f"<sub>{_provenance(report)} · full details in report.html / report.json</sub>")
    return "\n".join(lines) + "\n"


def _provenance(report: Mapping[str, Any]) -> str:
    """``fp8conv 0.1.0 · onnxruntime 1.x · CPU (avx2, avx512_vnni) · 2025-…Z · `command```."""
    provenance = report.get("provenance")
    if not provenance:
        return "fp8conv " + report["fp8conv_version"]
    versions = provenance["versions"]
    cpu = provenance["cpu"]
    flags = ", ".join(flag for flag in cpu["flags"] if flag in _FOOTER_FLAGS)
    if not flags:
        flags = "ISA flags unknown" if cpu["flags_source"] == "unavailable" else "no AVX2/VNNI/AMX"
    command = provenance["command"].replace("`", "'")
    return (
        f"fp8conv {versions['fp8conv']} · onnxruntime {versions['onnxruntime']} · {cpu['model'] or cpu['machine']} "
        f"({flags}) · {provenance['created_utc']} · `{command}`"
    )


def _outputs(outputs: Sequence[Mapping[str, Any]]) -> list[str]:
    labelled = any(output["reference_accuracy"] is not None for output in outputs)
    classified = any(is_classification(output) for output in outputs)
    rows = []
    for output in outputs:
        row = [
            f"`{output['name']}`",
            db(output["sqnr_db"]),
            db(output["quantization_sqnr_db"]),
            db(output["kernel_sqnr_db"]),
            num(output["cosine"], 5),
            num(output["max_abs_err"]),
            pct(output["top1_agreement"]) if classified else output.get("task") or "–",
        ]
        if labelled:
            accuracy = "–"
            if output["reference_accuracy"] is not None:
                accuracy = f"{pct(output['reference_accuracy'])} → {pct(output['candidate_accuracy'])}"
            row.append(accuracy)
        rows.append(row)
    header = ["output", "SQNR dB", "quant. dB", "kernel dB", "cosine", "max abs err"]
    header.append("top-1 agree" if classified else "task")
    if labelled:
        header.append("accuracy ref → cand")
    return [*_table(header, rows), "", f"<sub>{OUTPUT_LEGEND}.</sub>", ""]


def _layers(report: Mapping[str, Any]) -> list[str]:
    if not report["layers"]:
        return []
    gated = report["layer_threshold_db"] is not None
    lines = [
        f"**Worst layers** (of {len(report['layers'])}; unfused QDQ vs reference): {layer_summary(report, code='`')}.",
        "",
    ]
    rows = []
    for layer in worst_layers(report, 10):
        mark = ""
        if gated:
            mark = " ⬅ first below" if layer["first_below_threshold"] else (" ❌" if layer["below_threshold"] else "")
        rows.append(
            [
                str(layer["rank"]),
                f"`{layer['tensor']}`{mark}",
                layer["op_type"],
                str(layer["index"]),
                db(layer["sqnr_db"]),
                num(layer["cosine"], 5),
                num(layer["max_abs_err"]),
            ]
        )
    return [*lines, *_table(["rank", "tensor", "op", "position", "SQNR dB", "cosine", "max abs err"], rows), ""]
