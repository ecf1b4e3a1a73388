"""Number and verdict formatting shared by the Markdown, HTML and terminal reports (inputs are report.json values)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["basename", "db", "kernel_summary", "num", "pct", "verdict", "worst_layers"]


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


def kernel_summary(kernels: Mapping[str, Any] | None) -> str:
    """``Conv 6/6, MatMul 1/1 on integer kernels`` (or why there is nothing to say)."""
    if not kernels:
        return "not audited"
    counts = kernels.get("counts_by_op") or {}
    if not counts:
        return "no Conv/MatMul/Gemm"
    parts = [f"{op} {c['integer']}/{c['integer'] + c['float']}" for op, c in sorted(counts.items())]
    return ", ".join(parts) + " on integer kernels"
