"""One line for many things with the same message: ``14 layers (conv1, conv2, conv3, … and 11 more): <reason>``.

The conversion summary, the conversion's warnings and the reports say a repeated reason once, naming the
first few things it applies to; the full per-layer records stay in report.json / report.html.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["group_by_message", "name_list", "quantizer_lines", "subject", "weight_method_lines"]

SHOWN = 3
"""Names listed before ``… and N more``."""


def name_list(names: Sequence[str], shown: int = SHOWN) -> str:
    """``a, b, c, … and 11 more`` (every name when at most ``shown + 1``: "and 1 more" saves nothing)."""
    if len(names) <= shown + 1:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f", … and {len(names) - shown} more"


def subject(names: Sequence[str], noun: str, single: str | None = None, shown: int = SHOWN) -> str:
    """``layer conv1 (Conv)`` for one thing, ``14 layers (conv1, conv2, conv3, … and 11 more)`` for several.

    Args:
        names: The things, in order (at least one).
        noun: Their noun in the singular (``layer``); the plural adds an ``s``.
        single: The label of a lone thing (default: its name).
        shown: Names listed before ``… and N more``.
    """
    if len(names) == 1:
        return f"{noun} {single if single is not None else names[0]}"
    return f"{len(names)} {noun}s ({name_list(names, shown)})"


def group_by_message(items: Iterable[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """``[(names, message)]`` for ``(name, message)`` pairs: one entry per message, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name, message in items:
        groups.setdefault(message, []).append(name)
    return [(names, message) for message, names in groups.items()]


def quantizer_lines(records: Sequence[Mapping[str, object]], code: str = "") -> list[str]:
    """What placement did with the FP8 activation quantizers: a headline, then one line per reason.

    Args:
        records: ``ConversionResult.fp8_quantizers`` (report.json's ``conversion.fp8_quantizers``).
        code: Put around tensor names (Markdown: a backtick).

    Returns:
        ``["13 FP8 activation quantizers dropped (...)", "13 tensors (a, b, c, … and 10 more): <reason>"]``;
        nothing when there are no records.
    """
    if not records:
        return []
    dropped = sum(bool(record["dropped"]) for record in records)
    plural = dropped != 1
    if dropped:
        head = f"{dropped} FP8 activation quantizer{'s' if plural else ''} dropped (no integer kernel reads "
        head += "them: they become float)" if plural else "it: it becomes float)"
    else:
        head = f"no FP8 activation quantizer dropped; {len(records)} placed otherwise than in the FP8 model"
    lines = [head]
    reasons = ((f"{code}{record['tensor']}{code}", str(record["reason"])) for record in records)
    lines += [f"{subject(tensors, 'tensor')}: {reason}" for tensors, reason in group_by_message(reasons)]
    return lines


def weight_method_lines(record: Mapping[str, Any] | None) -> list[str]:
    """Lines for the summary and the reports: what GPTQ and bias correction did (none when neither ran).

    ``record`` is ``conversion.weight_methods`` (:mod:`fp8conv.converter.weight_methods`); the layers left out
    are one indented line per reason.
    """
    if not record:
        return []
    lines = []
    gptq_record = record.get("gptq")
    if gptq_record is not None:
        layers = gptq_record["layers"]
        rtn = sum(layer["rtn_output_mse"] for layer in layers)
        after = sum(layer["gptq_output_mse"] for layer in layers)
        change = f" ({(after / rtn - 1) * 100:+.0f} %)" if rtn > 0 else ""
        order = ", act-order" if gptq_record["act_order"] else ""
        lines.append(
            f"GPTQ on {len(layers)} layer{'s' if len(layers) != 1 else ''} (RTN scales kept; damp "
            f"{gptq_record['damp']:g}{order}): layer-output MSE on the calibration inputs {rtn:.4g} -> {after:.4g}"
            + change
        )
        lines += _skipped_lines(gptq_record["skipped"], "kept round to nearest")
    bias = record.get("bias_correction")
    if bias is not None:
        layers = bias["layers"]
        largest = max((layer["max_abs_shift"] for layer in layers), default=0.0)
        lines.append(
            f"bias correction on {len(layers)} layer{'s' if len(layers) != 1 else ''} "
            f"(largest mean output shift removed {largest:.3g})"
        )
        lines += _skipped_lines(bias["skipped"], "not corrected")
    return lines


def _skipped_lines(skipped: Sequence[Mapping[str, Any]], what: str) -> list[str]:
    """``  <what>: <layers>: <reason>``, one line per reason."""
    return [
        f"  {what}: {subject(nodes, 'layer', nodes[0])}: {reason}"
        for nodes, reason in group_by_message((entry["layer"], entry["reason"]) for entry in skipped)
    ]
