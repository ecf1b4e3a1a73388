"""The emulator against PyTorch's eager float8 casts (CPU), compared as raw bytes.

Torch 2.13 eager semantics (reference §7, experiment E14, and measured again by these tests):

* ``float8_e4m3fn``: the cast *saturates*: overflow and ±Inf become ±448 (code 0x7E/0xFE), NaN keeps
  its sign (0x7F/0xFF). That is ONNX ``saturate=1`` / ``fp8.encode(..., saturate=True)`` exactly, so
  every float32 input is compared.
* ``float8_e5m2``: overflow becomes ±Inf and ±Inf stays ±Inf (``saturate=False`` semantics, unlike the
  saturating ONNX Cast that torch's exporter emits for the same code). NaN becomes 0x7F/0xFF, a NaN
  with a different payload than ml_dtypes' and fp8conv's canonical 0x7E/0xFE, so NaN is compared as a
  value, not as bits.
* ``float8_e4m3fnuz`` / ``float8_e5m2fnuz``: overflow, ±Inf and NaN all become the single NaN 0x80
  (``saturate=False`` semantics); -0 becomes +0.

So for e5m2 and the FNUZ types the bit-exact comparison runs on finite in-range inputs (where both
saturate modes agree), and the overflow behaviour above gets its own value-level test.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from fp8conv import fp8

TORCH_TYPES = {
    name: getattr(torch, f"float8_{name}")
    for name in ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz")
    if hasattr(torch, f"float8_{name}")
}
NON_SATURATING = [name for name in ("e5m2", "e4m3fnuz", "e5m2fnuz") if name in TORCH_TYPES]


def test_torch_has_the_float8_types():
    # torch is pinned (2.13); all four types exist there. Fail loudly rather than silently test less.
    assert sorted(TORCH_TYPES) == ["e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz"]


def torch_codes(x: np.ndarray, name: str) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(x)).to(TORCH_TYPES[name]).view(torch.uint8).numpy()


def torch_values(x: np.ndarray, name: str) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(x)).to(TORCH_TYPES[name]).to(torch.float32).numpy()


def assert_same_codes(actual: np.ndarray, expected: np.ndarray, x: np.ndarray, what: str) -> None:
    ok = actual == expected
    if not ok.all():
        bad = np.flatnonzero(~ok)[:8]
        pytest.fail(
            f"{what}: {(~ok).sum()} of {ok.size} differ; first: "
            + ", ".join(f"x={x[i]!r} torch=0x{actual[i]:02x} fp8conv=0x{expected[i]:02x}" for i in bad)
        )


@functools.cache
def all_kinds_of_float32() -> np.ndarray:
    """~1M bit patterns strided through all of float32, every top-16-bit pattern, grid midpoints of
    the four formats ±1 ulp, and specials."""
    strided = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    top = (np.arange(1 << 16, dtype=np.uint32) << 16) | np.uint32(0x8000)
    parts = [strided, top.view(np.float32)]
    for name in ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz"):
        values = fp8.decode(np.arange(256, dtype=np.uint8), name).astype(np.float64)
        grid = np.unique(np.abs(values[np.isfinite(values)]))
        mids = ((grid[:-1] + grid[1:]) / 2).astype(np.float32)
        near = np.concatenate([mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(0))])
        parts += [near, -near]
    parts.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 464.0, -464.0, 61440.0], np.float32))
    return np.concatenate(parts)


def test_e4m3fn_cast_is_saturating_encode_on_every_input():
    x = all_kinds_of_float32()
    assert np.isnan(x).any()
    assert np.isinf(x).any()
    assert (np.abs(x) > 464).sum() > 1000
    assert_same_codes(torch_codes(x, "e4m3fn"), fp8.encode(x, "e4m3fn", saturate=True), x, "torch e4m3fn")


@pytest.mark.parametrize("name", NON_SATURATING)
def test_cast_matches_encode_on_finite_in_range_values(name):
    x = all_kinds_of_float32()
    x = x[np.isfinite(x) & (np.abs(x) <= fp8.FORMATS[name].max_value)]
    assert x.size > 500_000
    expected = fp8.encode(x, name, saturate=False)
    # in range, the two saturate modes agree; the comparison would be meaningless if they did not
    np.testing.assert_array_equal(expected, fp8.encode(x, name, saturate=True))
    assert_same_codes(torch_codes(x, name), expected, x, f"torch {name}")


@pytest.mark.parametrize("name", NON_SATURATING)
def test_overflow_inf_and_nan_follow_non_saturating_semantics(name):
    x = all_kinds_of_float32()
    fmt = fp8.FORMATS[name]
    x = x[~np.isfinite(x) | (np.abs(x) > fmt.max_value)]
    assert x.size > 1000
    got = torch_values(x, name)
    want = fp8.quantize_values(x, name, saturate=False)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"{(~same).sum()} differ, e.g. x={x[~same][:5]} torch={got[~same][:5]} fp8conv={want[~same][:5]}"
    # the cases that matter are really there: overflow to Inf (e5m2) or to NaN (FNUZ) of finite inputs
    overflowed = np.isfinite(x) & (np.isinf(got) if fmt.has_inf else np.isnan(got))
    assert overflowed.sum() > 1000
