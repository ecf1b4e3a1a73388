"""The compact terminal summary that ``fp8conv verify`` prints, rendered from the report.json document.

Verdict, one row per output (accuracy against the labels when the data has them) and a legend of the
columns, the layers (a diagnostic unless the ``min_layer_sqnr`` gate is set), kernel counts, failed gates
and warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fp8conv.report.formatting import (
    db,
    is_classification,
    kernel_summary,
    layer_summary,
    num,
    pct,
    reference_notes,
    verdict,
)

__all__ = ["failed_gate_lines", "render_terminal"]

_LEGEND = "quant dB = unfused QDQ graph vs FP8 (quantization error); kernel dB = deployed vs unfused (integer kernels)"


def render_terminal(report: Mapping[str, Any]) -> str:
    """A few lines for the terminal (no colour codes, safe for CI logs)."""
    word, detail = verdict(report)
    if not report["verified"]:
        skipped = (report["warnings"] or ["no reason recorded"])[0]
        return "\n".join([f"verification skipped: {skipped}", *failed_gate_lines(report)])
    data = report["data"]
    lines = [
        f"verification {word}: {detail} ({data['samples']}{' random' if data['random'] else ''} samples, "
        f"onnxruntime level {report['candidate']['optimization_level']})"
    ]
    outputs = report["outputs"]
    labelled = any(output["reference_accuracy"] is not None for output in outputs)
    classified = any(is_classification(output) for output in outputs)
    header = f"  {'output':<20} {'SQNR dB':>8} {'quant dB':>9} {'kernel dB':>10} {'cosine':>9} {'max|err|':>10} " + (
        f"{'top-1 agree':>12}" if classified else f"{'task':>14}"
    )
    lines.append(header + (f" {'accuracy ref → cand':>21}" if labelled else ""))
    for output in outputs:
        row = (
            f"  {output['name'][:20]:<20} {db(output['sqnr_db']):>8} {db(output['quantization_sqnr_db']):>9} "
            f"{db(output['kernel_sqnr_db']):>10} {num(output['cosine'], 5):>9} {num(output['max_abs_err']):>10} "
            + (f"{pct(output['top1_agreement']):>12}" if classified else f"{output.get('task') or '–':>14}")
        )
        if labelled:
            accuracy = "–"
            if output["reference_accuracy"] is not None:
                accuracy = f"{pct(output['reference_accuracy'])} → {pct(output['candidate_accuracy'])}"
            row += f" {accuracy:>21}"
        lines.append(row)
    lines.append(f"  {_LEGEND}")
    if report["layers"]:
        lines.append(f"  {layer_summary(report)}")
    lines.append(f"  kernels: {kernel_summary(report['kernels'])}")
    lines += [f"  {line}" for line in reference_notes(report)]
    lines += failed_gate_lines(report)
    lines += [f"  warning: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def failed_gate_lines(report: Mapping[str, Any]) -> list[str]:
    """One ``  FAILED gate on output: value, needs >= threshold (note)`` line per failed gate."""
    lines = []
    for gate in report["gates"]:
        if not gate["passed"]:
            value = db(gate["value"]) if gate["metric"].endswith("_db") else num(gate["value"])
            target = f" on {gate['output']}" if gate["output"] else ""
            note = f" ({gate['note']})" if gate.get("note") else ""
            lines.append(
                f"  FAILED {gate['name']}{target}: {value}, needs {gate['comparison']} {num(gate['threshold'])}{note}"
            )
    return lines
