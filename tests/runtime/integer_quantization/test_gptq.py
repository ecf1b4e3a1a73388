"""GPTQ on the RTN grid: RTN exactly when nothing couples, a lower layer-output error when inputs correlate.

Oracles: :func:`quantize_weights` (RTN, the grid GPTQ keeps) and the layer-output MSE measured directly on the
calibration inputs, ``mean_r ‖x_r·(W_q − W)‖²``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fp8conv.runtime.integer_quantization import dequantize, quantize_weights
from fp8conv.runtime.integer_quantization.gptq import gptq, output_error

K, N = 96, 24


def weights(seed: int = 0) -> np.ndarray:
    """``[K, N]`` float32 weights with channel scales spread over a decade."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((K, N)) * rng.uniform(0.1, 1.0, size=(1, N))).astype(np.float32)


def correlated_inputs(rows: int = 4000, seed: int = 1) -> np.ndarray:
    """Inputs whose channels share a few strong components (as after a LayerNorm), with a mean offset."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((8, K))
    x = rng.standard_normal((rows, 8)) @ mixing + 0.3 * rng.standard_normal((rows, K)) + 0.5
    return x.astype(np.float32)


def hessian(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return 2.0 * x64.T @ x64 / len(x64)


def output_mse(x: np.ndarray, w: np.ndarray, w_q: np.ndarray) -> float:
    """``mean_r ‖x_r (W_q − W)‖²`` (float64) for a MatMul weight ``[K, N]``."""
    error = x.astype(np.float64) @ (w_q.astype(np.float64) - w.astype(np.float64))
    return float(np.mean(np.sum(error**2, axis=1)))


GRIDS = [
    pytest.param({"bits": 4, "axis": 1}, id="int4-per-channel"),
    pytest.param({"bits": 4, "axis": 0, "block_size": 32}, id="int4-blocked-32"),
    pytest.param({"bits": 4, "axis": 0, "block_size": 16, "method": "max"}, id="int4-blocked-16-max"),
    pytest.param({"bits": 7, "axis": 1}, id="int7-per-channel"),
]


@pytest.mark.parametrize("grid_options", GRIDS)
@pytest.mark.parametrize("act_order", [False, True])
def test_white_inputs_give_rtn_exactly(grid_options: dict, act_order: bool) -> None:
    w = weights()
    rtn = quantize_weights(w, **grid_options)
    result = gptq(w, rtn, 2.5 * np.eye(K), k_axis=0, act_order=act_order)
    np.testing.assert_array_equal(result.weights.q, rtn.q)
    np.testing.assert_array_equal(result.weights.scale, rtn.scale)
    np.testing.assert_array_equal(result.weights.mse, rtn.mse)


def test_white_inputs_give_rtn_exactly_for_transposed_weights() -> None:
    w = np.ascontiguousarray(weights().T)  # Gemm(transB=1): [N, K]
    rtn = quantize_weights(w, bits=4, axis=1, block_size=32)
    result = gptq(w, rtn, np.eye(K), k_axis=1)
    np.testing.assert_array_equal(result.weights.q, rtn.q)


@pytest.mark.parametrize("grid_options", GRIDS)
@pytest.mark.parametrize("act_order", [False, True])
def test_correlated_inputs_lower_the_layer_output_error(grid_options: dict, act_order: bool) -> None:
    w, x = weights(), correlated_inputs()
    rtn = quantize_weights(w, **grid_options)
    result = gptq(w, rtn, hessian(x), k_axis=0, act_order=act_order)
    rtn_mse = output_mse(x, w, dequantize(rtn))
    gptq_mse = output_mse(x, w, dequantize(result.weights))
    assert gptq_mse < 0.6 * rtn_mse, (gptq_mse, rtn_mse)
    # The reported errors are the same quantity, computed from H.
    assert result.rtn_error == pytest.approx(rtn_mse, rel=1e-5)
    assert result.gptq_error == pytest.approx(gptq_mse, rel=1e-5)
    # The grid is RTN's: the same scales, integers in its range.
    np.testing.assert_array_equal(result.weights.scale, rtn.scale)
    assert result.weights.q.dtype == np.int8
    assert rtn.qmin <= result.weights.q.min()
    assert result.weights.q.max() <= rtn.qmax
    assert not np.array_equal(result.weights.q, rtn.q)


def test_dead_inputs_keep_their_rtn_integers() -> None:
    w, x = weights(), correlated_inputs()
    x[:, [3, 40]] = 0.0
    rtn = quantize_weights(w, bits=4, axis=1)
    result = gptq(w, rtn, hessian(x), k_axis=0)
    assert result.dead_columns == 2
    assert np.isfinite(result.gptq_error)
    # A dead input has no coupling: its row is rounded alone, from its weight as the earlier columns left it.
    assert output_mse(x, w, dequantize(result.weights)) < output_mse(x, w, dequantize(rtn))


def test_the_mse_is_measured_again() -> None:
    w, x = weights(), correlated_inputs()
    rtn = quantize_weights(w, bits=4, axis=0, block_size=32)
    result = gptq(w, rtn, hessian(x), k_axis=0)
    error = (w - dequantize(result.weights)).astype(np.float64) ** 2
    expected = error.reshape(3, 32, N).mean(axis=1)
    np.testing.assert_allclose(result.weights.mse, expected, rtol=1e-6)


def test_output_error_is_half_the_quadratic_form() -> None:
    x = correlated_inputs(rows=500)
    delta = np.random.default_rng(3).standard_normal((N, K))
    measured = float(np.mean(np.sum((x.astype(np.float64) @ delta.T) ** 2, axis=1)))
    assert output_error(delta, hessian(x)) == pytest.approx(measured, rel=1e-9)


def test_an_indefinite_hessian_is_dampened_until_it_factors() -> None:
    w = weights()
    rtn = quantize_weights(w, bits=4, axis=1)
    h = hessian(correlated_inputs(rows=4))  # rank 4
    h -= 0.05 * float(np.mean(np.diag(h))) * np.eye(K)  # negative eigenvalues that 1 % cannot lift, 10 % can
    result = gptq(w, rtn, h, k_axis=0)
    assert result.damp >= 0.09 * float(np.mean(np.diag(h)))
    assert np.isfinite(result.gptq_error)
    with pytest.raises(ValueError, match="stays indefinite"):
        gptq(w, rtn, 1e9 * (np.ones((K, K)) - np.eye(K)) + np.eye(K), k_axis=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hessian": np.eye(K + 1)}, "H must be"),
        ({"hessian": np.full((K, K), np.nan)}, "not finite"),
        ({"k_axis": 2}, "2-D weight"),
        ({"damp": 0.0}, "damp must be"),
    ],
)
def test_bad_arguments_are_refused(change: dict, message: str) -> None:
    w = weights()
    arguments = {"hessian": np.eye(K), "k_axis": 0, "damp": 0.01, **change}
    with pytest.raises(ValueError, match=message):
        gptq(w, quantize_weights(w, bits=4, axis=1), **arguments)


def test_a_grid_of_another_shape_is_refused() -> None:
    w = weights()
    other = dataclasses.replace(quantize_weights(w, bits=4, axis=1), q=np.zeros((N, K), np.int8))
    with pytest.raises(ValueError, match="the grid's shape"):
        gptq(w, other, np.eye(K), k_axis=0)
