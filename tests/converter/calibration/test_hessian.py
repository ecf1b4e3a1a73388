"""InputHessian: ``2XᵀX/n`` of a layer's inputs, merging exactly across batches, threads and statistics."""

from __future__ import annotations

import numpy as np
import pytest

from fp8conv.converter.calibration.hessian import InputHessian


def inputs(samples: int = 12, seed: int = 0) -> np.ndarray:
    """``[samples, tokens, K]`` float32 inputs with correlated channels."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((samples, 5, 3)) @ rng.standard_normal((3, 16)) + 0.1).astype(np.float32)


def test_it_is_two_x_transpose_x_over_n() -> None:
    x = inputs()
    h = InputHessian().update(x, 0).hessian()
    rows = x.reshape(-1, 16).astype(np.float64)
    np.testing.assert_allclose(h, 2.0 * rows.T @ rows / len(rows), rtol=1e-12, atol=1e-12)


def test_it_merges_exactly_across_batches() -> None:
    x = inputs(samples=20)
    whole = InputHessian().update(x, 0)
    batched = InputHessian()
    for first in (0, 3, 9, 10, 17):
        batched.update(x[first : {0: 3, 3: 9, 9: 10, 10: 17, 17: 20}[first]], first)
    left, right = InputHessian().update(x[:11], 0), InputHessian().update(x[11:], 11)
    merged = right.merge(left)
    for other in (batched, merged):
        np.testing.assert_array_equal(other.hessian(), whole.hessian())
        assert other.rows == whole.rows == 100
        assert other.samples == 20


def test_rows_with_nan_or_inf_are_left_out() -> None:
    x = inputs(samples=4)
    dirty = x.copy()
    dirty[1, 2, 5] = np.nan
    dirty[3, 0, 0] = np.inf
    stat = InputHessian().update(dirty, 0)
    assert stat.nonfinite == 2
    assert stat.rows == 18
    clean = np.delete(x.reshape(-1, 16), [1 * 5 + 2, 3 * 5 + 0], axis=0).astype(np.float64)
    np.testing.assert_allclose(stat.hessian(), 2.0 * clean.T @ clean / 18, rtol=1e-12, atol=1e-12)


def test_empty_and_bad_inputs() -> None:
    assert InputHessian().hessian() is None
    with pytest.raises(ValueError, match="channel axis"):
        InputHessian().update(np.ones(3, np.float32), 0)


def test_samples_need_not_be_the_first_axis() -> None:
    """A Gemm behind ``Reshape([b·T, K])`` reads ``[b·T, K]``: each sample's rows stay one part."""
    x = inputs(samples=6)
    whole = InputHessian().update(x, 0)
    flat = InputHessian().update(x[:4].reshape(-1, 16), 0, samples=4).update(x[4:].reshape(-1, 16), 4, samples=2)
    np.testing.assert_array_equal(flat.hessian(), whole.hessian())
    with pytest.raises(ValueError, match="does not split into 4 samples"):
        InputHessian().update(np.ones((6, 16), np.float32), 0, samples=4)
