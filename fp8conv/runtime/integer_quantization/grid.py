"""The symmetric integer grid of a group: its scale, its integers and its squared error.

Per group of weights ``w`` sharing one scale, with clipping ratio ``r`` (zero point 0)::

    s = r · max|w| / qmax                                 # float64, rounded once to float32; 1.0 when max|w| = 0
    q = clip(round_half_even(w / s), qmin, qmax)          # w / s in float32
    dequantize(q) = q · s                                 # float32: exactly ONNX DequantizeLinear
    error = Σ count · (w − q s)²                          # float32 elementwise, float64 sums

An all-zero group gets scale 1.0 (any positive value is exact; 1.0 keeps a bias scale ``s_x · s_w`` far
from int32 overflow).
"""

from __future__ import annotations

import numpy as np

__all__ = ["integers", "scale_for", "squared_error"]


def scale_for(amax: np.ndarray, ratio: np.ndarray, qmax: int) -> np.ndarray:
    """float32 ``ratio * amax / qmax`` (computed in float64, rounded once); 1.0 for all-zero groups."""
    scale = (ratio * amax.astype(np.float64) / qmax).astype(np.float32)
    return np.where(amax > 0, np.maximum(scale, np.finfo(np.float32).tiny), np.float32(1.0))


def integers(data: np.ndarray, scale: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """``clip(round_half_even(data / scale), qmin, qmax)`` (float32-valued) for ``[G, K]`` data, ``[G]`` scales."""
    return np.clip(np.rint(data / scale[:, None]), qmin, qmax)


def squared_error(
    data: np.ndarray, scale: np.ndarray, qmin: int, qmax: int, work: np.ndarray, counts: np.ndarray | None = None
) -> np.ndarray:
    """Per-group ``sum count * (w - q s)^2`` (float32 elementwise, float64 sums), computed in place in ``work``.

    ``counts`` (float64, ``data``'s shape) weighs each entry; None means 1 for every entry.
    """
    s = scale[:, None]
    np.divide(data, s, out=work)
    np.rint(work, out=work)
    np.clip(work, qmin, qmax, out=work)
    np.multiply(work, s, out=work)
    np.subtract(data, work, out=work)
    np.square(work, out=work)
    if counts is None:
        return work.sum(axis=1, dtype=np.float64)
    return np.vecdot(work.astype(np.float64), counts)
