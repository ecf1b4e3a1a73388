"""The ``mse`` range method: the range whose integer grid minimizes the expected squared error.

Objective, with ``Q`` the exact QuantizeLinear/DequantizeLinear pair of ``quantization_params(lo, hi)``::

    E(lo, hi) = sum_bins count * mean_{x in bin} (x - Q(x))^2

exact on the points of a :class:`~fp8conv.converter.calibration.statistics.CodeHistogram` (float32
arithmetic as onnxruntime's), and integrated in closed form over uniform-mass intervals for a
:class:`~fp8conv.converter.calibration.statistics.StreamingHistogram`. :func:`mse` searches clipping ratios
of the data's ends (line searches, then a joint scale/zero-point polish for asymmetric grids on signed
data), always starting from min/max, so ``E(mse) <= E(minmax)``. :func:`range_error` evaluates ``E`` for one
range.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable

import numpy as np

from fp8conv.converter.calibration.scales import QType, check_range, covered_range, grid_params, int_type
from fp8conv.converter.calibration.statistics import CodeHistogram, Statistics, require_data
from fp8conv.runtime.integer_types import IntegerFormat

__all__ = ["mse", "range_error"]

logger = logging.getLogger(__name__)

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
    t: IntegerFormat
    work: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, stats: Statistics, t: IntegerFormat) -> _Objective:
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
        scale, zero_point = grid_params(lo, hi, self.t)
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
    require_data(stats)
    lo, hi = covered_range(stats.min, stats.max, t)
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
    return covered_range(best_lo, best_hi, t)


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
        scale, zero_point = grid_params(np.array([best_lo]), np.array([best_hi]), t)
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


def _aligned_candidates(stats: CodeHistogram, lo: float, hi: float, t: IntegerFormat) -> tuple[np.ndarray, np.ndarray]:
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
    require_data(stats)
    lo, hi = check_range(lo, hi)
    return float(_Objective.of(stats, t).error(lo, hi)[0])
