"""GPTQ: integer weights that minimize the layer-output error on calibration inputs, on a fixed integer grid.

A linear layer ``y = x·W`` (``W`` seen as ``[N, K]``: one row per output channel, one column per input channel)
with calibration inputs ``X [n, K]`` and the second-moment matrix (the Hessian of the output error)::

    H = 2 XᵀX / n                                             # [K, K], float64
    E‖x·(W_q − W)ᵀ‖² = ½ tr((W_q − W) H (W_q − W)ᵀ)            # the layer-output MSE GPTQ lowers

Rounding to nearest (RTN) minimizes each weight's error alone; GPTQ (Frantar et al., 2023, "GPTQ: accurate
post-training quantization for generative pre-trained transformers") quantizes the columns one at a time and,
after each, moves its rounding error onto the columns not yet quantized, the optimal correction (Optimal
Brain Surgeon) for the quadratic form above::

    H ← H + λ·I,  λ = damp · mean(diag H)                     # dampening (damp = 0.01 by default)
    U = chol(H⁻¹)  (upper: H⁻¹ = UᵀU)
    for column i in order:
        q_i  = clip(round_half_even(w_i / s_i), qmin, qmax)    # w_i / s_i in float32, as RTN computes it
        e_i  = (w_i − q_i·s_i) / U[i, i]
        w_j ← w_j − e_i · U[i, j]   for every j > i            # the error moved onto the later columns

The updates are applied lazily: inside a block of 128 columns immediately, to the columns after the block once
per block (``W[:, after] −= E_block · U[block, after]``), the same arithmetic regrouped.

The grid is fp8conv's RTN grid for the layer's target and grouping (:func:`~.weights.quantize_weights`): its
scales ``s`` (per output channel, or per block of K) are computed *before* GPTQ from the float weights, as in
the reference GPTQ with static groups (``--static-groups``), and stay fixed; only the integers change. So the
emitted model has exactly RTN's nodes, scales and types, and act-order (columns in decreasing ``diag H``,
``act_order=True``) needs no reordering of blocks.

Dead inputs (``H[k, k] = 0``: the input channel was 0 on every calibration sample) get ``H[k, k] = 1`` and no
coupling, so their weights are rounded to nearest (the reference sets them to 0; rounding keeps what the
model has for inputs the calibration data did not exercise). With ``H ∝ I`` nothing couples and GPTQ is RTN,
bit for bit.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from fp8conv.runtime.integer_quantization.groups import group_weights
from fp8conv.runtime.integer_quantization.weights import QuantizedWeights, dequantize

__all__ = ["DEFAULT_BLOCK", "DEFAULT_DAMP", "GptqFactor", "GptqResult", "factor_hessian", "gptq", "output_error"]

logger = logging.getLogger(__name__)

DEFAULT_DAMP = 0.01
"""λ as a fraction of ``mean(diag H)`` (the reference GPTQ's ``percdamp``)."""

DEFAULT_BLOCK = 128
"""Columns per lazy-update block."""

_DAMP_RETRIES = 6  # λ grows tenfold per retry when H + λI is not numerically positive definite


@dataclasses.dataclass(frozen=True)
class GptqFactor:
    """What GPTQ needs of ``H``, computed once for every layer reading the same input (Q, K, V projections).

    Attributes:
        hessian: ``H`` as given (undampened; for the reported errors).
        order: The order the columns are quantized in (``argsort(−diag H)`` with act-order, else ``0..K−1``).
        upper: ``U`` with ``(H' + λI)⁻¹ = UᵀU``, ``H'`` the dead-fixed ``H`` in that order.
        dead: Input channels with ``H[k, k] = 0``.
        damp: The λ used (absolute).
    """

    hessian: np.ndarray
    order: np.ndarray
    upper: np.ndarray
    dead: int
    damp: float


def factor_hessian(hessian: np.ndarray, *, damp: float = DEFAULT_DAMP, act_order: bool = False) -> GptqFactor:
    """Dead inputs fixed, columns ordered, dampened, and ``U = chol((H + λI)⁻¹)`` (upper).

    Raises:
        ValueError: ``H`` not square or not finite, ``damp`` not positive, or ``H`` indefinite however dampened.
    """
    h = np.array(hessian, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"H must be square, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise ValueError("H is not finite")
    if not damp > 0:
        raise ValueError(f"damp must be > 0, got {damp!r}")
    dead = np.flatnonzero(np.diag(h) <= 0)
    h[dead, :] = 0.0
    h[:, dead] = 0.0
    h[dead, dead] = 1.0
    k = h.shape[0]
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    h_ordered = h[np.ix_(order, order)]
    upper, lam = _inverse_cholesky_upper(h_ordered, damp * float(np.mean(np.diag(h_ordered))))
    return GptqFactor(np.asarray(hessian, dtype=np.float64), order, upper, int(dead.size), lam)


@dataclasses.dataclass(frozen=True)
class GptqResult:
    """GPTQ's integer weights and what it achieved on the quadratic form.

    Attributes:
        weights: The integer weights, on the RTN grid (its scales, axis and block size), new integers.
        rtn_error: ``½ tr(ΔHΔᵀ)`` of RTN's integers (``Δ = W_q − W``): the layer-output MSE on the calibration
            inputs, summed over output channels (with the undampened ``H``).
        gptq_error: The same of GPTQ's integers.
        dead_columns: Input channels with ``H[k, k] = 0``.
        damp: The λ used (absolute, after any retry).
    """

    weights: QuantizedWeights
    rtn_error: float
    gptq_error: float
    dead_columns: int
    damp: float


def output_error(delta: np.ndarray, hessian: np.ndarray) -> float:
    """``½ tr(Δ H Δᵀ)`` for ``Δ [N, K]``: ``E‖x·Δᵀ‖²`` over the inputs whose ``H = 2XᵀX/n`` it is (float64)."""
    d = np.asarray(delta, dtype=np.float64)
    return float(0.5 * np.einsum("nk,nk->", d @ hessian, d))


def gptq(
    w: np.ndarray,
    grid: QuantizedWeights,
    hessian: np.ndarray,
    *,
    k_axis: int,
    damp: float = DEFAULT_DAMP,
    act_order: bool = False,
    block: int = DEFAULT_BLOCK,
    factor: GptqFactor | None = None,
) -> GptqResult:
    """Quantize a 2-D weight with GPTQ on the grid of its RTN quantization.

    Args:
        w: The float weight (float32), 2-D, in the layer's layout (``[K, N]`` for MatMul, ``[N, K]`` for a
            ``Gemm(transB=1)``).
        grid: Its RTN quantization (:func:`~.weights.quantize_weights`): scales, range, axis and block size
            are kept; per channel along N or blocked along K.
        hessian: ``H = 2XᵀX/n`` of the layer's inputs, ``[K, K]`` (float64, symmetric positive semi-definite).
        k_axis: The axis of ``w`` that is K (the one ``x`` is summed over).
        damp: λ as a fraction of ``mean(diag H)``, > 0.
        act_order: Quantize the columns in decreasing ``diag H`` (largest input energy first).
        block: Columns per lazy-update block.
        factor: :func:`factor_hessian` of ``hessian`` with these ``damp`` and ``act_order``, when the caller has
            it already (layers sharing an input); computed here otherwise.

    Returns:
        The integer weights and the errors of RTN and GPTQ on the quadratic form.

    Raises:
        ValueError: Shapes that do not match, a weight that is not 2-D, or an H that stays indefinite.
    """
    w32 = np.asarray(w, dtype=np.float32)
    if w32.ndim != 2 or k_axis not in (0, 1):
        raise ValueError(f"GPTQ needs a 2-D weight and k_axis 0 or 1, got shape {w32.shape}, k_axis {k_axis}")
    if grid.q.shape != w32.shape:
        raise ValueError(f"the grid's shape {grid.q.shape} is not the weight's {w32.shape}")
    k = w32.shape[k_axis]
    if factor is None:
        factor = factor_hessian(hessian, damp=damp, act_order=act_order)
    if factor.hessian.shape != (k, k):
        raise ValueError(f"H must be [{k}, {k}] for a weight with K = {k}, got {factor.hessian.shape}")
    # Rows = output channels, columns = K (the layout of the math above).
    weight = (w32 if k_axis == 1 else w32.T).astype(np.float64)
    scale = _element_scales(grid)
    scale = scale if k_axis == 1 else scale.T
    rtn = grid.q if k_axis == 1 else grid.q.T
    order = factor.order
    q_ordered = _quantize_columns(weight[:, order], scale[:, order], factor.upper, grid.qmin, grid.qmax, block)
    q = np.empty_like(q_ordered)
    q[:, order] = q_ordered

    q_layout = (q if k_axis == 1 else q.T).astype(np.int8)
    result = _with_integers(grid, w32, q_layout)
    rtn_error = output_error(rtn.astype(np.float64) * scale - weight, factor.hessian)
    gptq_error = output_error(q.astype(np.float64) * scale - weight, factor.hessian)
    logger.debug(
        "GPTQ %s: output error %.4g -> %.4g (%d dead inputs, damp %.3g)",
        w32.shape,
        rtn_error,
        gptq_error,
        factor.dead,
        factor.damp,
    )
    return GptqResult(result, rtn_error, gptq_error, factor.dead, factor.damp)


def _element_scales(grid: QuantizedWeights) -> np.ndarray:
    """The float32 scale of every element of the weight (the grid's scales broadcast as DequantizeLinear does)."""
    ones = dataclasses.replace(grid, q=np.ones_like(grid.q))
    return dequantize(ones)


def _inverse_cholesky_upper(h: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """``U`` with ``(H + λI)⁻¹ = UᵀU`` (upper triangular), and the λ used (tenfold per failed attempt).

    One Cholesky factorization and one inverse: with ``J`` the reversal permutation and ``L = chol(J H J)``
    (lower), ``R = J L J`` is upper triangular with ``H = R Rᵀ``, so ``H⁻¹ = R⁻ᵀ R⁻¹`` and ``U = R⁻¹``.
    """
    eye = np.eye(h.shape[0])
    for attempt in range(_DAMP_RETRIES):
        try:
            lower = np.linalg.cholesky((h + lam * eye)[::-1, ::-1])
            return np.linalg.inv(lower[::-1, ::-1]), lam
        except np.linalg.LinAlgError:
            if attempt == _DAMP_RETRIES - 1:
                break
            logger.info("GPTQ: H + %.3g I is not positive definite; dampening tenfold", lam)
            lam = lam * 10.0 if lam > 0 else 1e-8
    raise ValueError(f"H stays indefinite with dampening up to {lam:.3g} (non-finite calibration inputs?)")


def _quantize_columns(
    weight: np.ndarray, scale: np.ndarray, upper: np.ndarray, qmin: int, qmax: int, block: int
) -> np.ndarray:
    """The column-by-column quantize-and-propagate loop with lazy block updates; integers ``[N, K]`` (float64).

    ``q_i = clip(round_half_even(float32(w_i) / s_i))``: the quotient in float32, as RTN computes it, so a
    column no error reached gets RTN's integers exactly.
    """
    w = weight.copy()
    rows, columns = w.shape
    q = np.empty((rows, columns))
    for start in range(0, columns, block):
        end = min(start + block, columns)
        w_block = w[:, start:end]  # a view: updated in place
        errors = np.empty((rows, end - start))
        u_block = upper[start:end, start:end]
        for i in range(end - start):
            column = w_block[:, i].astype(np.float32)
            s = scale[:, start + i]
            q_column = np.clip(np.rint(column / s), qmin, qmax)
            q[:, start + i] = q_column
            dequantized = (q_column.astype(np.float32) * s).astype(np.float64)
            error = (w_block[:, i] - dequantized) / u_block[i, i]
            w_block[:, i + 1 :] -= np.outer(error, u_block[i, i + 1 :])
            errors[:, i] = error
        if end < columns:
            w[:, end:] -= errors @ upper[start:end, end:]
    return q


def _with_integers(grid: QuantizedWeights, w: np.ndarray, q: np.ndarray) -> QuantizedWeights:
    """``grid`` with integers ``q`` and its per-group ``mse`` measured again (``mean (w − q s)²``)."""
    changed = dataclasses.replace(grid, q=q)
    error = np.square(w - dequantize(changed), dtype=np.float32)
    groups = group_weights(error, grid.axis, grid.block_size)
    mse = groups.scales(groups.data.sum(axis=1, dtype=np.float64) / groups.sizes)
    return dataclasses.replace(changed, mse=mse)
