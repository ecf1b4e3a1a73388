"""One line for many things with the same message: ``14 layers (conv1, conv2, conv3, … and 11 more): <reason>``.

The conversion summary, the conversion's warnings and the reports say a repeated reason once, naming the
first few things it applies to; the full per-layer records stay in report.json / report.html.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["group_by_message", "name_list", "subject"]

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
