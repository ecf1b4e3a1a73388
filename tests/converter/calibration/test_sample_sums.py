"""SampleSums: one float64 sum per set of samples, whatever the order, batching or merging of its terms."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from fp8conv.converter.calibration.sample_sums import SampleSums


def terms(count: int, seed: int = 0) -> list[np.ndarray]:
    """Terms of very different magnitudes, so that the order of the additions shows in the last bits."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(5) * 10.0 ** rng.integers(-6, 7) for _ in range(count)]


def fed(order: list[int], values: list[np.ndarray]) -> np.ndarray:
    sums = SampleSums()
    for index in order:
        sums.add(index, [values[index].copy()])
    total = sums.total()
    assert total is not None
    return total


def test_the_order_of_the_samples_does_not_change_a_bit() -> None:
    values = terms(37)
    in_order = fed(list(range(37)), values)
    shuffled = fed(list(np.random.default_rng(1).permutation(37)), values)
    np.testing.assert_array_equal(in_order, shuffled)
    running = np.zeros(5)
    for value in reversed(values):
        running += value
    assert not np.array_equal(running, in_order), "the terms are too tame to show summation order"
    np.testing.assert_allclose(in_order, np.sum(values, axis=0), rtol=1e-9, atol=1e-6)


def test_batches_threads_and_merges_give_the_same_bits() -> None:
    values = terms(50)
    expected = fed(list(range(50)), values)
    batched = SampleSums()
    for first in range(0, 50, 7):
        batched.add(first, [v.copy() for v in values[first : first + 7]])
    np.testing.assert_array_equal(batched.total(), expected)
    threaded = SampleSums()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(
            pool.map(lambda first: threaded.add(first, [v.copy() for v in values[first : first + 3]]), range(0, 50, 3))
        )
    np.testing.assert_array_equal(threaded.total(), expected)
    left, right = SampleSums(), SampleSums()
    left.add(0, [v.copy() for v in values[:23]])
    right.add(23, [v.copy() for v in values[23:]])
    np.testing.assert_array_equal(right.merge(left).total(), expected)
    assert right.samples == 50


def test_overlapping_samples_are_refused_and_empty_is_none() -> None:
    sums = SampleSums()
    assert sums.total() is None
    sums.add(0, [np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match="overlap"):
        sums.add(1, [np.ones(2)])
    other = SampleSums()
    other.add(1, [np.ones(2)])
    with pytest.raises(ValueError, match="overlap"):
        sums.merge(other)
