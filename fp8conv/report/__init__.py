"""Verification and reports: compare a converted model with its FP8 reference, check gates, write reports.

* :func:`verify` — run reference, deployed candidate and unfused candidate over data; per-output and
  per-layer statistics; gates (:class:`Gates`); returns a :class:`VerificationResult` whose ``to_json()``
  is report.json (schema: ``report.schema.json``).
* :func:`write_reports` — report.json, report.md and report.html into a directory, atomically.

Modules: :mod:`~fp8conv.report.metrics` (streaming error statistics), :mod:`~fp8conv.report.gates`,
:mod:`~fp8conv.report.matching` (tensors matched by name), :mod:`~fp8conv.report.inputs` (data and random
inputs), :mod:`~fp8conv.report.verify`, :mod:`~fp8conv.report.result`, :mod:`~fp8conv.report.schema`,
:mod:`~fp8conv.report.markdown`, :mod:`~fp8conv.report.html` + :mod:`~fp8conv.report.plots`,
:mod:`~fp8conv.report.terminal`, :mod:`~fp8conv.report.writer`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fp8conv.report.gates import DEFAULT_THRESHOLDS, GateResult, Gates
from fp8conv.report.result import SCHEMA_VERSION, LayerReport, OutputReport, VerificationResult
from fp8conv.report.verify import verify

__all__ = [
    "DEFAULT_THRESHOLDS",
    "SCHEMA_VERSION",
    "GateResult",
    "Gates",
    "LayerReport",
    "OutputReport",
    "VerificationResult",
    "verify",
    "write_reports",
]


def write_reports(result: VerificationResult, directory: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.md and report.html (see :func:`fp8conv.report.writer.write_reports`).

    Imports the renderers (jinja2, matplotlib) on first use only.
    """
    from fp8conv.report.writer import write_reports as write

    return write(result, directory)
