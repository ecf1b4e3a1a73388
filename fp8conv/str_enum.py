"""``StrEnum``: an enum of strings whose ``str()`` and f-string form is the value (``int8``), for Python 3.10.

Python 3.11's :class:`enum.StrEnum` does the same; fp8conv supports 3.10, so the choices of the options
(:mod:`fp8conv.options`), the precisions and integer types of :mod:`fp8conv.config`, the decision codes of a
plan and the statistic kinds of calibration derive from this one base. Members are ``str``: they compare
equal to their value, serialize to JSON as it, and ``Target("int8")`` looks one up.
"""

from __future__ import annotations

import enum

__all__ = ["StrEnum"]


class StrEnum(str, enum.Enum):
    """A ``str`` enum: ``str(member)`` and ``f"{member}"`` are its value, as in messages and reports."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)
