"""Requantization of weights to symmetric INT8 / 7-bit / INT4, per tensor, per channel or blocked.

Math (zero point 0 everywhere)::

    q = clip(round_half_even(w / s), qmin, qmax)        # w / s in float32
    dequantize(q) = q * s                               # float32: exactly ONNX DequantizeLinear

per *group* of weights sharing one scale ``s``: the whole tensor (``axis=None``), one slice along ``axis``
(per channel, ONNX's 1-D per-axis scale), or a block of ``block_size`` consecutive elements along
``axis`` (ONNX opset-21 blocked scale of ``w``'s rank with ``ceil(D / block_size)`` on ``axis``; the last
block may be shorter).

The scale is ``s = r * max|w_group| / qmax`` with clipping ratio ``r``: ``r = 1`` for ``method="max"``
(no clipping); ``method="mse"`` picks, per group, the ``r`` minimizing ``sum (w - q s)^2`` over a coarse
grid ``0.50, 0.52, ..., 1.30`` refined to steps of 0.002 around the best, plus the ratios ``qmax / n``
near it that put the group's max exactly on an integer level ``n``. Ratios above 1 matter: the best INT
grid for FP8-trained weights ends slightly above their maximum (paper §6), where its step is a
power-of-two multiple of the FP8 scale and it reproduces the large FP8 values (e4m3fn: max 448 on level
112, step 4, ``r = 127 / 112``). The choice is pure MSE, so it may settle a few 1e-4 away from that ratio
when the drift wins more on rounding ties near zero than it loses on the large values. ``r = 1`` is
evaluated first and kept on ties, so the MSE result is never worse than ``max``.

The search scores a group on its distinct values weighed by their counts when it has few (FP8-trained
weights have at most 255 per output channel, 127 magnitudes): each value's float32 error is the same as
that of each of its copies, only the float64 summation order differs, so the choice is the same as on the
elements (a ratio must then beat ``r = 1`` by a relative 1e-12, far above that rounding, to be kept).

Integer ranges (``qmin, qmax``) and why:

* ``bits=8``: [-127, 127]. Symmetric, so ``-w`` quantizes to ``-q`` (sign-flip equivariant), the same
  convention as onnxruntime's symmetric weights; -128 would add 1/256 of range on one side only.
* ``bits=7`` (or ``bits=8, narrow_bits=7``): [-63, 63], int8 storage. onnxruntime's u8×s8 kernels on x86
  without VNNI saturate their int16 pair sums with full-range weights; [-64, 63] is safe. Using -64 too
  (the asymmetric-range trick: flip each channel's sign so its larger side gets -64) would make the step
  only 64/63 finer (1.6 %), at the price of a sign convention every consumer must know; [-63, 63] needs none.
* ``bits=4``: [-8, 7] with the scale defined by 7 (``s = r max|w| / 7``): the grid is symmetric for
  ``|w| <= 7.5 s``, and the 16th level -8 is used for free whenever clipping (``r < 1``) leaves negative
  weights below ``-7.5 s``. At 4 bits that level is 1/16 of the grid, worth having; the MSE search uses it.
* ``narrow_bits=n`` (``n < bits``): [-(2^(n-1) - 1), 2^(n-1) - 1] in the storage type of ``bits``.

An all-zero group gets scale 1.0 (any positive value is exact; 1.0 keeps a bias scale ``s_x * s_w`` far
from int32 overflow).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np

from fp8conv.runtime.emulator import check_scale
from fp8conv.runtime.integer_types import INTEGER_TYPES, IntegerFormat

__all__ = [
    "QuantizedWeights",
    "WeightCodes",
    "WeightMethod",
    "dequantize",
    "quantize_bias",
    "quantize_weights",
    "weight_range",
    "weight_storage_type",
]

logger = logging.getLogger(__name__)

WeightMethod = Literal["mse", "max"]

_COARSE_RATIOS = np.arange(25, 66) / 50.0  # 0.50 .. 1.30, step 0.02; contains 1.0 exactly
_FINE_OFFSETS = np.arange(-9, 10) / 500.0  # -0.018 .. 0.018, step 0.002
_CHUNK_ELEMENTS = 1 << 18
_CODE_CHUNK_ELEMENTS = 1 << 16  # intp indices of a chunk: 512 KiB
_DISTINCT_MIN_LENGTH = 64
_DISTINCT_PROBE_ROWS = 4
_DISTINCT_MIN_GAIN = 4
_DISTINCT_MARGIN = 1e-12
_INT32 = INTEGER_TYPES["int32"]
_INT32_MIN, _INT32_MAX = _INT32.qmin, _INT32.qmax
_WEIGHT_STORAGE = {4: INTEGER_TYPES["int4"], 8: INTEGER_TYPES["int8"]}


@dataclasses.dataclass(frozen=True)
class WeightCodes:
    """A weight given by its codes, ``w = values[codes] * scale`` (float32 product), exactly.

    FP8-trained weights are such codes: the search for per-channel ranges then counts codes per channel
    (one pass) instead of sorting each channel to find its distinct values.

    Attributes:
        codes: uint8 codes, the weight's shape.
        values: float32 value of each code (``2**bits`` entries; NaN/Inf for codes that never occur).
        scale: float32 scale: 0-d (per tensor) or 1-D along ``axis``.
        axis: The axis of a 1-D scale (None for 0-d).
        sign_bit: The code bit that holds the sign (codes ``c`` and ``c | sign_bit`` are ``±v``), or None.
    """

    codes: np.ndarray
    values: np.ndarray
    scale: np.ndarray
    axis: int | None
    sign_bit: int | None

    def decode(self) -> np.ndarray:
        """The float32 weight ``values[codes] * scale`` (one float32 product per element)."""
        scale = np.asarray(self.scale, dtype=np.float32)
        if self.axis is not None:
            scale = scale.reshape([-1 if d == self.axis else 1 for d in range(self.codes.ndim)])
        return np.multiply(np.asarray(self.values, dtype=np.float32).take(self.codes), scale, dtype=np.float32)


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


def weight_storage_type(bits: int) -> IntegerFormat:
    """The integer type weights of ``bits`` storage bits are stored as: int4 (4) or int8 (8; 7-bit values too).

    Raises:
        ValueError: For another width.
    """
    if bits not in _WEIGHT_STORAGE:
        raise ValueError(f"integer weights are stored in 4 or 8 bits, got {bits!r}")
    return _WEIGHT_STORAGE[bits]


def weight_range(bits: int, narrow_bits: int | None = None) -> tuple[int, int, int]:
    """Storage width and integer range for a weight precision (see the module docstring for why).

    Args:
        bits: 8, 7 (7-bit values in int8 storage) or 4.
        narrow_bits: Optional narrower value range, ``2 <= narrow_bits <= bits``.

    Returns:
        ``(storage_bits, qmin, qmax)``.

    Raises:
        ValueError: For unsupported widths.
    """
    if bits not in (4, 7, 8) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8, 7 (AVX2-safe int8) or 4, got {bits!r}")
    storage = weight_storage_type(4 if bits == 4 else 8)
    if narrow_bits is None or narrow_bits == bits:
        narrow_bits = bits
    elif isinstance(narrow_bits, bool) or not isinstance(narrow_bits, int) or not 2 <= narrow_bits <= bits:
        raise ValueError(f"narrow_bits must be an int in [2, {bits}] (or None), got {narrow_bits!r}")
    qmax = (1 << (narrow_bits - 1)) - 1  # the largest value of a signed narrow_bits integer
    qmin = storage.qmin if narrow_bits == storage.bits == 4 else -qmax  # int4 keeps its 16th level, -8
    return storage.bits, qmin, qmax


@dataclasses.dataclass(frozen=True)
class _Groups:
    """``w`` rearranged as a 2-D ``[G, K]`` array of groups (zero-padded ragged blocks), and the way back."""

    data: np.ndarray
    sizes: np.ndarray
    scale_shape: tuple[int, ...]
    restore: tuple[str, int | None, tuple[int, ...]]

    def scales(self, per_group: np.ndarray) -> np.ndarray:
        """Per-group values in ONNX scale layout."""
        kind, axis, moved = self.restore
        if kind == "blocked":
            assert axis is not None
            return np.moveaxis(per_group.reshape((*moved[:-1], -1)), -1, axis)
        return per_group.reshape(self.scale_shape)

    def ungroup(self, grouped: np.ndarray) -> np.ndarray:
        """A ``[G, K]`` array back in ``w``'s layout."""
        kind, axis, moved = self.restore
        if kind == "tensor":
            return grouped.reshape(moved)
        assert axis is not None
        if kind == "channel":
            return np.moveaxis(grouped.reshape(moved), 0, axis)
        length = moved[-1]
        flat = grouped.reshape((*moved[:-1], -1))[..., :length]
        return np.moveaxis(flat, -1, axis)


def _group(w: np.ndarray, axis: int | None, block_size: int | None) -> _Groups:
    if axis is None:
        return _Groups(w.reshape(1, -1), np.array([w.size]), (), ("tensor", None, w.shape))
    if block_size is None:
        moved = np.moveaxis(w, axis, 0)
        data = moved.reshape(w.shape[axis], -1)
        sizes = np.full(w.shape[axis], data.shape[1])
        return _Groups(data, sizes, (w.shape[axis],), ("channel", axis, moved.shape))
    moved = np.moveaxis(w, axis, -1)
    length = moved.shape[-1]
    blocks = -(-length // block_size)
    padded = np.zeros((*moved.shape[:-1], blocks * block_size), dtype=np.float32)
    padded[..., :length] = moved
    sizes = np.full((*moved.shape[:-1], blocks), block_size)
    sizes[..., -1] = length - (blocks - 1) * block_size
    scale_shape = tuple(blocks if d == axis else n for d, n in enumerate(w.shape))
    return _Groups(padded.reshape(-1, block_size), sizes.reshape(-1), scale_shape, ("blocked", axis, moved.shape))


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
        coded = _as_channel_groups(w, axis) if block_size is None else None
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
    groups = _group(array, axis, block_size)
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


def _as_channel_groups(codes: WeightCodes, axis: int | None) -> WeightCodes | None:
    """``codes`` as ``[G, K]`` groups along ``axis`` (non-negative) with one scale each, when its scale allows."""
    if axis is None or (codes.axis is not None and codes.axis % codes.codes.ndim != axis):
        return None
    channels = codes.codes.shape[axis]
    return WeightCodes(
        codes=np.moveaxis(codes.codes, axis, 0).reshape(channels, -1),
        values=codes.values,
        scale=np.broadcast_to(np.asarray(codes.scale, dtype=np.float32).reshape(-1), (channels,)),
        axis=0,
        sign_bit=codes.sign_bit,
    )


def _scale_for(amax: np.ndarray, ratio: np.ndarray, qmax: int) -> np.ndarray:
    """float32 ``ratio * amax / qmax`` (computed in float64, rounded once); 1.0 for all-zero groups."""
    scale = (ratio * amax.astype(np.float64) / qmax).astype(np.float32)
    return np.where(amax > 0, np.maximum(scale, np.finfo(np.float32).tiny), np.float32(1.0))


def _integers(data: np.ndarray, scale: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """``clip(round_half_even(data / scale), qmin, qmax)`` (float32-valued) for ``[G, K]`` data, ``[G]`` scales."""
    return np.clip(np.rint(data / scale[:, None]), qmin, qmax)


def _squared_error(
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


def _quantize_groups(
    data: np.ndarray, qmin: int, qmax: int, *, search: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group ratio, squared error, scale and integers.

    The search scores each group on its distinct values weighed by their counts (:func:`_distinct`) when that
    shrinks it enough, otherwise on its elements: the per-element float32 errors are the same either way, only
    the float64 summation order differs. The reported squared error is measured on the elements.
    """
    rows = max(1, _CHUNK_ELEMENTS // max(data.shape[1], 1))
    amax = np.concatenate([np.abs(data[i : i + rows]).max(axis=1) for i in range(0, data.shape[0], rows)])
    ratio = np.ones(data.shape[0])
    if search:
        points, counts = _distinct(data, absolute=qmin == -qmax)
        ratio = _search_ratios(points, counts, amax, qmin, qmax)
    scale = _scale_for(amax, ratio, qmax)
    q = np.empty_like(data)
    squared = np.empty(data.shape[0])
    for i in range(0, data.shape[0], rows):
        part = slice(i, i + rows)
        q[part] = _integers(data[part], scale[part], qmin, qmax)
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
    distinct values (:func:`_pack_distinct`, the arrays :func:`_distinct` would sort out); each code's integer
    ``clip(rint(v / s))`` is computed once per group and gathered by code. The squared error is
    ``sum count * (v - q s)^2`` over codes (the same float32 errors as on the elements, summed in another
    order). None when the codes cannot stand for the values (a NaN or Inf weight, or the search needs the
    elements): the caller takes :func:`_quantize_groups`.

    Returns:
        ``(ratio, squared error, scale, q [G, K] int8, (min v, max v))``, or None.
    """
    groups = coded.codes.shape[0]
    table = np.asarray(coded.values, dtype=np.float32)
    per_code = _code_counts(coded)
    held = per_code > 0
    if not np.isfinite(table[held.any(axis=0)]).all():
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        values = np.where(held, np.multiply(table[None, :], coded.scale[:, None], dtype=np.float32), np.float32(0))
    amax = np.abs(values).max(axis=1)
    ratio = np.ones(groups)
    if search:
        distinct = _pack_distinct(coded, per_code, absolute=qmin == -qmax)
        if distinct is None:
            return None
        ratio = _search_ratios(*distinct, amax, qmin, qmax)
    scale = _scale_for(amax, ratio, qmax)
    q_table = _integers(values, scale, qmin, qmax)
    error = values - q_table * scale[:, None]
    squared = (np.square(error).astype(np.float64) * per_code).sum(axis=1)
    present = values[held]
    value_range = (float(present.min()), float(present.max()))
    return ratio, squared, scale, _gather_codes(q_table.astype(np.int8), coded.codes), value_range


def _code_rows(codes: np.ndarray, size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Row chunks of ``[G, K]`` codes as flat cell indices ``row * size + code`` (rows counted within the chunk).

    Chunks of about 64 Ki elements keep the intp indices in cache.
    """
    groups, length = codes.shape
    rows = max(1, _CODE_CHUNK_ELEMENTS // max(length, 1))
    offsets = (np.arange(min(rows, groups)) * size)[:, None]
    for start in range(0, groups, rows):
        part = slice(start, min(start + rows, groups))
        index = codes[part].astype(np.intp)
        index += offsets[: index.shape[0]]
        yield part, index


def _code_counts(coded: WeightCodes) -> np.ndarray:
    """``counts [G, C]``: how often each code occurs in each group."""
    size = np.asarray(coded.values).size
    counts = np.empty((coded.codes.shape[0], size), dtype=np.int64)
    for part, index in _code_rows(coded.codes, size):
        counts[part] = np.bincount(index.reshape(-1), minlength=index.shape[0] * size).reshape(-1, size)
    return counts


def _gather_codes(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[g, codes[g, k]]`` for a ``[G, C]`` table and ``[G, K]`` codes."""
    out = np.empty(codes.shape, dtype=table.dtype)
    for part, index in _code_rows(codes, table.shape[1]):
        out[part] = table[part].reshape(-1).take(index)
    return out


def _search_ratios(points: np.ndarray, counts: np.ndarray | None, amax: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """:func:`_search` over row chunks of bounded size (rows are independent)."""
    ratio = np.ones(points.shape[0])
    rows = max(1, _CHUNK_ELEMENTS // max(points.shape[1], 1))
    for i in range(0, points.shape[0], rows):
        part = slice(i, i + rows)
        ratio[part] = _search(points[part], None if counts is None else counts[part], amax[part], qmin, qmax)
    return ratio


def _search(points: np.ndarray, counts: np.ndarray | None, amax: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Per-group ratio minimizing ``sum count * (w - q s)^2``: 1, then the coarse ratios, then refinements."""
    work = np.empty_like(points)

    def error(ratio: np.ndarray) -> np.ndarray:
        return _squared_error(points, _scale_for(amax, ratio, qmax), qmin, qmax, work, counts)

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


def _distinct(data: np.ndarray, *, absolute: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Each group's distinct values (of ``|w|`` when ``absolute``) and their counts, when that shrinks the groups.

    Returns ``(values [G, U], counts [G, U] float64)``, rows padded with value 0 and count 0 (adding 0 to any
    squared error), or ``(data, None)`` when the groups are shorter than 64 or a group has more than ``K / 4``
    distinct values (a probe of the first few groups decides before sorting them all). FP8-trained weights
    have at most 255 distinct values per output channel (127 magnitudes), so a 3x3x512 kernel (K = 4608)
    shrinks about 30-fold. ``absolute`` is valid for a symmetric integer range only: ``w`` and ``-w`` then
    have the same float32 error (round half to even and the clip are odd functions).
    """
    groups, length = data.shape
    if length < _DISTINCT_MIN_LENGTH:
        return data, None
    rows = max(_DISTINCT_PROBE_ROWS, _CHUNK_ELEMENTS // length)
    parts = []
    for i in range(0, groups, rows):
        chunk = np.abs(data[i : i + rows]) if absolute else data[i : i + rows]
        if i == 0 and _distinct_rows(chunk[:_DISTINCT_PROBE_ROWS])[0].shape[1] * _DISTINCT_MIN_GAIN > length:
            return data, None
        parts.append(_distinct_rows(chunk))
        if parts[-1][0].shape[1] * _DISTINCT_MIN_GAIN > length:
            return data, None
    width = max(part_values.shape[1] for part_values, _ in parts)
    values = np.zeros((groups, width), dtype=np.float32)
    counts = np.zeros((groups, width))
    for i, (part_values, part_counts) in zip(range(0, groups, rows), parts, strict=True):
        values[i : i + part_values.shape[0], : part_values.shape[1]] = part_values
        counts[i : i + part_counts.shape[0], : part_counts.shape[1]] = part_counts
    return values, counts


def _pack_distinct(coded: WeightCodes, per_code: np.ndarray, *, absolute: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_distinct`'s arrays, bit for bit, from the per-group code counts ``[G, C]``.

    Codes of one value merge into one class (``+0`` and ``-0``; ``c`` and ``c | sign_bit`` when ``absolute``),
    classes are ordered by value (the same order in every group, the scales being positive), and each group's
    present classes are packed to the left with their float32 values ``values[c] * scale[g]`` (``|.|`` when
    ``absolute``): the sorted, zero-padded rows of :func:`_distinct`. None where :func:`_distinct` would not
    shrink the groups (short groups, too many distinct values) or the codes cannot tell (``absolute`` without
    a sign bit, or two classes of one value): the caller then scores the elements.
    """
    groups, length = coded.codes.shape
    if length < _DISTINCT_MIN_LENGTH or (absolute and coded.sign_bit is None):
        return None
    table = np.asarray(coded.values, dtype=np.float32)
    size = table.size
    with np.errstate(invalid="ignore"):
        key = np.abs(table) if absolute else table
    classes = np.arange(size)
    if absolute:
        assert coded.sign_bit is not None
        classes &= ~coded.sign_bit
    held = per_code.any(axis=0)
    zeros = np.flatnonzero(held & (key == 0))
    if zeros.size:
        classes[zeros] = classes[zeros].min()
    if np.unique(key[held]).size != np.unique(classes[held]).size:
        return None
    order = np.argsort(classes, kind="stable")
    starts = np.flatnonzero(np.diff(classes[order], prepend=-1))
    by_class = np.add.reduceat(per_code[:, order], starts, axis=1)  # [G, classes], class = classes[order][starts]
    representative = order[starts]
    used = np.flatnonzero(by_class.any(axis=0))
    used = used[np.argsort(key[representative[used]], kind="stable")]
    columns = representative[used]
    counts = by_class[:, used]
    present = counts > 0
    width = int(np.count_nonzero(present, axis=1).max())
    if width * _DISTINCT_MIN_GAIN > length:
        return None
    row, column = np.nonzero(present)
    packed = np.cumsum(present, axis=1)[row, column] - 1
    points = np.zeros((groups, width), dtype=np.float32)
    packed_counts = np.zeros((groups, width))
    points[row, packed] = np.multiply(key[columns[column]], coded.scale[row], dtype=np.float32)
    packed_counts[row, packed] = counts[row, column]
    return points, packed_counts


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)`` of each row's distinct values, padded to the row with most (``-0.0 == 0.0``)."""
    groups, length = x.shape
    ordered = np.sort(x, axis=1)
    new = np.empty(ordered.shape, dtype=bool)
    new[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=new[:, 1:])
    first = np.flatnonzero(new)
    per_row = np.count_nonzero(new, axis=1)
    row = first // length
    column = np.arange(first.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    width = int(per_row.max())
    values = np.zeros((groups, width), dtype=np.float32)
    counts = np.zeros((groups, width))
    values[row, column] = ordered.reshape(-1)[first]
    counts[row, column] = np.diff(first, append=ordered.size)
    return values, counts


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


def quantize_bias(
    bias: np.typing.ArrayLike, input_scale: float, weight_scale: np.typing.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a bias to int32 with scale ``input_scale * weight_scale`` (what QLinearConv/QGemm need).

    The one bias quantizer: the emission's int32 biases are its results (``fp8conv.passes.emit_biases``).
    ``s_b = s_x * s_w`` is a float32 product (as onnxruntime computes it). ``q = round_half_even(b / s_b)``
    with the quotient of the two float32 values computed in float64, so the rounding decision is that of
    the exact quotient; the result saturates to ``[-2^31, 2^31 - 1]`` (a warning is logged when it does:
    the weight scale is then too small for this bias).

    Args:
        bias: 1-D float bias of length N.
        input_scale: Per-tensor activation scale ``s_x`` (positive, finite).
        weight_scale: Scalar, ``[1]`` (one for all channels) or ``[N]`` weight scales ``s_w`` (positive, finite).

    Returns:
        ``(q int32 [N], s_b float32 [N])``.

    Raises:
        ValueError: For a bias that is not 1-D or not finite, non-positive scales, a weight scale of another
            length, or a product that underflows to 0 in float32.
    """
    b = np.asarray(bias, dtype=np.float32)
    if b.ndim != 1 or not np.isfinite(b).all():
        raise ValueError(f"bias must be a finite 1-D array, got shape {b.shape}")
    s_x = np.float32(check_scale(np.float32(input_scale), "input_scale"))
    s_w = np.asarray(weight_scale, dtype=np.float32)
    if s_w.ndim > 1 or (s_w.ndim == 1 and s_w.shape[0] not in (1, b.shape[0])):
        raise ValueError(
            f"weight_scale must be a scalar or 1-D with {b.shape[0]} entries (per channel) or 1, got shape {s_w.shape}"
        )
    check_scale(s_w, "weight_scale")
    scale = np.broadcast_to(s_x * s_w, b.shape).astype(np.float32)
    if (scale == 0).any():
        raise ValueError("input_scale * weight_scale underflows to 0 in float32; the bias cannot be quantized")
    quotient = np.rint(b.astype(np.float64) / scale.astype(np.float64))
    saturated = (quotient < _INT32_MIN) | (quotient > _INT32_MAX)
    if saturated.any():
        logger.warning(
            "%d of %d bias values saturate int32 (scale %g too small for bias %g)",
            int(saturated.sum()),
            b.size,
            float(scale[saturated][0]),
            float(b[saturated][0]),
        )
    return np.clip(quotient, _INT32_MIN, _INT32_MAX).astype(np.int32), scale
