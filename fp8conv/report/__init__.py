"""Verification and reports: compare a converted model with its FP8 reference, check gates, write reports.

* :func:`verify` — run reference, deployed candidate and unfused candidate over data; per-output and
  per-layer statistics; gates (:class:`Gates`); returns a :class:`VerificationResult` whose ``to_json()``
  is report.json (schema: ``report.schema.json``).
* :func:`write_reports` — report.json, report.md and report.html into a directory, atomically.

The comparison itself lives one layer down, in :mod:`fp8conv.verification` (:mod:`~fp8conv.verification.verify`,
:mod:`~fp8conv.verification.metrics`, :mod:`~fp8conv.verification.gates`, :mod:`~fp8conv.verification.result`, …);
this package re-exports its public names and holds what turns a result into files and text:
:mod:`~fp8conv.report.schema`, :mod:`~fp8conv.report.markdown`, :mod:`~fp8conv.report.html` +
:mod:`~fp8conv.report.plots`, :mod:`~fp8conv.report.terminal`, :mod:`~fp8conv.report.writer`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fp8conv.verification.gates import DEFAULT_THRESHOLDS, Gates
from fp8conv.verification.result import SCHEMA_VERSION, GateResult, LayerReport, OutputReport, VerificationResult
from fp8conv.verification.verify import verify

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
