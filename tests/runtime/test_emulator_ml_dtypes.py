"""The emulator against ml_dtypes, bit for bit, for every named format and both saturate modes.

Oracle: ``ml_dtypes`` casts. ``saturate=True`` is ``np.clip(x, -max, max).astype(dtype)`` (what ONNX
``saturate=1`` and ``onnx.numpy_helper.saturate_cast`` do); ``saturate=False`` is a plain ``astype``.
Every expected value here is computed by ml_dtypes from data built in this file; nothing is derived
from ``fp8conv`` except the values under test.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest

from fp8conv import fp8
from fp8conv.runtime.rounding import encode_reference

FORMAT_NAMES = list(fp8.FORMATS)
SATURATE = [True, False]

# A prime stride through all 2^32 float32 bit patterns: ~2.1M values, both signs, every float32
# exponent, every format code (checked by test_sweep_reaches_every_code), NaNs and Infs included.
SWEEP_STRIDE = 2039
LOW_PATTERNS = (0x0000, 0x0001, 0x8000, 0xFFFF)


def ml_dtype(name: str) -> type:
    if name in ("e2m3fn", "e3m2fn"):
        return getattr(ml_dtypes, f"float6_{name}")
    if name == "e2m1fn":
        return ml_dtypes.float4_e2m1fn
    return getattr(ml_dtypes, f"float8_{name}")


def ml_max(name: str) -> float:
    return float(ml_dtypes.finfo(ml_dtype(name)).max)


def ml_encode(x: np.ndarray, name: str, saturate: bool) -> np.ndarray:
    dtype = ml_dtype(name)
    with np.errstate(all="ignore"):
        if saturate:
            x = np.clip(x, -ml_max(name), ml_max(name))
        return x.astype(dtype).view(np.uint8)


def ml_decode(codes: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(codes, dtype=np.uint8).view(ml_dtype(name)).astype(np.float32)


def all_codes(name: str) -> np.ndarray:
    return np.arange(1 << ml_dtypes.finfo(ml_dtype(name)).bits, dtype=np.uint8)


def same_floats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: identical float32 bit patterns, or both NaN."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


def assert_same_floats(actual: np.ndarray, expected: np.ndarray, inputs: np.ndarray, what: str) -> None:
    ok = same_floats(actual, expected)
    if not ok.all():
        bad = np.flatnonzero(~ok)[:8]
        pytest.fail(
            f"{what}: {(~ok).sum()} mismatches; first: "
            + ", ".join(
                f"x={inputs.reshape(-1)[i]!r} got {actual.reshape(-1)[i]!r} want {expected.reshape(-1)[i]!r}"
                for i in bad
            )
        )


def assert_same_codes(actual: np.ndarray, expected: np.ndarray, inputs: np.ndarray, what: str) -> None:
    assert actual.dtype == np.uint8
    assert actual.shape == expected.shape
    ok = actual == expected
    if not ok.all():
        bad = np.flatnonzero(~ok)[:8]
        pytest.fail(
            f"{what}: {(~ok).sum()} mismatches; first: "
            + ", ".join(
                f"x={inputs.reshape(-1)[i]!r} (0x{inputs.reshape(-1)[i : i + 1].view(np.uint32)[0]:08x}) "
                f"got 0x{actual.reshape(-1)[i]:02x} want 0x{expected.reshape(-1)[i]:02x}"
                for i in bad
            )
        )


@functools.cache
def sweep() -> np.ndarray:
    bits = np.arange(0, 1 << 32, SWEEP_STRIDE, dtype=np.uint64).astype(np.uint32)
    return bits.view(np.float32)


@functools.cache
def top16_patterns() -> np.ndarray:
    top = np.arange(1 << 16, dtype=np.uint32) << 16
    bits = np.concatenate([top | low for low in LOW_PATTERNS])
    return bits.view(np.float32)


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


@functools.cache
def edge_values(name: str) -> np.ndarray:
    """Midpoints (±1 ulp), specials, subnormal and overflow boundaries, all from ml_dtypes facts."""
    info = ml_dtypes.finfo(ml_dtype(name))
    values = ml_decode(all_codes(name), name).astype(np.float64)
    grid = np.unique(np.abs(values[np.isfinite(values)]))  # sorted, includes 0 where the format has it
    mids = (grid[:-1] + grid[1:]) / 2  # exact in float64 and in float32
    mantissa_bits = int(info.nmant)
    top_ulp = 2.0 ** (np.floor(np.log2(float(info.max))) - mantissa_bits)
    overflow_tie = float(info.max) + top_ulp / 2
    tiny = float(info.smallest_subnormal)
    normal = float(info.smallest_normal)
    anchors = f32(
        [*grid, *mids, overflow_tie, float(info.max), tiny, tiny / 2, tiny * 1.5, normal, normal - tiny / 2, 0.0]
    )
    around = np.concatenate(
        [anchors, np.nextafter(anchors, f32(np.inf)), np.nextafter(anchors, f32(0.0)), np.nextafter(anchors, f32(-1))]
    )
    around = around[np.isfinite(around)]
    nan_bits = np.array([0x7FC00000, 0x7F800001, 0x7FFFFFFF, 0x7FA00000, 0x7F812345, 0x7FC00001], dtype=np.uint32)
    nans = np.concatenate([nan_bits, nan_bits | 0x80000000]).view(np.float32)
    far = min(2 * overflow_tie, float(np.finfo(np.float32).max))
    specials = f32(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            far,
            1e30,
            np.finfo(np.float32).max,
            np.finfo(np.float32).smallest_subnormal,
            np.finfo(np.float32).tiny,
        ]
    )
    out = np.concatenate([around, -around, specials, -specials, nans])
    assert np.isnan(out).sum() == nans.size
    return out


# ---------------------------------------------------------------------------------------------
# Format facts and decode


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_format_facts_match_ml_dtypes_finfo(name):
    fmt = fp8.FORMATS[name]
    info = ml_dtypes.finfo(ml_dtype(name))
    assert fmt.bits == info.bits
    assert fmt.mantissa_bits == info.nmant
    assert fmt.max_value == float(info.max)
    assert fmt.min_normal == float(info.smallest_normal)
    assert fmt.min_subnormal == float(info.smallest_subnormal)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decode_every_code(name):
    codes = all_codes(name)
    expected = ml_decode(codes, name)
    actual = fp8.decode(codes, name)
    assert actual.dtype == np.float32
    assert_same_floats(actual, expected, codes, f"decode {name}")
    # the float6/float4 formats and e8m0fnu are here too; make sure the comparison saw NaNs where they exist
    assert np.isnan(actual).sum() == np.isnan(expected).sum()


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decode_ignores_bits_above_the_width(name):
    bits = fp8.FORMATS[name].bits
    codes = np.arange(256, dtype=np.uint8)
    low = codes & np.uint8((1 << bits) - 1)
    assert_same_floats(fp8.decode(codes, name), fp8.decode(low, name), codes, f"decode {name} high bits")


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decode_keeps_shape(name):
    codes = all_codes(name)[:6].reshape(2, 3)
    assert fp8.decode(codes, name).shape == (2, 3)
    assert fp8.encode(np.zeros((4, 1, 2), np.float32), name).shape == (4, 1, 2)


# ---------------------------------------------------------------------------------------------
# Encode


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encode_strided_float32_sweep(name, saturate):
    x = sweep()
    assert_same_codes(fp8.encode(x, name, saturate=saturate), ml_encode(x, name, saturate), x, f"encode {name}")


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_sweep_reaches_every_code(name, saturate):
    """Guards the sweep itself: it must produce every code the cast can produce, and every float32 exponent."""
    x = sweep()
    seen = np.bincount(ml_encode(x, name, saturate), minlength=256) > 0
    # the codes a cast can produce are exactly the casts of the format's own values (+ NaN, Inf)
    reachable_inputs = np.concatenate([ml_decode(all_codes(name), name), f32([np.nan, -np.nan, np.inf, -np.inf])])
    reachable = np.bincount(ml_encode(reachable_inputs, name, saturate), minlength=256) > 0
    np.testing.assert_array_equal(seen, reachable)
    exponents = np.unique(x.view(np.uint32) >> 23)
    assert exponents.size == 512


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encode_every_top16_pattern(name, saturate):
    x = top16_patterns()
    assert_same_codes(fp8.encode(x, name, saturate=saturate), ml_encode(x, name, saturate), x, f"encode {name}")


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encode_midpoints_and_edges(name, saturate):
    x = edge_values(name)
    assert_same_codes(fp8.encode(x, name, saturate=saturate), ml_encode(x, name, saturate), x, f"encode {name}")


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_edges_exercise_rounding_both_ways(name):
    """The midpoint set must contain real ties: some round down and some round up (guards edge_values)."""
    x = edge_values(name)
    values = ml_decode(all_codes(name), name).astype(np.float64)
    grid = np.unique(np.abs(values[np.isfinite(values)]))
    mids = f32((grid[:-1] + grid[1:]) / 2)
    assert np.isin(mids, x).all()
    rounded = ml_decode(ml_encode(mids, name, True), name)
    assert (rounded > mids).any()
    if name != "e8m0fnu":  # ml_dtypes rounds every e8m0fnu tie up (3.0 -> 4, reference §8)
        assert (rounded < mids).any()


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encode_specials_explicitly(name, saturate):
    """A few named cases spelled out, so a failure reads as a statement about the format."""
    fmt = fp8.FORMATS[name]
    x = f32([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30])
    got = fp8.decode(fp8.encode(x, name, saturate=saturate), name)
    want = ml_decode(ml_encode(x, name, saturate), name)
    assert_same_floats(got, want, x, f"specials {name}")
    if saturate and fmt.has_sign:
        assert got[2] == fmt.max_value
        assert got[3] == -fmt.max_value
        assert got[6] == fmt.max_value
    if fmt.style == "fnuz":
        assert got[5] == 0.0
        assert not np.signbit(got[5])


# ---------------------------------------------------------------------------------------------
# quantize_values / fake_quantize / the arithmetic reference


@functools.cache
def mixed_inputs(name: str) -> np.ndarray:
    return np.concatenate([sweep()[::4], top16_patterns(), edge_values(name)])


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_quantize_values_is_decode_of_encode(name, saturate):
    x = mixed_inputs(name)
    values = fp8.quantize_values(x, name, saturate=saturate)
    assert values.dtype == np.float32
    assert_same_floats(values, fp8.decode(fp8.encode(x, name, saturate=saturate), name), x, f"quantize_values {name}")
    assert_same_floats(values, ml_decode(ml_encode(x, name, saturate), name), x, f"quantize_values {name} vs ml")


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_fake_quantize_scale_one_is_quantize_values(name, saturate):
    x = mixed_inputs(name)
    got = fp8.fake_quantize(x, 1.0, name, saturate=saturate)
    assert got.dtype == np.float32
    assert_same_floats(got, ml_decode(ml_encode(x, name, saturate), name), x, f"fake_quantize {name}")


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_arithmetic_reference_equals_table_path(name, saturate):
    # top16 patterns with low bits {0, 1, 0x8000, 0xFFFF} hit every key of the 65,536-entry table
    # with and without the sticky bit, so this covers every class of float32 input.
    x = np.concatenate([top16_patterns(), edge_values(name), sweep()[::16]])
    fmt = fp8.FORMATS[name]
    with np.errstate(all="ignore"):
        reference = encode_reference(x, fmt, saturate)
    assert_same_codes(fp8.encode(x, name, saturate=saturate), reference, x, f"table vs reference {name}")
    assert_same_codes(reference, ml_encode(x, name, saturate), x, f"reference vs ml_dtypes {name}")


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_encode_accepts_other_input_dtypes(name):
    """float64 / float16 inputs are rounded to float32 first, then encoded."""
    x64 = np.array([0.1, -3.7, 1e-3, 2.0**-9 * 1.5, 1e4, -0.0], dtype=np.float64)
    np.testing.assert_array_equal(fp8.encode(x64, name), fp8.encode(x64.astype(np.float32), name))
    x16 = x64.astype(np.float16)
    np.testing.assert_array_equal(fp8.encode(x16, name), ml_encode(x16.astype(np.float32), name, True))


# ---------------------------------------------------------------------------------------------
# float32 subnormal inputs, by the arithmetic rule alone (no oracle): ml_dtypes < 0.7 rounded them
# up in e8m0fnu, so this pins the rule itself, whatever the oracle's version says.


def float32_subnormals() -> np.ndarray:
    """Every 97th positive float32 subnormal pattern, the largest one, and their negatives."""
    bits = np.concatenate([np.arange(1, 1 << 23, 97, dtype=np.uint32), np.uint32([(1 << 23) - 1, 0x00400000])])
    positive = bits.view(np.float32)
    return np.concatenate([positive, -positive])


@pytest.mark.parametrize("saturate", SATURATE)
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_float32_subnormal_inputs_round_to_nearest(name, saturate):
    """Round to nearest, ties to even, below 2^-126 too: the value is the grid point nearest to x.

    Every format but ``e8m0fnu`` has its smallest subnormal far above 2^-126, so these become ±0 (+0 in
    ``fnuz``). ``e8m0fnu`` has no zero and no sign: a positive x in (0, 1.5·2^-127) becomes 2^-127 (code
    0x00), from 1.5·2^-127 (the tie: the significand 1.5 rounds to the even 2) up to 2^-126 (code 0x01);
    a negative x is NaN (0xFF).
    """
    fmt = fp8.FORMATS[name]
    x = float32_subnormals()
    codes = fp8.encode(x, name, saturate=saturate)
    assert_same_codes(codes, encode_reference(x, fmt, saturate), x, f"table vs arithmetic {name}")
    values = fp8.decode(codes, name).astype(np.float64)
    if name == "e8m0fnu":
        positive = x > 0
        tie = 1.5 * 2.0**-127
        expected = np.where(x.astype(np.float64) >= tie, 2.0**-126, 2.0**-127)
        np.testing.assert_array_equal(values[positive], expected[positive])
        assert np.isnan(values[~positive]).all()
        assert (codes[positive] <= 1).all()
        assert (codes[positive] == 0).any()
        assert (codes[positive] == 1).any()
    else:
        assert (values == 0.0).all()
        assert (np.signbit(values) == (np.signbit(x) & (fmt.style != "fnuz"))).all()
