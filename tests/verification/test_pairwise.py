"""Blocked sums equal NumPy's ``np.sum`` of the whole array bit for bit (fp8conv/verification/pairwise.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fp8conv.verification.pairwise import MIN_BLOCK, combine, leaves


@pytest.mark.parametrize("block", [MIN_BLOCK, 129, 1000, 4096, 1 << 15])
def test_blocked_sums_are_np_sum(block: int) -> None:
    rng = np.random.default_rng(block)
    for length in [1, 7, 8, 127, 128, 129, 1000, 8191, 8192, 8193, 65_537, 300_001, 1_048_583]:
        # magnitudes over many decades: any change of summation order shows in the low bits
        values = rng.standard_normal(length) * 10.0 ** rng.uniform(-6, 6, length)
        squares = values * values
        parts = leaves(length, block)
        assert sum(size for _, size in parts) == length
        assert all(size <= block for _, size in parts)
        starts = [start for start, _ in parts]
        assert starts == sorted(starts)
        assert starts[0] == 0
        sums = combine(length, block, (np.array([values[s : s + n].sum(), squares[s : s + n].sum()]) for s, n in parts))
        assert sums[0] == np.sum(values)  # exact, not approximate
        assert sums[1] == np.sum(squares)


def test_a_chunked_sum_would_differ() -> None:
    """The tree matters: summing fixed chunks in sequence changes the low bits (why the leaves follow it)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(1_000_003) * 10.0 ** rng.uniform(-6, 6, 1_000_003)
    sequential = 0.0
    for start in range(0, len(values), 1 << 15):
        sequential += values[start : start + (1 << 15)].sum()
    tree = combine(len(values), 1 << 15, (np.array([values[s : s + n].sum()]) for s, n in leaves(len(values), 1 << 15)))
    assert tree[0] == np.sum(values)
    assert sequential != np.sum(values)


def test_blocks_below_numpys_unrolled_run_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 128"):
        leaves(1000, 64)
    assert leaves(0, MIN_BLOCK) == []
