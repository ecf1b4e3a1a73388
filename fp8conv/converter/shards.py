"""Calibration shards: the samples split into contiguous ranges, each calibrated on its own, merged exactly.

``--jobs N`` splits the calibration samples into at most ``N`` contiguous shards (:func:`plan_shards`); an
:class:`~fp8conv.converter.executors.Executor` runs :func:`calibrate_shard` on each (local processes or Ray
tasks), and the parent merges the shards' statistics in shard order (:func:`merge_shards`).

Why the result is byte-identical to one process:

1. *The same batches.* Shard boundaries fall on the batch boundaries of the single-process run
   (:func:`plan_shards` splits its sequence of batches, chunk by chunk and cut at ``max_samples``, into
   contiguous runs of whole batches), and :meth:`~fp8conv.converter.data.SampleSet.select` makes a shard
   iterate exactly those batches. So every reference run a shard makes is a run the single process makes,
   on the same arrays.
2. *The same reference.* Each worker opens the parent's lowered model from its serialized bytes
   (:class:`~fp8conv.runtime.reference.PortableReference`: the bytes the parent's session was created from,
   with the same session settings), so a batch's captured tensors are the same bits. (Results of onnxruntime's
   CPU kernels do not depend on the intra-op thread count, which the existing ``calibration_workers`` option
   already relies on; the tests compare the files.)
3. *Statistics that merge exactly.* Every statistic calibration collects is integer counts plus exact
   extremes: a :class:`~fp8conv.converter.calibration.CodeHistogram` is one int64 counter per FP8 code (merge:
   add the counters); a :class:`~fp8conv.converter.calibration.StreamingHistogram` is int64 counters on a
   power-of-two grid, its exact running min/max, and a range exponent that only grows (merge: take the larger
   exponent, coarsen the other's counters to it by adding bin pairs, which is exact because every coarse edge
   is a fine edge, add; min of mins, max of maxes); ``nonfinite`` is a count. Integer addition, ``min`` and
   ``max`` are associative and commutative, so any split of the batches into shards, merged in any order,
   gives the statistic of all the batches: the same ranges, the same file. No statistic sums floats, so
   there is nothing order-dependent to refuse: every range method (``mse``, ``minmax``, ``percentile``,
   ``entropy``, and ``fp8`` with ``--auto-int16``, whose SQNR reads ``mse``'s statistic) supports ``--jobs``.
   A future statistic that cannot merge exactly must refuse ``--jobs`` rather than approximate.

Each worker counts its shard with ``calibration_workers`` threads (:func:`~fp8conv.converter.counting.count_batches`),
with ``max(1, CPUs // (jobs × workers))`` onnxruntime intra-op threads per run.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Sequence

from fp8conv.converter import calibration
from fp8conv.converter.counting import StatisticsLayout, count_batches, limited_batches, merge_statistics
from fp8conv.converter.data import SampleSet
from fp8conv.runtime.reference import PortableReference

__all__ = [
    "Shard",
    "ShardContext",
    "ShardResult",
    "available_cpus",
    "batch_sizes",
    "calibrate_shard",
    "merge_shards",
    "plan_shards",
]

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class Shard:
    """One contiguous range of calibration samples, whole batches of the single-process run.

    Attributes:
        index: Its position (0-based); results merge in this order.
        start: First sample (position in the data's batch order).
        stop: One past the last sample.
        samples: The samples ``[start, stop)`` (:meth:`SampleSet.select`: pickles, files read where it runs).
    """

    index: int
    start: int
    stop: int
    samples: SampleSet = dataclasses.field(repr=False)

    @property
    def size(self) -> int:
        """Number of samples."""
        return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class ShardContext:
    """What every shard shares (sent once per worker process).

    Attributes:
        reference: The parent's lowered reference, to open in the worker.
        layout: The statistics to collect.
        batch_size: Samples per reference run (the parent's).
        workers: Threads counting batches in each worker (``calibration_workers``).
        jobs: Shards running at once (for the intra-op thread count).
    """

    reference: PortableReference
    layout: StatisticsLayout
    batch_size: int
    workers: int
    jobs: int


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """A shard's statistics and how long it took.

    Attributes:
        index: The shard's index.
        statistics: ``{group: statistic}``.
        seconds: Wall time in the worker: opening the session, then counting.
        open_seconds: Of which opening the reference session.
    """

    index: int
    statistics: dict[str, calibration.Statistics]
    seconds: float
    open_seconds: float


def batch_sizes(samples: SampleSet, batch_size: int, limit: int) -> list[int]:
    """The sizes of the batches the single-process run makes: chunk by chunk, cut at ``limit`` samples."""
    sizes: list[int] = []
    seen = 0
    for chunk in samples.chunk_sizes():
        for start in range(0, chunk, batch_size):
            size = min(batch_size, chunk - start, limit - seen)
            if size <= 0:
                return sizes
            sizes.append(size)
            seen += size
    return sizes


def plan_shards(samples: SampleSet, batch_size: int, limit: int, jobs: int) -> list[Shard]:
    """At most ``jobs`` contiguous shards of whole batches (see the module docstring), in order.

    The ``B`` batches of the single-process run are split as evenly as whole batches allow: shard ``i`` of
    ``n = min(jobs, B)`` holds batches ``[i B // n, (i + 1) B // n)``. Fewer batches than jobs give fewer shards.
    """
    sizes = batch_sizes(samples, batch_size, limit)
    count = min(jobs, len(sizes))
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    shards = []
    for index in range(count):
        first, last = index * len(sizes) // count, (index + 1) * len(sizes) // count
        start, stop = starts[first], starts[last]
        shards.append(Shard(index, start, stop, samples.select(start, stop)))
    return shards


def calibrate_shard(context: ShardContext, shard: Shard) -> ShardResult:
    """Open the reference and count one shard's batches (runs in a worker process or Ray task).

    Raises:
        Fp8ConvError: The reference cannot be opened or a run fails (one line).
    """
    began = time.perf_counter()
    threads = max(1, available_cpus() // (context.jobs * context.workers))
    runner = context.reference.open(intra_op_threads=threads)
    opened = time.perf_counter()
    batches = limited_batches(shard.samples, context.batch_size, shard.size)
    statistics = count_batches(runner, context.layout, batches, context.workers)
    seconds = time.perf_counter() - began
    return ShardResult(shard.index, statistics, seconds, opened - began)


def merge_shards(results: Sequence[ShardResult]) -> dict[str, calibration.Statistics]:
    """The shards' statistics merged in shard order (exact; see the module docstring).

    The first shard's statistics are copied first: results can arrive with read-only arrays (Ray deserializes
    NumPy arrays without copying them).
    """
    ordered = sorted(results, key=lambda result: result.index)
    first = copy.deepcopy(ordered[0].statistics)
    return merge_statistics([first, *(result.statistics for result in ordered[1:])])
