"""A group scored on its distinct values weighed by their counts, when it has few.

FP8-trained weights have at most 255 distinct values per output channel (127 magnitudes), so a 3x3x512
kernel (K = 4608) shrinks about 30-fold. Each value's float32 error ``(v − q s)²`` is the same as that of
each of its copies, so ``Σ count · (v − q s)²`` over the distinct values equals the sum over the elements
but for the float64 summation order (the search keeps a ratio only when it wins by a margin far above that
rounding, :mod:`.mse_search`). With a symmetric integer range, ``w`` and ``−w`` have the same error (round
half to even and the clip are odd functions), so ``|w|`` is scored.

Two ways to the same arrays, bit for bit: sorting each group (:func:`distinct`) or, for weights given as
codes, from the per-group code counts (:func:`pack_distinct`).
"""

from __future__ import annotations

import numpy as np

from fp8conv.runtime.integer_quantization.codes import WeightCodes
from fp8conv.runtime.integer_quantization.groups import CHUNK_ELEMENTS

__all__ = ["distinct", "pack_distinct"]

_DISTINCT_MIN_LENGTH = 64
_DISTINCT_PROBE_ROWS = 4
_DISTINCT_MIN_GAIN = 4


def distinct(data: np.ndarray, *, absolute: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Each group's distinct values (of ``|w|`` when ``absolute``) and their counts, when that shrinks the groups.

    Returns ``(values [G, U], counts [G, U] float64)``, rows padded with value 0 and count 0 (adding 0 to any
    squared error), or ``(data, None)`` when the groups are shorter than 64 or a group has more than ``K / 4``
    distinct values (a probe of the first few groups decides before sorting them all). FP8-trained weights
    have at most 255 distinct values per output channel (127 magnitudes), so a 3x3x512 kernel (K = 4608)
    shrinks about 30-fold. ``absolute`` is valid for a symmetric integer range only: ``w`` and ``-w`` then
    have the same float32 error (round half to even and the clip are odd functions).
    """
    groups, length = data.shape
    if length < _DISTINCT_MIN_LENGTH:
        return data, None
    rows = max(_DISTINCT_PROBE_ROWS, CHUNK_ELEMENTS // length)
    parts = []
    for i in range(0, groups, rows):
        chunk = np.abs(data[i : i + rows]) if absolute else data[i : i + rows]
        if i == 0 and _distinct_rows(chunk[:_DISTINCT_PROBE_ROWS])[0].shape[1] * _DISTINCT_MIN_GAIN > length:
            return data, None
        parts.append(_distinct_rows(chunk))
        if parts[-1][0].shape[1] * _DISTINCT_MIN_GAIN > length:
            return data, None
    width = max(part_values.shape[1] for part_values, _ in parts)
    values = np.zeros((groups, width), dtype=np.float32)
    counts = np.zeros((groups, width))
    for i, (part_values, part_counts) in zip(range(0, groups, rows), parts, strict=True):
        values[i : i + part_values.shape[0], : part_values.shape[1]] = part_values
        counts[i : i + part_counts.shape[0], : part_counts.shape[1]] = part_counts
    return values, counts


def pack_distinct(coded: WeightCodes, per_code: np.ndarray, *, absolute: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`distinct`'s arrays, bit for bit, from the per-group code counts ``[G, C]``.

    Codes of one value merge into one class (``+0`` and ``-0``; ``c`` and ``c | sign_bit`` when ``absolute``),
    classes are ordered by value (the same order in every group, the scales being positive), and each group's
    present classes are packed to the left with their float32 values ``values[c] * scale[g]`` (``|.|`` when
    ``absolute``): the sorted, zero-padded rows of :func:`distinct`. None where :func:`distinct` would not
    shrink the groups (short groups, too many distinct values) or the codes cannot tell (``absolute`` without
    a sign bit, or two classes of one value): the caller then scores the elements.
    """
    groups, length = coded.codes.shape
    if length < _DISTINCT_MIN_LENGTH or (absolute and coded.sign_bit is None):
        return None
    table = np.asarray(coded.values, dtype=np.float32)
    size = table.size
    with np.errstate(invalid="ignore"):
        key = np.abs(table) if absolute else table
    classes = np.arange(size)
    if absolute:
        assert coded.sign_bit is not None
        classes &= ~coded.sign_bit
    held = per_code.any(axis=0)
    zeros = np.flatnonzero(held & (key == 0))
    if zeros.size:
        classes[zeros] = classes[zeros].min()
    if np.unique(key[held]).size != np.unique(classes[held]).size:
        return None
    order = np.argsort(classes, kind="stable")
    starts = np.flatnonzero(np.diff(classes[order], prepend=-1))
    by_class = np.add.reduceat(per_code[:, order], starts, axis=1)  # [G, classes], class = classes[order][starts]
    representative = order[starts]
    used = np.flatnonzero(by_class.any(axis=0))
    used = used[np.argsort(key[representative[used]], kind="stable")]
    columns = representative[used]
    counts = by_class[:, used]
    present = counts > 0
    width = int(np.count_nonzero(present, axis=1).max())
    if width * _DISTINCT_MIN_GAIN > length:
        return None
    row, column = np.nonzero(present)
    packed = np.cumsum(present, axis=1)[row, column] - 1
    points = np.zeros((groups, width), dtype=np.float32)
    packed_counts = np.zeros((groups, width))
    points[row, packed] = np.multiply(key[columns[column]], coded.scale[row], dtype=np.float32)
    packed_counts[row, packed] = counts[row, column]
    return points, packed_counts


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)`` of each row's distinct values, padded to the row with most (``-0.0 == 0.0``)."""
    groups, length = x.shape
    ordered = np.sort(x, axis=1)
    new = np.empty(ordered.shape, dtype=bool)
    new[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=new[:, 1:])
    first = np.flatnonzero(new)
    per_row = np.count_nonzero(new, axis=1)
    row = first // length
    column = np.arange(first.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    width = int(per_row.max())
    values = np.zeros((groups, width), dtype=np.float32)
    counts = np.zeros((groups, width))
    values[row, column] = ordered.reshape(-1)[first]
    counts[row, column] = np.diff(first, append=ordered.size)
    return values, counts
