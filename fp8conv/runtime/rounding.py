"""The arithmetic definition of rounding a float32 to a :class:`FloatFormat`.

This is the slow, obviously-correct path: every value is handled in float64 (which holds every float32
exactly, and every power-of-two scaling of it) with the textbook formula

    e = max(floor(log2 |x|), e_min)          # exponent of the binade, clamped at the subnormal one
    q = 2^(e - M) * round_half_even(|x| / 2^(e - M))

followed by the format's rules for overflow, underflow, signed zero and NaN. The fast path in
:mod:`fp8conv.runtime.emulator` evaluates this function once per *class* of float32 inputs to build its
lookup tables, so both paths are the same function by construction; the tests check both against
``ml_dtypes`` bit for bit.
"""

from __future__ import annotations

import numpy as np

from fp8conv.runtime.formats import FloatFormat

__all__ = ["round_magnitude", "encode_reference", "decode_reference"]


def round_magnitude(magnitude: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round finite non-negative float64 magnitudes to the format's grid, ignoring its maximum.

    Ties go to the even significand (round half to even). Without subnormals, magnitudes below the
    smallest normal round to 0 or to the smallest normal (a tie goes to 0); a format without zero
    (``e8m0fnu``) returns its smallest value instead of 0.

    Args:
        magnitude: Finite values >= 0, float64.
        fmt: The target format.

    Returns:
        The rounded magnitudes (float64), possibly above ``fmt.max_value`` (overflow is the caller's).
    """
    _, k = np.frexp(magnitude)
    exponent = np.maximum(k.astype(np.int64) - 1, fmt.min_exponent)
    shift = exponent - fmt.mantissa_bits
    rounded = np.ldexp(np.rint(np.ldexp(magnitude, -shift)), shift)
    if not fmt.has_subnormal:
        below = magnitude < fmt.min_normal
        if fmt.has_zero:
            flushed = np.where(magnitude > fmt.min_normal / 2, fmt.min_normal, 0.0)
        else:
            flushed = np.full_like(magnitude, fmt.min_normal)
        rounded = np.where(below, flushed, rounded)
    return rounded


def _magnitude_codes(value: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Exponent/mantissa bits of on-grid magnitudes (no sign), as int64."""
    m = fmt.mantissa_bits
    _, k = np.frexp(value)
    exponent = np.maximum(k.astype(np.int64) - 1, fmt.min_exponent)
    normal = value >= fmt.min_normal
    # Subnormals: value = f * 2^(e_min - M); normals: value = (1 + f / 2^M) * 2^e.
    subnormal_code = np.ldexp(value, -(fmt.min_exponent - m))
    field = np.where(normal, exponent + fmt.bias, 0)
    fraction = np.ldexp(value, -exponent) - 1.0
    normal_code = (field << m) + np.ldexp(fraction, m).astype(np.int64)
    if fmt.has_subnormal:
        return np.where(normal, normal_code, subnormal_code.astype(np.int64))
    return np.where(normal, normal_code, 0)


def _nan_codes(bits32: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """The code ``ml_dtypes`` produces for each float32 NaN pattern in ``bits32``."""
    sign = (bits32 >> 31).astype(np.int64)
    magnitude_bits = fmt.exponent_bits + fmt.mantissa_bits
    top = (1 << magnitude_bits) - 1
    if fmt.style == "fnuz":
        return np.full(bits32.shape, 1 << magnitude_bits, np.int64)
    if fmt.style == "fn":
        return (sign << magnitude_bits | top) if fmt.has_sign else np.full(bits32.shape, top, np.int64)
    if fmt.style == "ieee":
        # Every NaN becomes the canonical quiet NaN of its sign (payloads are not kept).
        payload = 1 << (fmt.mantissa_bits - 1)
        exponent_field = ((1 << fmt.exponent_bits) - 1) << fmt.mantissa_bits
        return sign << magnitude_bits | exponent_field | payload
    # No NaN in the format: ml_dtypes yields a zero whose sign is the opposite of the NaN's.
    return (1 - sign) << magnitude_bits


def encode_reference(x: np.ndarray, fmt: FloatFormat, saturate: bool) -> np.ndarray:
    """Encode float32 values to codes, by arithmetic. See :func:`fp8conv.fp8.encode` for the contract.

    Args:
        x: float32 array.
        fmt: Target format (at most 8 bits).
        saturate: Clip to ``±max_value`` before rounding (ONNX ``saturate=1``); otherwise overflow gives
            Inf, NaN or ±max as the format defines (``ml_dtypes`` cast).

    Returns:
        uint8 codes, same shape as ``x``.
    """
    x = np.asarray(x, dtype=np.float32)
    bits32 = x.view(np.uint32)
    with np.errstate(invalid="ignore"):
        wide = x.astype(np.float64)
    if saturate:
        wide = np.clip(wide, -fmt.max_value, fmt.max_value)
    nan = np.isnan(wide)
    negative = np.signbit(wide)
    magnitude = np.abs(np.where(nan, 0.0, wide))
    infinite = np.isinf(magnitude)
    rounded = np.where(infinite, np.inf, round_magnitude(np.where(infinite, 0.0, magnitude), fmt))
    overflow = rounded > fmt.max_value
    magnitude_bits = fmt.exponent_bits + fmt.mantissa_bits
    codes = _magnitude_codes(np.minimum(rounded, fmt.max_value), fmt)
    if fmt.has_sign:
        if fmt.style == "fnuz":
            negative &= rounded != 0.0
        codes = np.where(negative, codes | (1 << magnitude_bits), codes)
    nan_codes = _nan_codes(bits32, fmt)
    if fmt.style == "ieee":
        inf_codes = (((1 << fmt.exponent_bits) - 1) << fmt.mantissa_bits) | (
            negative.astype(np.int64) << magnitude_bits
        )
        codes = np.where(overflow, inf_codes, codes)
    elif fmt.style in ("fn", "fnuz"):
        codes = np.where(overflow, nan_codes, codes)
    # style "none": overflow already clamped to ±max above.
    if not fmt.has_sign:
        codes = np.where(negative | (wide == 0.0), nan_codes, codes)
    codes = np.where(nan, nan_codes, codes)
    return codes.astype(np.uint8)


def decode_reference(codes: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Decode codes to float32, by arithmetic. See :func:`fp8conv.fp8.decode` for the contract."""
    codes = np.asarray(codes).astype(np.int64) & ((1 << fmt.bits) - 1)
    m = fmt.mantissa_bits
    magnitude_bits = fmt.exponent_bits + m
    sign = (codes >> magnitude_bits) & 1 if fmt.has_sign else np.zeros_like(codes)
    field = (codes >> m) & ((1 << fmt.exponent_bits) - 1)
    fraction = codes & ((1 << m) - 1)
    if fmt.has_subnormal:
        value = np.where(
            field == 0,
            np.ldexp(fraction.astype(np.float64), fmt.min_exponent - m),
            np.ldexp(1.0 + np.ldexp(fraction.astype(np.float64), -m), field - fmt.bias),
        )
    elif fmt.has_zero:
        value = np.where(field == 0, 0.0, np.ldexp(1.0 + np.ldexp(fraction.astype(np.float64), -m), field - fmt.bias))
    else:
        value = np.ldexp(1.0 + np.ldexp(fraction.astype(np.float64), -m), field - fmt.bias)
    value = np.where(sign == 1, -value, value)
    magnitude = codes & ((1 << magnitude_bits) - 1)
    top_field = (1 << fmt.exponent_bits) - 1
    if fmt.style == "ieee":
        value = np.where((field == top_field) & (fraction == 0), np.copysign(np.inf, value), value)
        value = np.where((field == top_field) & (fraction != 0), np.nan, value)
    elif fmt.style == "fn":
        value = np.where(magnitude == (1 << magnitude_bits) - 1, np.nan, value)
    elif fmt.style == "fnuz":
        value = np.where(codes == 1 << magnitude_bits, np.nan, value)
    return value.astype(np.float32)
