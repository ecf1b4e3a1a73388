"""Number and verdict formatting shared by the Markdown, HTML and terminal reports (inputs are report.json values)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from fp8conv.converter.grouping import group_by_message, subject

__all__ = [
    "OUTPUT_LEGEND",
    "basename",
    "db",
    "display_path",
    "float_kernel_groups",
    "is_classification",
    "kernel_summary",
    "layer_summary",
    "num",
    "pct",
    "reference_notes",
    "shorten",
    "verdict",
    "worst_layers",
]

OUTPUT_LEGEND = (
    "SQNR: deployed candidate vs the FP8 reference; quant: its QDQ graph without fusion vs the reference "
    "(quantization error); kernel: deployed vs that unfused graph (fusion and integer kernels; ∞ = bit-identical); "
    "top-1 agree: samples whose top class is the FP8 model's"
)
"""What the output columns mean (report.md, report.html; the terminal prints a shorter form)."""


def db(value: Any) -> str:
    """An SQNR in dB: ``27.3``, ``∞`` for identical tensors, ``–`` when absent."""
    if value == "inf":
        return "∞"
    if value == "-inf":
        return "-∞"
    if value is None:
        return "–"
    return f"{value:.1f}"


def num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (``–`` when absent)."""
    if value in ("inf", "-inf"):
        return db(value)
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def pct(value: Any) -> str:
    """A fraction as a percentage with two decimals (``–`` when absent)."""
    return "–" if value is None else f"{100.0 * value:.2f} %"


def basename(path: Any) -> str:
    """The last component of a path (``–`` when absent)."""
    return PurePath(str(path)).name if path else "–"


def shorten(name: str, width: int = 28) -> str:
    """``name`` cut to ``width`` characters by a ``…`` in the middle (both ends tell tensors apart)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def display_path(report: Mapping[str, Any], role: str, path: Any) -> str:
    """The path of ``role`` (reference, candidate, data) relative to the provenance root; else its basename."""
    files = (report.get("provenance") or {}).get("files") or {}
    entry = files.get(role)
    return entry["path"] if entry else basename(path)


def reference_notes(report: Mapping[str, Any], code: str = "") -> list[str]:
    """Where the reference's results came from and where the candidate ran, when not the defaults (0-2 lines).

    ``code`` wraps a path (a backtick for Markdown).
    """
    return [line for line in (_golden_summary(report, code), _providers_summary(report)) if line]


def _golden_summary(report: Mapping[str, Any], code: str = "") -> str | None:
    """``reference outputs loaded from PATH (sha256 …, 360 samples): the FP8 reference was not run`` or None.

    ``code`` wraps the path (a backtick for Markdown).
    """
    golden = (report.get("provenance") or {}).get("golden_outputs")
    if not golden:
        return None
    path = f"{code}{display_path(report, 'golden_outputs', golden['path'])}{code}"
    digest = f"sha256 {golden['sha256'][:16]}…, " if golden.get("sha256") else ""
    facts = f"({digest}{golden['samples']} samples, {len(golden['outputs'])} outputs, {golden['tensors']} tensors)"
    if golden["mode"] == "loaded":
        return f"reference outputs loaded from {path} {facts}: the FP8 reference was not run"
    return f"reference outputs saved to {path} {facts} for --load-outputs"


def _providers_summary(report: Mapping[str, Any]) -> str | None:
    """``candidate on CUDAExecutionProvider, CPUExecutionProvider (...)`` when not only the CPU provider, else None."""
    providers = (report.get("provenance") or {}).get("execution_providers")
    if not providers or providers["candidate"] == ["CPUExecutionProvider"]:
        return None
    asked, session = ", ".join(providers["candidate"]), ", ".join(providers["candidate_session"])
    return (
        f"candidate runs on {asked} (session: {session}); the FP8 reference and the integer-kernel audit on "
        "CPUExecutionProvider"
    )


def verdict(report: Mapping[str, Any]) -> tuple[str, str]:
    """``(word, detail)``: ``PASSED``/``FAILED``/``NOT VERIFIED`` and a short reason.

    A failed gate is ``FAILED`` also when nothing was verified (the integer-kernel gate needs no data).
    """
    gates = report["gates"]
    failed = [gate for gate in gates if not gate["passed"]]
    if not report["verified"]:
        reason = (report["warnings"] or ["no reason recorded"])[0]
        if failed:
            return "FAILED", f"{len(failed)} of {len(gates)} gates failed; nothing else verified: {reason}"
        return "NOT VERIFIED", reason
    if failed:
        return "FAILED", f"{len(failed)} of {len(gates)} gates failed"
    return "PASSED", f"all {len(gates)} gates passed"


def worst_layers(report: Mapping[str, Any], count: int = 10) -> list[Mapping[str, Any]]:
    """The ``count`` layers with the lowest SQNR, worst first."""
    return sorted(report["layers"], key=lambda layer: layer["rank"])[:count]


def layer_summary(report: Mapping[str, Any], code: str = "") -> str:
    """One sentence about the layers: the ``min_layer_sqnr`` gate's verdict, or the lowest layer as a diagnostic.

    Args:
        report: A report.json document.
        code: Wrapping for names (`` ` `` in Markdown).
    """
    lowest = report.get("lowest_layer")
    if not lowest:
        return "no layer compared"
    where = f"lowest layer SQNR: {db(lowest['sqnr_db'])} dB at {code}{lowest['tensor']}{code} ({lowest['op_type']})"
    threshold = report["layer_threshold_db"]
    if threshold is None:
        return f"{where}; per-layer numbers are diagnostics (--min-layer-sqnr gates them)"
    below = [layer for layer in report["layers"] if layer["below_threshold"]]
    if not below:
        return f"{where}; every layer meets min_layer_sqnr {db(threshold)} dB"
    first = report["first_failing_layer"]
    return (
        f"{len(below)} of {len(report['layers'])} layers below min_layer_sqnr {db(threshold)} dB, first: "
        f"{code}{first}{code}; {where}"
    )


def float_kernel_groups(records: Sequence[Mapping[str, Any]], code: str = "") -> list[str]:
    """The float kernels of an audit, one line per reason: ``layer n (Conv as Conv): why`` or ``14 layers (…): why``."""
    floats = [record for record in records if not record["integer"]]
    labels = {r["node"]: f"{code}{r['node']}{code} ({r['op_type']} as {r['kernel'] or '?'})" for r in floats}
    names = {r["node"]: f"{code}{r['node']}{code}" for r in floats}
    lines = []
    for nodes, reason in group_by_message((record["node"], record["reason"] or "?") for record in floats):
        lines.append(f"{subject([names[node] for node in nodes], 'layer', labels[nodes[0]])}: {reason}")
    return lines


def kernel_summary(kernels: Mapping[str, Any] | None) -> str:
    """``Conv 6/6, MatMul 1/1 on integer kernels`` (or why there is nothing to say)."""
    if not kernels:
        return "not audited"
    counts = kernels.get("counts_by_op") or {}
    if not counts:
        return "no Conv/MatMul/Gemm"
    parts = [f"{op} {c['integer']}/{c['integer'] + c['float']}" for op, c in sorted(counts.items())]
    return ", ".join(parts) + " on integer kernels"


def is_classification(output: Mapping[str, Any]) -> bool:
    """Whether an output of report.json is judged as a classifier (it gets the top-1 columns).

    A report before schema 1.2 has no ``task``: there an output is a classifier when top-1 was measured.
    """
    task = output.get("task")
    return task == "classification" if task is not None else output.get("top1_agreement") is not None
