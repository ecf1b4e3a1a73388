"""ErrorStats' blocked update equals the whole-array computation (fp8conv/verification/metrics.py)."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

import fp8conv.verification.metrics as metrics
from fp8conv.verification.metrics import HISTOGRAM_EDGES, ErrorStats


def _whole_array(reference: np.ndarray, candidate: np.ndarray) -> dict[str, object]:
    """The statistics as one whole-array NumPy computation (the definition in the module docstring)."""
    r = np.asarray(reference, dtype=np.float64).ravel()
    c = np.asarray(candidate, dtype=np.float64).ravel()
    err = np.abs(r - c)
    nonzero = err[err > 0]
    index = np.floor((np.log10(nonzero) + 12) * 4).astype(np.int64)
    bins = len(HISTOGRAM_EDGES) - 1
    return {
        "count": r.size,
        "sum_ref_sq": float(np.sum(r * r)),
        "sum_cand_sq": float(np.sum(c * c)),
        "sum_err_sq": float(np.sum((r - c) * (r - c))),
        "sum_dot": float(np.sum(r * c)),
        "sum_abs_err": float(err.sum()),
        "max_abs_err": float(err.max()),
        "ref_min": float(r.min()),
        "ref_max": float(r.max()),
        "zero_errors": int(r.size - nonzero.size),
        "underflow": int((index < 0).sum()),
        "overflow": int((index >= bins).sum()),
        "histogram": np.bincount(index[(index >= 0) & (index < bins)], minlength=bins).tolist(),
    }


def _fields(stats: ErrorStats) -> dict[str, object]:
    values = dataclasses.asdict(stats)
    values["histogram"] = [int(v) for v in stats.histogram]
    return {key: values[key] for key in _whole_array(np.ones(1), np.ones(1))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_blocked_update_is_bit_identical_to_the_whole_array(dtype: type) -> None:
    rng = np.random.default_rng(0)
    for length in [1, 5, 129, 40_000, 262_147]:
        reference = (rng.standard_normal(length) * 10.0 ** rng.uniform(-8, 4)).astype(dtype)
        candidate = (reference + rng.standard_normal(length) * 10.0 ** rng.uniform(-13, 2, length)).astype(dtype)
        candidate[: length // 3] = reference[: length // 3]  # exact zeros
        if length > 4:
            candidate[3] = reference[3] + np.asarray(1e-300, dtype)  # below the histogram's range
        stats = ErrorStats()
        stats.update(reference, candidate)
        assert _fields(stats) == _whole_array(reference, candidate)


def test_blocked_update_is_independent_of_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((16, 64, 384)).astype(np.float32)
    candidate = (reference + 0.01 * rng.standard_normal(reference.shape)).astype(np.float32)
    results = []
    for block in [128, 1000, 1 << 15, 1 << 22]:
        monkeypatch.setattr(metrics, "_BLOCK", block)
        stats = ErrorStats()
        stats.update(reference, candidate)
        results.append(_fields(stats))
    assert all(result == results[0] for result in results)
    assert results[0] == _whole_array(reference, candidate)


def test_non_finite_values_take_the_filtered_path() -> None:
    reference = np.array([1.0, np.nan, np.inf, 2.0, -np.inf], np.float32)
    candidate = np.array([1.5, np.nan, 3.0, 2.0, np.inf], np.float32)
    stats = ErrorStats()
    stats.update(reference, candidate)
    assert (stats.nonfinite_matched, stats.nonfinite_mismatch, stats.count) == (1, 2, 2)
    assert stats.sum_err_sq == 0.25
    assert stats.zero_errors == 1


def test_float64_squares_beyond_range_are_summed_as_before() -> None:
    """Finite float64 values whose squares overflow: Σr² is inf, as the whole-array computation gives it."""
    reference = np.array([1e200, 1.0])
    candidate = np.array([1e200, 2.0])
    stats = ErrorStats()
    with np.errstate(over="ignore"):
        stats.update(reference, candidate)
        expected = _whole_array(reference, candidate)
    assert stats.count == 2
    assert stats.nonfinite_mismatch == 0
    assert stats.sum_ref_sq == expected["sum_ref_sq"] == np.inf
    assert stats.sum_err_sq == 1.0


def test_update_works_in_memory_independent_of_the_tensor_size() -> None:
    """Work arrays of one block, not float64 copies of the whole tensor (8 of them before: 256 MB here)."""
    rng = np.random.default_rng(2)
    reference = rng.standard_normal(1 << 22).astype(np.float32)  # 16 MB
    candidate = (reference + 0.01 * rng.standard_normal(1 << 22)).astype(np.float32)
    stats = ErrorStats()
    tracemalloc.start()
    stats.update(reference, candidate)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.count == 1 << 22
    assert peak < 4 * 8 * metrics._BLOCK + (1 << 20)  # four float64 blocks and small change
