"""ChannelMean: ``E[x]`` per input channel of a layer's calibration inputs, the statistic bias correction needs.

For an input ``x`` with channel axis ``a`` (``-1`` for MatMul/Gemm ``[..., K]``, ``1`` for Conv ``[N, C, H, W]``)::

    s_c = Σ_samples Σ_positions x_c        # float64: one sum per sample, summed by SampleSums
    n   = number of positions
    E[x_c] = s_c / n

Order-independent (:class:`~.sample_sums.SampleSums`): the same bits for any batching, threads or merge
order. Positions holding NaN or Inf in any channel are left out (counted in ``nonfinite``). For the last
axis, a batch of ``b`` samples is split into ``b`` equal consecutive parts of positions, one per sample (the
sample axis need not be the first: ``[b·T, K]``); a channel axis 1 needs the samples on axis 0.
"""

from __future__ import annotations

import numpy as np

from fp8conv.converter.calibration.sample_sums import RowSums

__all__ = ["ChannelMean"]


class ChannelMean(RowSums):
    """The mean per channel over every position of every calibration sample (mergeable, order-independent).

    Attributes:
        axis: The channel axis of the full tensor (with its sample axis 0): ``-1`` or a positive axis.
    """

    def __init__(self, axis: int = -1) -> None:
        if axis == 0:
            raise ValueError("axis 0 is the sample axis, not a channel axis")
        super().__init__()
        self.axis = axis

    @property
    def positions(self) -> int:
        """Positions counted (the rows)."""
        return self.rows

    def update(self, x: np.ndarray, first_sample: int, samples: int | None = None) -> ChannelMean:
        """Count a batch ``x`` of ``samples`` samples (default ``x.shape[0]``) from index ``first_sample``.

        Raises:
            ValueError: A batch without the channel axis, that does not split into ``samples`` samples, or
                samples counted before.
        """
        batch = np.asarray(x)
        if batch.ndim < 2 or not -batch.ndim < self.axis < batch.ndim:
            raise ValueError(f"a layer input of shape {batch.shape} has no channel axis {self.axis}")
        count = batch.shape[0] if samples is None else samples
        channels = batch.shape[self.axis]
        if self.axis == -1 and count >= 1 and batch.size % (count * channels) == 0:
            parts = batch.reshape(count, -1, channels)
        elif batch.shape[0] == count:
            parts = np.moveaxis(batch, self.axis, -1).reshape(count, -1, channels)
        else:
            raise ValueError(f"a layer input of shape {batch.shape} does not split into {count} samples")
        self._add_samples(parts, first_sample)
        return self

    def _term(self, rows: np.ndarray) -> np.ndarray:
        return rows.sum(axis=0)

    def mean(self) -> np.ndarray | None:
        """``E[x_c]`` (float64 ``[C]``), or None before any position."""
        total = self._total()
        return None if total is None else total / self.rows
