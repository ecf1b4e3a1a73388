"""Bias correction: the corrected bias makes the mean output error on the calibration inputs zero (float64).

Oracles: the layer's output computed directly in float64 (a MatMul, a Gemm with α and β, a grouped Conv by
explicit sums over its kernel positions).
"""

from __future__ import annotations

import numpy as np
import pytest

from fp8conv.runtime.integer_quantization import dequantize, quantize_weights
from fp8conv.runtime.integer_quantization.bias_correction import corrected_bias, output_shift


def test_matmul_mean_output_error_becomes_zero() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((500, 40)) + 0.8).astype(np.float32)  # a mean offset: RTN shifts the output
    w = rng.standard_normal((40, 12)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    w_q = dequantize(quantize_weights(w, bits=4, axis=0, block_size=16))
    x64 = x.astype(np.float64)
    shift = output_shift(w, w_q, x64.mean(axis=0), k_axis=0)
    before = (x64 @ w_q + b) - (x64 @ w + b)
    assert np.abs(before.mean(axis=0)).max() > 1e-3
    corrected = b.astype(np.float64) - shift  # float64, before the float32 rounding of the stored bias
    after = (x64 @ w_q + corrected) - (x64 @ w + b)
    np.testing.assert_allclose(after.mean(axis=0), 0.0, atol=1e-12)
    stored = corrected_bias(b, shift)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, corrected.astype(np.float32))


def test_gemm_transposed_weight_with_alpha_and_beta() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 20)) - 0.4).astype(np.float64)
    w = rng.standard_normal((7, 20)).astype(np.float32)  # transB=1: [N, K]
    c = rng.standard_normal(7).astype(np.float32)
    w_q = dequantize(quantize_weights(w, bits=4, axis=0))
    alpha, beta = 0.5, 2.0
    shift = output_shift(w, w_q, x.mean(axis=0), k_axis=1)
    corrected = c.astype(np.float64) - alpha * shift / beta
    after = (alpha * x @ w_q.T + beta * corrected) - (alpha * x @ w.T + beta * c)
    np.testing.assert_allclose(after.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_array_equal(corrected_bias(c, shift, alpha=alpha, beta=beta), corrected.astype(np.float32))


def _conv_valid(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped Conv without padding, by explicit sums (float64): ``[S, M, H', W']``."""
    samples, _channels, height, width = x.shape
    outputs, per_group, kh, kw = w.shape
    out = np.zeros((samples, outputs, height - kh + 1, width - kw + 1))
    for m in range(outputs):
        group = m // (outputs // groups)
        for c in range(per_group):
            for i in range(kh):
                for j in range(kw):
                    patch = x[:, group * per_group + c, i : i + out.shape[2], j : j + out.shape[3]]
                    out[:, m] += w[m, c, i, j] * patch
    return out


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_without_padding_is_exact(groups: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4, 7, 7)) + np.arange(4).reshape(1, 4, 1, 1)
    w = rng.standard_normal((6, 4 // groups, 3, 3)).astype(np.float32)
    w_q = dequantize(quantize_weights(w, bits=4, axis=0))
    shift = output_shift(w, w_q, x.mean(axis=(0, 2, 3)), k_axis=None, groups=groups)
    delta = _conv_valid(x, w_q.astype(np.float64), groups) - _conv_valid(x, w.astype(np.float64), groups)
    # Exact for an input whose every kernel offset sees the channel mean: a per-channel constant input.
    constant = np.broadcast_to(x.mean(axis=(0, 2, 3)).reshape(1, 4, 1, 1), (1, 4, 7, 7))
    exact = _conv_valid(constant, w_q.astype(np.float64), groups) - _conv_valid(constant, w.astype(np.float64), groups)
    np.testing.assert_allclose(exact[0, :, 0, 0], shift, atol=1e-12)
    # On the real input the mean error differs from the shift only through the border positions.
    assert np.abs(delta.mean(axis=(0, 2, 3)) - shift).max() < 0.1 * np.abs(shift).max() + 1e-9


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: output_shift(np.ones((4, 3)), np.ones((4, 3)), np.ones(3), k_axis=0), "does not take"),
        (lambda: output_shift(np.ones((4, 3, 1, 1)), np.ones((4, 3, 1, 1)), np.ones(5), k_axis=None), "Conv weight"),
        (lambda: corrected_bias(np.ones(3), np.ones(4)), "no entry per output channel"),
        (lambda: corrected_bias(np.ones(4), np.ones(4), beta=0.0), "beta = 0"),
    ],
)
def test_mismatches_are_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
