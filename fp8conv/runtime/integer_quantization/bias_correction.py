"""Bias correction: remove the systematic output shift that rounding the weights introduces.

With integer weights ``W_q`` standing for ``W``, a layer's output moves by ``(W_q − W)·x``. Over the
calibration inputs its mean per output channel ``n`` is (Nagel et al., 2019, "Data-free quantization through
weight equalization and bias correction", §4.2; here with the empirical mean instead of a data-free one)::

    shift[n] = E[(W_q − W)·x][n] = Σ_k (W_q − W)[n, k] · E[x_k]          # float64

and subtracting it from the bias makes the mean output error on those inputs zero:
``E[x·W_qᵀ + b'] = E[x·Wᵀ + b]`` with ``b' = b − shift``. For ``Gemm`` (``y = α·A·B + β·C``) the bias is
``C' = C − α·shift / β``.

For a ``Conv`` ``[M, C/g, kH, kW]`` (``g`` groups), ``E[x]`` per input channel gives
``shift[m] = Σ_{c, i, j} ΔW[m, c, i, j] · E[x_c]`` over the channels of ``m``'s group: exact where every
kernel position reads the input (no padding), approximate at the borders that zero padding reaches, where
the position reads 0 instead of ``E[x_c]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["corrected_bias", "output_shift"]


def output_shift(
    w: np.ndarray, w_q: np.ndarray, mean: np.ndarray, *, k_axis: int | None, groups: int = 1
) -> np.ndarray:
    """``E[(W_q − W)·x]`` per output channel (float64).

    Args:
        w: The float weight (in the layer's layout).
        w_q: The dequantized integer weight, same shape (``q · s``, what the integer layer computes with).
        mean: ``E[x]`` per input channel (length K; a Conv: its input channels C).
        k_axis: The K axis of a 2-D MatMul/Gemm weight (0 for ``[K, N]``, 1 for ``[N, K]``); None for a Conv
            weight ``[M, C/g, kH, kW]``.
        groups: A Conv's groups.

    Returns:
        ``shift [N]`` (a Conv: ``[M]``).

    Raises:
        ValueError: Shapes that do not match.
    """
    delta = np.asarray(w_q, dtype=np.float64) - np.asarray(w, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64).reshape(-1)
    if k_axis is not None:
        if delta.ndim != 2 or delta.shape[k_axis] != mu.size:
            raise ValueError(f"a weight of shape {delta.shape} with K on axis {k_axis} does not take {mu.size} means")
        return (delta if k_axis == 1 else delta.T) @ mu
    if delta.ndim < 2 or delta.shape[0] % groups or delta.shape[1] * groups != mu.size:
        raise ValueError(f"a Conv weight of shape {delta.shape} with {groups} groups does not take {mu.size} means")
    per_channel = delta.reshape(delta.shape[0], delta.shape[1], -1).sum(axis=2)  # [M, C/g]
    outputs = delta.shape[0] // groups
    by_group = per_channel.reshape(groups, outputs, delta.shape[1])
    return np.einsum("gmc,gc->gm", by_group, mu.reshape(groups, delta.shape[1])).reshape(-1)


def corrected_bias(bias: np.ndarray, shift: np.ndarray, *, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """``b − α·shift/β`` in float32 (computed in float64, rounded once), in ``bias``'s shape.

    Raises:
        ValueError: A bias without one entry per output channel, or ``β = 0``.
    """
    b = np.asarray(bias)
    if b.size != shift.size:
        raise ValueError(f"a bias of shape {b.shape} has no entry per output channel ({shift.size})")
    if beta == 0:
        raise ValueError("beta = 0: the bias is not added")
    corrected = b.astype(np.float64).reshape(-1) - alpha * shift / beta
    return corrected.astype(np.float32).reshape(b.shape)
