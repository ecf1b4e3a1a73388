"""Weights given by their FP8 codes: ``w = values[codes] · scale``, counted per group instead of sorted.

FP8-trained weights are codes: at most ``2**bits`` distinct values per scale. A group ``g`` of ``K`` weights
sharing one scale holds the float32 values ``v[g, c] = values[c] · scale[g]`` of its codes ``c``, so one
counting pass (:func:`code_counts`, ``counts[g, c]``) tells its distinct values, its ``max |w|`` and, with a
per-code table ``t[g, c]``, any per-element result ``t[g, codes[g, k]]`` (:func:`gather_codes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

__all__ = ["WeightCodes", "as_channel_groups", "code_counts", "gather_codes"]

_CODE_CHUNK_ELEMENTS = 1 << 16  # intp indices of a chunk: 512 KiB


@dataclasses.dataclass(frozen=True)
class WeightCodes:
    """A weight given by its codes, ``w = values[codes] * scale`` (float32 product), exactly.

    FP8-trained weights are such codes: the search for per-channel ranges then counts codes per channel
    (one pass) instead of sorting each channel to find its distinct values.

    Attributes:
        codes: uint8 codes, the weight's shape.
        values: float32 value of each code (``2**bits`` entries; NaN/Inf for codes that never occur).
        scale: float32 scale: 0-d (per tensor) or 1-D along ``axis``.
        axis: The axis of a 1-D scale (None for 0-d).
        sign_bit: The code bit that holds the sign (codes ``c`` and ``c | sign_bit`` are ``±v``), or None.
    """

    codes: np.ndarray
    values: np.ndarray
    scale: np.ndarray
    axis: int | None
    sign_bit: int | None

    def decode(self) -> np.ndarray:
        """The float32 weight ``values[codes] * scale`` (one float32 product per element)."""
        scale = np.asarray(self.scale, dtype=np.float32)
        if self.axis is not None:
            scale = scale.reshape([-1 if d == self.axis else 1 for d in range(self.codes.ndim)])
        return np.multiply(np.asarray(self.values, dtype=np.float32).take(self.codes), scale, dtype=np.float32)


def as_channel_groups(codes: WeightCodes, axis: int | None) -> WeightCodes | None:
    """``codes`` as ``[G, K]`` groups along ``axis`` (non-negative) with one scale each, when its scale allows."""
    if axis is None or (codes.axis is not None and codes.axis % codes.codes.ndim != axis):
        return None
    channels = codes.codes.shape[axis]
    return WeightCodes(
        codes=np.moveaxis(codes.codes, axis, 0).reshape(channels, -1),
        values=codes.values,
        scale=np.broadcast_to(np.asarray(codes.scale, dtype=np.float32).reshape(-1), (channels,)),
        axis=0,
        sign_bit=codes.sign_bit,
    )


def _code_rows(codes: np.ndarray, size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Row chunks of ``[G, K]`` codes as flat cell indices ``row * size + code`` (rows counted within the chunk).

    Chunks of about 64 Ki elements keep the intp indices in cache.
    """
    groups, length = codes.shape
    rows = max(1, _CODE_CHUNK_ELEMENTS // max(length, 1))
    offsets = (np.arange(min(rows, groups)) * size)[:, None]
    for start in range(0, groups, rows):
        part = slice(start, min(start + rows, groups))
        index = codes[part].astype(np.intp)
        index += offsets[: index.shape[0]]
        yield part, index


def code_counts(coded: WeightCodes) -> np.ndarray:
    """``counts [G, C]``: how often each code occurs in each group."""
    size = np.asarray(coded.values).size
    counts = np.empty((coded.codes.shape[0], size), dtype=np.int64)
    for part, index in _code_rows(coded.codes, size):
        counts[part] = np.bincount(index.reshape(-1), minlength=index.shape[0] * size).reshape(-1, size)
    return counts


def gather_codes(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[g, codes[g, k]]`` for a ``[G, C]`` table and ``[G, K]`` codes."""
    out = np.empty(codes.shape, dtype=table.dtype)
    for part, index in _code_rows(codes, table.shape[1]):
        out[part] = table[part].reshape(-1).take(index)
    return out
