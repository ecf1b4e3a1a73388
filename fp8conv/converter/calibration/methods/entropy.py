"""The ``entropy`` range method: TensorRT's KL-divergence threshold search on the histogram of ``|x|``.

For a histogram ``h`` of ``|x|`` and a candidate of ``i`` bins, ``P = h[:i]`` with the clipped tail
``sum h[i:]`` added to its last bin and ``Q`` the quantization of ``h[:i]`` into ``L`` levels; the threshold
``T = i w`` minimizes ``KL(P || Q) = sum P log(P / Q)``. ``L`` is the number of integer levels ``|x|`` gets.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from fp8conv.converter.calibration.scales import QType, covered_range, int_type
from fp8conv.converter.calibration.statistics import Statistics, require_data

__all__ = ["entropy"]

logger = logging.getLogger(__name__)

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
    require_data(stats)
    lo, hi = stats.min, stats.max
    one_signed = lo >= 0 or hi <= 0
    levels = (t.qmax - t.qmin + 1) // (1 if one_signed and not t.symmetric else 2)
    hist, width = stats.magnitude_histogram()
    occupied = int(np.flatnonzero(hist)[-1]) + 1 if hist.any() else 0
    if occupied <= levels or width == 0.0:
        logger.debug("entropy: %d occupied bins <= %d levels, using min/max", occupied, levels)
        return covered_range(lo, hi, t)
    threshold = _kl_threshold(hist[:occupied], levels) * width
    if lo >= 0:
        return covered_range(lo, min(hi, threshold), t)
    if hi <= 0:
        return covered_range(max(lo, -threshold), hi, t)
    return covered_range(max(lo, -threshold), min(hi, threshold), t)


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
