"""Streaming, mergeable activation statistics and the range methods that turn them into INT grids.

Nothing here stores activations: every statistic has a fixed size however many samples it sees, and two
statistics of the same kind merge exactly (``a.merge(b)`` equals one statistic fed both inputs).

Statistics
----------
:class:`CodeHistogram`
    For the output of an FP8 fake-quantizer, whose values are exactly ``decode(code) * scale``: one
    counter per FP8 code (at most 256), so the histogram is exact. A value off that grid raises.
:class:`StreamingHistogram`
    For any float tensor: exact running min/max and ``num_bins`` counters over ``[-R, R)``, ``R`` a power
    of two. When data exceeds the range, ``R`` doubles and adjacent bin pairs merge, which is exact
    because every bin edge of the coarse histogram is an edge of the fine one.

Both ignore NaN and ±Inf (counted in ``nonfinite``).

The integer quantizer
---------------------
A range ``(lo, hi)`` becomes ``(scale, zero_point)`` by :func:`quantization_params`, and a float ``x``
then quantizes exactly as ONNX ``QuantizeLinear`` and ``DequantizeLinear`` compute it::

    q = saturate(round_half_even(x / scale) + zero_point)      # x / scale in float32
    Q(x) = (q - zero_point) * scale                             # float32

with ``saturate`` clipping to the type's range (uint8 [0, 255], int8 [-128, 127], uint16 [0, 65535],
int16 [-32768, 32767]). The grid is ``{(q - zp) * scale}``; it always contains 0 exactly.

Range methods
-------------
Each is a function ``method(stats, qtype) -> (lo, hi)``. The result is the range the integer grid
covers: ``lo <= 0 <= hi``, and ``lo == -hi`` for the symmetric types (int8, int16). For asymmetric
types on non-negative data ``lo == 0``, so the zero point is 0 and onnxruntime can fold a preceding Relu.

* :func:`minmax`: the observed ``[min, max]``.
* :func:`percentile`: clips a fraction ``1 - p`` of the mass, split equally between the two tails
  for signed data (onnxruntime's ``Percentile`` calibrator does the same).
* :func:`entropy`: TensorRT's KL-divergence threshold search on the histogram of ``|x|``.
* :func:`mse`: minimizes the expected squared error ``sum_v count(v) * (v - Q(v))^2`` (see the function).
* :func:`fp8`: data-free, from the FP8 quantizer's format and scale alone (:func:`fp8_range`).

``RANGE_METHODS`` maps the names used by :class:`~fp8conv.converter.config.ActivationRange` to them.

Degenerate statistics (every method, both kinds of statistics):

* **all values zero** (the range is one point, 0): ``(0.0, 0.0)`` from every method but ``fp8`` (which
  ignores the counts). :func:`quantization_params` gives it scale 1 and zero point 0, a grid on which
  the only value seen, 0, is exact.
* **one value** ``c != 0`` (a constant tensor, a single sample): the range of ``{0, c}``, ``(0, c)`` or
  ``(c, 0)`` (``(-|c|, |c|)`` for symmetric types) from ``minmax``, ``percentile`` and ``entropy``;
  ``mse`` returns a range whose grid reproduces ``c`` at least as well as that one. Both ends are finite.
* **no finite value** raises ``ValueError`` (there is no range to give).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

from fp8conv.runtime.emulator import decode, encode, float16_codes
from fp8conv.runtime.formats import FloatFormat, resolve_format

__all__ = [
    "INT_TYPES",
    "RANGE_METHODS",
    "CodeHistogram",
    "IntType",
    "QType",
    "RangeMethod",
    "Statistics",
    "StreamingHistogram",
    "compute_range",
    "entropy",
    "fp8",
    "fp8_range",
    "int_type",
    "minmax",
    "mse",
    "percentile",
    "quantization_params",
    "range_error",
]

logger = logging.getLogger(__name__)

QType = Literal["uint8", "int8", "uint16", "int16"]

_CHUNK = 1 << 20
_KEYED_MIN_VALUES = 1 << 14  # CodeHistogram updates at least this large count through a key table
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass(frozen=True)
class IntType:
    """Facts about one integer activation type.

    Attributes:
        name: ``uint8``, ``int8``, ``uint16`` or ``int16``.
        qmin: Smallest integer (saturation bound).
        qmax: Largest integer (saturation bound).
        symmetric: Whether ranges are symmetric with zero point 0 (the signed types); the unsigned types
            are asymmetric (affine) with a zero point in ``[qmin, qmax]``.
    """

    name: str
    qmin: int
    qmax: int
    symmetric: bool


INT_TYPES: Mapping[str, IntType] = {
    "uint8": IntType("uint8", 0, 255, symmetric=False),
    "int8": IntType("int8", -128, 127, symmetric=True),
    "uint16": IntType("uint16", 0, 65535, symmetric=False),
    "int16": IntType("int16", -32768, 32767, symmetric=True),
}
"""The activation types a range can be chosen for."""


def int_type(qtype: QType | str) -> IntType:
    """Return the :class:`IntType` for a name (also accepts a ``str`` enum such as ``ActivationType``).

    Raises:
        ValueError: For an unknown name; the message lists the valid ones.
    """
    key = str(getattr(qtype, "value", qtype))
    try:
        return INT_TYPES[key]
    except KeyError:
        raise ValueError(f"unknown integer type {qtype!r}; valid types are: {', '.join(INT_TYPES)}") from None


# --------------------------------------------------------------------------------------------------------------
# Scale and zero point
# --------------------------------------------------------------------------------------------------------------


def _params(lo: np.ndarray, hi: np.ndarray, t: IntType) -> tuple[np.ndarray, np.ndarray]:
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
    lo, hi = _check_range(lo, hi)
    scale, zero_point = _params(np.array([lo]), np.array([hi]), t)
    return np.float32(scale[0]), int(zero_point[0])


def _check_range(lo: float, hi: float) -> tuple[float, float]:
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError) as error:
        raise ValueError(f"range ends must be numbers, got lo={lo!r}, hi={hi!r}") from error
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"range ends must be finite, got ({lo}, {hi})")
    if lo > hi:
        raise ValueError(f"range is inverted: lo={lo} > hi={hi}")
    return lo, hi


def _covered(lo: float, hi: float, t: IntType) -> tuple[float, float]:
    """The range the grid of ``(lo, hi)`` covers: contains 0, and is symmetric for symmetric types."""
    lo, hi = min(float(lo), 0.0) + 0.0, max(float(hi), 0.0) + 0.0  # + 0.0: no -0.0 ends
    if t.symmetric:
        span = max(-lo, hi) + 0.0
        return -span + 0.0, span
    return lo, hi


# --------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------


def _as_float32(values: np.typing.ArrayLike) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"values must be a numeric array, got {type(values).__name__}") from error


def _check_quantile(q: float) -> float:
    q = float(q)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    return q


class CodeHistogram:
    """Exact histogram of the output of an FP8 fake-quantizer: one counter per FP8 code.

    The tensor's values must be ``decode(code, fmt) * scale`` (float32 product), which is what a
    fake-quantizer ``x -> decode(encode(x / scale)) * scale`` outputs. :meth:`update` maps them back with
    ``encode(x / scale)`` and checks that decoding reproduces every value bit for bit; a value off the grid
    (a wrong scale or format, or a tensor that is not a fake-quantizer output) raises ``ValueError``.
    Memory: ``2**fmt.bits`` int64 counters (256 for FP8), whatever the number of samples.

    Attributes:
        fmt: The FP8 format (at most 8 bits).
        scale: The per-tensor scale, float32.
        nonfinite: Number of NaN and ±Inf values seen (ignored otherwise).
    """

    def __init__(self, fmt: str | FloatFormat, scale: float) -> None:
        """Start an empty histogram.

        Args:
            fmt: The fake-quantizer's format (name or :class:`FloatFormat`, at most 8 bits).
            scale: Its per-tensor scale (positive and finite as a float32).

        Raises:
            ValueError: For an unknown or too wide format, or a bad scale.
        """
        self.fmt = resolve_format(fmt)
        if not self.fmt.fits_code:
            raise ValueError(f"CodeHistogram needs a format of at most 8 bits; {self.fmt.name} has {self.fmt.bits}")
        self.scale = _check_scale(scale)
        self.nonfinite = 0
        self._counts = np.zeros(1 << self.fmt.bits, dtype=np.int64)
        with np.errstate(over="ignore", invalid="ignore"):
            self._values = decode(np.arange(1 << self.fmt.bits, dtype=np.uint8), self.fmt) * self.scale

    def update(self, values: np.typing.ArrayLike) -> CodeHistogram:
        """Count the codes of a batch of values.

        Args:
            values: Any shape; converted to float32. NaN and ±Inf are counted in ``nonfinite`` only.

        Returns:
            ``self``.

        Raises:
            ValueError: If a finite value is not on the grid ``decode(code) * scale``.
        """
        flat = _as_float32(values)
        tables = self._key_tables() if flat.size >= _KEYED_MIN_VALUES else None
        for start in range(0, flat.size, _CHUNK):
            chunk = flat[start : start + _CHUNK]
            if tables is None or not self._update_keyed(chunk, *tables):
                self._update_chunk(chunk)
        return self

    def update_grid(self, grid: np.typing.ArrayLike) -> CodeHistogram:
        """Count a batch given by its grid values: the fake-quantizer's output is ``grid * scale``.

        ``grid`` is float16 (what :class:`~fp8conv.runtime.reference.ReferenceRunner` returns for
        ``capture_grid``): each bit pattern names one code, so this is one counting pass, exact, with no
        division by the scale.

        Args:
            grid: float16 array, any shape. NaN and ±Inf are counted in ``nonfinite`` only.

        Returns:
            ``self``.

        Raises:
            ValueError: If ``grid`` is not float16, the format has values that are not float16, or a
                finite value is not a value of the format.
        """
        q = np.asarray(grid)
        if q.dtype != np.float16:
            raise ValueError(f"grid values must be float16, got {q.dtype}")
        table = float16_codes(self.fmt)
        if table is None:
            raise ValueError(f"{self.fmt.name} has values that are not float16; count its outputs with update()")
        per_pattern = np.bincount(np.ascontiguousarray(q).reshape(-1).view(np.uint16), minlength=1 << 16)
        seen = np.flatnonzero(per_pattern)
        codes = table[seen]
        off = codes == -1
        if off.any():
            example = float(np.array(seen[off][0], dtype=np.uint16).view(np.float16))
            raise ValueError(
                f"{int(per_pattern[seen[off]].sum())} of {q.size} grid values are not {self.fmt.name} values "
                f"(e.g. {example!r})"
            )
        nonfinite = codes == -2
        self.nonfinite += int(per_pattern[seen[nonfinite]].sum())
        np.add.at(self._counts, codes[~nonfinite], per_pattern[seen[~nonfinite]])
        return self

    def _key_tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Each finite grid value and its code, indexed by the top 16 bits of its float32 pattern.

        Sign, exponent and 7 mantissa bits tell apart the values of an FP8 grid times a scale (neighbours
        differ by at least 1/16 relative within a binade), so a value ``x`` is on the grid exactly when
        ``values[key(x)] == x``. ``-0.0`` is registered with ``+0.0``'s code when the grid has no ``-0.0``
        (``encode`` maps it there too). None when two grid values share a key (then :meth:`_update_chunk`).
        """
        codes = np.flatnonzero(np.isfinite(self._values))
        values = self._values[codes]
        keys = (values.view(np.uint32) >> 16).astype(np.intp)
        if np.unique(keys).size != keys.size:
            return None
        key_values = np.full(1 << 16, np.nan, dtype=np.float32)
        key_codes = np.full(1 << 16, -1, dtype=np.int16)
        key_values[keys], key_codes[keys] = values, codes
        for zero, other in ((0x0000, 0x8000), (0x8000, 0x0000)):
            if key_values[zero] == 0 and key_codes[other] < 0:
                key_values[other], key_codes[other] = -key_values[zero], key_codes[zero]
        return key_values, key_codes

    def _update_keyed(self, x: np.ndarray, key_values: np.ndarray, key_codes: np.ndarray) -> bool:
        """Count a chunk through :meth:`_key_tables` (the same counts as :meth:`_update_chunk`).

        Returns False, having counted nothing, if a value is off the grid or not finite: :meth:`_update_chunk`
        then counts the chunk or reports it.
        """
        high = 1 if sys.byteorder == "little" else 0
        keys = x.view(np.uint16)[high::2].astype(np.intp)  # the top 16 bits of each float32
        if not np.array_equal(key_values[keys], x):
            return False
        per_key = np.bincount(keys, minlength=1 << 16)
        seen = np.flatnonzero(per_key)
        np.add.at(self._counts, key_codes[seen], per_key[seen])
        return True

    def _update_chunk(self, x: np.ndarray) -> None:
        finite = np.isfinite(x)
        if not finite.all():
            self.nonfinite += int(x.size - np.count_nonzero(finite))
            x = x[finite]
        with np.errstate(over="ignore", invalid="ignore"):
            codes = encode(x / self.scale, self.fmt)
        back = self._values[codes]
        off = back != x
        if off.any():
            first = int(np.argmax(off))
            raise ValueError(
                f"{int(np.count_nonzero(off))} of {x.size} values are not on the {self.fmt.name} grid with scale "
                f"{float(self.scale)!r} (e.g. {float(x[first])!r}, nearest grid value {float(back[first])!r}); "
                "CodeHistogram needs the exact output of an FP8 fake-quantizer with this format and scale "
                "(use StreamingHistogram for other tensors)"
            )
        self._counts += np.bincount(codes, minlength=self._counts.size)

    def merge(self, other: CodeHistogram) -> CodeHistogram:
        """Add another histogram of the same format and scale into this one (exact).

        Returns:
            ``self``.

        Raises:
            ValueError: If ``other`` is not a CodeHistogram with the same format and scale.
        """
        if not isinstance(other, CodeHistogram):
            raise ValueError(f"can only merge a CodeHistogram into a CodeHistogram, got {type(other).__name__}")
        if other.fmt != self.fmt or other.scale != self.scale:
            raise ValueError(
                f"cannot merge histograms of different grids: {self.fmt.name} x {float(self.scale)!r} vs "
                f"{other.fmt.name} x {float(other.scale)!r}"
            )
        self._counts += other._counts
        self.nonfinite += other.nonfinite
        return self

    @property
    def count(self) -> int:
        """Number of finite values counted."""
        return int(self._counts.sum())

    @property
    def min(self) -> float:
        """Smallest finite value seen (``+inf`` when empty)."""
        seen = self._values[self._counts > 0]
        return float(seen.min()) if seen.size else math.inf

    @property
    def max(self) -> float:
        """Largest finite value seen (``-inf`` when empty)."""
        seen = self._values[self._counts > 0]
        return float(seen.max()) if seen.size else -math.inf

    def values(self) -> np.ndarray:
        """float32 value ``decode(code) * scale`` of every code ``0 .. 2**bits - 1`` (NaN/Inf for specials)."""
        return self._values.copy()

    def counts(self) -> np.ndarray:
        """int64 count of every code ``0 .. 2**bits - 1``."""
        return self._counts.copy()

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct values seen, ascending (float32), and their counts (int64); ±0 are merged."""
        seen = self._counts > 0
        values, inverse = np.unique(self._values[seen] + np.float32(0.0), return_inverse=True)
        counts = np.zeros(values.size, dtype=np.int64)
        np.add.at(counts, inverse, self._counts[seen])
        return values, counts

    def mass(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, counts)``: the histogram as intervals ``[a, b]`` of uniform mass; here points (``a == b``)."""
        values, counts = self.points()
        return values.astype(np.float64), values.astype(np.float64), counts

    def quantile(self, q: float) -> float:
        """Smallest value ``v`` seen with ``count(x <= v) >= q * count`` (exact, no interpolation).

        Raises:
            ValueError: For ``q`` outside ``[0, 1]`` or an empty histogram.
        """
        q = _check_quantile(q)
        values, counts = self.points()
        if not values.size:
            raise ValueError("quantile of an empty histogram")
        index = int(np.searchsorted(np.cumsum(counts), q * counts.sum(), side="left"))
        return float(values[min(index, values.size - 1)])

    def magnitude_histogram(self, num_bins: int = 2048) -> tuple[np.ndarray, float]:
        """Histogram of ``|x|`` over ``num_bins`` uniform bins of width ``w`` from 0 to ``max|x|``.

        Returns:
            ``(counts float64, w)``; bin ``k`` is ``[k w, (k + 1) w)``, the last one closed.
        """
        values, counts = self.points()
        magnitude = np.abs(values.astype(np.float64))
        top = float(magnitude.max()) if magnitude.size else 0.0
        if top == 0.0:
            return np.asarray(counts.sum(), dtype=np.float64).reshape(1), 0.0
        hist, _ = np.histogram(magnitude, bins=num_bins, range=(0.0, top), weights=counts.astype(np.float64))
        return hist, top / num_bins

    def __repr__(self) -> str:
        return f"CodeHistogram({self.fmt.name}, scale={float(self.scale)!r}, count={self.count})"


def _check_scale(scale: float) -> np.float32:
    try:
        value = np.float32(scale)
    except (TypeError, ValueError) as error:
        raise ValueError(f"scale must be a number, got {scale!r}") from error
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"scale must be positive and finite as a float32, got {scale!r}")
    return value


class StreamingHistogram:
    """Histogram of an arbitrary float tensor over a growing symmetric power-of-two range.

    ``num_bins`` bins of width ``w = 2R / num_bins`` cover ``[-R, R)``; bin ``i`` is
    ``[(i - num_bins/2) w, (i - num_bins/2 + 1) w)``. ``R`` is the smallest power of two with
    ``max |x| < R`` (at least ``num_bins * 2**-150``, so bins are never narrower than the smallest float32).
    ``num_bins`` is a power of two, so ``w`` is one too and the bin of ``x`` is ``floor(x / w)``, computed
    exactly without float64 copies (see ``_bin_index``). When a value falls outside, ``R`` doubles (as often
    as needed) and bin pairs ``(2j, 2j + 1)`` of each half merge: exact, because every edge of the coarse
    histogram is an edge of the fine one. Hence the histogram depends only on the values, never on their
    order or batching, and :meth:`merge` of two histograms equals the histogram of all their values.

    Memory: ``num_bins`` int64 counters plus a few scalars. ``min``/``max`` are exact running values.

    Attributes:
        num_bins: Number of bins.
        nonfinite: Number of NaN and ±Inf values seen (ignored otherwise).
    """

    def __init__(self, num_bins: int = 2048) -> None:
        """Start an empty histogram.

        Args:
            num_bins: A power of two, at least 8.

        Raises:
            ValueError: For another ``num_bins``.
        """
        if (
            not isinstance(num_bins, (int, np.integer))
            or isinstance(num_bins, bool)
            or num_bins < 8
            or num_bins & (num_bins - 1)
        ):
            raise ValueError(f"num_bins must be a power of two >= 8 (e.g. 1024, 2048, 4096), got {num_bins!r}")
        self.num_bins = int(num_bins)
        self.nonfinite = 0
        self._counts = np.zeros(self.num_bins, dtype=np.int64)
        self._exponent: int | None = None  # R = 2**exponent once data has arrived
        self._min = math.inf
        self._max = -math.inf

    @property
    def _min_exponent(self) -> int:
        return int(self.num_bins).bit_length() - 1 - 150

    @property
    def limit(self) -> float:
        """The half-range ``R`` (0.0 before any finite value arrives)."""
        return 0.0 if self._exponent is None else math.ldexp(1.0, self._exponent)

    @property
    def bin_width(self) -> float:
        """``2R / num_bins`` (0.0 before any finite value arrives)."""
        return 2.0 * self.limit / self.num_bins

    def update(self, values: np.typing.ArrayLike) -> StreamingHistogram:
        """Add a batch of values.

        Args:
            values: Any shape; converted to float32. NaN and ±Inf are counted in ``nonfinite`` only.

        Returns:
            ``self``.
        """
        flat = _as_float32(values)
        for start in range(0, flat.size, _CHUNK):
            self._update_chunk(flat[start : start + _CHUNK])
        return self

    def _update_chunk(self, x: np.ndarray) -> None:
        low, high = float(x.min()), float(x.max())  # NaN or ±Inf anywhere makes one of them non-finite
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = np.isfinite(x)
            self.nonfinite += int(x.size - np.count_nonzero(finite))
            x = x[finite]
            if not x.size:
                return
            low, high = float(x.min()), float(x.max())
        self._min, self._max = min(self._min, low), max(self._max, high)
        self._grow_to(_exponent_above(max(-low, high), self._min_exponent))
        self._counts += np.bincount(self._bin_index(x), minlength=self.num_bins)

    def _bin_index(self, x: np.ndarray) -> np.ndarray:
        """``floor(x / w) + num_bins / 2`` for float32 ``x`` with ``|x| < R``, exactly, as intp (for bincount).

        ``w = 2**m``, so no rounding is involved on any path:

        * ``m <= 0`` (and ``2**-m`` a float32, ``num_bins <= 2**24``): ``x * 2**-m`` in float32 is exact (a
          power-of-two scaling up never rounds, and ``|x / w| < num_bins / 2`` cannot overflow), and so are
          ``floor`` and adding ``num_bins / 2`` (integers below ``2**24``).
        * ``m > 0`` (``R <= 2**63``): scaling down could underflow a tiny negative ``x`` to ``-0.0`` (bin 0
          instead of -1), so the index is ``floor(x) >> m`` in int64 (``floor(floor(x) / 2**m)`` equals
          ``floor(x / 2**m)``, and the arithmetic shift floors).
        * otherwise: float64 division, exact for every float32.
        """
        assert self._exponent is not None
        m = self._exponent + 1 - (self.num_bins.bit_length() - 1)
        half = self.num_bins // 2
        if -126 <= m <= 0 and self.num_bins <= 1 << 24:
            scaled = np.multiply(x, np.float32(math.ldexp(1.0, -m)), dtype=np.float32)
            np.floor(scaled, out=scaled)
            scaled += np.float32(half)
            return scaled.astype(np.intp)
        if m > 0 and self._exponent <= 63:
            index = np.floor(x).astype(np.int64)
            index >>= m
        else:
            index = np.floor(x.astype(np.float64) / math.ldexp(1.0, m)).astype(np.int64)
        index += half
        return index

    def _grow_to(self, exponent: int) -> None:
        if self._exponent is None:
            self._exponent = exponent
        elif exponent > self._exponent:
            self._counts = _coarsen(self._counts, exponent - self._exponent)
            self._exponent = exponent

    def merge(self, other: StreamingHistogram) -> StreamingHistogram:
        """Add another histogram with the same number of bins into this one (exact).

        Returns:
            ``self``.

        Raises:
            ValueError: If ``other`` is not a StreamingHistogram with the same ``num_bins``.
        """
        if not isinstance(other, StreamingHistogram):
            raise ValueError(f"can only merge a StreamingHistogram into one, got {type(other).__name__}")
        if other.num_bins != self.num_bins:
            raise ValueError(f"cannot merge histograms with {self.num_bins} and {other.num_bins} bins")
        self.nonfinite += other.nonfinite
        if other._exponent is None:
            return self
        self._grow_to(other._exponent)
        assert self._exponent is not None  # set by _grow_to
        self._counts += _coarsen(other._counts, self._exponent - other._exponent)
        self._min, self._max = min(self._min, other._min), max(self._max, other._max)
        return self

    @property
    def count(self) -> int:
        """Number of finite values counted."""
        return int(self._counts.sum())

    @property
    def min(self) -> float:
        """Smallest finite value seen, exact (``+inf`` when empty)."""
        return self._min

    @property
    def max(self) -> float:
        """Largest finite value seen, exact (``-inf`` when empty)."""
        return self._max

    def counts(self) -> np.ndarray:
        """int64 count of every bin."""
        return self._counts.copy()

    def edges(self) -> np.ndarray:
        """The ``num_bins + 1`` bin edges, float64 (all 0 before any data)."""
        return (np.arange(self.num_bins + 1, dtype=np.float64) - self.num_bins // 2) * self.bin_width

    def mass(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, counts)`` of the non-empty bins, each an interval ``[a, b]`` clipped to ``[min, max]``.

        The mass of a bin is taken as uniform over its interval (``a == b`` when the clipped bin is a point).
        """
        seen = np.flatnonzero(self._counts)
        edges = self.edges()
        a = np.clip(edges[seen], self._min, self._max)
        b = np.clip(edges[seen + 1], self._min, self._max)
        return a, b, self._counts[seen]

    def quantile(self, q: float) -> float:
        """Value below which a fraction ``q`` of the mass lies, interpolating linearly inside a bin.

        The result is clipped to ``[min, max]``, so ``quantile(0) == min`` and ``quantile(1) == max``.

        Raises:
            ValueError: For ``q`` outside ``[0, 1]`` or an empty histogram.
        """
        q = _check_quantile(q)
        total = self.count
        if not total:
            raise ValueError("quantile of an empty histogram")
        cumulative = np.cumsum(self._counts)
        target = q * total
        index = min(int(np.searchsorted(cumulative, target, side="left")), self.num_bins - 1)
        before = float(cumulative[index - 1]) if index else 0.0
        inside = float(self._counts[index])
        fraction = (target - before) / inside if inside else 0.0
        value = (index - self.num_bins // 2 + fraction) * self.bin_width
        return float(np.clip(value, self._min, self._max))

    def magnitude_histogram(self) -> tuple[np.ndarray, float]:
        """Histogram of ``|x|`` with ``num_bins / 2`` bins of width ``w``, folded exactly from this one.

        Returns:
            ``(counts float64, w)``; bin ``k`` is ``[k w, (k + 1) w)`` (the negative bin
            ``[-(k + 1) w, -k w)`` folds onto it).
        """
        half = self.num_bins // 2
        folded = self._counts[half:] + self._counts[:half][::-1]
        return folded.astype(np.float64), self.bin_width

    def __repr__(self) -> str:
        return f"StreamingHistogram(num_bins={self.num_bins}, limit={self.limit!r}, count={self.count})"


def _exponent_above(magnitude: float, floor: int) -> int:
    """Smallest ``e >= floor`` with ``magnitude < 2**e`` (monotone in ``magnitude``, so merges are exact)."""
    if magnitude == 0.0:
        return floor
    return max(math.frexp(magnitude)[1], floor)


def _coarsen(counts: np.ndarray, doublings: int) -> np.ndarray:
    """Counts after doubling the range ``doublings`` times: old bin ``i`` lands in ``floor((i - n/2) / 2^k) + n/2``."""
    if doublings == 0:
        return counts.copy()
    n = counts.size
    group = 1 << min(doublings, n.bit_length())
    target = np.floor_divide(np.arange(n) - n // 2, group) + n // 2
    out = np.zeros_like(counts)
    np.add.at(out, target, counts)
    return out


Statistics = CodeHistogram | StreamingHistogram
"""Anything a range method accepts."""

RangeMethod = Callable[..., tuple[float, float]]
"""``method(stats, qtype, **options) -> (lo, hi)``."""


def _require_data(stats: Statistics) -> None:
    if not isinstance(stats, (CodeHistogram, StreamingHistogram)):
        raise ValueError(f"stats must be a CodeHistogram or a StreamingHistogram, got {type(stats).__name__}")
    if stats.count == 0:
        raise ValueError(
            f"{stats!r} has no finite values; calibrate with data first (or use the data-free fp8 method "
            "for fake-quantizer outputs)"
        )


# --------------------------------------------------------------------------------------------------------------
# minmax, percentile
# --------------------------------------------------------------------------------------------------------------


def minmax(stats: Statistics, qtype: QType | str = "uint8") -> tuple[float, float]:
    """The observed range ``[min, max]`` (widened to contain 0; symmetric for int8/int16).

    Raises:
        ValueError: For empty statistics or an unknown type.
    """
    t = int_type(qtype)
    _require_data(stats)
    return _covered(stats.min, stats.max, t)


def percentile(stats: Statistics, qtype: QType | str = "uint8", *, percentile: float = 99.999) -> tuple[float, float]:
    """Clip the outer ``100 - percentile`` percent of the values.

    Non-negative data: ``(min, quantile(p))``; non-positive data: ``(quantile(1 - p), max)``; signed data:
    the clipped mass is split equally, ``(quantile((1 - p) / 2), quantile((1 + p) / 2))``, as onnxruntime's
    asymmetric ``Percentile`` calibrator does. Quantiles are exact on a :class:`CodeHistogram` and linearly
    interpolated inside a bin of a :class:`StreamingHistogram`.

    Args:
        stats: Calibration statistics.
        qtype: Integer type.
        percentile: Percentage of the mass kept, in ``(50, 100]``.

    Returns:
        The covered range (contains 0; symmetric for int8/int16).

    Raises:
        ValueError: For empty statistics, an unknown type, or a percentile outside ``(50, 100]``.
    """
    t = int_type(qtype)
    if not 50.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    _require_data(stats)
    keep = float(percentile) / 100.0
    if stats.min >= 0:
        lo, hi = stats.min, stats.quantile(keep)
    elif stats.max <= 0:
        lo, hi = stats.quantile(1.0 - keep), stats.max
    else:
        tail = (1.0 - keep) / 2.0
        lo, hi = stats.quantile(tail), stats.quantile(1.0 - tail)
    return _covered(lo, hi, t)


# --------------------------------------------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------------------------------------------

_ENTROPY_MAX_CANDIDATES = 512


def entropy(stats: Statistics, qtype: QType | str = "uint8") -> tuple[float, float]:
    """TensorRT's entropy calibration: the threshold ``T`` on ``|x|`` minimizing ``KL(P || Q)``.

    On the histogram ``h`` of ``|x|`` (``B`` occupied bins of width ``w``), for each candidate ``i``
    (``L <= i <= B``, at most 512 evenly spaced candidates): ``P = h[:i]`` with the clipped mass ``sum h[i:]``
    added to its last bin; ``Q`` merges ``h[:i]`` into ``L`` groups and spreads each group's mass evenly
    over the group's bins where ``P > 0``. Both are normalized; ``KL = sum P log(P / Q)`` (``Q = 0`` where
    ``P > 0`` is replaced by 1e-12, a heavy penalty). ``T = i w``. ``L`` is the number of integer levels
    available to ``|x|``: 128 for signed data or symmetric types, 256 for one-signed data in an asymmetric
    8-bit type.

    Signed data gives ``(max(min, -T), min(max, T))``; one-signed data keeps its own end at 0 or at the data.
    When the histogram has at most ``L`` occupied bins (always the case for 16-bit types, whose 32768+ levels
    exceed the histogram's resolution) every ``i`` gives ``KL = 0`` and the method returns :func:`minmax`.

    Raises:
        ValueError: For empty statistics or an unknown type.
    """
    t = int_type(qtype)
    _require_data(stats)
    lo, hi = stats.min, stats.max
    one_signed = lo >= 0 or hi <= 0
    levels = (t.qmax - t.qmin + 1) // (1 if one_signed and not t.symmetric else 2)
    hist, width = stats.magnitude_histogram()
    occupied = int(np.flatnonzero(hist)[-1]) + 1 if hist.any() else 0
    if occupied <= levels or width == 0.0:
        logger.debug("entropy: %d occupied bins <= %d levels, using min/max", occupied, levels)
        return _covered(lo, hi, t)
    threshold = _kl_threshold(hist[:occupied], levels) * width
    if lo >= 0:
        return _covered(lo, min(hi, threshold), t)
    if hi <= 0:
        return _covered(max(lo, -threshold), hi, t)
    return _covered(max(lo, -threshold), min(hi, threshold), t)


def _kl_threshold(hist: np.ndarray, levels: int) -> int:
    """Number of bins ``i`` (``levels <= i <= len(hist)``) whose clipping minimizes KL(P || Q)."""
    size = hist.size
    candidates = np.unique(np.linspace(levels, size, min(_ENTROPY_MAX_CANDIDATES, size - levels + 1)).astype(int))
    tails = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])
    best, best_kl = size, math.inf
    for i in candidates:
        kl = _kl_for_candidate(hist[:i], tails[i], levels)
        if kl < best_kl:
            best, best_kl = int(i), kl
    return best


def _kl_for_candidate(sliced: np.ndarray, clipped: float, levels: int) -> float:
    p = sliced.copy()
    p[-1] += clipped
    nonzero = p > 0
    starts = (np.arange(levels) * sliced.size) // levels
    sizes = np.diff(np.append(starts, sliced.size))
    group_mass = np.add.reduceat(sliced, starts)
    group_nonzero = np.add.reduceat(nonzero.astype(np.float64), starts)
    spread = np.divide(group_mass, group_nonzero, out=np.zeros_like(group_mass), where=group_nonzero > 0)
    q = np.repeat(spread, sizes) * nonzero
    p = p[nonzero] / p.sum()
    q = q[nonzero] / max(q.sum(), 1e-300)
    q = np.maximum(q, 1e-12)
    return float(np.sum(p * np.log(p / q)))


# --------------------------------------------------------------------------------------------------------------
# mse
# --------------------------------------------------------------------------------------------------------------

_REFINE_POINTS = 9  # per refinement level of a line search, bracket ends included
_REFINE_LEVELS = 2
_MAX_RATIO = 1.25  # ranges end at most 25 % beyond the data
_POLISH_STEP = 5e-3  # relative scale step of the first (scale, zero point) polish batches
_POLISH_MIN_STEP = 5e-3 / 16
_POLISH_STEPS = 4  # scales s (1 + k step), |k| <= 4
_POLISH_ZERO_POINTS = 2  # zero points z - 2 .. z + 2
_POLISH_BATCHES = 12
_MAX_CELLS = 1 << 15  # candidates x (points or edges) per vectorized step: the scratch stays in cache
_SEARCH_CELLS = 1 << 17  # candidates x (points + edges) a coarse line search may spend on a small histogram
_MAX_DENSITY = 8


@functools.cache
def _coarse_ratios(density: int) -> np.ndarray:
    """Clipping ratios of a line search, ``density`` times denser than the base grid in 0.2 .. 1.25.

    9 geometric from 2^-10 to 0.2 (sparse: a grid clipping 80 % of the range only wins when nearly all the
    mass sits near 0), ``82 * density`` geometric in 0.2 .. 1 (2 % apart at density 1) and
    ``25 * density + 1`` linear in 1 .. 1.25 (1 % apart at density 1).
    """
    return np.unique(
        np.concatenate(
            [
                np.geomspace(2.0**-10, 0.2, 9),
                np.geomspace(0.2, 1.0, 82 * density),
                np.linspace(1.0, 1.25, 25 * density + 1),
            ]
        )
    )


@dataclasses.dataclass(frozen=True)
class _Objective:
    """Expected squared quantization error of a histogram under candidate grids ``(lo, hi)``.

    The histogram's mass is split into exact points (``a == b``) and intervals of uniform density. The
    intervals are kept as their edges ``e_j`` with weights ``w_j`` (the density of the interval starting at
    ``e_j`` minus that of the one ending there): ``sum_i d_i (F(b_i) - F(a_i)) = sum_j w_j F(e_j)`` for any
    ``F``, so each candidate evaluates ``F`` once per edge rather than twice per interval, and edges between
    two equally dense intervals (or inside runs of empty bins) drop out.
    """

    points: np.ndarray
    point_counts: np.ndarray
    edges: np.ndarray
    weights: np.ndarray
    t: IntType
    work: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, stats: Statistics, t: IntType) -> _Objective:
        a, b, counts = stats.mass()
        width = b - a
        flat = width == 0
        edges, weights = _edge_weights(a[~flat], b[~flat], counts[~flat] / width[~flat])
        return cls(
            points=a[flat].astype(np.float32),
            point_counts=counts[flat].astype(np.float64),
            edges=edges,
            weights=weights,
            t=t,
        )

    @property
    def density(self) -> int:
        """How much denser than the base grid the line searches sample (1 to 8).

        Small histograms are cheap to evaluate, and few exact points make the error jagged in the ratio
        (narrow dips where the grid meets them), so they get up to ``_SEARCH_CELLS`` cells per search.
        """
        size = max(self.points.size + self.edges.size, 1)
        return int(np.clip(_SEARCH_CELLS // (size * _coarse_ratios(1).size), 1, _MAX_DENSITY))

    def error(self, lo: np.typing.ArrayLike, hi: np.typing.ArrayLike) -> np.ndarray:
        """``sum count * E[(x - Q(x))^2]`` for each candidate (broadcast ``lo`` against ``hi``)."""
        lo, hi = np.broadcast_arrays(
            np.atleast_1d(np.asarray(lo, np.float64)), np.atleast_1d(np.asarray(hi, np.float64))
        )
        scale, zero_point = _params(lo, hi, self.t)
        total = np.zeros(scale.size)
        if self.points.size:
            rows = max(1, _MAX_CELLS // self.points.size)
            for i in range(0, scale.size, rows):
                total[i : i + rows] += self._point_error(scale[i : i + rows], zero_point[i : i + rows])
        if self.edges.size:
            s64 = scale.astype(np.float64)
            low, high = (self.t.qmin - zero_point) * s64, (self.t.qmax - zero_point) * s64
            rows = max(1, _MAX_CELLS // self.edges.size)
            for i in range(0, scale.size, rows):
                part = slice(i, i + rows)
                total[part] += self._edge_error(s64[part], low[part], high[part])
        return total

    def _buffers(self, kind: str, rows: int, columns: int, dtype: type, count: int) -> list[np.ndarray]:
        """``count`` scratch arrays ``[rows, columns]`` (views of buffers kept for the next call of this size)."""
        key = (kind, columns)
        buffers = self.work.get(key)
        if buffers is None or buffers[0].shape[0] < rows:
            buffers = [np.empty((max(rows, _MAX_CELLS // max(columns, 1)), columns), dtype) for _ in range(count)]
            self.work[key] = buffers
        return [buffer[:rows] for buffer in buffers]

    def _point_error(self, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
        """Exactly what QuantizeLinear -> DequantizeLinear computes on the points (float32 division and product).

        ``rint(p / s) + z`` is exact in float32 while below ``2**24`` in magnitude; beyond, it saturates
        whatever the rounding.
        """
        s = scale[:, None]
        z = zero_point.astype(np.float32)[:, None]
        q, error = self._buffers("points", scale.size, self.points.size, np.float32, 1) + self._buffers(
            "points64", scale.size, self.points.size, np.float64, 1
        )
        np.divide(self.points, s, out=q)
        np.rint(q, out=q)
        q += z
        np.clip(q, self.t.qmin, self.t.qmax, out=q)
        q -= z
        q *= s
        np.subtract(self.points, q, out=error, dtype=np.float64)
        np.square(error, out=error)
        return error @ self.point_counts

    def _edge_error(self, s: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``sum_j w_j F(e_j)`` per candidate: the integral of ``(x - Q(x))^2`` over the intervals behind the edges.

        ``Q`` is the grid ``s * Z`` clipped to ``[low, high]`` (multiples of ``s``). Inside, the error is the
        sawtooth ``x - s round(x / s)``, whose antiderivative is ``G(x) = k s^3 / 12 + (r^3 + s^3 / 8) / 3``
        with ``k = round(x / s)``, ``r = x - k s``; outside, the error is ``x - low`` or ``x - high``,
        integrating to cubes. So ``F(x) = G(c) + (x - c)^3 / 3`` with ``c = clip(x, low, high)``. The
        constant ``s^3 / 24`` of ``G`` is left out: the weights sum to 0, so it cancels.
        """
        e = self.edges
        c, t, cubes, k = self._buffers("edges", s.size, e.size, np.float64, 4)
        np.maximum(e, low[:, None], out=c)
        np.minimum(c, high[:, None], out=c)
        np.subtract(e, c, out=t)
        np.multiply(t, t, out=cubes)
        cubes *= t
        np.multiply(c, (1.0 / s)[:, None], out=k)
        np.rint(k, out=k)
        np.multiply(k, s[:, None], out=t)
        c -= t  # r = c - k s
        np.multiply(c, c, out=t)
        t *= c
        cubes += t
        return (cubes @ self.weights) / 3.0 + (k @ self.weights) * (s**3 / 12.0)


def _edge_weights(a: np.ndarray, b: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges and weights of disjoint ascending intervals ``[a_i, b_i]``: ``-d_i`` at ``a_i``, ``+d_i`` at ``b_i``.

    Coinciding edges (``b_i == a_{i+1}``) merge into one with the summed weight; zero weights are dropped.
    """
    edges = np.stack([a, b], axis=1).reshape(-1)
    weights = np.stack([-density, density], axis=1).reshape(-1)
    if not edges.size:
        return edges, weights
    start = np.flatnonzero(np.concatenate([[True], edges[1:] != edges[:-1]]))
    edges, weights = edges[start], np.add.reduceat(weights, start)
    keep = weights != 0
    return edges[keep], weights[keep]


def _line_search(error: Callable[[np.ndarray], np.ndarray], start: float, ratios: np.ndarray) -> tuple[float, float]:
    """Minimize ``error(ratio)`` over ``start`` and ``ratios``, then refine between the best one's neighbours.

    Each refinement level evaluates ``_REFINE_POINTS`` evenly spaced ratios between the neighbours of the best
    ratio so far (in the grid searched last), so two levels of 9 points resolve 1/64 of the bracket. ``start``
    is evaluated first and kept on ties, so the result is never worse than ``start``.
    """
    candidates = np.concatenate([[start], ratios])
    errors = error(candidates)
    best = int(np.argmin(errors))
    ratio, err = float(candidates[best]), float(errors[best])
    grid = np.unique(candidates)
    for _ in range(_REFINE_LEVELS):
        at = int(np.searchsorted(grid, ratio))
        left, right = grid[max(at - 1, 0)], grid[min(at + 1, grid.size - 1)]
        if left == right:
            break
        grid = np.linspace(left, right, _REFINE_POINTS)
        inner = grid[1:-1]
        fine_errors = error(inner)
        best = int(np.argmin(fine_errors))
        if fine_errors[best] < err:
            ratio, err = float(inner[best]), float(fine_errors[best])
    return ratio, err


def mse(stats: Statistics, qtype: QType | str = "uint8") -> tuple[float, float]:
    """The range whose integer grid minimizes the expected squared error over the histogram.

    Objective: ``E(lo, hi) = sum_bins count * mean_{x in bin} (x - Q(x))^2`` with ``Q`` the exact
    QuantizeLinear/DequantizeLinear pair of ``quantization_params(lo, hi, qtype)`` (float32 scale, rounded
    zero point, round half to even, saturation to the type). A :class:`CodeHistogram` is a set of exact
    points, so ``E`` is exact, computed with the float32 arithmetic of onnxruntime. A
    :class:`StreamingHistogram` bin is taken as uniform mass over the bin (clipped to ``[min, max]``) and its
    mean squared error is integrated in closed form (better than the bin centre, which aliases with the grid
    when data occupies few bins).

    Evaluation: ``E`` is vectorized over candidates. The intervals enter through their edges (see
    ``_Objective``): one closed-form term per edge instead of two per bin, and edges inside runs of empty
    bins drop out. Same objective, up to float64 rounding.

    Search: clipping ratios ``r`` relative to the data ends (so ranges up to 25 % beyond the data are tried:
    the paper's best INT8 grid for FP8-trained tensors ends slightly above the FP8 maximum). A line search
    evaluates a coarse grid: 9 ratios from 2^-10 to 0.2 (sparse, since an 8-bit grid that clips 80 % of the
    range is rarely optimal), 0.2 .. 1 geometric (2 % apart) and 1 .. 1.25 linear (1 % apart). It then
    refines twice between the best ratio's neighbours (9 points per level). A histogram with few points and
    edges is sampled up to 8 times more densely: it is cheap to evaluate, and few exact values make ``E``
    jagged in ``r``. Symmetric types search ``T = r * max|x|``. Asymmetric types on one-signed data search
    the one free end (the other stays 0). Asymmetric types on signed data search ``hi = r_hi * max``, then
    ``lo = r_lo * min``, then polish scale and zero point jointly (:func:`_mse_two_sided`). Every search
    starts from min/max and moves only on a strict improvement, so ``E(mse) <= E(minmax)``.

    FP8 data (:class:`CodeHistogram`): grids whose step is ``2^j * fp8_scale`` reproduce every FP8 value
    whose spacing is a multiple of the step exactly (the large-magnitude part of the grid). They are tried
    too, and one is preferred when its error is within 0.5 % of the search's optimum (and not above
    min/max's): the search may otherwise drift off alignment by a few ulps of scale to win rounding ties
    near zero, which gains nothing real and loses the exact reproduction of the large values.

    Returns:
        The covered range (contains 0; symmetric for int8/int16).

    Raises:
        ValueError: For empty statistics or an unknown type.
    """
    t = int_type(qtype)
    _require_data(stats)
    lo, hi = _covered(stats.min, stats.max, t)
    if lo == hi == 0.0:
        return 0.0, 0.0  # only zeros: every grid reproduces them (see "Degenerate statistics")
    objective = _Objective.of(stats, t)
    minmax_error = float(objective.error(lo, hi)[0])
    if t.symmetric:
        best_lo, best_hi = _mse_symmetric(objective, hi)
    elif lo == 0.0 or hi == 0.0:
        best_lo, best_hi = _mse_one_sided(objective, lo, hi)
    else:
        best_lo, best_hi = _mse_two_sided(objective, lo, hi)
    if isinstance(stats, CodeHistogram):
        best_error = float(objective.error(best_lo, best_hi)[0])
        aligned_lo, aligned_hi = _aligned_candidates(stats, lo, hi, t)
        errors = objective.error(aligned_lo, aligned_hi)
        pick = int(np.argmin(errors))
        if errors[pick] <= min(best_error * (1.0 + _ALIGNED_TOLERANCE), minmax_error):
            best_lo, best_hi = float(aligned_lo[pick]), float(aligned_hi[pick])
    logger.debug("mse %s: min/max (%g, %g) -> (%g, %g)", t.name, lo, hi, best_lo, best_hi)
    return _covered(best_lo, best_hi, t)


_ALIGNED_TOLERANCE = 5e-3


def _mse_symmetric(objective: _Objective, top: float) -> tuple[float, float]:
    if top == 0.0:
        return 0.0, 0.0
    ratio, _ = _line_search(lambda r: objective.error(-r * top, r * top), 1.0, _coarse_ratios(objective.density))
    return -ratio * top, ratio * top


def _mse_one_sided(objective: _Objective, lo: float, hi: float) -> tuple[float, float]:
    if hi > 0:
        ratio, _ = _line_search(lambda r: objective.error(0.0, r * hi), 1.0, _coarse_ratios(objective.density))
        return 0.0, ratio * hi
    if lo < 0:
        ratio, _ = _line_search(lambda r: objective.error(r * lo, 0.0), 1.0, _coarse_ratios(objective.density))
        return ratio * lo, 0.0
    return 0.0, 0.0


def _mse_two_sided(objective: _Objective, lo: float, hi: float) -> tuple[float, float]:
    """Asymmetric grid on signed data: a line search per end, then a joint search over ``(scale, zero_point)``.

    ``hi`` is searched with ``lo`` at the data's minimum, then ``lo`` with that ``hi``. One end alone cannot
    move the zero point without moving the scale (and the zero point is rounded), so this stalls next to the
    optimum; the polish then searches scale and zero point together: scales ``s (1 + k step)`` for
    ``|k| <= 4`` times zero points ``z - 2 .. z + 2`` around the best grid so far, moving to the best one while
    it strictly improves and otherwise shrinking ``step`` (0.5 %, 0.125 %, 0.03 %), at most 12 batches. A grid
    ``(s, z)`` is tried as the range ``((qmin - z) s, (qmax - z) s)``, which :func:`quantization_params` maps
    back to exactly ``(s, z)`` (float32 ``s`` times an integer is exact in float64), and only when it ends at
    most 25 % beyond the data at each end. Both line searches start from the current ends and the polish
    only moves on a strict improvement, so the result is never worse than min/max.
    """
    coarse = _coarse_ratios(objective.density)
    r_hi, error = _line_search(lambda r: objective.error(lo, r * hi), 1.0, coarse)
    r_lo, error = _line_search(lambda r: objective.error(r * lo, r_hi * hi), 1.0, coarse)
    best_lo, best_hi = r_lo * lo, r_hi * hi
    t = objective.t
    offsets = np.arange(-_POLISH_STEPS, _POLISH_STEPS + 1)
    zero_offsets = np.arange(-_POLISH_ZERO_POINTS, _POLISH_ZERO_POINTS + 1)
    step = _POLISH_STEP
    for _ in range(_POLISH_BATCHES):
        scale, zero_point = _params(np.array([best_lo]), np.array([best_hi]), t)
        scales = (float(scale[0]) * (1.0 + step * offsets)).astype(np.float32).astype(np.float64)
        zero_points = np.clip(zero_point[0] + zero_offsets, t.qmin, t.qmax)
        low = ((t.qmin - zero_points)[:, None] * scales[None, :]).reshape(-1)
        high = ((t.qmax - zero_points)[:, None] * scales[None, :]).reshape(-1)
        ok = (low >= _MAX_RATIO * lo) & (high <= _MAX_RATIO * hi)
        errors = objective.error(low[ok], high[ok])
        pick = int(np.argmin(errors)) if errors.size else -1
        if pick >= 0 and errors[pick] < error:
            best_lo, best_hi, error = float(low[ok][pick]), float(high[ok][pick]), float(errors[pick])
        elif step > _POLISH_MIN_STEP:
            step /= 4.0
        else:
            break
    return best_lo, best_hi


def _aligned_candidates(stats: CodeHistogram, lo: float, hi: float, t: IntType) -> tuple[np.ndarray, np.ndarray]:
    """Grids with step ``2^j * scale`` around the data's range (zero points near the one fitting ``lo``)."""
    top = max(-lo, hi)
    scale = float(stats.scale)
    high = math.ceil(math.log2(top / scale)) + 1
    steps = scale * np.exp2(np.arange(high - 40, high + 1, dtype=np.float64))
    if t.symmetric:
        return -t.qmax * steps, t.qmax * steps
    levels = t.qmax - t.qmin
    if lo == 0.0:
        return np.zeros_like(steps), levels * steps
    if hi == 0.0:
        return -levels * steps, np.zeros_like(steps)
    zero_point = np.rint(t.qmin - lo / steps)[:, None] + np.arange(-2, 3)[None, :]
    zero_point = np.clip(zero_point, t.qmin, t.qmax)
    s = steps[:, None]
    return ((t.qmin - zero_point) * s).ravel(), ((t.qmax - zero_point) * s).ravel()


def range_error(stats: Statistics, lo: float, hi: float, qtype: QType | str = "uint8") -> float:
    """The objective :func:`mse` minimizes, for one range: ``sum count * mean (x - Q(x))^2`` over the histogram.

    Exact for a :class:`CodeHistogram` (the squared error onnxruntime's QuantizeLinear -> DequantizeLinear
    would make on the data); for a :class:`StreamingHistogram`, under the uniform-within-bin assumption.
    Useful to compare range methods in reports.

    Raises:
        ValueError: For empty statistics, a bad range or an unknown type.
    """
    t = int_type(qtype)
    _require_data(stats)
    lo, hi = _check_range(lo, hi)
    return float(_Objective.of(stats, t).error(lo, hi)[0])


# --------------------------------------------------------------------------------------------------------------
# fp8 (data-free)
# --------------------------------------------------------------------------------------------------------------


def fp8_range(
    fmt: str | FloatFormat, scale: float, qtype: QType | str = "uint8", *, non_negative: bool = False
) -> tuple[float, float]:
    """Data-free range for the output of an FP8 fake-quantizer, from its format and scale alone.

    The integer grid minimizing the squared error over the FP8 grid itself: :func:`mse` on a histogram that
    counts every finite representable value ``decode(code) * scale`` once (only the non-negative ones when
    ``non_negative``, e.g. after a Relu). Why this and not simply ``±max_value * scale``: with a free scale
    the INT8 grid reproduces the large-magnitude part of the FP8 grid exactly when its step is a power-of-two
    multiple of the FP8 spacing there, which puts its end slightly *above* ``max_value * scale`` (e4m3fn into
    int8: step ``4 * scale``, end ``508 * scale`` vs 448); the max grid misaligns every large value (paper
    §6). Uniform weights (each representable value once) need no data; the squared error is dominated by
    the large values, so the small values near zero (which no 8-bit INT grid of that range can resolve) do
    not drag the range down. With calibration data, :func:`mse` on a :class:`CodeHistogram` weighs the
    values by how often they occur instead.

    Args:
        fmt: The fake-quantizer's format (at most 8 bits).
        scale: Its per-tensor scale.
        qtype: Integer type.
        non_negative: Whether the tensor is known to be ``>= 0``.

    Returns:
        The covered range (contains 0; symmetric for int8/int16).

    Raises:
        ValueError: For a bad format, scale or type.
    """
    t = int_type(qtype)
    grid = CodeHistogram(fmt, scale)
    values = grid.values()
    keep = np.isfinite(values) & ((values >= 0) if non_negative else True)
    grid.update(values[keep])
    return mse(grid, t.name)


def fp8(stats: CodeHistogram, qtype: QType | str = "uint8") -> tuple[float, float]:
    """:func:`fp8_range` for the format and scale of a :class:`CodeHistogram` (its counts are not used).

    The tensor is taken as non-negative when the histogram has seen data and all of it was ``>= 0``;
    otherwise (including an empty histogram: fully data-free) as signed.

    Raises:
        ValueError: If ``stats`` is not a :class:`CodeHistogram` (a StreamingHistogram has no FP8 grid).
    """
    if not isinstance(stats, CodeHistogram):
        raise ValueError(
            "the fp8 range method needs the FP8 quantizer's format and scale: pass a CodeHistogram, or call "
            f"fp8_range(fmt, scale, qtype, non_negative=...); got {type(stats).__name__}"
        )
    non_negative = stats.count > 0 and stats.min >= 0
    return fp8_range(stats.fmt, stats.scale, qtype, non_negative=non_negative)


RANGE_METHODS: Mapping[str, RangeMethod] = {
    "minmax": minmax,
    "percentile": percentile,
    "entropy": entropy,
    "mse": mse,
    "fp8": fp8,
}
"""Range methods by the names of :class:`~fp8conv.converter.config.ActivationRange`."""


def compute_range(
    stats: Statistics, method: str = "mse", qtype: QType | str = "uint8", **options: float
) -> tuple[float, float]:
    """Run the range method called ``method`` (``minmax``, ``percentile``, ``entropy``, ``mse``, ``fp8``).

    Args:
        stats: Calibration statistics.
        method: Method name (a ``str`` enum such as ``ActivationRange`` works too).
        qtype: Integer type.
        **options: Method options (``percentile=`` for ``percentile``).

    Returns:
        The covered range.

    Raises:
        ValueError: For an unknown method or bad arguments.
    """
    name = str(getattr(method, "value", method))
    try:
        function = RANGE_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown range method {method!r}; valid methods are: {', '.join(RANGE_METHODS)}") from None
    try:
        inspect.signature(function).bind(stats, qtype, **options)
    except TypeError as error:
        raise ValueError(f"bad options for range method {name!r}: {error}") from error
    return function(stats, qtype, **options)
