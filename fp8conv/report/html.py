"""``report.html``: one self-contained page, rendered by jinja2 from the report.json document alone.

Inline CSS, plots as base64 PNG ``data:`` URIs (:mod:`fp8conv.report.plots`), no scripts and no external
references; the template is ``templates/report.html.j2`` (package data).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jinja2

from fp8conv.converter.grouping import quantizer_lines, weight_method_lines
from fp8conv.report import formatting, plots
from fp8conv.report.formatting import basename, db, num, pct

__all__ = ["render_html"]

_ICON = {"PASSED": "✔", "FAILED": "✘", "NOT VERIFIED": "⚠"}  # in DejaVu Sans, unlike the emoji
_WORST = 10  # rows of the worst-layers table, and of the range plot drawn beside it


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fp8conv.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(db=db, num=num, pct=pct, basename=basename)
    return environment


def render_html(report: Mapping[str, Any]) -> str:
    """The HTML report for a report.json document.

    Args:
        report: ``VerificationResult.to_json()`` (or a parsed report.json).

    Returns:
        A complete HTML document.
    """
    word, detail = formatting.verdict(report)
    worst = formatting.worst_layers(report, _WORST)
    figures = {
        "layers": plots.layer_sqnr_plot(report) if report["verified"] else None,
        "histograms": [
            (output["name"], uri)
            for output in report["outputs"]
            if (uri := plots.error_histogram_plot(output)) is not None
        ],
        "ranges": plots.range_plot(worst),
    }
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        word=word,
        detail=detail,
        icon=_ICON[word],
        worst=worst,
        plots=figures,
        kernels_text=formatting.kernel_summary(report["kernels"]),
        layers_text=formatting.layer_summary(report),
        legend=formatting.OUTPUT_LEGEND,
        placement=quantizer_lines((report.get("conversion") or {}).get("fp8_quantizers") or []),
        weight_methods=[
            line.strip() for line in weight_method_lines((report.get("conversion") or {}).get("weight_methods"))
        ],
        classification=any(formatting.is_classification(output) for output in report["outputs"]),
        paths={
            role: formatting.display_path(report, role, path)
            for role, path in (
                ("reference", report["reference"]["path"]),
                ("candidate", report["candidate"]["path"]),
                ("data", (report["data"] or {}).get("source")),
            )
        },
    )
