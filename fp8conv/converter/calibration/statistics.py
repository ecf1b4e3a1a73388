"""Streaming, mergeable activation statistics: fixed size however many samples they see.

Nothing here stores activations. Two statistics of the same kind merge exactly: ``a.merge(b)`` equals one
statistic fed both inputs, whatever the order or batching of the values.

:class:`CodeHistogram`
    For the output of an FP8 fake-quantizer, whose values are exactly ``decode(code) * scale``: one
    counter per FP8 code (at most 256), so the histogram is exact. A value off that grid raises.
:class:`StreamingHistogram`
    For any float tensor: exact running min/max and ``num_bins`` counters over ``[-R, R)``, ``R`` a power
    of two. When data exceeds the range, ``R`` doubles and adjacent bin pairs merge, which is exact
    because every bin edge of the coarse histogram is an edge of the fine one. With ``w = 2R / num_bins``
    (a power of two), ``x`` counts in bin ``floor(x / w) + num_bins / 2``, computed exactly.

Both ignore NaN and ±Inf (counted in ``nonfinite``). The range methods (:mod:`.methods`) read them through
``min``, ``max``, ``count``, ``quantile(q)``, ``magnitude_histogram()`` and ``mass()`` (the histogram as
intervals ``[a, b]`` of uniform mass; points ``a == b`` for a CodeHistogram).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from fp8conv.runtime.emulator import check_scale, decode, encode, float16_codes
from fp8conv.runtime.formats import FloatFormat, resolve_format

__all__ = ["CodeHistogram", "Statistics", "StreamingHistogram", "require_data"]

_CHUNK = 1 << 20
_KEYED_MIN_VALUES = 1 << 14  # CodeHistogram updates at least this large count through a key table


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


class _Counters:
    """What both histograms are: int64 counters, one per code or bin, and a count of non-finite values.

    Attributes:
        nonfinite: Number of NaN and ±Inf values seen (ignored otherwise).
    """

    def __init__(self, size: int) -> None:
        self.nonfinite = 0
        self._counts = np.zeros(size, dtype=np.int64)

    @property
    def count(self) -> int:
        """Number of finite values counted."""
        return int(self._counts.sum())

    def counts(self) -> np.ndarray:
        """int64 count of every code ``0 .. 2**bits - 1`` (CodeHistogram) or every bin (StreamingHistogram)."""
        return self._counts.copy()


class CodeHistogram(_Counters):
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
        super().__init__(1 << self.fmt.bits)
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

        ``grid`` is float16 (what :class:`~fp8conv.passes.reference_runner.ReferenceRunner` returns for
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
    """The scale as a float32 (:func:`~fp8conv.runtime.emulator.check_scale`: positive and finite as a float32)."""
    try:
        value = np.float32(scale)
    except (TypeError, ValueError) as error:
        raise ValueError(f"scale must be a number, got {scale!r}") from error
    return np.float32(check_scale(value))


class StreamingHistogram(_Counters):
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
        super().__init__(self.num_bins)
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
    def min(self) -> float:
        """Smallest finite value seen, exact (``+inf`` when empty)."""
        return self._min

    @property
    def max(self) -> float:
        """Largest finite value seen, exact (``-inf`` when empty)."""
        return self._max

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


def require_data(stats: Statistics) -> None:
    """Check that ``stats`` is a statistic of this module that has counted at least one finite value.

    Raises:
        ValueError: For another type or empty statistics.
    """
    if not isinstance(stats, (CodeHistogram, StreamingHistogram)):
        raise ValueError(f"stats must be a CodeHistogram or a StreamingHistogram, got {type(stats).__name__}")
    if stats.count == 0:
        raise ValueError(
            f"{stats!r} has no finite values; calibrate with data first (or use the data-free fp8 method "
            "for fake-quantizer outputs)"
        )
