"""Calibration statistics: streaming, mergeable, bounded memory (fp8conv.converter.calibration.statistics).

Oracles: batch NumPy computations on the same data (np.unique, np.searchsorted on the bin edges,
np.quantile) and the encode path of the FP8 emulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from calibration_helpers import (
    code_histogram,
    fake_quantized,
    gaussian,
    laplace_with_outliers,
    rng,
    state_bytes,
    streaming,
)

from fp8conv import fp8
from fp8conv.converter import calibration as cal
from fp8conv.converter.calibration import statistics

# ---------------------------------------------------------------------------------------------------------------
# StreamingHistogram
# ---------------------------------------------------------------------------------------------------------------


def reference_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin counts by searchsorted on the exact (dyadic) edges: bins are [e_i, e_{i+1})."""
    index = np.searchsorted(edges, x[np.isfinite(x)].astype(np.float64), side="right") - 1
    return np.bincount(index, minlength=edges.size - 1)


def test_streaming_histogram_equals_batch_histogram() -> None:
    x = gaussian(50_000) * np.float32(3.0)
    h = streaming(x)
    assert h.min == float(x.min())
    assert h.max == float(x.max())
    assert h.count == x.size
    assert h.limit == 16.0  # smallest power of two above max|x| (about 13)
    np.testing.assert_array_equal(h.counts(), reference_counts(x, h.edges()))


def test_growth_is_exact_and_order_independent() -> None:
    small = gaussian(20_000, seed=2) * np.float32(1e-3)
    large = laplace_with_outliers(20_000, seed=3) * np.float32(100.0)
    grown = streaming(small).update(large)  # R grows by many doublings after the first batch
    assert grown.count == small.size + large.size
    both = np.concatenate([small, large])
    np.testing.assert_array_equal(grown.counts(), streaming(both).counts())
    np.testing.assert_array_equal(grown.counts(), reference_counts(both, grown.edges()))
    assert grown.min == float(both.min())
    assert grown.max == float(both.max())


def test_merge_of_halves_equals_whole() -> None:
    x = laplace_with_outliers(100_000, seed=4)
    first, second = x[:30_000] * np.float32(0.01), x[30_000:]
    whole = streaming(np.concatenate([first, second]))
    merged = streaming(first).merge(streaming(second))
    reversed_merge = streaming(second).merge(streaming(first))
    for h in (merged, reversed_merge):
        np.testing.assert_array_equal(h.counts(), whole.counts())
        assert (h.count, h.min, h.max, h.limit) == (whole.count, whole.min, whole.max, whole.limit)


def test_many_small_updates_equal_one_update_and_memory_is_constant() -> None:
    x = gaussian(64_000, seed=5)
    h = cal.StreamingHistogram(1024)
    h.update(x[:10])
    size = state_bytes(h)
    for batch in np.array_split(x[10:], 640):
        h.update(batch * np.float32(1.5))
    assert state_bytes(h) == size == 1024 * 8
    expected = streaming(np.concatenate([x[:10], x[10:] * np.float32(1.5)]), 1024)
    np.testing.assert_array_equal(h.counts(), expected.counts())


def test_boundary_values_and_signed_zero() -> None:
    h = streaming(np.array([1.0, -1.0], dtype=np.float32), 8)
    assert h.limit == 2.0  # 1.0 < 2.0; -1.0 >= -2.0
    h.update(np.array([2.0, -0.0, 0.0], dtype=np.float32))  # 2.0 is not < R: R doubles
    assert h.limit == 4.0
    # w = 1: bin i is [i - 4, i - 3); -0.0 and 0.0 both land in [0, 1).
    np.testing.assert_array_equal(h.counts(), [0, 0, 0, 1, 2, 1, 1, 0])


def test_nonfinite_values_are_ignored_but_counted() -> None:
    h = streaming(np.array([np.nan, np.inf, -np.inf, 1.0, -2.0], dtype=np.float32))
    assert (h.nonfinite, h.count, h.min, h.max) == (3, 2, -2.0, 1.0)
    empty = streaming(np.array([np.nan], dtype=np.float32))
    assert empty.count == 0
    assert empty.limit == 0.0
    empty.merge(h)
    np.testing.assert_array_equal(empty.counts(), h.counts())
    assert empty.nonfinite == 4


def test_all_zero_data_then_tiny_data_merges_exactly() -> None:
    zeros = np.zeros(10, dtype=np.float32)
    tiny = np.array([1e-30, -3e-31], dtype=np.float32)
    merged = streaming(zeros).merge(streaming(tiny))
    np.testing.assert_array_equal(merged.counts(), streaming(np.concatenate([zeros, tiny])).counts())
    assert merged.limit < 1e-29


def test_streaming_quantiles_match_numpy_within_a_bin() -> None:
    x = gaussian(200_000, seed=6)
    h = streaming(x)
    for q in (0.001, 0.25, 0.5, 0.9, 0.99999):
        assert abs(h.quantile(q) - np.quantile(x, q)) <= h.bin_width
    assert h.quantile(0.0) == h.min
    assert h.quantile(1.0) == h.max


@pytest.mark.parametrize("num_bins", [0, 6, 100, 2048.0, True])
def test_streaming_histogram_rejects_bad_bin_counts(num_bins: object) -> None:
    with pytest.raises(ValueError, match="power of two"):
        cal.StreamingHistogram(num_bins)  # type: ignore[arg-type]


def with_tiny(x: np.ndarray) -> np.ndarray:
    """``x`` and values whose bin a float32 scaling by ``2**-m`` (m > 0) would get wrong (-> -0.0), and ±0."""
    subnormal = np.float32(2.0**-149)
    tiny = np.array([-subnormal, -3 * subnormal, -1e-30, -0.0, 0.0, subnormal, 1e-30], dtype=np.float32)
    return np.concatenate([x, tiny])


@pytest.mark.parametrize(
    ("values", "num_bins"),
    [
        (lambda: with_tiny(gaussian(100_000, seed=30) * np.float32(3.0)), 2048),  # w = 2**-6: float32 scaling up
        (lambda: with_tiny(gaussian(50_000, seed=31) * np.float32(1e4)), 2048),  # w = 32: int64 shift
        (lambda: with_tiny(gaussian(1000, seed=32) * np.float32(3e4)), 8),  # w = 2**15
        (lambda: with_tiny(gaussian(1000, seed=33) * np.float32(1e30)), 2048),  # R > 2**63: float64
        (lambda: gaussian(1000, seed=34) * np.float32(1e-43), 2048),  # w = 2**-149: float64
        (lambda: with_tiny(rng(35).uniform(-3.4e38, 3.4e38, 1000).astype(np.float32)), 16),  # R = 2**128
    ],
    ids=["scale-up", "scale-down", "scale-down-8-bins", "beyond-int64", "subnormal", "float32-max"],
)
def test_bin_index_is_exact_on_every_path(values: object, num_bins: int) -> None:
    x = values()  # type: ignore[operator]
    h = streaming(x, num_bins)
    np.testing.assert_array_equal(h.counts(), reference_counts(x, h.edges()))
    # Bin by bin against floor(x / w) in float64 (exact for float32 x and a power-of-two w).
    index = np.floor(x.astype(np.float64) / h.bin_width).astype(np.int64) + num_bins // 2
    np.testing.assert_array_equal(h.counts(), np.bincount(index, minlength=num_bins))
    below_zero = np.count_nonzero((x < 0) & (x.astype(np.float64) >= -h.bin_width))
    assert h.counts()[num_bins // 2 - 1] == below_zero  # tiny negatives land in [-w, 0), -0.0 does not


def test_nonfinite_values_in_a_large_chunk() -> None:
    x = gaussian(3 * (1 << 20) + 17, seed=36) * np.float32(5e3)
    x[[5, 1 << 20, 2 << 20]] = [np.nan, np.inf, -np.inf]
    h = streaming(x)
    finite = x[np.isfinite(x)]
    assert (h.nonfinite, h.count, h.min, h.max) == (3, finite.size, float(finite.min()), float(finite.max()))
    np.testing.assert_array_equal(h.counts(), reference_counts(finite, h.edges()))


def test_streaming_merge_rejects_other_kinds() -> None:
    with pytest.raises(ValueError, match="1024 and 2048 bins"):
        cal.StreamingHistogram(1024).merge(cal.StreamingHistogram(2048))
    with pytest.raises(ValueError, match="StreamingHistogram"):
        cal.StreamingHistogram().merge(cal.CodeHistogram("e4m3fn", 1.0))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# CodeHistogram
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["e4m3fn", "e4m3fnuz", "e5m2", "e2m1fn"])
def test_code_histogram_is_exact_on_fake_quantized_data(fmt: str) -> None:
    scale = 0.0371
    y = fake_quantized(gaussian(100_000, seed=7) * np.float32(5.0), scale, fmt)
    h = code_histogram(y, scale, fmt)
    values, counts = np.unique(y + np.float32(0.0), return_counts=True)  # +0.0 merges -0 into 0
    got_values, got_counts = h.points()
    np.testing.assert_array_equal(got_values, values)
    np.testing.assert_array_equal(got_counts, counts)
    assert (h.count, h.min, h.max) == (y.size, float(y.min()), float(y.max()))
    assert h.counts().size == 1 << fp8.resolve_format(fmt).bits


def test_code_histogram_rejects_off_grid_values() -> None:
    y = fake_quantized(gaussian(1000, seed=8), 0.05)
    with pytest.raises(ValueError, match="not on the e4m3fn grid"):
        code_histogram(y, 0.051)  # wrong scale
    nudged = y.copy()
    nudged[17] = np.nextafter(nudged[17], np.float32(np.inf))
    with pytest.raises(ValueError, match="1 of 1000 values"):
        code_histogram(nudged, 0.05)
    with pytest.raises(ValueError, match="not on the"):
        code_histogram(np.array([448 * 0.05 * 2], dtype=np.float32), 0.05)  # beyond the saturation value


def test_code_histogram_merge_and_memory() -> None:
    scale = 0.125
    y = fake_quantized(laplace_with_outliers(100_000, seed=9), scale)
    whole = code_histogram(y, scale)
    merged = cal.CodeHistogram("e4m3fn", scale)
    size = state_bytes(merged)
    parts = [code_histogram(part, scale) for part in np.array_split(y, 50)]
    for part in parts:
        merged.merge(part)
    assert state_bytes(merged) == size
    np.testing.assert_array_equal(merged.counts(), whole.counts())
    with pytest.raises(ValueError, match="different grids"):
        merged.merge(cal.CodeHistogram("e4m3fn", 0.25))
    with pytest.raises(ValueError, match="different grids"):
        merged.merge(cal.CodeHistogram("e5m2", scale))


@pytest.mark.parametrize("fmt", ["e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz", "e2m1fn", "e3m4"])
@pytest.mark.parametrize("scale", [0.0371, 1.0, 3e-5, 2.5e30, 1e-41])
def test_keyed_code_counting_equals_encode_path(fmt: str, scale: float, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fp8.minifloat(3, 4) if fmt == "e3m4" else fmt
    x = gaussian(70_000, seed=45) * np.float32(4.0)
    x[:3] = [0.0, -0.0, -1e-30]  # -0.0: its own code, or +0.0's in formats without -0
    with np.errstate(over="ignore", under="ignore"):
        y = fake_quantized(x * np.float32(scale), scale, spec)
    y = y[np.isfinite(y)]
    keyed = cal.CodeHistogram(spec, scale)
    tables = keyed._key_tables()
    if scale == 1e-41:  # subnormal float32 products: several codes share a value, so no key table
        assert tables is None
    else:
        assert tables is not None
        assert cal.CodeHistogram(spec, scale)._update_keyed(y, *tables)  # the fast path takes all of it
    keyed.update(y)
    monkeypatch.setattr(statistics, "_KEYED_MIN_VALUES", 1 << 62)
    encoded = cal.CodeHistogram(spec, scale).update(y)
    np.testing.assert_array_equal(keyed.counts(), encoded.counts())
    assert keyed.count == y.size


def test_keyed_code_counting_rejects_and_skips_like_the_encode_path() -> None:
    scale = 0.05
    y = fake_quantized(gaussian(100_000, seed=46), scale)
    nudged = y.copy()
    nudged[70_000] = np.nextafter(nudged[70_000], np.float32(np.inf))
    with pytest.raises(ValueError, match="1 of 100000 values are not on the e4m3fn grid"):
        code_histogram(nudged, scale)
    y[[10, 20, 30]] = [np.nan, np.inf, -np.inf]
    h = code_histogram(y, scale)
    finite = y[np.isfinite(y)]
    assert (h.nonfinite, h.count) == (3, finite.size)
    np.testing.assert_array_equal(h.points()[1], np.unique(finite + np.float32(0.0), return_counts=True)[1])


@pytest.mark.parametrize("fmt", ["e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz", "e2m1fn"])
def test_grid_counting_equals_value_counting(fmt: str) -> None:
    """update_grid(q) on the float16 FP8 values counts the same codes as update(q * scale)."""
    scale = 0.0371
    x = gaussian(100_000, seed=47) * np.float32(40.0)
    x[:2] = [0.0, -0.0]
    q = fp8.quantize_values(x, fmt)
    from_grid = cal.CodeHistogram(fmt, scale).update_grid(q.astype(np.float16))
    from_values = cal.CodeHistogram(fmt, scale).update(fake_quantized(x * np.float32(scale), scale, fmt))
    np.testing.assert_array_equal(from_grid.counts(), from_values.counts())
    assert from_grid.count == x.size


def test_grid_counting_rejects_values_off_the_format_and_counts_nonfinite() -> None:
    q = fp8.quantize_values(gaussian(1000, seed=48) * np.float32(10.0), "e4m3fn").astype(np.float16)
    q[[3, 4]] = [np.nan, np.inf]
    h = cal.CodeHistogram("e4m3fn", 0.5).update_grid(q)
    assert (h.nonfinite, h.count) == (2, 998)
    q[5] = np.float16(1.0009766)  # 1 + 2^-10: a float16, not an e4m3fn value
    with pytest.raises(ValueError, match="1 of 1000 grid values are not e4m3fn values"):
        cal.CodeHistogram("e4m3fn", 0.5).update_grid(q)
    with pytest.raises(ValueError, match="must be float16"):
        cal.CodeHistogram("e4m3fn", 0.5).update_grid(q.astype(np.float32))
    with pytest.raises(ValueError, match="not float16"):
        cal.CodeHistogram(fp8.minifloat(5, 2, max_value=2.0**20), 1.0).update_grid(q)


def test_code_histogram_counts_nonfinite_and_validates() -> None:
    h = code_histogram(np.array([np.nan, 1.0, np.inf], dtype=np.float32), 1.0)
    assert (h.nonfinite, h.count) == (2, 1)
    with pytest.raises(ValueError, match="positive and finite"):
        cal.CodeHistogram("e4m3fn", 0.0)
    with pytest.raises(ValueError, match="at most 8 bits"):
        cal.CodeHistogram(fp8.minifloat(5, 10), 1.0)
    with pytest.raises(ValueError, match="unknown float format"):
        cal.CodeHistogram("e9m9", 1.0)


def test_code_histogram_quantile_is_exact() -> None:
    y = fake_quantized(gaussian(10_001, seed=10), 0.02)
    h = code_histogram(y, 0.02)
    for q in (0.0, 0.1, 0.5, 0.999, 1.0):
        assert h.quantile(q) == float(np.quantile(y, q, method="inverted_cdf"))
