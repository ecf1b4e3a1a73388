"""Integer activation types and the scale/zero-point math of the integer grid.

A range ``(lo, hi)`` becomes ``(scale, zero_point)`` by :func:`quantization_params`, and a float ``x``
then quantizes exactly as ONNX ``QuantizeLinear`` and ``DequantizeLinear`` compute it::

    q = saturate(round_half_even(x / scale) + zero_point)      # x / scale in float32
    Q(x) = (q - zero_point) * scale                             # float32

with ``saturate`` clipping to the type's range ``[qmin, qmax]`` (:mod:`fp8conv.runtime.integer_types`: uint8
[0, 255], int8 [-128, 127], …). The grid is ``{(q - zp) * scale}``; it always contains 0 exactly.

Symmetric types (int8, int16): ``scale = max(-lo, hi) / qmax``, ``zero_point = 0``. Asymmetric types
(uint8, uint16): ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = round_half_even(qmin - lo / scale)``
clipped to ``[qmin, qmax]``. The range is widened to contain 0 first; :func:`covered_range` gives the range
a grid covers, the form every range method returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal, TypeVar

import numpy as np

from fp8conv.runtime.integer_types import INTEGER_TYPES, IntegerFormat, integer_type

__all__ = [
    "INT_TYPES",
    "QType",
    "check_range",
    "covered_range",
    "grid_params",
    "int_type",
    "lookup",
    "quantization_params",
]

QType = Literal["uint8", "int8", "uint16", "int16"]

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_T = TypeVar("_T")


INT_TYPES: Mapping[str, IntegerFormat] = {name: INTEGER_TYPES[name] for name in ("uint8", "int8", "uint16", "int16")}
"""The activation types a range can be chosen for."""


def int_type(qtype: QType | str) -> IntegerFormat:
    """Return the :class:`IntegerFormat` for a name (also accepts a ``str`` enum such as ``ActivationType``).

    Raises:
        ValueError: For an unknown name; the message lists the valid ones.
    """
    return integer_type(qtype, among=INT_TYPES)


def lookup(table: Mapping[str, _T], name: object, kind: str) -> _T:
    """``table[name]`` for a name or a ``str`` enum member (its value), as :func:`int_type` looks types up.

    Args:
        table: Entries by name.
        name: The name asked for.
        kind: What the entries are, for the message (``integer type``; the plural adds an ``s``).

    Raises:
        ValueError: For an unknown name; the message lists the valid ones.
    """
    key = str(getattr(name, "value", name))
    try:
        return table[key]
    except KeyError:
        plural = kind.split()[-1] + "s"
        raise ValueError(f"unknown {kind} {name!r}; valid {plural} are: {', '.join(table)}") from None


def grid_params(lo: np.ndarray, hi: np.ndarray, t: IntegerFormat) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`quantization_params`: float32 scales and float64 (integer-valued) zero points."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    if t.symmetric:
        span = np.maximum(-lo, hi)
        scale = span / t.qmax
    else:
        span = hi - lo
        scale = span / (t.qmax - t.qmin)
    scale32 = np.maximum(scale, _FLOAT32_TINY).astype(np.float32)
    scale32 = np.where(span > 0, scale32, np.float32(1.0))
    if t.symmetric:
        return scale32, np.zeros_like(lo)
    zero_point = np.clip(np.rint(t.qmin - lo / scale32.astype(np.float64)), t.qmin, t.qmax)
    return scale32, zero_point


def quantization_params(lo: float, hi: float, qtype: QType | str = "uint8") -> tuple[np.float32, int]:
    """Scale and zero point of the integer grid that covers ``[lo, hi]``.

    The range is first widened to contain 0 (``lo = min(lo, 0)``, ``hi = max(hi, 0)``) so that 0.0 is
    exactly representable (padding and Relu outputs quantize without error). Then:

    * symmetric types (int8, int16): ``scale = max(-lo, hi) / qmax`` (127 or 32767), ``zero_point = 0``.
      The grid is ``scale * [-128, 127]``; ``[-max, max]`` maps onto ``[-127, 127]`` without clipping, and
      the extra level -128 is reached only by values below ``-max`` (saturation).
    * asymmetric types (uint8, uint16): ``scale = (hi - lo) / (qmax - qmin)`` and
      ``zero_point = round_half_even(qmin - lo / scale)`` clipped to ``[qmin, qmax]``. ``lo == 0`` gives
      zero point 0 exactly (onnxruntime then drops a preceding Relu), ``hi == 0`` gives ``qmax``.

    The scale is computed in float64 and rounded to nearest float32 (the type ONNX stores). It is at least
    the smallest normal float32, and 1.0 when the range is empty (``lo == hi == 0``), so it is always
    positive. The zero point is computed from the float32 scale.

    Args:
        lo: Lower end of the range (finite).
        hi: Upper end of the range (finite, ``>= lo``).
        qtype: ``uint8`` (default, onnxruntime CPU's activation type), ``int8``, ``uint16`` or ``int16``.

    Returns:
        ``(scale, zero_point)``: a positive float32 and an int in the type's range.

    Raises:
        ValueError: For a non-finite range, ``lo > hi``, or an unknown type.
    """
    t = int_type(qtype)
    lo, hi = check_range(lo, hi)
    scale, zero_point = grid_params(np.array([lo]), np.array([hi]), t)
    return np.float32(scale[0]), int(zero_point[0])


def check_range(lo: float, hi: float) -> tuple[float, float]:
    """``(float(lo), float(hi))`` of a finite, not inverted range.

    Raises:
        ValueError: For ends that are not numbers or not finite, or ``lo > hi``.
    """
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError) as error:
        raise ValueError(f"range ends must be numbers, got lo={lo!r}, hi={hi!r}") from error
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"range ends must be finite, got ({lo}, {hi})")
    if lo > hi:
        raise ValueError(f"range is inverted: lo={lo} > hi={hi}")
    return lo, hi


def covered_range(lo: float, hi: float, t: IntegerFormat) -> tuple[float, float]:
    """The range the grid of ``(lo, hi)`` covers: contains 0, and is symmetric for symmetric types."""
    lo, hi = min(float(lo), 0.0) + 0.0, max(float(hi), 0.0) + 0.0  # + 0.0: no -0.0 ends
    if t.symmetric:
        span = max(-lo, hi) + 0.0
        return -span + 0.0, span
    return lo, hi
