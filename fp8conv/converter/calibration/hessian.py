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

import threading

import numpy as np

from fp8conv.converter.calibration.sample_sums import SampleSums

__all__ = ["InputHessian"]


class InputHessian:
    """``2XᵀX/n`` over the rows of a layer input's calibration values (mergeable, order-independent)."""

    def __init__(self) -> None:
        self._sums = SampleSums()
        self._lock = threading.Lock()
        self.rows = 0
        """Rows counted (positions of all samples)."""
        self.nonfinite = 0
        """Rows left out for holding NaN or Inf."""

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
        terms, rows, nonfinite = [], 0, 0
        for sample in batch.reshape(count, -1, channels):
            values = sample.astype(np.float64)
            finite = np.isfinite(values).all(axis=1)
            if not finite.all():
                nonfinite += int((~finite).sum())
                values = values[finite]
            terms.append(values.T @ values)
            rows += values.shape[0]
        self._sums.add(first_sample, terms)
        with self._lock:
            self.rows += rows
            self.nonfinite += nonfinite
        return self

    def merge(self, other: InputHessian) -> InputHessian:
        """Add ``other``'s samples (disjoint from this one's): the same as counting them here."""
        self._sums.merge(other._sums)
        with self._lock:
            self.rows += other.rows
            self.nonfinite += other.nonfinite
        return self

    @property
    def samples(self) -> int:
        """Samples counted."""
        return self._sums.samples

    def hessian(self) -> np.ndarray | None:
        """``H = 2 S / n`` (float64 ``[K, K]``), or None before any row."""
        total = self._sums.total()
        if total is None or self.rows == 0:
            return None
        return total * (2.0 / self.rows)
