"""InputHessian: ``H = 2XᵀX/n`` of a layer's calibration inputs, the statistic GPTQ needs.

A MatMul/Gemm input ``x [..., K]`` contributes its rows ``x_r`` (every position of every sample)::

    S = Σ_samples Σ_rows x_rᵀ x_r          # [K, K], float64: one Gram matrix per sample (float32 inputs,
                                           # exact float64 products), summed by SampleSums
    n = number of rows
    H = 2 S / n

The sum of the per-sample Gram matrices is :class:`~.sample_sums.SampleSums`'s: the same bits for any batch
size, thread count or merge order. A batch of ``b`` samples is split into ``b`` equal consecutive parts of
rows, one per sample: the sample axis need not be the tensor's first (a ``Reshape`` to ``[b·T, K]`` before a
Gemm keeps each sample's rows together). Rows holding NaN or Inf are left out (counted in ``nonfinite``), as the
histograms leave such values out. Memory: a few ``K × K`` float64 matrices, whatever the number of samples.
"""

from __future__ import annotations

import numpy as np

from fp8conv.converter.calibration.sample_sums import RowSums

__all__ = ["InputHessian"]


class InputHessian(RowSums):
    """``2XᵀX/n`` over the rows of a layer input's calibration values (mergeable, order-independent)."""

    def update(self, x: np.ndarray, first_sample: int, samples: int | None = None) -> InputHessian:
        """Count a batch ``x [..., K]`` of ``samples`` samples (default ``x.shape[0]``) from index ``first_sample``.

        Raises:
            ValueError: A batch without a channel axis, whose rows do not split into ``samples`` equal parts, or
                samples counted before.
        """
        batch = np.asarray(x)
        if batch.ndim < 2:
            raise ValueError(f"a layer input needs a sample axis and a channel axis, got shape {batch.shape}")
        count = batch.shape[0] if samples is None else samples
        channels = batch.shape[-1]
        if count < 1 or batch.size % (count * channels):
            raise ValueError(f"a layer input of shape {batch.shape} does not split into {count} samples")
        self._add_samples(batch.reshape(count, -1, channels), first_sample)
        return self

    def _term(self, rows: np.ndarray) -> np.ndarray:
        return rows.T @ rows

    def hessian(self) -> np.ndarray | None:
        """``H = 2 S / n`` (float64 ``[K, K]``), or None before any row."""
        total = self._total()
        return None if total is None else total * (2.0 / self.rows)
