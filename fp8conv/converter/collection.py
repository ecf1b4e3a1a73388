"""Collect activation statistics: run the exact FP8 reference over the calibration samples.

Every activation group of the plan gets one statistic (:mod:`fp8conv.converter.calibration`):

* a :class:`~fp8conv.converter.calibration.CodeHistogram` when every tensor of the group is the float32
  output of a per-tensor FP8 quantizer, all of one format and scale, and the range method's entry in
  :data:`~fp8conv.converter.calibration.registry.RANGE_METHODS` does not ask for a float histogram: the
  reference returns those tensors as float16 grid values (``ReferenceRunner(capture_grid=...)``), whose
  bit patterns name the FP8 codes, so counting is one exact pass over two bytes per value;
* a :class:`~fp8conv.converter.calibration.StreamingHistogram` otherwise (tensors that no FP8 quantizer
  produced, and the continuous methods such as entropy and percentile).

Each value is counted once, where it leaves the group's data movement (``ActivationPoint.counted``): a
tensor that a data-movement op copied from another tensor of its group (a Reshape, a Concat's output)
holds values already counted, unless its sources feed nothing else; then the copy is counted instead. A
Relu output read only by a MaxPool is counted as the MaxPool's output: the values MaxPool drops never
reach an integer op, and the ones it keeps are on the FP8 grid when the source quantized there.

Parallelism: ``workers`` threads each take a batch, run it through one shared onnxruntime session (each
run computes on its caller's thread when there are as many workers as cores) and add its values to
their own set of statistics; the sets are merged at the end. A batch's reference run and another batch's
counting then overlap, which a single thread cannot do (onnxruntime releases the GIL while it runs). The
merge is exact and the statistics do not depend on the order of their values (see the calibration
module), so the result is the same for any number of workers and any scheduling. At most ``workers``
batches are in memory at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np
import onnx_ir as ir
from tqdm import tqdm

from fp8conv.config import ConversionConfig
from fp8conv.converter import calibration
from fp8conv.converter.data import LABELS_KEY, SampleSet
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import is_fake_quantize
from fp8conv.passes.plan import ActivationPoint, QuantizationPlan
from fp8conv.passes.reference_runner import ReferenceRunner

__all__ = ["InputStatistic", "StatisticsCollector", "calibration_workers"]

logger = logging.getLogger(__name__)

_MAX_WORKERS = 2


def calibration_workers(config: ConversionConfig) -> int:
    """Threads that calibrate at once: ``config.calibration_workers``, else 2 on a machine with 2+ CPUs."""
    if config.calibration_workers is not None:
        return config.calibration_workers
    return max(1, min(_MAX_WORKERS, _available_cpus()))


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class InputStatistic(Protocol):
    """A statistic of a tensor that counts each sample at its index (``InputHessian``, ``ChannelMean``).

    One object serves every worker (it is thread-safe); its result does not depend on the batching.
    """

    def update(self, x: np.ndarray, first_sample: int, samples: int | None = None) -> object:
        """Count the batch ``x`` of ``samples`` samples whose first sample has index ``first_sample``."""
        ...


class StatisticsCollector:
    """The exact FP8 reference, built once, with the captures the plan's activation groups need.

    Building it creates the onnxruntime session (the slow part); :meth:`collect` then streams samples.
    """

    def __init__(
        self,
        model: ir.Model,
        plan: QuantizationPlan,
        config: ConversionConfig,
        tensor_statistics: Mapping[str, Sequence[InputStatistic]] | None = None,
    ) -> None:
        """Lower the model and create the reference session.

        Args:
            model: The canonical model (not modified).
            plan: The conversion plan (its activation groups).
            config: Conversion options (range method, batch size, workers, sample limit).
            tensor_statistics: More statistics to feed, by the tensor they count (layer inputs for GPTQ and
                bias correction): the float values the FP8 reference computes there.

        Raises:
            Fp8ConvError: The reference cannot be built.
        """
        self.config = config
        self.workers = calibration_workers(config)
        self._factories, self._captures = _statistics_layout(model, plan, config)
        self._tensor_statistics = {tensor: tuple(stats) for tensor, stats in (tensor_statistics or {}).items()}
        codes = {
            t
            for t, group in self._captures.items()
            if self._factories[group] is not calibration.StreamingHistogram and t not in self._tensor_statistics
        }
        self.runner = ReferenceRunner(
            model,
            capture=sorted((set(self._captures) | set(self._tensor_statistics)) - codes),
            capture_grid=sorted(codes),
            intra_op_threads=max(1, _available_cpus() // self.workers),
        )

    def collect(self, samples: SampleSet, *, progress: bool = False) -> dict[str, calibration.Statistics]:
        """Run the reference over the samples and stream one statistic per activation group.

        Args:
            samples: Calibration samples; batches of ``config.calibration_batch_size`` (or the model's static
                batch size), at most ``config.max_calibration_samples`` samples.
            progress: Show a progress bar.

        Returns:
            ``{group: statistic}`` for every activation group of the plan.

        Raises:
            Fp8ConvError: A reference run fails (one line).
        """
        runner, captures, workers = self.runner, self._captures, self.workers
        free: queue.SimpleQueue[dict[str, calibration.Statistics]] = queue.SimpleQueue()
        sets = [{group: factory() for group, factory in self._factories.items()} for _ in range(workers)]
        for statistics in sets:
            free.put(statistics)

        def count(batch: tuple[int, dict[str, np.ndarray]]) -> int:
            first, feeds = batch
            outputs = runner.run(feeds)
            size = len(next(iter(feeds.values())))
            for tensor, tensor_statistics in self._tensor_statistics.items():
                for statistic in tensor_statistics:
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

        batch_size = runner.static_batch_size or self.config.calibration_batch_size
        limit = min(self.config.max_calibration_samples or samples.num_samples, samples.num_samples)
        with (
            tqdm(total=limit, unit="sample", desc="calibrating", disable=not progress) as bar,
            concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fp8conv-calibration") as pool,
        ):
            _run_bounded(pool, workers, count, _limited_batches(samples, batch_size, limit), bar.update)
        merged = sets[0]
        for other in sets[1:]:
            for group, statistic in other.items():
                merged[group].merge(statistic)  # type: ignore[arg-type]
        logger.info("calibrated %d activation groups on %d samples (%d workers)", len(merged), limit, workers)
        return merged


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


def _limited_batches(samples: SampleSet, batch_size: int, limit: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The sample batches without labels, cut to ``limit`` samples in all, with the index of their first sample."""
    seen = 0
    for feeds in samples.batches(batch_size):
        if seen >= limit:
            return
        feeds.pop(LABELS_KEY, None)
        size = len(next(iter(feeds.values())))
        if seen + size > limit:
            feeds = {name: array[: limit - seen] for name, array in feeds.items()}
            size = limit - seen
        yield seen, feeds
        seen += size


def _statistics_layout(
    model: ir.Model, plan: QuantizationPlan, config: ConversionConfig
) -> tuple[dict[str, Callable[[], calibration.Statistics]], dict[str, str]]:
    """``({group: statistic factory}, {captured tensor: group})``."""
    factories: dict[str, Callable[[], calibration.Statistics]] = {}
    captures: dict[str, str] = {}
    dtypes = _fake_quantize_dtypes(model)
    # The exact FP8-code histogram serves the methods that evaluate the grid (mse, minmax); the continuous
    # ones (entropy, percentile) get the float histogram. See calibration.StatisticKind.
    statistic = calibration.range_method(config.activations_range).statistic
    continuous = statistic is calibration.StatisticKind.STREAMING_HISTOGRAM
    for group, tensors in plan.groups().items():
        points = [plan.points[t] for t in tensors]
        counted = [point for point in points if point.counted] or points
        if not continuous and _uses_code_histogram(counted, dtypes):
            first = counted[0].fp8
            assert first is not None
            fmt, scale = first.spec.format, float(first.scale.reshape(-1)[0])
            factories[group] = lambda fmt=fmt, scale=scale: calibration.CodeHistogram(fmt, scale)
            for point in counted:
                assert point.fp8 is not None
                captures[point.fp8.output] = group
        else:
            factories[group] = calibration.StreamingHistogram
            captures.update({point.tensor: group for point in counted})
    return factories, captures


def _uses_code_histogram(points: list[ActivationPoint], dtypes: Mapping[str, ir.DataType | None]) -> bool:
    """Whether every tensor is the float32 output of a per-tensor FP8 quantizer, all of one format and scale.

    One grid for all: the counts are of codes, and a code's value is ``decode(code) * scale``.
    """
    grids = set()
    for point in points:
        fp8 = point.fp8
        if (
            fp8 is None
            or not fp8.spec.format.fits_code
            or fp8.scale.size != 1
            or dtypes.get(fp8.output) != ir.DataType.FLOAT
        ):
            return False
        grids.add((fp8.spec.format, float(fp8.scale.reshape(-1)[0])))
    return len(grids) == 1


def _fake_quantize_dtypes(model: ir.Model) -> dict[str, ir.DataType | None]:
    """Element type each FakeQuantize computes in, by output name.

    Declared output types are often missing (no value_info); the scale's type decides then, since ONNX
    QuantizeLinear computes in the scale's type (x and scale share it up to opset 21).
    """
    dtypes: dict[str, ir.DataType | None] = {}
    for node in model.graph:
        if not is_fake_quantize(node):
            continue
        output = node.outputs[0]
        scale = node.inputs[1]
        dtypes[output.name or ""] = output.dtype or (scale.dtype if scale is not None else None)
    return dtypes
