"""The compact terminal summary that ``fp8conv verify`` prints, rendered from the report.json document.

Verdict, one row per output, the worst layer, kernel counts, failed gates and warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fp8conv.report.formatting import db, kernel_summary, num, pct, verdict, worst_layers

__all__ = ["failed_gate_lines", "render_terminal"]


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
    lines.append(
        f"  {'output':<20} {'SQNR dB':>8} {'quant dB':>9} {'kernel dB':>10} {'cosine':>9} {'max|err|':>10} {'top-1':>8}"
    )
    for output in report["outputs"]:
        lines.append(
            f"  {output['name'][:20]:<20} {db(output['sqnr_db']):>8} {db(output['quantization_sqnr_db']):>9} "
            f"{db(output['kernel_sqnr_db']):>10} {num(output['cosine'], 5):>9} {num(output['max_abs_err']):>10} "
            f"{pct(output['top1_agreement']):>8}"
        )
    worst = worst_layers(report, 1)
    if worst:
        layer = worst[0]
        first = report["first_failing_layer"]
        threshold = report["layer_threshold_db"]
        where = f"first below {db(threshold)} dB: {first or 'none'}" if threshold is not None else ""
        lines.append(f"  worst layer: {layer['tensor']} ({layer['op_type']}) {db(layer['sqnr_db'])} dB; {where}")
    lines.append(f"  kernels: {kernel_summary(report['kernels'])}")
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
