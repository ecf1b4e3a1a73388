"""Count the reference's captured tensors into statistics: the loop one process runs over its batches.

:class:`StatisticsLayout` says which statistic each activation group gets and which captured tensor feeds
which group (:mod:`fp8conv.converter.collection` builds it from the plan); it pickles, so a worker process
builds the same empty statistics. :func:`count_batches` runs batches through a reference session on
``workers`` threads (one shared onnxruntime session; each thread adds its batch's values to its own set of
statistics while another batch runs, since onnxruntime releases the GIL) and merges the sets at the end.
The merge is exact and the statistics do not depend on the order or grouping of their values
(:mod:`fp8conv.converter.calibration.statistics`), so the result is that of one thread counting every batch
in order. At most ``workers`` batches are in memory at once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np

from fp8conv.converter import calibration
from fp8conv.converter.data import LABELS_KEY, SampleSet
from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.formats import FloatFormat
from fp8conv.runtime.reference import ReferenceSession

__all__ = [
    "CodeHistogramOf",
    "InputStatistic",
    "StatisticsLayout",
    "count_batches",
    "limited_batches",
    "merge_statistics",
]


class InputStatistic(Protocol):
    """A statistic of a tensor that counts each sample at its index (``InputHessian``, ``ChannelMean``).

    One object serves every worker (it is thread-safe); its result does not depend on the batching.
    """

    def update(self, x: np.ndarray, first_sample: int, samples: int | None = None) -> object:
        """Count the batch ``x`` of ``samples`` samples whose first sample has index ``first_sample``."""
        ...


@dataclasses.dataclass(frozen=True)
class CodeHistogramOf:
    """Makes empty :class:`~fp8conv.converter.calibration.CodeHistogram` s of one grid (a factory that pickles)."""

    fmt: FloatFormat
    scale: float

    def __call__(self) -> calibration.CodeHistogram:
        """An empty histogram of the grid ``decode(code, fmt) * scale``."""
        return calibration.CodeHistogram(self.fmt, self.scale)


Factory = Callable[[], calibration.Statistics]
"""Makes one empty statistic: ``StreamingHistogram`` or a :class:`CodeHistogramOf`."""


@dataclasses.dataclass(frozen=True)
class StatisticsLayout:
    """Which statistic each activation group gets, and which tensors feed it.

    Attributes:
        factories: ``{group: factory of its empty statistic}``.
        captures: ``{captured tensor: group}``.
    """

    factories: Mapping[str, Factory]
    captures: Mapping[str, str]

    def code_tensors(self) -> list[str]:
        """The captured tensors counted into code histograms (captured as float16 grid values), sorted."""
        return sorted(
            t for t, group in self.captures.items() if self.factories[group] is not calibration.StreamingHistogram
        )

    def empty(self) -> dict[str, calibration.Statistics]:
        """A fresh statistic for every group."""
        return {group: factory() for group, factory in self.factories.items()}


def count_batches(
    runner: ReferenceSession,
    layout: StatisticsLayout,
    batches: Iterable[dict[str, np.ndarray]],
    workers: int,
    done: Callable[[int], object] = lambda samples: None,
    tensor_statistics: Mapping[str, Sequence[InputStatistic]] | None = None,
) -> dict[str, calibration.Statistics]:
    """Run every batch through ``runner`` and count its captured tensors (see the module docstring).

    Args:
        runner: The reference, with the captures of ``layout`` (code tensors captured as grid values where it can).
        layout: The statistics and their tensors.
        batches: Feeds without labels.
        workers: Batches in flight at once (threads).
        done: Called with the number of samples of each batch as it is counted.
        tensor_statistics: More statistics by the captured tensor they count, each told the index of a batch's
            first sample (the batches are numbered in the order ``batches`` yields them).

    Returns:
        ``{group: statistic}`` for every group of ``layout``.

    Raises:
        Fp8ConvError: A reference run fails (one line).
    """
    captures = layout.captures
    free: queue.SimpleQueue[dict[str, calibration.Statistics]] = queue.SimpleQueue()
    sets = [layout.empty() for _ in range(workers)]
    for statistics in sets:
        free.put(statistics)

    more = dict(tensor_statistics or {})

    def count(batch: tuple[int, dict[str, np.ndarray]]) -> int:
        first, feeds = batch
        outputs = runner.run(feeds)
        size = len(next(iter(feeds.values())))
        for tensor, statistics_of_tensor in more.items():
            for statistic in statistics_of_tensor:
                try:
                    statistic.update(outputs[tensor], first, size)
                except ValueError as error:
                    raise Fp8ConvError(f"calibration of layer input {tensor}: {error}") from error
        statistics = free.get()  # at most `workers` tasks run at once, so one is always free
        try:
            for tensor, group in captures.items():
                if tensor in runner.grid_outputs:
                    statistics[group].update_grid(outputs[tensor])  # type: ignore[union-attr]
                else:
                    statistics[group].update(outputs[tensor])
        finally:
            free.put(statistics)
        return len(next(iter(feeds.values())))

    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fp8conv-calibration") as pool:
        _run_bounded(pool, workers, count, _numbered(batches), done)
    return merge_statistics(sets)


def merge_statistics(sets: Iterable[dict[str, calibration.Statistics]]) -> dict[str, calibration.Statistics]:
    """The first set with every later one merged into it, group by group, in order (exact: see the module docstring)."""
    iterator = iter(sets)
    merged = next(iterator)
    for other in iterator:
        for group, statistic in other.items():
            merged[group].merge(statistic)  # type: ignore[arg-type]
    return merged


def _numbered(batches: Iterable[dict[str, np.ndarray]]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Each batch with the index of its first sample."""
    first = 0
    for feeds in batches:
        yield first, feeds
        first += len(next(iter(feeds.values())))


def _run_bounded(
    pool: concurrent.futures.Executor,
    bound: int,
    task: Callable[[tuple[int, dict[str, np.ndarray]]], int],
    items: Iterable[tuple[int, dict[str, np.ndarray]]],
    done: Callable[[int], object],
) -> None:
    """Submit ``task(item)`` for each item with at most ``bound`` in flight; ``done(result)`` as each ends.

    The first exception a task raises propagates (after the tasks in flight finish).
    """
    pending: set[concurrent.futures.Future[int]] = set()
    try:
        for item in items:
            if len(pending) >= bound:
                finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    done(future.result())
            pending.add(pool.submit(task, item))
        for future in concurrent.futures.as_completed(pending):
            done(future.result())
    finally:
        for future in pending:
            future.cancel()


def limited_batches(samples: SampleSet, batch_size: int, limit: int) -> Iterator[dict[str, np.ndarray]]:
    """The sample batches without labels, cut to ``limit`` samples in all."""
    seen = 0
    for feeds in samples.batches(batch_size):
        if seen >= limit:
            return
        feeds.pop(LABELS_KEY, None)
        size = len(next(iter(feeds.values())))
        if seen + size > limit:
            feeds = {name: array[: limit - seen] for name, array in feeds.items()}
            size = limit - seen
        seen += size
        yield feeds
