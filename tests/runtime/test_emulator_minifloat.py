"""``fp8.fake_quantize`` with :func:`fp8.minifloat` formats against an independent QONNX FloatQuant reference.

The reference below is written from the formula (QONNX ``FloatQuant`` / Brevitas, reference §4.3), not
from fp8conv's code::

    x = X / scale                                              (float32, as onnxruntime divides)
    e = max(floor(log2(|x| + tiny)) - M, 1 - bias - M)
    q = 2^e * round_half_even(x / 2^e)
    max = min(max_val, (2 - 2^-M) * 2^(2^E - 1 - bias))
    q = clip(q, -max, max); non-saturating: q out of range -> ±Inf if has_inf else NaN if has_nan
    Y = q * scale                                              (float32)

Where fp8conv deliberately differs from the QONNX *reference code*, the tests say so:

* ``has_subnormal=False``: QONNX ignores the attribute (always computes subnormals). fp8conv's
  semantics (``minifloat`` docstring): there are no values between 0 and the smallest normal
  ``2^(1 - bias)``; inputs below it round half-even to 0 or to ``2^(1 - bias)`` (a tie goes to 0).
* Non-saturating formats with neither Inf nor NaN: the QONNX code raises; fp8conv saturates (as
  ``ml_dtypes`` does for ``float6``/``float4``).
* ±Inf inputs: the QONNX formula yields NaN (``inf / inf``); fp8conv follows ONNX ``Cast``: ±max when
  saturating, else ±Inf / NaN / ±max as the format defines. Tested separately.
* NaN inputs in formats without NaN: not compared (see test_nan_inputs).
"""

from __future__ import annotations

import math

import helpers
import ml_dtypes
import numpy as np
import pytest

from fp8conv import fp8

TINY32 = float(np.finfo(np.float32).tiny)


def float_quant_reference(
    data: np.ndarray,
    scale: np.ndarray | float,
    exponent_bits: int,
    mantissa_bits: int,
    bias: int,
    max_val: float,
    *,
    has_inf: bool = False,
    has_nan: bool = False,
    has_subnormal: bool = True,
    saturation: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(Y, q)``: the output, and the quantized values before the multiplication by scale."""
    scale32 = np.asarray(scale, dtype=np.float32)
    x = (np.asarray(data, dtype=np.float32) / scale32).astype(np.float64)
    m = mantissa_bits
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log2(np.abs(x) + TINY32)) - m
        e = np.maximum(e, 1 - bias - m)
        q = np.exp2(e) * np.round(x / np.exp2(e))  # np.round: half to even
    if not has_subnormal:
        min_normal = 2.0 ** (1 - bias)
        below = np.abs(x) < min_normal
        flushed = np.where(np.abs(x) > min_normal / 2, min_normal, 0.0)
        q = np.where(below, np.copysign(flushed, x), q)
    max_value = min(max_val, (2 - 2.0**-m) * 2.0 ** (2**exponent_bits - 1 - bias))
    out = np.clip(q, -max_value, max_value)
    if not saturation:
        if has_inf:
            out = np.where(q > max_value, np.inf, np.where(q < -max_value, -np.inf, out))
        elif has_nan:
            out = np.where(np.abs(q) > max_value, np.nan, out)
        # neither: fp8conv saturates (QONNX raises)
    out = out.astype(np.float32)
    return out * scale32, out


def grid_probe_values(exponent_bits: int, mantissa_bits: int, bias: int) -> np.ndarray:
    """Every grid value and every midpoint (M+1 fraction bits) over the whole range and two binades
    beyond it at both ends, their float32 neighbours, both signs, and many random decades."""
    frac = np.arange(1 << (mantissa_bits + 1)) / (1 << (mantissa_bits + 1))
    low = 1 - bias - mantissa_bits - 2
    high = (1 << exponent_bits) - bias + 2
    binades = np.arange(low, high)
    normal = ((1.0 + frac)[None, :] * np.exp2(binades)[:, None]).reshape(-1)
    subnormal = frac * 2.0 ** (1 - bias)
    anchors = np.concatenate([normal, subnormal]).astype(np.float32)
    near = np.concatenate([anchors, np.nextafter(anchors, np.float32(np.inf)), np.nextafter(anchors, np.float32(0))])
    rng = np.random.default_rng(exponent_bits * 100 + mantissa_bits)
    random = (10.0 ** rng.uniform(-12, 12, 200_000)).astype(np.float32)
    positive = np.concatenate([near, random, [0.0, np.finfo(np.float32).max, 1e-45]]).astype(np.float32)
    return np.concatenate([positive, -positive])


def assert_same_floats(actual: np.ndarray, expected: np.ndarray, inputs: np.ndarray, what: str) -> None:
    helpers.assert_same_floats(actual, expected, inputs, what, ("fp8conv", "reference"))


# (id, minifloat args, reference args): the reference gets bias and max_val spelled out independently
CASES = [
    # the whitepaper's four FP8 formats: subnormals, no Inf/NaN, saturating, max = full grid
    ("E2M5", (2, 5, {}), dict(E=2, M=5, bias=1, max_val=7.875)),
    ("E3M4", (3, 4, {}), dict(E=3, M=4, bias=3, max_val=31.0)),
    ("E4M3", (4, 3, {}), dict(E=4, M=3, bias=7, max_val=480.0)),
    ("E5M2", (5, 2, {}), dict(E=5, M=2, bias=15, max_val=114688.0)),
    # custom biases
    ("E4M3-bias11", (4, 3, {"bias": 11}), dict(E=4, M=3, bias=11, max_val=30.0)),
    ("E5M2-bias10", (5, 2, {"bias": 10}), dict(E=5, M=2, bias=10, max_val=3670016.0)),
    ("E3M4-bias0", (3, 4, {"bias": 0}), dict(E=3, M=4, bias=0, max_val=248.0)),
    # Inf: the top exponent field is reserved, so max is one binade lower (E4M3: 240)
    ("E4M3-inf", (4, 3, {"has_inf": True}), dict(E=4, M=3, bias=7, max_val=240.0, has_inf=True, has_nan=True)),
    # NaN only: the all-ones magnitude is NaN (E4M3: 448, E3M2: 24)
    ("E4M3-nan", (4, 3, {"has_nan": True}), dict(E=4, M=3, bias=7, max_val=448.0, has_nan=True)),
    ("E3M2-nan", (3, 2, {"has_nan": True}), dict(E=3, M=2, bias=3, max_val=24.0, has_nan=True)),
    # a max below the grid's (on the grid)
    ("E4M3-max240", (4, 3, {"max_value": 240.0}), dict(E=4, M=3, bias=7, max_val=240.0)),
    ("E3M4-max10", (3, 4, {"max_value": 10.0}), dict(E=3, M=4, bias=3, max_val=10.0)),
    (
        "E5M2-inf-max4096",
        (5, 2, {"has_inf": True, "max_value": 4096.0}),
        dict(E=5, M=2, bias=15, max_val=4096.0, has_inf=True, has_nan=True),
    ),
    # no subnormals (fp8conv semantics, see the module docstring)
    ("E4M3-nosub", (4, 3, {"has_subnormal": False}), dict(E=4, M=3, bias=7, max_val=480.0, has_subnormal=False)),
    ("E2M1-nosub", (2, 1, {"has_subnormal": False}), dict(E=2, M=1, bias=1, max_val=6.0, has_subnormal=False)),
    # wider than the lookup tables (more than 5 mantissa bits): the arithmetic path
    ("E5M7", (5, 7, {}), dict(E=5, M=7, bias=15, max_val=130560.0)),
    ("E3M8-nan", (3, 8, {"has_nan": True}), dict(E=3, M=8, bias=3, max_val=31.875, has_nan=True)),
    ("E5M10-inf", (5, 10, {"has_inf": True}), dict(E=5, M=10, bias=15, max_val=65504.0, has_inf=True, has_nan=True)),
    ("E5M7-nosub", (5, 7, {"has_subnormal": False}), dict(E=5, M=7, bias=15, max_val=130560.0, has_subnormal=False)),
    ("E4M6", (4, 6, {}), dict(E=4, M=6, bias=7, max_val=508.0)),
]


@pytest.mark.parametrize(("minifloat_args", "ref"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_format_facts(minifloat_args, ref):
    exp_bits, man_bits, kwargs = minifloat_args
    fmt = fp8.minifloat(exp_bits, man_bits, **kwargs)
    assert (fmt.exponent_bits, fmt.mantissa_bits, fmt.bias) == (ref["E"], ref["M"], ref["bias"])
    assert fmt.max_value == ref["max_val"]
    assert fmt.has_inf == ref.get("has_inf", False)
    assert fmt.has_nan == ref.get("has_nan", False)
    assert fmt.has_subnormal == ref.get("has_subnormal", True)
    assert fmt.min_normal == 2.0 ** (1 - ref["bias"])


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("scale", [1.0, 0.0371, 3.3])
@pytest.mark.parametrize(("minifloat_args", "ref"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fake_quantize_matches_float_quant_formula(minifloat_args, ref, scale, saturate):
    exp_bits, man_bits, kwargs = minifloat_args
    fmt = fp8.minifloat(exp_bits, man_bits, **kwargs)
    with np.errstate(over="ignore"):
        x = grid_probe_values(ref["E"], ref["M"], ref["bias"]) * np.float32(scale)
    x = x[np.isfinite(x)]
    expected, q = float_quant_reference(
        x,
        scale,
        ref["E"],
        ref["M"],
        ref["bias"],
        ref["max_val"],
        has_inf=ref.get("has_inf", False),
        has_nan=ref.get("has_nan", False),
        has_subnormal=ref.get("has_subnormal", True),
        saturation=saturate,
    )
    got = fp8.fake_quantize(x, scale, fmt, saturate=saturate)
    assert_same_floats(got, expected, x, f"{fmt.name} scale {scale} saturate {saturate}")
    # the probe set must really reach the interesting regions of this format
    assert (np.abs(q) == np.float32(ref["max_val"])).any()
    if not saturate and (ref.get("has_inf") or ref.get("has_nan")):
        assert (~np.isfinite(q)).any()
    if ref.get("has_subnormal", True):
        assert ((np.abs(q) > 0) & (np.abs(q) < 2.0 ** (1 - ref["bias"]))).any()


def test_per_axis_scale_matches_formula():
    fmt = fp8.minifloat(3, 4)
    rng = np.random.default_rng(5)
    scale = (10.0 ** rng.uniform(-3, 2, 17)).astype(np.float32)
    x = (rng.standard_normal((300, 17)) * 10.0 ** rng.uniform(-4, 3, (300, 17)) * scale).astype(np.float32)
    expected, _ = float_quant_reference(x, scale[None, :], 3, 4, 3, 31.0)
    assert_same_floats(fp8.fake_quantize(x, scale, fmt, axis=1), expected, x, "per-axis E3M4")


def test_no_subnormal_rounding_rule_spelled_out():
    """Below the smallest normal 2^(1-bias) only 0 and 2^(1-bias) exist; the tie goes to 0."""
    fmt = fp8.minifloat(4, 3, has_subnormal=False)  # smallest normal 2^-6
    n = 2.0**-6
    x = np.array(
        [
            n,
            n * 0.75,
            n / 2,
            np.nextafter(np.float32(n / 2), np.float32(1)),
            n / 2 * 0.99,
            n / 8,
            -n * 0.75,
            -n / 8,
            n * 1.125,
        ],
        np.float32,
    )
    got = fp8.fake_quantize(x, 1.0, fmt)
    want = np.array([n, n, 0.0, n, 0.0, 0.0, -n, -0.0, n * 1.125], np.float32)
    assert_same_floats(got, want, x, "no-subnormal rule")
    # the same rule on the arithmetic path (M > 5)
    wide = fp8.minifloat(4, 7, has_subnormal=False)
    assert_same_floats(fp8.fake_quantize(x, 1.0, wide), want, x, "no-subnormal rule, wide")


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("scale", [1.0, 0.0371, 3.3])
def test_minifloat_e4m3_nan_is_e4m3fn(scale, saturate):
    x = np.concatenate([grid_probe_values(4, 3, 7), np.array([np.inf, -np.inf, np.nan], np.float32)])
    with np.errstate(over="ignore"):
        x = x * np.float32(scale)  # float32 max * 3.3 -> Inf: fine, Inf is an input too
    custom = fp8.minifloat(4, 3, max_value=448, has_nan=True)
    assert_same_floats(
        fp8.fake_quantize(x, scale, custom, saturate=saturate),
        fp8.fake_quantize(x, scale, "e4m3fn", saturate=saturate),
        x,
        "minifloat(4,3,max 448,nan) vs e4m3fn",
    )


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("scale", [1.0, 0.0371, 3.3])
def test_minifloat_e5m2_inf_is_e5m2(scale, saturate):
    x = np.concatenate([grid_probe_values(5, 2, 15), np.array([np.inf, -np.inf, np.nan], np.float32)])
    with np.errstate(over="ignore"):
        x = x * np.float32(scale)  # float32 max * 3.3 -> Inf: fine, Inf is an input too
    custom = fp8.minifloat(5, 2, has_inf=True)
    assert_same_floats(
        fp8.fake_quantize(x, scale, custom, saturate=saturate),
        fp8.fake_quantize(x, scale, "e5m2", saturate=saturate),
        x,
        "minifloat(5,2,inf) vs e5m2",
    )


@pytest.mark.parametrize(
    ("args", "dtype"),
    [((5, 10, {"has_inf": True}), np.float16), ((8, 7, {"has_inf": True}), ml_dtypes.bfloat16)],
    ids=["float16", "bfloat16"],
)
def test_wide_ieee_minifloats_are_float16_and_bfloat16(args, dtype):
    """The arithmetic path, non-saturating, against two casts everyone trusts."""
    exp_bits, man_bits, kwargs = args
    fmt = fp8.minifloat(exp_bits, man_bits, **kwargs)
    bits = np.arange(0, 1 << 32, 8191, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), np.array([np.inf, -np.inf, 65520.0, 65519.0], np.float32)])
    with np.errstate(all="ignore"):
        want = x.astype(dtype).astype(np.float32)
    assert_same_floats(fp8.fake_quantize(x, 1.0, fmt, saturate=False), want, x, f"{fmt.name} vs {dtype}")


@pytest.mark.parametrize(
    ("args", "saturated", "unsaturated"),
    [
        ((4, 3, {}), 480.0, 480.0),
        ((4, 3, {"has_inf": True}), 240.0, math.inf),
        ((4, 3, {"has_nan": True}), 448.0, math.nan),
        ((5, 7, {}), 130560.0, 130560.0),
        ((5, 7, {"has_inf": True}), 65280.0, math.inf),
        ((5, 7, {"has_nan": True}), 130048.0, math.nan),
    ],
)
def test_infinite_inputs(args, saturated, unsaturated):
    # fp8conv follows ONNX Cast here; the QONNX reference formula would give NaN (inf / inf).
    exp_bits, man_bits, kwargs = args
    fmt = fp8.minifloat(exp_bits, man_bits, **kwargs)
    x = np.array([np.inf, -np.inf], np.float32)
    assert_same_floats(fp8.fake_quantize(x, 0.5, fmt), np.float32([saturated, -saturated]) * np.float32(0.5), x, "sat")
    want = np.float32([unsaturated, -unsaturated]) * np.float32(0.5)
    assert_same_floats(fp8.fake_quantize(x, 0.5, fmt, saturate=False), want, x, "non-sat")


@pytest.mark.parametrize("args", [(4, 3, {"has_nan": True}), (4, 3, {"has_inf": True}), (5, 7, {"has_nan": True})])
def test_nan_inputs(args):
    exp_bits, man_bits, kwargs = args
    fmt = fp8.minifloat(exp_bits, man_bits, **kwargs)
    x = np.array([np.nan, -np.nan], np.float32)
    for saturate in (True, False):
        assert np.isnan(fp8.fake_quantize(x, 2.0, fmt, saturate=saturate)).all()
