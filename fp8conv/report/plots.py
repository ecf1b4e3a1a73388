"""Plots for report.html, as base64 PNG ``data:`` URIs (matplotlib's Agg canvas, no pyplot state).

* :func:`layer_sqnr_plot` — SQNR of every compared tensor along the network (graph order) and the deployed
  outputs' SQNR at the end. With the ``min_layer_sqnr`` gate set: its line, a red band below it, red points
  for the layers under it and the first of them marked; without it the numbers are diagnostics: the output
  gate's level as a grey reference line and the lowest layer named, nothing red. Tensor names label the
  x axis (every k-th one when there are many: :func:`tick_labels`), long names cut in the middle with ``…``.
* :func:`error_histogram_plot` — ``|error|`` histograms of one output on log-spaced bins: total
  (deployed vs reference), quantization (unfused QDQ vs reference) and kernel (deployed vs unfused).
* :func:`range_plot` — for the worst layers, one row each in the order of report.html's table (a row
  without a recorded range stays empty): the reference tensor's observed range against the INT8
  activation range the converter chose (clipping shows as grey beyond the blue bar), and the layer's
  weight range.

All functions take report.json values (infinite SQNR as ``"inf"``) and never raise on empty input:
they return None when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fp8conv.report.formatting import shorten

__all__ = ["error_histogram_plot", "layer_sqnr_plot", "range_labels", "range_plot", "tick_labels"]

_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9a9a9a"
_MAX_TICK_LABELS = 48
_NAME_WIDTH = 28


def _png(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite(value: Any) -> float | None:
    if value in ("inf", "-inf") or value is None:
        return None
    return float(value)


def tick_labels(layers: Sequence[Mapping[str, Any]], most: int = _MAX_TICK_LABELS) -> tuple[list[int], list[str]]:
    """(positions, names) for the x axis: every tensor, or every k-th one when there are more than ``most``.

    The lowest-SQNR tensor and the first one below the gate are always labelled. A path prefix every name
    shares (``/model/encoder/``) is left out, and what remains is cut to 28 characters with ``…`` in the
    middle (:func:`~fp8conv.report.formatting.shorten`).
    """
    step = max(1, math.ceil(len(layers) / most))
    keep = set(range(0, len(layers), step))
    keep |= {i for i, layer in enumerate(layers) if layer["rank"] == 1 or layer["first_below_threshold"]}
    positions = sorted(keep)
    names = [str(layers[i]["tensor"]) for i in positions]
    shared = os.path.commonprefix(names)  # noqa: RUF071 - names, not paths: cut at their last "/" below
    cut = shared.rfind("/") + 1 if len(names) > 1 else 0
    if any(len(name) == cut for name in names):
        cut = 0
    return positions, [shorten(name[cut:], _NAME_WIDTH) for name in names]


def layer_sqnr_plot(report: Mapping[str, Any]) -> str | None:
    """SQNR along the network, with the layer gate when one is set (None when no layer was compared)."""
    layers = report["layers"]
    if not layers:
        return None
    values = [_finite(layer["sqnr_db"]) for layer in layers]
    finite = [v for v in values if v is not None]
    outputs = [(o["name"], _finite(o["sqnr_db"])) for o in report["outputs"]]
    finite += [v for _, v in outputs if v is not None]
    threshold = report["layer_threshold_db"]
    reference = (
        None if threshold is not None else ((report.get("gate_settings") or {}).get("min_sqnr") or {}).get("global")
    )
    line = threshold if threshold is not None else reference
    top = max([*finite, line or 0.0, 10.0]) + 6.0
    bottom = min([*finite, line if line is not None else top, 0.0]) - 3.0
    figure = Figure(figsize=(12.8, 4.6))
    axes = figure.add_subplot()
    x = np.arange(len(layers))
    y = np.array([top - 2.0 if v is None else v for v in values])
    axes.plot(x, y, color=_BLUE, linewidth=1.4, zorder=2, label="layer SQNR (unfused QDQ vs reference)")
    below = [i for i, layer in enumerate(layers) if layer["below_threshold"]]
    fine = [i for i in range(len(layers)) if i not in below and values[i] is not None]
    axes.scatter(x[fine], y[fine], s=18, color=_BLUE, zorder=3)
    if below:
        axes.scatter(x[below], y[below], s=26, color=_RED, zorder=4, label="below the layer gate")
    exact = [i for i, v in enumerate(values) if v is None]
    if exact:
        axes.scatter(x[exact], y[exact], marker="^", s=36, color=_GREEN, zorder=4, label="identical (∞ dB)")
    for position, (name, value) in enumerate(outputs):
        shown = top - 2.0 if value is None else value
        axes.scatter(
            [len(layers) + position],
            [shown],
            marker="*",
            s=140,
            color=_ORANGE,
            zorder=5,
            label="output SQNR (deployed)" if position == 0 else None,
        )
        axes.annotate(
            name,
            (len(layers) + position, shown),
            textcoords="offset points",
            xytext=(0, -16),
            ha="center",
            fontsize=8,
            color=_ORANGE,
        )
    if threshold is not None:
        axes.axhspan(bottom, threshold, color=_RED, alpha=0.05, zorder=0)
        axes.axhline(
            threshold,
            color=_RED,
            linestyle="--",
            linewidth=1.2,
            zorder=1,
            label=f"layer gate: min_layer_sqnr {threshold:g} dB",
        )
    elif reference is not None:
        axes.axhline(
            reference,
            color=_GREY,
            linestyle=":",
            linewidth=1.2,
            zorder=1,
            label=f"output gate min_sqnr {reference:g} dB (layers are not gated)",
        )
    first = next((i for i, layer in enumerate(layers) if layer["first_below_threshold"]), None)
    lowest = next((i for i, layer in enumerate(layers) if layer["rank"] == 1), None)
    if first is not None:
        axes.axvline(first, color=_RED, alpha=0.3, linewidth=6, zorder=0)
        axes.annotate(
            f"first below the layer gate: {shorten(layers[first]['tensor'], _NAME_WIDTH)}",
            (first, top),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=9,
            color=_RED,
        )
    elif lowest is not None and values[lowest] is not None:
        axes.annotate(
            f"lowest: {shorten(layers[lowest]['tensor'], _NAME_WIDTH)} ({values[lowest]:.1f} dB)",
            (lowest, y[lowest]),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=9,
            color=_BLUE,
        )
    axes.set_ylim(bottom, top)
    axes.set_xlim(-0.8, len(layers) + len(outputs) - 0.2)
    axes.set_ylabel("SQNR (dB)")
    positions, names = tick_labels(layers)
    axes.set_xticks(positions, names, rotation=60, ha="right", fontsize=7)
    named = f" ({len(positions)} of {len(layers)} named)" if len(positions) < len(layers) else ""
    axes.set_xlabel(f"tensor, in graph order{named}")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="lower left", fontsize=8, framealpha=0.9)
    axes.set_title("Per-layer SQNR along the network", fontsize=11, loc="left")
    return _png(figure)


def error_histogram_plot(output: Mapping[str, Any]) -> str | None:
    """``|error|`` histograms of one output (None when every error is exactly 0)."""
    histogram = output["error_histogram"]
    edges = 10.0 ** np.asarray(histogram["log10_edges"])
    series = [
        ("total: deployed vs reference", histogram["total"], _BLUE),
        ("quantization: unfused QDQ vs reference", histogram["quantization"], _ORANGE),
        ("kernel: deployed vs unfused QDQ", histogram["kernel"], _GREEN),
    ]
    counts = [np.asarray(h["counts"]) for _, h, _ in series]
    used = np.flatnonzero(np.sum(counts, axis=0))
    if used.size == 0:
        return None
    low, high = max(used[0] - 2, 0), min(used[-1] + 3, len(edges) - 1)
    figure = Figure(figsize=(6.2, 3.5))
    axes = figure.add_subplot()
    styles = ({"linewidth": 4.5, "alpha": 0.35}, {"linewidth": 1.4, "linestyle": "--"}, {"linewidth": 1.6})
    for (label, data, color), values, style in zip(series, counts, styles, strict=True):
        note = f" ({data['zero']} exact)" if data["zero"] else ""
        axes.stairs(values[low:high], edges[low : high + 1], color=color, label=label + note, **style)
    axes.set_xscale("log")
    axes.set_xlabel("|error|")
    axes.set_ylabel("elements")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    axes.set_title(f"{output['name']}: error distribution", fontsize=10, loc="left")
    return _png(figure)


def range_labels(layers: Sequence[Mapping[str, Any]]) -> list[str]:
    """The row labels of :func:`range_plot`, top to bottom: ``name (SQNR)``, long names cut with ``…``."""
    return [f"{shorten(layer['tensor'], _NAME_WIDTH)} ({_db_label(layer['sqnr_db'])})" for layer in layers]


def range_plot(layers: Sequence[Mapping[str, Any]]) -> str | None:
    """Observed vs quantizer ranges, and weight ranges, of the given layers (None when none has a range).

    One row per layer in the given order (the table's: worst first), a layer without a recorded range as an
    empty row; the left panel shows the reference tensor's observed range (grey) and the INT8 activation
    range the converter chose for it (blue), the right panel the weight range of the Conv/MatMul/Gemm
    producing it (orange), both only where the conversion record has them.
    """
    rows = list(layers)
    if not any(layer.get("reference_range") for layer in rows):
        return None
    has_weights = any((layer.get("weight") or {}).get("weight_range") for layer in rows)
    columns = 2 if has_weights else 1
    figure = Figure(figsize=(11.5 if has_weights else 8, 0.42 * len(rows) + 1.6))
    grid = figure.add_gridspec(1, columns, width_ratios=[3, 2][:columns], wspace=0.06)
    axes = figure.add_subplot(grid[0, 0])
    y = np.arange(len(rows))[::-1].astype(float)
    labels = range_labels(rows)
    for position, layer in zip(y, rows, strict=True):
        low, high = (_finite(v) for v in (layer.get("reference_range") or (None, None)))
        if low is not None and high is not None:
            axes.barh(position - 0.14, high - low, left=low, height=0.28, color=_GREY)
        activation = layer.get("activation") or {}
        a_low, a_high = _finite(activation.get("low")), _finite(activation.get("high"))
        if a_low is not None and a_high is not None:
            axes.barh(position + 0.16, a_high - a_low, left=a_low, height=0.22, color=_BLUE)
    axes.set_yticks(y, labels, fontsize=8)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    axes.axvline(0.0, color="black", linewidth=0.6)
    axes.set_xlabel("activation value")
    axes.grid(True, axis="x", alpha=0.3)
    axes.legend(
        handles=[
            Patch(color=_GREY, label="observed range (reference)"),
            Patch(color=_BLUE, label="INT8 activation range"),
        ],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    if has_weights:
        weights = figure.add_subplot(grid[0, 1], sharey=axes)
        for position, layer in zip(y, rows, strict=True):
            weight = layer.get("weight") or {}
            w_low, w_high = (_finite(v) for v in (weight.get("weight_range") or (None, None)))
            if w_low is not None and w_high is not None:
                weights.barh(position, w_high - w_low, left=w_low, height=0.36, color=_ORANGE)
                weights.annotate(
                    f"{weight.get('weight_bits') or '?'}-bit",
                    (w_high, position),
                    xytext=(4, -3),
                    textcoords="offset points",
                    fontsize=7,
                )
        weights.tick_params(axis="y", labelleft=False)
        weights.axvline(0.0, color="black", linewidth=0.6)
        weights.set_xlabel("weight value")
        weights.grid(True, axis="x", alpha=0.3)
        weights.margins(x=0.15)
        weights.legend(
            handles=[Patch(color=_ORANGE, label="weight range of the producing layer")],
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            fontsize=8,
            frameon=False,
        )
    return _png(figure)


def _db_label(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return "∞ dB" if value == "inf" else "–"
    return f"{number:.1f} dB" if math.isfinite(number) else "–"
