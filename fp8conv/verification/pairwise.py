"""Sums over cache-sized blocks that equal NumPy's ``np.sum`` of the whole array, bit for bit.

NumPy sums a contiguous float array by pairwise summation: a run of ``n > 128`` elements is split at
``n2 = ⌊n/2⌋ − (⌊n/2⌋ mod 8)``, both parts are summed the same way and the two sums added; a run of at most
128 elements is summed by eight interleaved accumulators. Every node of that tree with ``n ≤ block``
elements (``block ≥ 128``) is summed by ``np.sum`` of its slice exactly as inside the sum of the whole
array. So the sums of several element-wise quantities can be computed one leaf at a time, while the leaf's
elements are in cache, and added up the tree (:func:`combine`): the result is ``np.sum`` of each quantity
over the whole array, the same float64 bits (``tests/verification/test_pairwise.py`` checks this against
``np.sum`` on lengths and offsets of every kind).

The leaves are the nodes of at most ``block`` elements whose parent has more, in order (:func:`leaves`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["MIN_BLOCK", "combine", "leaves"]

MIN_BLOCK = 128
"""The smallest block: NumPy does not split runs of at most 128 elements, so leaves must not either."""


def _split(n: int) -> int:
    half = n // 2
    return half - half % 8


def leaves(n: int, block: int) -> list[tuple[int, int]]:
    """The ``(start, length)`` of every leaf of NumPy's pairwise tree over ``n`` elements, in order.

    Args:
        n: Number of elements (``n ≥ 0``; no leaves for 0).
        block: The largest leaf (at least :data:`MIN_BLOCK`).

    Raises:
        ValueError: ``block`` below :data:`MIN_BLOCK`.
    """
    if block < MIN_BLOCK:
        raise ValueError(f"block must be at least {MIN_BLOCK}, got {block}")
    found: list[tuple[int, int]] = []
    pending = [(0, n)] if n > 0 else []
    while pending:
        start, length = pending.pop()
        if length <= block:
            found.append((start, length))
            continue
        half = _split(length)
        pending.append((start + half, length - half))  # popped after the left half: leaves come in order
        pending.append((start, half))
    return found


def combine(n: int, block: int, values: Iterator[np.ndarray]) -> np.ndarray:
    """Add per-leaf sums up NumPy's pairwise tree over ``n`` elements.

    Args:
        n: Number of elements (``n ≥ 1``).
        block: The block :func:`leaves` was given.
        values: One float64 vector per leaf, in the order of :func:`leaves`: the sums of the leaf's slice of
            each quantity (``np.sum``).

    Returns:
        The vector of whole-array sums: element ``k`` equals ``np.sum`` of quantity ``k`` over all ``n``.
    """
    if n <= block:
        return next(values)
    half = _split(n)
    left = combine(half, block, values)
    return left + combine(n - half, block, values)
