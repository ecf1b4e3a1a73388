"""ChannelMean: ``E[x]`` per input channel (last axis for MatMul, axis 1 for Conv), merging exactly."""

from __future__ import annotations

import numpy as np
import pytest

from fp8conv.converter.calibration.channel_mean import ChannelMean


def test_last_axis_mean_merges_exactly() -> None:
    x = (np.random.default_rng(0).standard_normal((9, 4, 6)) * 3 + 1).astype(np.float32)
    whole = ChannelMean().update(x, 0)
    np.testing.assert_allclose(whole.mean(), x.reshape(-1, 6).astype(np.float64).mean(axis=0), rtol=1e-12)
    merged = ChannelMean().update(x[5:], 5).merge(ChannelMean().update(x[:2], 0).update(x[2:5], 2))
    np.testing.assert_array_equal(merged.mean(), whole.mean())
    assert merged.positions == whole.positions == 36


def test_conv_channel_axis() -> None:
    x = np.random.default_rng(1).standard_normal((3, 4, 5, 5)).astype(np.float32) + np.arange(4).reshape(1, 4, 1, 1)
    stat = ChannelMean(axis=1).update(x, 0)
    np.testing.assert_allclose(stat.mean(), x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-12)
    assert stat.positions == 75


def test_non_finite_positions_and_bad_axes() -> None:
    x = np.ones((2, 3, 2), np.float32)
    x[0, 1, 0] = np.nan
    stat = ChannelMean().update(x, 0)
    assert stat.nonfinite == 1
    assert stat.positions == 5
    np.testing.assert_array_equal(stat.mean(), [1.0, 1.0])
    assert ChannelMean().mean() is None
    with pytest.raises(ValueError, match="sample axis"):
        ChannelMean(axis=0)
    with pytest.raises(ValueError, match="no channel axis"):
        ChannelMean(axis=3).update(x, 0)


def test_samples_need_not_be_the_first_axis() -> None:
    x = np.random.default_rng(2).standard_normal((6, 4, 3)).astype(np.float32)
    whole = ChannelMean().update(x, 0)
    flat = ChannelMean().update(x[:2].reshape(-1, 3), 0, samples=2).update(x[2:].reshape(-1, 3), 2, samples=4)
    np.testing.assert_array_equal(flat.mean(), whole.mean())
    with pytest.raises(ValueError, match="does not split"):
        ChannelMean(axis=1).update(np.ones((6, 2, 3), np.float32), 0, samples=3)
