"""The MSE clipping-ratio search: per group, the ratio ``r`` minimizing ``Σ (w − q s)²``.

``r`` runs over a coarse grid ``0.50, 0.52, ..., 1.30``, refined to steps of 0.002 around the best, plus
the ratios ``qmax / n`` near it that put the group's max exactly on an integer level ``n``. Ratios above 1
matter: the best INT grid for FP8-trained weights ends slightly above their maximum (paper §6), where its
step is a power-of-two multiple of the FP8 scale and it reproduces the large FP8 values (e4m3fn: max 448 on
level 112, step 4, ``r = 127 / 112``). The choice is pure MSE, so it may settle a few 1e-4 away from that
ratio when the drift wins more on rounding ties near zero than it loses on the large values. ``r = 1`` is
evaluated first and kept on ties, so the MSE result is never worse than ``max``. Scored on distinct values
(:mod:`.distinct_values`), a ratio must beat ``r = 1`` by a relative 1e-12, far above the float64
summation-order rounding, to be kept.
"""

from __future__ import annotations

import numpy as np

from fp8conv.runtime.integer_quantization.grid import scale_for, squared_error
from fp8conv.runtime.integer_quantization.groups import CHUNK_ELEMENTS

__all__ = ["search_ratios"]

_COARSE_RATIOS = np.arange(25, 66) / 50.0  # 0.50 .. 1.30, step 0.02; contains 1.0 exactly
_FINE_OFFSETS = np.arange(-9, 10) / 500.0  # -0.018 .. 0.018, step 0.002
_DISTINCT_MARGIN = 1e-12


def search_ratios(points: np.ndarray, counts: np.ndarray | None, amax: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """:func:`_search` over row chunks of bounded size (rows are independent)."""
    ratio = np.ones(points.shape[0])
    rows = max(1, CHUNK_ELEMENTS // max(points.shape[1], 1))
    for i in range(0, points.shape[0], rows):
        part = slice(i, i + rows)
        ratio[part] = _search(points[part], None if counts is None else counts[part], amax[part], qmin, qmax)
    return ratio


def _search(points: np.ndarray, counts: np.ndarray | None, amax: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Per-group ratio minimizing ``sum count * (w - q s)^2``: 1, then the coarse ratios, then refinements."""
    work = np.empty_like(points)

    def error(ratio: np.ndarray) -> np.ndarray:
        return squared_error(points, scale_for(amax, ratio, qmax), qmin, qmax, work, counts)

    best_ratio = np.ones(points.shape[0])
    max_error = error(best_ratio)
    best_error = max_error.copy()
    for ratio in _COARSE_RATIOS[_COARSE_RATIOS != 1.0]:
        candidate = np.full_like(best_ratio, ratio)
        _keep_better(candidate, error(candidate), best_ratio, best_error)
    for candidate in _refinements(best_ratio.copy(), qmax):
        _keep_better(candidate, error(candidate), best_ratio, best_error)
    if counts is not None:
        # Weighted and element-wise float64 sums of the same float32 errors differ by rounding only (relative
        # 1e-15 at most), so a ratio that beats max by this margin here beats it on the elements too.
        best_ratio[best_error >= max_error * (1.0 - _DISTINCT_MARGIN)] = 1.0
    return best_ratio


def _refinements(centre: np.ndarray, qmax: int) -> list[np.ndarray]:
    """Fine ratios around each group's coarse optimum: steps of 0.002, and the ratios ``qmax / n`` (integer n).

    ``qmax / n`` puts the group's max exactly on level ``n``: for FP8-trained weights these include the grid
    whose step is a power-of-two multiple of the FP8 scale (e4m3fn max 448 on level 112: step 4), which a
    0.002 grid only comes close to.
    """
    level = np.rint(qmax / centre)
    on_level = [qmax / np.maximum(level + k, 1.0) for k in range(-2, 3)]
    return [centre + offset for offset in _FINE_OFFSETS if offset != 0.0] + on_level


def _keep_better(ratio: np.ndarray, error: np.ndarray, best_ratio: np.ndarray, best_error: np.ndarray) -> None:
    """Replace, in place, the groups whose error at ``ratio`` is strictly lower."""
    better = error < best_error
    best_ratio[better] = ratio[better]
    best_error[better] = error[better]
