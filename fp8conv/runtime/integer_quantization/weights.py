"""quantize_weights: symmetric integer weights (INT8 / 7-bit / INT4), per tensor, per channel or blocked.

Per group (:mod:`.groups`) one scale ``s = r · max|w_group| / qmax`` (:mod:`.grid`), with ``r = 1`` for
``method="max"`` (no clipping) and the MSE-optimal ``r`` for ``method="mse"`` (:mod:`.mse_search`); the
integer range by the precision (:mod:`.integer_ranges`). Weights given as FP8 codes (:mod:`.codes`) are
quantized per channel from their code counts, without decoding (the same result, faster); other groupings
decode them first. :func:`dequantize` is exactly ONNX ``DequantizeLinear``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal

import numpy as np

from fp8conv.runtime.integer_quantization.codes import WeightCodes, as_channel_groups, code_counts, gather_codes
from fp8conv.runtime.integer_quantization.distinct_values import distinct, pack_distinct
from fp8conv.runtime.integer_quantization.grid import integers, scale_for
from fp8conv.runtime.integer_quantization.groups import CHUNK_ELEMENTS, group_weights
from fp8conv.runtime.integer_quantization.integer_ranges import weight_range, weight_storage_type
from fp8conv.runtime.integer_quantization.mse_search import search_ratios
from fp8conv.runtime.integer_types import IntegerFormat

__all__ = ["QuantizedWeights", "WeightMethod", "dequantize", "quantize_weights"]

logger = logging.getLogger(__name__)

WeightMethod = Literal["mse", "max"]


@dataclasses.dataclass(frozen=True)
class QuantizedWeights:
    """Integer weights and their scales, ready for an ONNX ``DequantizeLinear``.

    Attributes:
        q: int8 array of ``w``'s shape with values in ``[qmin, qmax]`` (INT4 values also stored as int8).
        scale: float32 scales: a 0-d array (per tensor), 1-D along ``axis`` (per channel), or ``w``'s rank
            with ``ceil(D / block_size)`` on ``axis`` (blocked).
        axis: Quantization axis (non-negative), None per tensor.
        block_size: Block length along ``axis``, None unless blocked.
        bits: Storage width: 8 (ONNX INT8) or 4 (ONNX INT4).
        qmin: Smallest integer used.
        qmax: Largest integer used; the scale is ``clip_ratio * max|w| / qmax``.
        clip_ratio: Chosen clipping ratio per group (shaped like ``scale``), for reports.
        mse: Mean squared error ``mean (w - q s)^2`` per group (shaped like ``scale``), for reports.
        method: ``mse`` or ``max``.
        value_range: ``(min w, max w)`` of the float weights, for reports.
    """

    q: np.ndarray
    scale: np.ndarray
    axis: int | None
    block_size: int | None
    bits: int
    qmin: int
    qmax: int
    clip_ratio: np.ndarray
    mse: np.ndarray
    method: str
    value_range: tuple[float, float]

    @property
    def storage_type(self) -> IntegerFormat:
        """The integer type ``q`` is stored as: int8 or int4."""
        return weight_storage_type(self.bits)

    @property
    def onnx_type(self) -> int:
        """The ``onnx.TensorProto`` data type of ``q``: INT8 or INT4."""
        return int(self.storage_type.data_type)


def _as_float32(w: np.typing.ArrayLike) -> np.ndarray:
    try:
        array = np.asarray(w, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"weights must be a numeric array, got {type(w).__name__}") from error
    if not np.isfinite(array).all():
        raise ValueError("weights contain NaN or Inf; fix the model's weights before quantizing")
    return array


def _check_options(
    shape: tuple[int, ...], axis: int | None, block_size: int | None, method: str
) -> tuple[int | None, int | None]:
    """``(axis, block_size)`` validated for weights of ``shape`` (axis made non-negative)."""
    ndim = len(shape)
    if method not in ("mse", "max"):
        raise ValueError(f"method must be 'mse' or 'max', got {method!r}")
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an int or None, got {axis!r}")
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of range for weights of rank {ndim}")
        axis = int(axis) % ndim
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size must be a positive int (e.g. 32, 64, 128) or None, got {block_size!r}")
        if axis is None:
            raise ValueError("blocked quantization needs axis= (the axis the blocks run along, K for MatMul)")
    if math.prod(shape) == 0:
        raise ValueError(f"weights are empty (shape {shape})")
    return axis, None if block_size is None else int(block_size)


def quantize_weights(
    w: np.typing.ArrayLike | WeightCodes,
    *,
    axis: int | None,
    bits: int,
    method: WeightMethod = "mse",
    block_size: int | None = None,
    narrow_bits: int | None = None,
) -> QuantizedWeights:
    """Quantize weights symmetrically (zero point 0), choosing one scale per group.

    Args:
        w: Float weights (converted to float32), finite; or the weights as FP8 codes (:class:`WeightCodes`):
            per-channel groups along the codes' own scale axis (or a per-tensor scale) are then quantized from
            code counts, without decoding (same result, faster); other groupings decode first.
        axis: Per-channel axis (e.g. 0 for Conv ``[M, C, kH, kW]``, 1 for MatMul ``[K, N]``); with
            ``block_size``, the axis the blocks run along; None for one scale per tensor.
        bits: 8 ([-127, 127]), 7 ([-63, 63] in int8: the AVX2-safe default) or 4 ([-8, 7]).
        method: ``mse`` (clipping-ratio search, default) or ``max``.
        block_size: Block length along ``axis`` (e.g. 32, 64, 128); the last block may be shorter.
        narrow_bits: Restrict the values to the symmetric range of fewer bits (see :func:`weight_range`).

    Returns:
        The integer weights, scales and per-group report data.

    Raises:
        ValueError: For non-finite or empty weights, a bad axis, block size, bit width or method.
    """
    storage, qmin, qmax = weight_range(bits, narrow_bits)
    if isinstance(w, WeightCodes):
        axis, block_size = _check_options(w.codes.shape, axis, block_size, method)
        coded = as_channel_groups(w, axis) if block_size is None else None
        result = _quantize_coded(coded, qmin, qmax, search=method == "mse") if coded is not None else None
        if result is not None:
            assert axis is not None
            shape = np.moveaxis(w.codes, axis, 0).shape
            ratio, squared, scale, q, value_range = result
            return _result(
                np.moveaxis(q.reshape(shape), 0, axis),
                scale,
                ratio,
                squared / q.shape[1],
                axis,
                value_range,
                storage=storage,
                qmin=qmin,
                qmax=qmax,
                method=method,
            )
        w = w.decode()
    array = _as_float32(w)
    axis, block_size = _check_options(array.shape, axis, block_size, method)
    groups = group_weights(array, axis, block_size)
    ratio, squared, scale, q = _quantize_groups(groups.data, qmin, qmax, search=method == "mse")
    return _result(
        groups.ungroup(q).astype(np.int8),
        groups.scales(scale),
        groups.scales(ratio),
        groups.scales(squared / groups.sizes),
        axis,
        (float(array.min()), float(array.max())),
        storage=storage,
        qmin=qmin,
        qmax=qmax,
        method=method,
        block_size=block_size,
    )


def _result(
    q: np.ndarray,
    scale: np.ndarray,
    ratio: np.ndarray,
    mse: np.ndarray,
    axis: int | None,
    value_range: tuple[float, float],
    *,
    storage: int,
    qmin: int,
    qmax: int,
    method: str,
    block_size: int | None = None,
) -> QuantizedWeights:
    logger.debug(
        "weights %s: %d groups, %s [%d, %d], clip ratio %.3f..%.3f",
        q.shape,
        ratio.size,
        method,
        qmin,
        qmax,
        float(ratio.min()),
        float(ratio.max()),
    )
    return QuantizedWeights(
        q=q.astype(np.int8, copy=False),
        scale=scale,
        axis=axis,
        block_size=block_size,
        bits=storage,
        qmin=qmin,
        qmax=qmax,
        clip_ratio=ratio,
        mse=mse,
        method=method,
        value_range=value_range,
    )


def _quantize_groups(
    data: np.ndarray, qmin: int, qmax: int, *, search: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group ratio, squared error, scale and integers.

    The search scores each group on its distinct values weighed by their counts (:func:`distinct`) when that
    shrinks it enough, otherwise on its elements: the per-element float32 errors are the same either way, only
    the float64 summation order differs. The reported squared error is measured on the elements.
    """
    rows = max(1, CHUNK_ELEMENTS // max(data.shape[1], 1))
    amax = np.concatenate([np.abs(data[i : i + rows]).max(axis=1) for i in range(0, data.shape[0], rows)])
    ratio = np.ones(data.shape[0])
    if search:
        points, counts = distinct(data, absolute=qmin == -qmax)
        ratio = search_ratios(points, counts, amax, qmin, qmax)
    scale = scale_for(amax, ratio, qmax)
    q = np.empty_like(data)
    squared = np.empty(data.shape[0])
    for i in range(0, data.shape[0], rows):
        part = slice(i, i + rows)
        q[part] = integers(data[part], scale[part], qmin, qmax)
        error = np.multiply(q[part], scale[part, None])
        np.subtract(data[part], error, out=error)
        np.square(error, out=error)
        squared[part] = error.sum(axis=1, dtype=np.float64)
    return ratio, squared, scale, q


def _quantize_coded(
    coded: WeightCodes, qmin: int, qmax: int, *, search: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[float, float]] | None:
    """:func:`_quantize_groups` for groups given as codes: the same ratios, scales and integers, from code counts.

    ``coded`` holds ``[G, K]`` groups, one scale per group (``axis=0``).

    Group ``g`` holds the values ``v[g, c] = values[c] * scale[g]`` (float32) of its codes ``c``, so one
    counting pass gives everything: ``max |w|`` is the largest ``|v|`` present; the search runs on the
    distinct values (:func:`pack_distinct`, the arrays :func:`distinct` would sort out); each code's integer
    ``clip(rint(v / s))`` is computed once per group and gathered by code. The squared error is
    ``sum count * (v - q s)^2`` over codes (the same float32 errors as on the elements, summed in another
    order). None when the codes cannot stand for the values (a NaN or Inf weight, or the search needs the
    elements): the caller takes :func:`_quantize_groups`.

    Returns:
        ``(ratio, squared error, scale, q [G, K] int8, (min v, max v))``, or None.
    """
    groups = coded.codes.shape[0]
    table = np.asarray(coded.values, dtype=np.float32)
    per_code = code_counts(coded)
    held = per_code > 0
    if not np.isfinite(table[held.any(axis=0)]).all():
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        values = np.where(held, np.multiply(table[None, :], coded.scale[:, None], dtype=np.float32), np.float32(0))
    amax = np.abs(values).max(axis=1)
    ratio = np.ones(groups)
    if search:
        distinct = pack_distinct(coded, per_code, absolute=qmin == -qmax)
        if distinct is None:
            return None
        ratio = search_ratios(*distinct, amax, qmin, qmax)
    scale = scale_for(amax, ratio, qmax)
    q_table = integers(values, scale, qmin, qmax)
    error = values - q_table * scale[:, None]
    squared = (np.square(error).astype(np.float64) * per_code).sum(axis=1)
    present = values[held]
    value_range = (float(present.min()), float(present.max()))
    return ratio, squared, scale, gather_codes(q_table.astype(np.int8), coded.codes), value_range


def dequantize(weights: QuantizedWeights) -> np.ndarray:
    """``q * scale`` in float32, broadcast as ONNX ``DequantizeLinear`` does (exactly its result).

    Returns:
        float32 array of ``q``'s shape.
    """
    q = weights.q.astype(np.float32)
    scale = np.asarray(weights.scale, dtype=np.float32)
    if weights.axis is None:
        return q * scale
    if weights.block_size is None:
        view = [1] * q.ndim
        view[weights.axis] = q.shape[weights.axis]
        return q * scale.reshape(view)
    expanded = np.repeat(scale, weights.block_size, axis=weights.axis)
    index = [slice(None)] * q.ndim
    index[weights.axis] = slice(0, q.shape[weights.axis])
    return q * expanded[tuple(index)]
