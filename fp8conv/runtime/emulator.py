"""Bit-exact, table-driven FP8 (and other minifloat) emulation in NumPy.

Numerics (the contract every other part of fp8conv is checked against):

* **Rounding**: round half to even on the significand, at every exponent, subnormals included.
* **saturate=True** (ONNX ``saturate=1``, the default of ``QuantizeLinear`` and ``Cast``): the input is
  first clipped to ``±max_value``, so overflow and ±Inf become ±max; NaN stays NaN (in formats with a
  NaN). Equal to ``ml_dtypes`` after ``np.clip(x, -max, max)``.
* **saturate=False**: exactly the ``ml_dtypes`` cast: overflow becomes ±Inf (``ieee`` formats), NaN
  (``fn``/``fnuz`` formats) or ±max (formats without specials).
* Every NaN becomes the format's canonical NaN; ``fnuz`` formats have no -0 (it encodes as +0).

How it is fast: the code a float32 rounds to depends only on its top 16 bits (sign, exponent and the
first 7 mantissa bits) and on whether any lower bit is set (the *sticky* bit), provided the format keeps
at most 5 mantissa bits (the rounding position then lies at or above float32 bit 17). So
``key = (bits >> 16) | (low 16 bits != 0)`` indexes a 65,536-entry table computed once per format by the
arithmetic definition in :mod:`fp8conv.runtime.rounding`. Arrays are processed in cache-sized chunks.
Formats with more mantissa bits take the arithmetic path.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from fp8conv.runtime.formats import FloatFormat, resolve_format
from fp8conv.runtime.rounding import decode_reference, encode_reference, round_magnitude

__all__ = ["check_scale", "decode", "encode", "fake_quantize", "float16_codes", "quantize_values"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_MAX_TABLE_MANTISSA_BITS = 5


def _uses_table(fmt: FloatFormat) -> bool:
    return fmt.mantissa_bits <= _MAX_TABLE_MANTISSA_BITS


def _class_representatives() -> np.ndarray:
    """One float32 per table key: the key's top 16 bits, with bit 16 and bit 0 set when sticky."""
    keys = np.arange(1 << 16, dtype=np.uint32)
    return ((keys << 16) | (keys & 1)).view(np.float32)


@functools.cache
def _encode_table(fmt: FloatFormat, saturate: bool) -> np.ndarray:
    table = encode_reference(_class_representatives(), fmt, saturate)
    table.flags.writeable = False
    return table


@functools.cache
def _decode_table(fmt: FloatFormat) -> np.ndarray:
    table = decode_reference(np.arange(1 << fmt.bits), fmt)
    table.flags.writeable = False
    return table


@functools.cache
def _value_table(fmt: FloatFormat, saturate: bool) -> np.ndarray:
    """float32 value each key rounds to: ``decode(encode(x))`` in one lookup."""
    table = _decode_table(fmt)[_encode_table(fmt, saturate)]
    table.flags.writeable = False
    return table


def _keys(bits: np.ndarray) -> np.ndarray:
    """Table keys of float32 bit patterns: top 16 bits, with bit 0 or-ed with 'any low bit set'."""
    key = (bits >> 16).astype(np.intp)
    key |= (bits << 16) != 0
    return key


def _lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[key(x)]`` for float32 ``x``, chunked so temporaries stay in cache."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    bits = flat.view(np.uint32)
    out = np.empty(flat.shape, dtype=table.dtype)
    for start in range(0, bits.size, _CHUNK):
        np.take(table, _keys(bits[start : start + _CHUNK]), out=out[start : start + _CHUNK])
    return out.reshape(np.shape(x))


def _scaled_lookup(x: np.ndarray, scale: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[key(x / scale)] * scale`` in float32, chunked; ``scale`` is a scalar or x-shaped."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    per_element = scale.ndim > 0
    scales = np.ascontiguousarray(np.broadcast_to(scale, x.shape)).reshape(-1) if per_element else scale
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, flat.size, _CHUNK):
        stop = start + _CHUNK
        s = scales[start:stop] if per_element else scales
        block = out[start:stop]
        np.divide(flat[start:stop], s, out=block)
        np.take(table, _keys(block.view(np.uint32)), out=block)
        np.multiply(block, s, out=block)
    return out.reshape(x.shape)


def _check_code_format(fmt: FloatFormat) -> None:
    if not fmt.fits_code:
        raise ValueError(
            f"format {fmt.name} has {fmt.bits} bits; encode/decode need at most 8 (use fake_quantize for wider formats)"
        )


def encode(x: np.typing.ArrayLike, fmt: str | FloatFormat, *, saturate: bool = True) -> np.ndarray:
    """Round values to a format and return their codes.

    Args:
        x: Values; converted to float32 first (round half to even) if they are not float32.
        fmt: A format name (``e4m3fn``, ``e5m2``, …) or a :class:`FloatFormat`.
        saturate: True: clip to ``±max`` first (ONNX ``saturate=1``). False: ``ml_dtypes`` cast
            semantics (overflow → Inf/NaN as the format defines).

    Returns:
        ``uint8`` codes of the same shape (sub-byte formats use the low bits, as ``ml_dtypes`` does).

    Raises:
        ValueError: For an unknown format name or a format wider than 8 bits.
    """
    fmt = resolve_format(fmt)
    _check_code_format(fmt)
    x = np.asarray(x, dtype=np.float32)
    if _uses_table(fmt):
        return _lookup(x, _encode_table(fmt, saturate))
    return encode_reference(x, fmt, saturate)


def decode(codes: np.typing.ArrayLike, fmt: str | FloatFormat) -> np.ndarray:
    """Return the float32 values of codes (bits above the format's width are ignored).

    Raises:
        ValueError: For an unknown format name or a format wider than 8 bits.
    """
    fmt = resolve_format(fmt)
    _check_code_format(fmt)
    codes = np.asarray(codes)
    table = _decode_table(fmt)
    if fmt.bits < 8:
        # Repeat the table so that every uint8 indexes it: bits above the width are ignored.
        table = np.tile(table, 256 >> fmt.bits)
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, flat.size, _CHUNK):
        np.take(table, flat[start : start + _CHUNK].astype(np.intp), out=out[start : start + _CHUNK])
    return out.reshape(codes.shape)


def quantize_values(x: np.typing.ArrayLike, fmt: str | FloatFormat, *, saturate: bool = True) -> np.ndarray:
    """``decode(encode(x))`` in one pass; also works for formats wider than 8 bits.

    Returns:
        float32 values on the format's grid (±max, ±Inf or NaN where the saturate mode says).
    """
    fmt = resolve_format(fmt)
    x = np.asarray(x, dtype=np.float32)
    if _uses_table(fmt) and fmt.fits_code:
        return _lookup(x, _value_table(fmt, saturate))
    return _quantize_values_arithmetic(x, fmt, saturate)


def _quantize_values_arithmetic(x: np.ndarray, fmt: FloatFormat, saturate: bool) -> np.ndarray:
    """The arithmetic path for formats the tables do not cover (more than 5 mantissa bits)."""
    wide = x.astype(np.float64)
    if saturate:
        wide = np.clip(wide, -fmt.max_value, fmt.max_value)
    magnitude = np.abs(wide)
    finite = np.isfinite(magnitude)
    rounded = np.where(finite, round_magnitude(np.where(finite, magnitude, 0.0), fmt), magnitude)
    overflow = rounded > fmt.max_value
    if fmt.style == "ieee":
        rounded = np.where(overflow, np.inf, rounded)
    elif fmt.style in ("fn", "fnuz"):
        rounded = np.where(overflow, np.nan, rounded)
    else:
        rounded = np.where(overflow, fmt.max_value, rounded)
    value = np.copysign(rounded, wide)
    if fmt.style == "fnuz":
        value = np.where(value == 0.0, 0.0, value)
    return value.astype(np.float32)


def check_scale(scale: np.typing.ArrayLike, what: str = "scale") -> np.ndarray:
    """``scale`` as float32, when it is a valid quantization scale: not empty, every entry positive and finite.

    The one definition of a valid scale (ONNX ``QuantizeLinear`` divides by it, ``DequantizeLinear`` multiplies):
    the emulator, normalization and lowering (:func:`fp8conv.passes.canonical.read_scale`), calibration's code
    histograms and the bias quantizer check here. It holds for the float32 value ONNX stores: a float64 ``1e-50``
    is 0 there, ``1e39`` Inf.

    Args:
        scale: The scale(s).
        what: What to call it in the message (``scale``, ``input_scale``, ``scale 'x_scale'``).

    Returns:
        The scale as a float32 array of its own shape.

    Raises:
        ValueError: ``<what> is empty; …`` or ``<what> must be positive and finite; found <the first bad entry> …``.
    """
    with np.errstate(over="ignore"):
        array = np.asarray(scale, dtype=np.float32)
    if array.size == 0:
        raise ValueError(f"{what} is empty; give a scalar, one scale per channel, or one per block")
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        first = array.reshape(-1)[np.argmax(bad.reshape(-1))]
        raise ValueError(f"{what} must be positive and finite; found {first!r} (replace it with a value > 0)")
    return array


def _broadcast_scale(scale: np.ndarray, shape: tuple[int, ...], axis: int | None, block_size: int | None) -> np.ndarray:
    """Validate ``scale`` against ONNX ``QuantizeLinear`` rules and return it broadcastable to ``shape``."""
    check_scale(scale)
    rank = len(shape)
    if block_size:
        return _blocked_scale(scale, shape, axis, block_size)
    if scale.size == 1 and (axis is None or scale.ndim == 0):
        return scale.reshape(())
    if axis is None:
        raise ValueError(f"scale has shape {scale.shape} but no axis was given; pass axis= for per-channel scales")
    if rank == 0:
        return scale.reshape(())
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for an input of rank {rank} (use -{rank}..{rank - 1})")
    axis %= rank
    if scale.ndim != 1 or scale.shape[0] != shape[axis]:
        raise ValueError(
            f"per-axis scale must be 1-D with {shape[axis]} entries (input dimension {axis}), got shape {scale.shape}"
        )
    view = [1] * rank
    view[axis] = shape[axis]
    return scale.reshape(view)


def _blocked_scale(scale: np.ndarray, shape: tuple[int, ...], axis: int | None, block_size: int) -> np.ndarray:
    rank = len(shape)
    if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if rank == 0:
        raise ValueError("blocked quantization needs an input of rank >= 1")
    axis = 1 if axis is None else axis
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for an input of rank {rank} (use -{rank}..{rank - 1})")
    axis %= rank
    blocks = -(-shape[axis] // block_size)
    expected = tuple(blocks if d == axis else n for d, n in enumerate(shape))
    if scale.shape != expected:
        raise ValueError(
            f"blocked scale must have shape {expected} (dimension {axis} = ceil({shape[axis]}/{block_size})), "
            f"got {scale.shape}; choose block_size so that ceil(D/block_size) equals the scale's length"
        )
    return np.repeat(scale, block_size, axis=axis)[tuple(slice(0, n) for n in shape)]


def fake_quantize(
    x: np.typing.ArrayLike,
    scale: np.typing.ArrayLike,
    fmt: str | FloatFormat,
    *,
    axis: int | None = None,
    block_size: int | None = None,
    saturate: bool = True,
) -> np.ndarray:
    """What ONNX ``QuantizeLinear`` → ``DequantizeLinear`` computes with a float8 zero point of 0.

    ``y = decode(encode(x / scale)) * scale``, with the division and the multiplication done in
    float32 (as onnxruntime does), rounding half to even, and saturation as in :func:`encode`.

    Args:
        x: Input; converted to float32.
        scale: A scalar (per tensor), a 1-D array of ``x.shape[axis]`` scales (per axis), or an array of
            ``x``'s rank with ``ceil(x.shape[axis] / block_size)`` on ``axis`` (blocked, opset 21).
            Converted to float32. Every entry must be positive and finite.
        fmt: Format name or :class:`FloatFormat` (any width; wider than 8 bits uses the arithmetic path).
        axis: Quantization axis for per-axis and blocked scales (ONNX default 1 when blocked).
        block_size: Block length along ``axis`` for blocked scales.
        saturate: See :func:`encode`.

    Returns:
        float32 array of ``x``'s shape.

    Raises:
        ValueError: For an unknown format, a scale that is <= 0, NaN or Inf, an axis out of range, or a
            scale shape that does not match the axis/block size.
    """
    fmt = resolve_format(fmt)
    x = np.asarray(x, dtype=np.float32)
    scale_array = np.asarray(scale, dtype=np.float32)
    broadcast = _broadcast_scale(scale_array, x.shape, axis, block_size)
    with np.errstate(over="ignore", invalid="ignore"):
        if _uses_table(fmt) and fmt.fits_code:
            return _scaled_lookup(x, broadcast, _value_table(fmt, saturate))
        y = _quantize_values_arithmetic(x / broadcast, fmt, saturate)
        y *= broadcast
    return y


@functools.cache
def float16_codes(fmt: FloatFormat) -> np.ndarray | None:
    """The code of each float16 bit pattern that is a value of ``fmt``, or None if some value is not a float16.

    For formats of at most 8 bits whose finite values are all float16 values (every named FP8 format but
    e8m0fnu): an int16 table of 65,536 entries indexed by the float16 bit pattern, holding the code that
    decodes to that value, ``-1`` for finite float16 values not in the format and ``-2`` for NaN and ±Inf.
    Each value gets the code :func:`encode` gives it (``-0.0`` is +0's code in formats without -0, and a
    value several codes decode to gets one of them).
    """
    if not fmt.fits_code:
        return None
    codes = np.arange(1 << fmt.bits, dtype=np.uint8)
    with np.errstate(over="ignore", invalid="ignore"):
        values = decode(codes, fmt)
    finite = np.isfinite(values)
    with np.errstate(over="ignore"):
        halves = values[finite].astype(np.float16)
    if not np.array_equal(halves.astype(np.float32), values[finite]):
        return None
    table = np.full(1 << 16, -1, dtype=np.int16)
    patterns = np.arange(1 << 16, dtype=np.uint32)
    table[(patterns & 0x7C00) == 0x7C00] = -2
    # the code encode() gives each value: several codes may decode to one value (formats without
    # subnormals), and -0.0 may have no code of its own (fnuz)
    table[halves.view(np.uint16)] = encode(values[finite], fmt)
    table[0x8000] = encode(np.float32(-0.0), fmt)
    table.setflags(write=False)
    return table
