"""Bad arguments to the emulator raise ValueError with a message that says what to do."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fp8conv import fp8

X = np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6)


# ---------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize(
    "call",
    [
        lambda fmt: fp8.encode(X, fmt),
        lambda fmt: fp8.decode(np.zeros(3, np.uint8), fmt),
        lambda fmt: fp8.quantize_values(X, fmt),
        lambda fmt: fp8.fake_quantize(X, 1.0, fmt),
        fp8.resolve_format,
    ],
    ids=["encode", "decode", "quantize_values", "fake_quantize", "resolve_format"],
)
def test_unknown_format_name_lists_the_valid_names(call):
    with pytest.raises(ValueError, match="unknown float format 'e4m3xyz'") as info:
        call("e4m3xyz")
    message = str(info.value)
    for name in fp8.FORMATS:
        assert re.search(rf"\b{name}\b", message), f"{name} missing from: {message}"
    assert "minifloat" in message


def test_format_names_are_case_insensitive_and_accept_ml_dtypes_names():
    # the positive side of the name lookup, so the error above is not the only path tested
    assert fp8.resolve_format("E4M3FN") is fp8.FORMATS["e4m3fn"]
    assert fp8.resolve_format("float8_e5m2fnuz") is fp8.FORMATS["e5m2fnuz"]
    assert fp8.resolve_format("float4_e2m1fn") is fp8.FORMATS["e2m1fn"]


def test_format_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="format name or a FloatFormat"):
        fp8.encode(X, 17)


@pytest.mark.parametrize(
    "call", [fp8.encode, lambda x, fmt: fp8.decode(np.zeros(3, np.uint8), fmt)], ids=["encode", "decode"]
)
@pytest.mark.parametrize(("exponent_bits", "mantissa_bits", "bits"), [(5, 7, 13), (4, 4, 9), (8, 23, 32)])
def test_codes_of_formats_wider_than_8_bits_are_refused(call, exponent_bits, mantissa_bits, bits):
    fmt = fp8.minifloat(exponent_bits, mantissa_bits)
    with pytest.raises(ValueError, match=rf"has {bits} bits; encode/decode need at most 8 \(use fake_quantize"):
        call(X, fmt)
    # ...and the advice in the message works
    assert fp8.fake_quantize(X, 1.0, fmt).shape == X.shape
    assert fp8.quantize_values(X, fmt).shape == X.shape


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 3), {}, "exponent_bits must be in 1..8, got 0"),
        ((9, 3), {}, "exponent_bits must be in 1..8, got 9"),
        ((4, -1), {}, "mantissa_bits must be in 0..23, got -1"),
        ((4, 24), {}, "mantissa_bits must be in 0..23, got 24"),
        ((4, 3), {"max_value": 0.0}, "max_value must be positive and finite"),
        ((4, 3), {"max_value": -448.0}, "max_value must be positive and finite"),
        ((4, 3), {"max_value": float("inf")}, "max_value must be positive and finite"),
        ((4, 3), {"max_value": float("nan")}, "max_value must be positive and finite"),
        ((1, 3), {"has_inf": True}, "has_inf needs at least 2 exponent bits"),
    ],
)
def test_minifloat_rejects_bad_parameters(args, kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        fp8.minifloat(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# scales


@pytest.mark.parametrize("scale", [0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf")])
def test_bad_scalar_scale(scale):
    with pytest.raises(ValueError, match=r"scale must be positive and finite; found .*\(replace it with a value > 0\)"):
        fp8.fake_quantize(X, scale, "e4m3fn")


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf")])
def test_one_bad_entry_in_a_per_axis_scale_is_named(bad):
    scale = np.array([1.0, 0.5, bad, 2.0], np.float32)
    with pytest.raises(ValueError, match="scale must be positive and finite") as info:
        fp8.fake_quantize(X, scale, "e5m2", axis=0)
    assert repr(np.float32(bad)) in str(info.value)


def test_bad_entry_in_a_blocked_scale():
    scale = np.ones((4, 2), np.float32)
    scale[3, 1] = -0.5
    with pytest.raises(ValueError, match="scale must be positive and finite"):
        fp8.fake_quantize(X, scale, "e4m3fn", axis=1, block_size=3)


def test_empty_scale():
    with pytest.raises(ValueError, match="scale is empty"):
        fp8.fake_quantize(X, np.array([], np.float32), "e4m3fn", axis=0)


def test_tiny_positive_scale_is_accepted():
    # the check is on sign and finiteness, not on size: the smallest subnormal is a legal scale
    tiny = np.float32(1e-45)
    assert np.isfinite(fp8.fake_quantize(np.float32([1e-44]), tiny, "e4m3fn")).all()


# ---------------------------------------------------------------------------------------------
# axis / per-axis shapes


@pytest.mark.parametrize("axis", [2, 5, -3])
def test_axis_out_of_range(axis):
    with pytest.raises(ValueError, match=rf"axis {axis} is out of range for an input of rank 2 \(use -2\.\.1\)"):
        fp8.fake_quantize(X, np.ones(4, np.float32), "e4m3fn", axis=axis)


@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range_blocked(axis):
    with pytest.raises(ValueError, match=rf"axis {axis} is out of range for an input of rank 2"):
        fp8.fake_quantize(X, np.ones((4, 2), np.float32), "e4m3fn", axis=axis, block_size=3)


@pytest.mark.parametrize(
    ("scale_shape", "axis", "match"),
    [
        ((3,), 0, r"per-axis scale must be 1-D with 4 entries \(input dimension 0\), got shape \(3,\)"),
        ((4,), 1, r"per-axis scale must be 1-D with 6 entries \(input dimension 1\), got shape \(4,\)"),
        ((7,), -1, r"per-axis scale must be 1-D with 6 entries \(input dimension 1\), got shape \(7,\)"),
        ((4, 1), 0, r"per-axis scale must be 1-D with 4 entries \(input dimension 0\), got shape \(4, 1\)"),
    ],
)
def test_per_axis_scale_length_mismatch(scale_shape, axis, match):
    with pytest.raises(ValueError, match=match):
        fp8.fake_quantize(X, np.ones(scale_shape, np.float32), "e4m3fn", axis=axis)


def test_per_channel_scale_without_axis():
    with pytest.raises(ValueError, match=r"scale has shape \(4,\) but no axis was given; pass axis="):
        fp8.fake_quantize(X, np.ones(4, np.float32), "e4m3fn")


def test_length_one_scale_needs_no_axis():
    # a one-element scale is per-tensor, as in ONNX
    np.testing.assert_array_equal(
        fp8.fake_quantize(X, np.array([0.25], np.float32), "e4m3fn"), fp8.fake_quantize(X, 0.25, "e4m3fn")
    )


# ---------------------------------------------------------------------------------------------
# block_size


@pytest.mark.parametrize(
    ("scale_shape", "axis", "block_size", "expected"),
    [
        ((4, 3), 1, 4, "(4, 2)"),  # ceil(6/4) = 2 blocks, scale has 3
        ((4, 2), 1, 2, "(4, 3)"),  # ceil(6/2) = 3 blocks, scale has 2
        ((4, 6), 1, 2, "(4, 3)"),  # a per-element scale is not a blocked one
        ((4, 2), 0, 3, "(2, 6)"),  # blocks along axis 0: ceil(4/3) = 2 rows of 6
        ((2,), 1, 3, "(4, 2)"),  # a blocked scale has the input's rank
    ],
)
def test_block_size_that_does_not_match_the_scale(scale_shape, axis, block_size, expected):
    with pytest.raises(ValueError, match=re.escape(f"blocked scale must have shape {expected}")) as info:
        fp8.fake_quantize(X, np.ones(scale_shape, np.float32), "e4m3fn", axis=axis, block_size=block_size)
    assert "choose block_size" in str(info.value)


@pytest.mark.parametrize("block_size", [-2, 2.5, True])
def test_block_size_must_be_a_positive_integer(block_size):
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        fp8.fake_quantize(X, np.ones((4, 3), np.float32), "e4m3fn", axis=1, block_size=block_size)


def test_blocked_needs_rank_at_least_one():
    with pytest.raises(ValueError, match="blocked quantization needs an input of rank >= 1"):
        fp8.fake_quantize(np.float32(1.0), np.ones((1,), np.float32), "e4m3fn", block_size=2)


def test_matching_block_size_is_accepted():
    # the ragged case 6 = 4 + 2 with two scales is legal
    y = fp8.fake_quantize(X, np.full((4, 2), 0.5, np.float32), "e4m3fn", axis=1, block_size=4)
    np.testing.assert_array_equal(y, fp8.fake_quantize(X, 0.5, "e4m3fn"))


def test_minifloat_max_value_between_grid_values_is_refused():
    with pytest.raises(ValueError, match=r"not a value of the E4M3 grid \(nearest below: 288, above: 320\)"):
        fp8.minifloat(4, 3, max_value=300)
    assert fp8.minifloat(4, 3, max_value=288).max_value == 288
