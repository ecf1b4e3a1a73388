"""SampleSums: a float64 sum of one term per calibration sample that depends only on the samples.

Floating-point addition is not associative, so a running sum depends on the order its terms arrive in, and
that order depends on the batch size and on which calibration thread ran which batch. Here term ``t_i`` of
sample ``i`` (its index in the calibration data) takes a fixed place in a binary tree over the indices: two
sibling blocks ``[2j·2^l, (2j+1)·2^l)`` and ``[(2j+1)·2^l, (2j+2)·2^l)`` are added (left + right) into block
``j`` of level ``l + 1`` as soon as both are complete, and :meth:`SampleSums.total` adds the blocks left at
the end in the order of their first sample. Which blocks exist depends only on the set of indices, so the
sum is the same, bit for bit, for any batching, any threads and any order of :meth:`~SampleSums.merge`;
memory holds ``O(log n)`` blocks plus the out-of-order ones of the batches in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

__all__ = ["RowSums", "SampleSums"]


class SampleSums:
    """``Σ_i t_i`` over sample indices ``i``, summed in the fixed binary tree of the module docstring.

    Thread-safe: :meth:`add` and :meth:`merge` may run on several threads at once.
    """

    def __init__(self) -> None:
        self._blocks: dict[tuple[int, int], np.ndarray] = {}
        self._samples: set[int] = set()
        self._lock = threading.Lock()

    @property
    def samples(self) -> int:
        """How many samples were added."""
        return len(self._samples)

    def add(self, first: int, terms: Iterable[np.ndarray]) -> None:
        """Add the terms of samples ``first, first + 1, ...`` (float64 arrays, owned by this object from now on).

        Raises:
            ValueError: A sample index added before.
        """
        terms = list(terms)
        indices = range(first, first + len(terms))
        with self._lock:
            if not self._samples.isdisjoint(indices):
                raise ValueError(f"samples {first}..{first + len(terms) - 1} overlap samples added before")
            self._samples.update(indices)
            for index, term in zip(indices, terms, strict=True):
                self._insert(0, index, np.asarray(term, dtype=np.float64))

    def merge(self, other: SampleSums) -> SampleSums:
        """Add ``other``'s samples (disjoint from this one's): the same sums as adding them here.

        Raises:
            ValueError: Overlapping samples.
        """
        with other._lock:
            blocks = {key: value.copy() for key, value in other._blocks.items()}
            samples = set(other._samples)
        with self._lock:
            if not self._samples.isdisjoint(samples):
                raise ValueError("merged sample sums overlap")
            self._samples.update(samples)
            for (level, index), value in sorted(blocks.items()):
                self._insert(level, index, value)
        return self

    def total(self) -> np.ndarray | None:
        """The sum (float64; a new array), or None before any sample."""
        with self._lock:
            ordered = sorted(self._blocks.items(), key=lambda item: item[0][1] << item[0][0])
            if not ordered:
                return None
            total = ordered[0][1].copy()
            for _, value in ordered[1:]:
                total += value
            return total

    def _insert(self, level: int, index: int, value: np.ndarray) -> None:
        """Put block ``(level, index)``; while its sibling is there, add the two (left + right) one level up."""
        while True:
            sibling = self._blocks.pop((level, index ^ 1), None)
            if sibling is None:
                self._blocks[(level, index)] = value
                return
            # IEEE addition is commutative: value + sibling is left + right either way round.
            np.add(value, sibling, out=value)
            level, index = level + 1, index >> 1


class RowSums:
    """A statistic that sums one term per sample of the sample's rows ``[r, C]`` (a base: subclasses say the term).

    Rows holding NaN or Inf are left out (counted in ``nonfinite``); the terms are summed by :class:`SampleSums`.
    Thread-safe, mergeable, independent of batching.
    """

    def __init__(self) -> None:
        self._sums = SampleSums()
        self._lock = threading.Lock()
        self.rows = 0
        """Rows counted (positions of all samples)."""
        self.nonfinite = 0
        """Rows left out for holding NaN or Inf."""

    def _term(self, rows: np.ndarray) -> np.ndarray:
        """The term of one sample's finite rows (float64 ``[r, C]``)."""
        raise NotImplementedError

    def _add_samples(self, parts: Iterable[np.ndarray], first_sample: int) -> None:
        """Count the samples ``parts`` (one ``[r, C]`` array each), the first at index ``first_sample``."""
        terms, rows, nonfinite = [], 0, 0
        for part in parts:
            values = np.asarray(part, dtype=np.float64)
            finite = np.isfinite(values).all(axis=1)
            if not finite.all():
                nonfinite += int((~finite).sum())
                values = values[finite]
            terms.append(self._term(values))
            rows += values.shape[0]
        self._sums.add(first_sample, terms)
        with self._lock:
            self.rows += rows
            self.nonfinite += nonfinite

    def merge(self, other: RowSums) -> RowSums:
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

    def _total(self) -> np.ndarray | None:
        """The sum of the terms, or None before any row."""
        total = self._sums.total()
        return None if total is None or self.rows == 0 else total
