"""Weights as a 2-D ``[G, K]`` array of groups that share one scale, and back to ONNX's layouts.

A *group* is the whole tensor (``axis=None``, ``G = 1``), one slice along ``axis`` (per channel, ONNX's 1-D
per-axis scale), or a block of ``block_size`` consecutive elements along ``axis`` (ONNX opset-21 blocked
scale of ``w``'s rank with ``ceil(D / block_size)`` on ``axis``; the last block may be shorter and is
zero-padded here, which adds 0 to every sum of squared errors). The searches work on row chunks of about
:data:`CHUNK_ELEMENTS` elements.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CHUNK_ELEMENTS", "Groups", "group_weights"]

CHUNK_ELEMENTS = 1 << 18
"""Elements of one row chunk of ``[G, K]`` groups (rows are independent)."""


@dataclasses.dataclass(frozen=True)
class Groups:
    """``w`` rearranged as a 2-D ``[G, K]`` array of groups (zero-padded ragged blocks), and the way back."""

    data: np.ndarray
    sizes: np.ndarray
    scale_shape: tuple[int, ...]
    restore: tuple[str, int | None, tuple[int, ...]]

    def scales(self, per_group: np.ndarray) -> np.ndarray:
        """Per-group values in ONNX scale layout."""
        kind, axis, moved = self.restore
        if kind == "blocked":
            assert axis is not None
            return np.moveaxis(per_group.reshape((*moved[:-1], -1)), -1, axis)
        return per_group.reshape(self.scale_shape)

    def ungroup(self, grouped: np.ndarray) -> np.ndarray:
        """A ``[G, K]`` array back in ``w``'s layout."""
        kind, axis, moved = self.restore
        if kind == "tensor":
            return grouped.reshape(moved)
        assert axis is not None
        if kind == "channel":
            return np.moveaxis(grouped.reshape(moved), 0, axis)
        length = moved[-1]
        flat = grouped.reshape((*moved[:-1], -1))[..., :length]
        return np.moveaxis(flat, -1, axis)


def group_weights(w: np.ndarray, axis: int | None, block_size: int | None) -> Groups:
    """``w`` as ``[G, K]`` groups: one (``axis=None``), one per slice along ``axis``, or blocks along ``axis``."""
    if axis is None:
        return Groups(w.reshape(1, -1), np.array([w.size]), (), ("tensor", None, w.shape))
    if block_size is None:
        moved = np.moveaxis(w, axis, 0)
        data = moved.reshape(w.shape[axis], -1)
        sizes = np.full(w.shape[axis], data.shape[1])
        return Groups(data, sizes, (w.shape[axis],), ("channel", axis, moved.shape))
    moved = np.moveaxis(w, axis, -1)
    length = moved.shape[-1]
    blocks = -(-length // block_size)
    padded = np.zeros((*moved.shape[:-1], blocks * block_size), dtype=np.float32)
    padded[..., :length] = moved
    sizes = np.full((*moved.shape[:-1], blocks), block_size)
    sizes[..., -1] = length - (blocks - 1) * block_size
    scale_shape = tuple(blocks if d == axis else n for d, n in enumerate(w.shape))
    return Groups(padded.reshape(-1, block_size), sizes.reshape(-1), scale_shape, ("blocked", axis, moved.shape))
