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

Parallelism, in one process: ``workers`` threads each take a batch, run it through one shared onnxruntime
session and add its values to their own set of statistics, merged at the end
(:func:`~fp8conv.converter.counting.count_batches`). Across processes: with ``jobs`` > 1 (or the ``ray``
executor) the samples split into contiguous shards of whole batches, each calibrated by a worker process or
Ray task that opens the same lowered reference from its bytes, and the shards' statistics merge in shard
order (:mod:`fp8conv.converter.shards`, which proves the result byte-identical). The merges are exact and the
statistics do not depend on the order of their values (see the calibration module), so the result is the
same for any number of workers, jobs and any scheduling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import onnx_ir as ir
from tqdm import tqdm

from fp8conv.config import ConversionConfig
from fp8conv.converter import calibration
from fp8conv.converter.counting import (
    CodeHistogramOf,
    InputStatistic,
    StatisticsLayout,
    count_batches,
    limited_batches,
)
from fp8conv.converter.data import SampleSet
from fp8conv.converter.executors import make_executor
from fp8conv.converter.shards import (
    ShardContext,
    ShardResult,
    available_cpus,
    calibrate_shard,
    merge_shards,
    plan_shards,
)
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import is_fake_quantize
from fp8conv.passes.plan import ActivationPoint, QuantizationPlan
from fp8conv.passes.reference_runner import ReferenceRunner

__all__ = ["InputStatistic", "StatisticsCollector", "calibration_workers"]

logger = logging.getLogger(__name__)

_MAX_WORKERS = 2


def calibration_workers(config: ConversionConfig) -> int:
    """Threads that calibrate at once (in each process): ``config.calibration_workers``, else 2 on 2+ CPUs."""
    if config.calibration_workers is not None:
        return config.calibration_workers
    return max(1, min(_MAX_WORKERS, available_cpus()))


class StatisticsCollector:
    """The exact FP8 reference, built once, with the captures the plan's activation groups need.

    Building it creates the onnxruntime session (the slow part); :meth:`collect` then streams samples, in this
    process or in shards (``config.jobs``, ``config.executor``).
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
            config: Conversion options (range method, batch size, workers, jobs, executor, sample limit).
            tensor_statistics: More statistics to feed, by the tensor they count (layer inputs for GPTQ and
                bias correction): the float values the FP8 reference computes there. They are counted in this
                process only (``config.jobs`` 1 on the local executor; the option rules refuse the others).

        Raises:
            Fp8ConvError: The reference cannot be built.
        """
        self.config = config
        self.workers = calibration_workers(config)
        self._factories, self._captures = _statistics_layout(model, plan, config)
        self.layout = StatisticsLayout(self._factories, self._captures)
        self._tensor_statistics = {tensor: tuple(stats) for tensor, stats in (tensor_statistics or {}).items()}
        codes = set(self.layout.code_tensors()) - set(self._tensor_statistics)
        self.runner = ReferenceRunner(
            model,
            capture=sorted((set(self._captures) | set(self._tensor_statistics)) - codes),
            capture_grid=sorted(codes),
            intra_op_threads=max(1, available_cpus() // self.workers),
        )
        self.shard_results: list[ShardResult] = []
        """What each shard of the last :meth:`collect` reported (empty when it ran in this process)."""

    def collect(self, samples: SampleSet, *, progress: bool = False) -> dict[str, calibration.Statistics]:
        """Run the reference over the samples and stream one statistic per activation group.

        Args:
            samples: Calibration samples; batches of ``config.calibration_batch_size`` (or the model's static
                batch size), at most ``config.max_calibration_samples`` samples.
            progress: Show a progress bar (per batch in this process, per shard with ``jobs``).

        Returns:
            ``{group: statistic}`` for every activation group of the plan.

        Raises:
            Fp8ConvError: A reference run fails (one line), or Ray is asked for and not installed.
        """
        batch_size = self.runner.static_batch_size or self.config.calibration_batch_size
        limit = min(self.config.max_calibration_samples or samples.num_samples, samples.num_samples)
        jobs, executor = self.config.jobs, self.config.executor.value
        self.shard_results = []
        with tqdm(total=limit, unit="sample", desc="calibrating", disable=not progress) as bar:
            if jobs == 1 and executor == "local":
                batches = limited_batches(samples, batch_size, limit)
                merged = count_batches(
                    self.runner, self.layout, batches, self.workers, bar.update, self._tensor_statistics
                )
            elif self._tensor_statistics:
                raise Fp8ConvError("GPTQ and bias-correction statistics are counted in one process: use --jobs 1")
            else:
                merged = self._collect_shards(samples, batch_size, limit, bar)
        logger.info(
            "calibrated %d activation groups on %d samples (%d workers, %d jobs, %s)",
            len(merged),
            limit,
            self.workers,
            jobs,
            executor,
        )
        return merged

    def _collect_shards(
        self, samples: SampleSet, batch_size: int, limit: int, bar: tqdm
    ) -> dict[str, calibration.Statistics]:
        """Calibrate ``config.jobs`` shards on the configured executor; merge them in shard order."""
        shards = plan_shards(samples, batch_size, limit, self.config.jobs)
        if len(shards) < self.config.jobs:
            logger.info(
                "%d jobs asked for, %d batches of calibration data: %d shards",
                self.config.jobs,
                len(shards),
                len(shards),
            )
        context = ShardContext(self.runner.portable(), self.layout, batch_size, self.workers, len(shards))
        began = time.perf_counter()
        finished = 0

        def done(index: int, result: ShardResult) -> None:
            nonlocal finished
            finished += 1
            shard = shards[index]
            bar.update(shard.size)
            bar.set_postfix_str(f"shard {finished}/{len(shards)}")
            logger.info(
                "calibration shard %d/%d (samples %d-%d) done in %.2f s (%.2f s opening the reference), %.2f s in",
                index + 1,
                len(shards),
                shard.start,
                shard.stop - 1,
                result.seconds,
                result.open_seconds,
                time.perf_counter() - began,
            )

        with make_executor(self.config.executor, len(shards)) as pool:
            self.shard_results = pool.map(calibrate_shard, context, shards, done)
        return merge_shards(self.shard_results)


def _statistics_layout(
    model: ir.Model, plan: QuantizationPlan, config: ConversionConfig
) -> tuple[dict[str, Callable[[], calibration.Statistics]], dict[str, str]]:
    """``({group: statistic factory}, {captured tensor: group})``."""
    factories: dict[str, Callable[[], calibration.Statistics]] = {}  # pickled for shards: no lambdas
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
            factories[group] = CodeHistogramOf(fmt, scale)
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
