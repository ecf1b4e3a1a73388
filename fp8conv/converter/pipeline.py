"""``fp8conv.convert``: FP8 model in, integer QDQ model out, with a record of every decision.

Steps (each delegated to the module that owns it):

1. :func:`fp8conv.load`: read any FP8 dialect into canonical form.
2. :func:`~fp8conv.passes.plan.plan_conversion`: which layers become integer, where quantizers go.
3. Weights: the exact FP8 weights, requantized per output channel (INT8/7-bit) or per channel/block
   (INT4) with the chosen range method (:mod:`fp8conv.runtime.integer_quantization`).
4. Activations: the exact FP8 reference (:class:`~fp8conv.passes.reference_runner.ReferenceRunner`) runs
   over the calibration data once; streaming statistics per activation group (an exact FP8-code histogram
   where an FP8 quantizer produced the tensor, a growing histogram elsewhere); ranges by the chosen
   method; scale and zero point (:mod:`fp8conv.converter.calibration`). Without data, ranges come from
   the FP8 quantizers' formats and scales (``fp8`` method) and the result says so. With ``weight_rounding=gptq``
   or ``bias_correction``, the same run also counts each integer layer's input (``H = 2XᵀX/n``, ``E[x]``) and
   :mod:`~fp8conv.converter.weight_methods` then refines the step-3 weights (GPTQ) and the biases.
5. :func:`~fp8conv.passes.emit_qdq.emission_pipeline` writes the integer QDQ graph (a sequence of
   passes, each recorded in the result); metadata records the fp8conv version, target and methods.
6. :func:`convert_file` saves atomically and audits which layers onnxruntime runs on integer kernels
   (:func:`write_converted`: one serialization, written and audited;
   :func:`fp8conv.convert_and_verify` verifies the same bytes).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from fp8conv._version import __version__
from fp8conv.config import ActivationRange, ConversionConfig, IntegerType, LayerPrecision, Target, checked_call
from fp8conv.converter import calibration
from fp8conv.converter.auto_int16 import int16_outliers, promote_outliers_to_int16
from fp8conv.converter.calibration.sqnr import int8_sqnr_db
from fp8conv.converter.collection import StatisticsCollector
from fp8conv.converter.data import DataSource, SampleSet, open_samples
from fp8conv.converter.data_free_ranges import data_free_range
from fp8conv.converter.files import atomic_write, check_writable
from fp8conv.converter.grouping import group_by_message, subject
from fp8conv.converter.loading import LoadedModel, ModelInput, load
from fp8conv.converter.postconditions import check_written
from fp8conv.converter.refusals import nothing_to_convert, refuse_unread_fp8, require_work
from fp8conv.converter.results import ActivationRecord, ConversionResult, LayerRecord
from fp8conv.converter.saving import (
    EXTERNAL_DATA_THRESHOLD_BYTES,
    needs_external_data,
    remove_written_model,
    save_model,
    self_contained_proto,
    write_atomically,
)
from fp8conv.converter.stopwatch import Stopwatch
from fp8conv.converter.weight_methods import layer_input_statistics, refine_weights
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.emit_qdq import ActivationQuantization, WeightQuantization, emission_pipeline
from fp8conv.passes.plan import (
    ActivationPoint,
    DecisionCode,
    Layer,
    QuantizationPlan,
    QuantizerDecision,
    plan_conversion,
)
from fp8conv.runtime.audit import audit_integer_kernels
from fp8conv.runtime.fusion_rules import range_inside_clip
from fp8conv.runtime.integer_quantization import QuantizedWeights, quantize_weights
from fp8conv.runtime.integer_types import integer_type

__all__ = [
    "EXTERNAL_DATA_THRESHOLD_BYTES",
    "ActivationRecord",
    "ConversionResult",
    "LayerRecord",
    "SerializedModel",
    "convert",
    "convert_file",
    "default_output_path",
    "open_calibration_samples",
    "int8_sqnr_db",
    "int16_outliers",
    "promote_outliers_to_int16",
    "remove_written_model",
    "save_model",
    "write_converted",
]

logger = logging.getLogger(__name__)

_SCHEDULING_OPTIONS = frozenset({"calibration_batch_size", "calibration_workers", "jobs", "executor"})
_UNRECORDED_DEFAULTS = {
    "placement": "target",
    "weight_rounding": "rtn",
    "gptq_damp": 0.01,
    "gptq_act_order": False,
    "bias_correction": False,
}
"""Options added after the metadata format, recorded only when not at their default: the files the default writes
stay byte-identical to those written before the option existed (a file without the key was placed for the target)."""


def convert(
    model: ModelInput | LoadedModel,
    to: str | Target | None = None,
    data: DataSource | None = None,
    *,
    config: ConversionConfig | None = None,
    progress: bool = False,
    **options: Any,
) -> ConversionResult:
    """Convert an FP8 fake-quantized model to an integer QDQ model (in memory: see :meth:`ConversionResult.save`).

    Args:
        model: Path, ``onnx.ModelProto``, ``onnx_ir.Model``, ``onnx_graphsurgeon.Graph`` or a
            :class:`~fp8conv.LoadedModel`; never modified.
        to: Target: ``int8``, ``int4``, ``w8a16`` or ``w4a16`` (None: ``config``'s, else ``int8``).
        data: Calibration samples: an ``.npz`` file or directory, ``{input name: array}``, an array (a model
            with one input), a reader of feeds (``get_next()`` returning ``{input name: array}`` then None,
            as onnxruntime's ``CalibrationDataReader``, or any iterable of such dicts) or a :class:`SampleSet`
            (:func:`~fp8conv.converter.data.open_samples`); None for data-free ranges from the FP8 quantizers.
        config: Full configuration (``to`` and ``options`` override its fields).
        progress: Show a progress bar during calibration.
        **options: The conversion options of :data:`fp8conv.options.OPTIONS` (``weights_range="max"``,
            ``keep_float=[...]``, ``auto_int16=25``, ``max_samples=256``, …).

    Returns:
        The converted model and the record of every decision.

    Raises:
        Fp8ConvError: Bad model, data or options (an unknown keyword, with the close names; a bad value or a
            contradiction, in one line naming the option); a model without FP8 quantization points, or none of
            whose layers the target converts (nothing to do).
        InternalError: The emitted model violates a postcondition (:mod:`~fp8conv.converter.postconditions`).
    """
    stopwatch = Stopwatch()
    config, _ = checked_call("convert", {"to": to, "data": data, **options}, config)
    loaded = model if isinstance(model, LoadedModel) else load(model)
    # A model loaded here is ours to rewrite; a caller's LoadedModel is cloned first (its graph copied, the
    # tensors shared: no pass edits a tensor). The plan holds the nodes of the model the emission rewrites.
    canonical = loaded.model.clone() if isinstance(model, LoadedModel) else loaded.model
    stopwatch.lap("load")
    warnings: list[str] = []
    if not loaded.quant_points:
        raise Fp8ConvError(nothing_to_convert(loaded))
    refuse_unread_fp8(canonical, loaded)
    plan = plan_conversion(canonical, config)
    require_work(plan, loaded, config)
    stopwatch.lap("plan")
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fp8conv-background") as background:
        # Neither reading the samples nor the weights depends on the reference: both run beside it.
        samples_ready = (
            background.submit(open_calibration_samples, data, canonical, loaded.constant_inputs)
            if data is not None
            else None
        )
        weights_done = background.submit(_quantize_layer_weights, plan, config)
        statistics: dict[str, calibration.Statistics] = {}
        layer_inputs = layer_input_statistics(plan, config) if samples_ready is not None else None
        if samples_ready is None:
            if plan.points and config.activations_range is not ActivationRange.FP8:
                warnings.append(
                    "no calibration data: activation ranges are derived from the FP8 quantizers' formats and "
                    "scales (data-free 'fp8' method); pass --data for calibrated ranges"
                )
                config = config.replace(activations_range=ActivationRange.FP8)
            samples = None
        else:
            tensors = layer_inputs.by_tensor() if layer_inputs is not None else None
            collector = StatisticsCollector(canonical, plan, config, tensors)
            stopwatch.lap("reference session")
            samples = samples_ready.result()
            stopwatch.lap("calibration data")
            statistics = collector.collect(samples, progress=progress)
            stopwatch.lap("calibration")
        weights, weight_ranges = weights_done.result()
        stopwatch.lap("weights")
    refined = refine_weights(plan, weights, layer_inputs, config) if layer_inputs is not None else None
    if refined is not None:
        weights = refined.weights
        stopwatch.lap("weight methods")
    auto_int16: list[dict[str, Any]] = []
    if statistics and config.auto_int16_below_db is not None:
        outliers = int16_outliers(plan, statistics, config)
        auto_int16 = [
            {"tensors": list(tensors), "int8_sqnr_db": sqnr, "layers": _readers(plan, tensors)}
            for tensors, sqnr in outliers
        ]
        plan = promote_outliers_to_int16(plan, statistics, config, outliers)
    activations, activation_records = _activation_quantization(canonical, plan, statistics, config, warnings)
    stopwatch.lap("ranges")
    converted = canonical
    corrections = refined.corrected_biases if refined is not None else None
    emitted = emission_pipeline(plan, _emission_weights(weights), activations, corrections)(converted)
    _record_metadata(converted, config)
    kept_float = [layer.node for layer in plan.layers if layer.decision.code is DecisionCode.KEPT_FLOAT]
    written = check_written(converted, plan.layers, kept_float=kept_float)
    stopwatch.lap("emission")
    float_warnings, notes = _float_layer_messages(plan.layers)
    warnings += float_warnings
    return ConversionResult(
        model=converted,
        config=config,
        source=loaded.source,
        dialects=loaded.dialects,
        layers=[
            _layer_record(layer, weights.get(layer.graph_node), weight_ranges.get(layer.graph_node))
            for layer in plan.layers
        ],
        activations=activation_records,
        warnings=warnings,
        calibration_samples=_samples_used(samples, config),
        seconds=stopwatch.total,
        stage_seconds=stopwatch.seconds,
        written=written,
        emission_passes=emitted.passes,
        notes=notes,
        calibration_source=samples.source if samples is not None else None,
        auto_int16=auto_int16,
        fp8_quantizers=[_quantizer_record(decision) for decision in plan.quantizer_decisions],
        weight_methods=refined.record if refined is not None else None,
    )


def _float_layer_messages(layers: tuple[Layer, ...]) -> tuple[list[str], list[str]]:
    """(warnings, notes) about the layers that stay float, one message per reason.

    A layer a keep_float pattern selects is a note (the user asked for it); any other reason is a warning.
    Layers the FP8 source did not quantize are not mentioned.
    """
    warned, noted = [], []
    for layer in layers:
        if layer.is_integer or layer.decision.code is DecisionCode.NOT_QUANTIZED:
            continue
        (noted if layer.decision.code is DecisionCode.KEPT_FLOAT else warned).append(layer)
    by_node = {layer.node: layer for layer in layers}

    def messages(group: list[Layer]) -> list[str]:
        lines = []
        for nodes, reason in group_by_message((layer.node, layer.reason) for layer in group):
            single = f"{nodes[0]} ({by_node[nodes[0]].op_type})"
            verb = "stays" if len(nodes) == 1 else "stay"
            lines.append(f"{subject(nodes, 'layer', single)} {verb} float: {reason}")
        return lines

    return messages(warned), messages(noted)


def _quantizer_record(decision: QuantizerDecision) -> dict[str, Any]:
    """The ``fp8_quantizers`` entry of one decision about an FP8 activation quantizer."""
    point = decision.point
    return {
        "tensor": point.tensor,
        "quantizer": point.node,
        "code": decision.decision.code.value,
        "reason": decision.decision.message,
        "readers": list(decision.readers),
        "dropped": decision.dropped,
    }


def _readers(plan: QuantizationPlan, tensors: tuple[str, ...]) -> list[str]:
    """The layers reading any of ``tensors``, in plan order."""
    return [layer.node for layer in plan.layers if any(tensor in layer.inputs for tensor in tensors)]


def convert_file(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    to: str | Target | None = None,
    data: DataSource | None = None,
    audit: bool = True,
    external_data: bool | None = None,
    progress: bool = False,
    **options: Any,
) -> ConversionResult:
    """Convert ``src`` and write the result to ``dst`` (default ``<stem>.<target>.onnx`` beside it).

    The output is written atomically; ``src`` is never modified; the same input and options give a
    byte-identical file. With ``audit``, onnxruntime loads the written model and the result records
    which layers run on integer kernels.

    Args:
        src: The FP8 model file.
        dst: Output path.
        to: Target (see :func:`convert`; None: ``int8``).
        data: Calibration data (as :func:`convert`).
        audit: Run the integer-kernel audit after writing.
        external_data: Save weights as external data (None: when the model is larger than 1 GiB).
        progress: Show progress bars.
        **options: The conversion options (as :func:`convert`).

    Returns:
        The conversion result, with ``output_path``, ``output_size_bytes`` and ``audit`` set.

    Raises:
        Fp8ConvError: Bad input or options, or an output path equal to the input or that cannot be written.
    """
    src = Path(src)
    keywords = {"audit": audit, "external_data": external_data}
    config, _ = checked_call("convert_file", {"to": to, "data": data, **keywords, **options})
    destination = Path(dst) if dst is not None else default_output_path(src, config.target)
    if destination.resolve() == src.resolve():
        raise Fp8ConvError(f"{destination}: the output would overwrite the input model")
    check_writable(destination, directory=False, what="model")
    result = convert(src, config.target, data, config=config, progress=progress)
    write_converted(result, destination, audit=audit, external_data=external_data)
    return result


@dataclasses.dataclass(frozen=True)
class SerializedModel:
    """The one serialization of a written model (:func:`write_converted`): the file's bytes.

    Attributes:
        serialized: ``self_contained_proto(model).SerializeToString()``: the bytes written (the protobuf
            is not kept: the audit reads the onnx_ir model itself).
    """

    serialized: bytes = dataclasses.field(repr=False)


def write_converted(
    result: ConversionResult,
    destination: str | os.PathLike,
    *,
    audit: bool = True,
    external_data: bool | None = None,
    before_writing: Callable[[bytes], object] | None = None,
) -> SerializedModel | None:
    """Write a conversion's model atomically to ``destination`` and audit it (:func:`convert_file`'s second half).

    Sets ``result.output_path``, ``output_size_bytes``, ``audit`` (with ``audit``) and the ``save`` and
    ``audit`` stages. A model without external data is serialized once: the bytes written are the bytes the
    audit's onnxruntime session loads (built while they are written), and they are returned for more
    sessions to load. The file is renamed into place only once the audit has succeeded: a model onnxruntime
    refuses (bad input, exit code 2) leaves nothing behind.

    Args:
        result: The conversion.
        destination: The ``.onnx`` path (external data, if any, beside it).
        audit: Run the integer-kernel audit on the written model.
        external_data: Save weights as external data (None: when the model is larger than 1 GiB).
        before_writing: Called with the bytes before they are written (a check that may raise; nothing is
            written then). Not called for a model saved with external data.

    Returns:
        The serialization, or None for a model saved with external data (its files are the model).
    """
    destination = Path(destination)
    stopwatch = Stopwatch()
    external = needs_external_data(result.model) if external_data is None else external_data
    result.output_path = destination
    written: SerializedModel | None = None
    if not external:
        written = SerializedModel(self_contained_proto(result.model).SerializeToString())
        if before_writing is not None:
            before_writing(written.serialized)
    if written is not None and audit:
        # One serialization serves both: onnxruntime builds the audit session while the bytes are written.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fp8conv-audit") as pool:
            audited = pool.submit(audit_integer_kernels, result.model, serialized=written.serialized)
            with atomic_write(destination) as handle:
                handle.write(written.serialized)
                stopwatch.lap("save")
                result.audit = audited.result()
            result.output_size_bytes = len(written.serialized)
        stopwatch.lap("audit")
    elif written is not None:
        result.output_size_bytes = write_atomically(written.serialized, destination)
        stopwatch.lap("save")
    else:
        result.output_size_bytes = save_model(result.model, destination, external_data=True)
        stopwatch.lap("save")
        if audit:
            try:
                result.audit = audit_integer_kernels(destination)
            except BaseException:
                remove_written_model(destination)
                raise
            stopwatch.lap("audit")
    result.stage_seconds.update(stopwatch.seconds)
    return written


def default_output_path(src: Path, target: Target) -> Path:
    """``<dir>/<stem>.<target>.onnx`` for ``<dir>/<stem>.onnx``."""
    return src.with_name(f"{src.stem}.{target.value}.onnx")


# -- weights --------------------------------------------------------------------------------------


def _weight_granularity(layer: Layer, config: ConversionConfig) -> tuple[int | None, int | None]:
    """(axis, block_size) for the layer's integer weight."""
    if layer.precision is LayerPrecision.INT4 and layer.op_type != "Conv" and config.int4_block_size:
        return layer.block_axis, config.int4_block_size
    return layer.weight_axis, None


def _quantize_layer_weights(
    plan: QuantizationPlan, config: ConversionConfig
) -> tuple[dict[ir.Node, QuantizedWeights], dict[ir.Node, tuple[float, float]]]:
    """Integer weights of the integer layers, and every constant weight's (min, max) for the records.

    Both are keyed by the layer's node (``Layer.graph_node``).

    A weight given as FP8 codes is quantized from its codes (decoded only when its grouping needs the
    elements), and its (min, max) comes from the same counts; other weights are decoded once.
    """
    weights: dict[ir.Node, QuantizedWeights] = {}
    ranges: dict[ir.Node, tuple[float, float]] = {}
    for layer in plan.layers:
        node = layer.graph_node
        if not layer.has_weight:
            continue
        if not layer.is_integer:
            values = layer.weight_values
            assert values is not None
            ranges[node] = (float(values.min()), float(values.max()))
            continue
        axis, block_size = _weight_granularity(layer, config)
        bits = 4 if layer.precision is LayerPrecision.INT4 else config.weight_bits
        try:
            quantized = quantize_weights(
                layer.weight_codes if layer.weight_codes is not None else layer.weight_values,  # type: ignore[arg-type]
                axis=axis,
                bits=bits,
                method=config.weights_range.value,
                block_size=block_size,
            )
        except ValueError as error:
            raise Fp8ConvError(f"layer {layer.node}: cannot quantize its weight: {error}") from error
        weights[node] = quantized
        ranges[node] = quantized.value_range
    return weights, ranges


def _emission_weights(weights: Mapping[ir.Node, QuantizedWeights]) -> dict[ir.Node, WeightQuantization]:
    return {
        node: WeightQuantization(q=w.q, scale=w.scale, axis=w.axis, block_size=w.block_size, bits=w.bits)
        for node, w in weights.items()
    }


def _layer_record(
    layer: Layer, weights: QuantizedWeights | None, weight_range: tuple[float, float] | None
) -> LayerRecord:
    record = LayerRecord(layer.node, layer.op_type, layer.precision.value, layer.activation_bits, layer.reason)
    if weights is not None:
        record.weight_bits = weights.qmax.bit_length() + 1
        record.weight_method = weights.method
        record.weight_granularity = (
            "blocked" if weights.block_size else "per-tensor" if weights.axis is None else "per-channel"
        )
        record.clip_ratio_min = float(np.min(weights.clip_ratio))
        record.clip_ratio_max = float(np.max(weights.clip_ratio))
        record.weight_mse = float(np.mean(weights.mse))
    record.weight_range = weight_range
    return record


# -- activations ----------------------------------------------------------------------------------


def _samples_used(samples: SampleSet | None, config: ConversionConfig) -> int:
    """How many samples calibration ran on (at most ``max_calibration_samples``)."""
    if samples is None:
        return 0
    return min(config.max_calibration_samples or samples.num_samples, samples.num_samples)


def open_calibration_samples(data: DataSource | None, model: ir.Model, constants: tuple[str, ...]) -> SampleSet | None:
    """The samples of ``data`` for the inputs of ``model`` that are not initializers (None: no data)."""
    if data is None:
        return None
    names = [value.name or "" for value in model.graph.inputs if value.name not in model.graph.initializers]
    return open_samples(data, names, constants=constants)


def _qtype(point: ActivationPoint, config: ConversionConfig) -> IntegerType:
    return IntegerType.for_activations(point.bits, config.activation_type)


def _activation_quantization(
    model: ir.Model,
    plan: QuantizationPlan,
    statistics: Mapping[str, calibration.Statistics],
    config: ConversionConfig,
    warnings: list[str],
) -> tuple[dict[str, ActivationQuantization], list[ActivationRecord]]:
    quantizations: dict[str, ActivationQuantization] = {}
    records: list[ActivationRecord] = []
    groups = plan.groups()
    qtypes = {
        group: max((_qtype(plan.points[t], config) for t in tensors), key=lambda qtype: integer_type(qtype).bits)
        for group, tensors in groups.items()
    }
    ranges = _calibrated_ranges(statistics, qtypes, config)
    for group, tensors in groups.items():
        points = [plan.points[t] for t in tensors]
        qtype = qtypes[group]
        method = config.activations_range.value
        stats = statistics.get(group)
        if stats is None or method == "fp8":
            low, high, source = data_free_range(model, plan, points, qtype)
            method = "fp8"
            if source == "borrowed":
                warnings.append(
                    f"activation {tensors[0]}: no FP8 quantizer reads it; data-free range borrowed from the "
                    "nearest FP8 quantizer downstream"
                )
            kind = "none (data-free)"
        elif stats.count == 0:
            raise Fp8ConvError(f"activation {tensors[0]}: calibration saw no finite values")
        else:
            low, high = ranges[group]
            kind = type(stats).__name__
            if low == high == 0.0:
                warnings.append(
                    f"activation {tensors[0]}: the calibration data gave it only zeros, so its range is (0, 0) "
                    "(scale 1): calibrate on data that represents the task"
                )
        low, high = _inside_clip_bounds(points, low, high)
        scale, zero_point = calibration.quantization_params(low, high, qtype.value)
        quantizations[group] = ActivationQuantization(float(scale), int(zero_point), qtype)
        records.append(
            ActivationRecord(
                tensors=tuple(tensors),
                dtype=qtype.value,
                method=method,
                low=float(low),
                high=float(high),
                scale=float(scale),
                zero_point=int(zero_point),
                statistics=kind,
                fp8_source=tuple(point.fp8.node for point in points if point.fp8 is not None),
            )
        )
    return quantizations, records


def _calibrated_ranges(
    statistics: Mapping[str, calibration.Statistics], qtypes: Mapping[str, IntegerType], config: ConversionConfig
) -> dict[str, tuple[float, float]]:
    """``{group: (low, high)}`` from the statistics by the configured method (not for ``fp8``).

    One thread: the searches are many small NumPy calls, which two threads only make slower (GIL).
    """
    method = config.activations_range.value
    spec = calibration.range_method(method)
    options = spec.config_options(config)
    return {
        group: spec(stats, qtypes[group].value, **options)
        for group, stats in statistics.items()
        if method != "fp8" and stats.count > 0 and group in qtypes
    }


def _inside_clip_bounds(points: list[ActivationPoint], low: float, high: float) -> tuple[float, float]:
    """Keep the range inside the bounds of a Clip producing the tensors (ReLU6), so onnxruntime folds the Clip.

    The rule is onnxruntime's (ClipQuantFusion): :func:`~fp8conv.runtime.fusion_rules.range_inside_clip`.
    """
    return range_inside_clip(low, high, (point.clip for point in points if point.clip is not None))


# -- metadata -------------------------------------------------------------------------------------


def _record_metadata(model: ir.Model, config: ConversionConfig) -> None:
    model.metadata_props["fp8conv.version"] = __version__
    model.metadata_props["fp8conv.target"] = config.target.value
    model.metadata_props["fp8conv.weights_range"] = config.weights_range.value
    model.metadata_props["fp8conv.activations_range"] = config.activations_range.value
    model.metadata_props["fp8conv.weight_bits"] = str(config.weight_bits)
    # The calibration batch size, workers, jobs and executor only schedule the work (the statistics do not depend
    # on them): not recorded, so the same conversion gives the same file on any machine and with any batching.
    recorded = {
        key: value
        for key, value in config.to_json().items()
        if key not in _SCHEDULING_OPTIONS and _UNRECORDED_DEFAULTS.get(key, object()) != value
    }
    model.metadata_props["fp8conv.config"] = json.dumps(recorded, sort_keys=True)
    model.producer_name = "fp8conv"
    model.producer_version = __version__
