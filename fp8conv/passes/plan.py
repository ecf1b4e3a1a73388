"""Decide, for a model in canonical FP8 form, what becomes integer and where the quantizers go.

The plan is pure analysis (the graph is not changed). It answers, for onnxruntime's CPU fusion rules
(:mod:`fp8conv.runtime.fusion_rules`):

1. **Layers.** Every Conv / MatMul / Gemm is a layer. A layer is converted when the FP8 source quantized
   it (its weight or its input went through an FP8 quantizer, possibly followed by data movement such
   as ``Transpose``/``Reshape``) and no override keeps it float. Its weight is read exactly as the FP8
   model used it (``decode(codes)·scale`` or ``fake_quantize(w)``) and as the layer reads it: data
   movement between the weight's quantizer and the layer is replayed on the stored weight
   (:mod:`fp8conv.passes.data_movement`), so the integer weight is stored in the layer's layout.
   For ``w4a16`` a ``Gemm(transB=1)`` also gets its weight stored transposed (``[K, N]``) and
   ``transB=0``: ``A·Bᵀ = A·(Bᵀ)``, the layout onnxruntime's MatMulNBits fusion needs.
2. **Activation points** (tensors that get ``QuantizeLinear → DequantizeLinear``):

   a. the data inputs of converted layers (for FP8 activation quantizers: the tensor the FP8 quantizer
      read, so the INT8 quantizer replaces it in place, keeping both tensor names);
   b. the output of a converted Conv (QLinearConv needs a quantized output) — after a following
      Relu/Clip, which onnxruntime folds into the quantizer's zero point; MatMul/Gemm outputs are
      quantized only when (a) or (c) asks for it (otherwise they run as MatMulIntegerToFloat/QGemm
      with a float output, adding no error the FP8 model did not have);
   c. forward propagation through ops with integer kernels (Add, Mul, pools, Concat, data movement):
      when every float input of such an op is quantized and its output (after Relu/Clip) feeds only
      quantized consumers, the output is quantized too (QLinearAdd, integer MaxPool, …).
3. **Shared scales.** Data-movement ops (MaxPool, Reshape, Flatten, Transpose, …) and Concat need the
   same scale and zero point on both sides; their tensors are grouped and calibrated together.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import types
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx_ir as ir

from fp8conv.config import ConversionConfig, LayerPrecision, Target
from fp8conv.passes.canonical import (
    FP8_DATA_TYPES,
    QuantPoint,
    collect_quant_points,
    constant_array,
    is_fake_quantize,
    is_fp8_weight_dequantize,
    read_fake_quantize,
)
from fp8conv.passes.clip_bounds import clip_bounds
from fp8conv.passes.data_movement import trace_movement
from fp8conv.passes.dequantize_fp8 import exact_weights
from fp8conv.passes.overrides import layer_names, select_overrides
from fp8conv.runtime.emulator import decode, encode
from fp8conv.runtime.formats import resolve_format
from fp8conv.runtime.fusion_rules import (
    FLOAT_OUTPUT_KERNELS,
    FUSABLE_ACTIVATIONS,
    INTEGER_OPS,
    KERNEL_BITS,
    LAYER_OPS,
    SHARED_SCALE_OPS,
    channel_axis,
    reduction_axis,
)
from fp8conv.runtime.integer_quantization import WeightCodes

__all__ = [
    "ActivationPoint",
    "Decision",
    "DecisionCode",
    "Layer",
    "QuantizationPlan",
    "is_integer_op",
    "layer_nodes",
    "plan_conversion",
    "values_by_name",
]

logger = logging.getLogger(__name__)

NON_NEGATIVE_OPS = frozenset({"Relu", "Sigmoid", "Softmax"})


class DecisionCode(str, enum.Enum):
    """Which rule decided a layer's precision (what code branches on; the message is for people)."""

    KEPT_FLOAT = "kept_float"
    """A keep_float pattern selects the layer."""
    NOT_QUANTIZED = "not_quantized"
    """Neither its weight nor its input went through an FP8 quantizer."""
    TRANS_A = "trans_a"
    """``Gemm(transA=1)``: no integer kernel."""
    WEIGHT_NOT_CONSTANT = "weight_not_constant"
    """The second input is computed, and the layer is not an activation × activation MatMul."""
    WEIGHT_ONLY_ACTIVATION_MATMUL = "weight_only_activation_matmul"
    """``w4a16`` is weight-only: an activation × activation MatMul stays float."""
    WEIGHT_ONLY_CONV = "weight_only_conv"
    """``w4a16`` is weight-only INT4 for MatMul/Gemm: a Conv stays float."""
    ACTIVATION_MATMUL = "activation_matmul"
    """An activation × activation MatMul with FP8 inputs: integer inputs, no weight."""
    WEIGHT_ONLY_INT4 = "weight_only_int4"
    """``w4a16``: INT4 weights, float activations (MatMulNBits)."""
    FP8_WEIGHT = "fp8_weight"
    """The FP8 source quantized the layer's weight."""
    FP8_INPUT = "fp8_input"
    """The FP8 source quantized the layer's input (not its weight)."""
    CONSTANT_INPUT = "constant_input"
    """The layer's quantized input is a constant: nothing to calibrate, it stays float."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """Why a layer has its precision: the rule (``code``) and the sentence reports show (``message``).

    Attributes:
        code: The rule that decided.
        message: What reports, logs and warnings say (notes such as a folded ``transB`` appended).
    """

    code: DecisionCode
    message: str

    def noted(self, note: str) -> Decision:
        """The same decision with ``; <note>`` appended to its message."""
        return Decision(self.code, f"{self.message}; {note}")


@dataclasses.dataclass(frozen=True)
class Layer:
    """A Conv / MatMul / Gemm and what the conversion does with it (frozen: change it with ``dataclasses.replace``).

    Attributes:
        node: Node name (for reports; :func:`fp8conv.load` gives every node a name of its own).
        op_type: Conv, MatMul or Gemm.
        precision: ``LayerPrecision.INT8``, ``INT4`` or ``FLOAT``.
        activation_bits: 8 or 16 for integer activations, None when activations stay float.
        decision: Why this precision (its code for code, its message for reports).
        graph_node: The node itself, in the planned model: what the emission rewrites (nodes are
            identified by object, never by name).
        weight: Name of the value the layer reads as its weight (None for activation × activation).
        weight_source: Name of the stored weight tensor (FP8 initializer or float initializer).
        weight_array: The weight exactly as the FP8 model used it (float32), when it is not given by
            ``weight_codes`` (see :attr:`weight_values`).
        weight_codes: The weight as FP8 codes and scales, when the model stores it so (or fake-quantizes a
            constant) with a per-tensor or per-axis scale: the weight search counts codes, and the float32
            weight is decoded only when asked for.
        weight_axis: Output-channel axis of the weight (Conv 0, MatMul 1, Gemm by transB).
        block_axis: The K axis along which INT4 blocks run.
        bias: Name of a constant bias input, if any.
        bias_add: For a MatMul whose only consumer is ``Add(MatMul, constant bias)``: that Add node.
            onnxruntime fuses MatMul + Add into Gemm, which only becomes QGemm when the bias is an
            int32 DequantizeLinear, so the emission quantizes that bias too.
        needs_zero_bias: A MatMul without bias whose only consumer is an Add of another activation
            (a residual): onnxruntime would fuse that Add into a float Gemm. The emission inserts an
            exact ``+ DequantizeLinear(int32 zeros)`` bias Add, which onnxruntime fuses into QGemm instead.
        inputs: The activation tensors the layer reads (after the FP8 quantizer is looked through).
        fp8_weight: The FP8 quantization point of the weight, if any.
        folds_trans_b: A ``Gemm(transB=1)`` whose weight is given (and emitted) transposed, ``[K, N]``; the
            emission sets ``transB=0``.
    """

    node: str
    op_type: str
    precision: LayerPrecision
    activation_bits: int | None
    decision: Decision
    graph_node: ir.Node = dataclasses.field(repr=False, compare=False)
    weight: str | None = None
    weight_source: str | None = None
    weight_array: np.ndarray | None = dataclasses.field(default=None, repr=False)
    weight_codes: WeightCodes | None = dataclasses.field(default=None, repr=False)
    weight_axis: int | None = None
    block_axis: int | None = None
    bias: str | None = None
    bias_add: ir.Node | None = dataclasses.field(default=None, repr=False, compare=False)
    needs_zero_bias: bool = False
    inputs: tuple[str, ...] = ()
    fp8_weight: QuantPoint | None = None
    folds_trans_b: bool = False

    @property
    def has_weight(self) -> bool:
        """Whether the layer's weight is a constant (given as an array or as codes)."""
        return self.weight_array is not None or self.weight_codes is not None

    @property
    def weight_values(self) -> np.ndarray | None:
        """The weight exactly as the FP8 model used it (float32); decoded anew on each call when given as codes."""
        if self.weight_array is not None:
            return self.weight_array
        return self.weight_codes.decode() if self.weight_codes is not None else None

    @property
    def is_integer(self) -> bool:
        """Whether the layer computes with integer weights."""
        return self.precision is not LayerPrecision.FLOAT

    @property
    def reason(self) -> str:
        """Why this precision, for people (``decision.message``)."""
        return self.decision.message


@dataclasses.dataclass(frozen=True)
class ActivationPoint:
    """A tensor that gets an integer ``QuantizeLinear → DequantizeLinear`` (frozen).

    Attributes:
        tensor: The float tensor quantized (kept under its source name).
        bits: 8 or 16.
        group: Tensors with the same group share scale and zero point.
        fp8: The FP8 quantization point this replaces, if any (its output name is kept for the DQ).
        non_negative: Whether the tensor is known to be >= 0 (after Relu, Softmax, …).
        clip: The constant bounds of a Clip producing the tensor (ReLU6), if any: the integer range is
            kept inside them so onnxruntime can fold the Clip into the quantizer.
        why: Which rule placed it (``layer input``, ``conv output``, ``integer op``).
        copied: The tensor is an output of a data-movement op (MaxPool, Reshape, Concat, …; not Resize)
            whose float inputs are all in the same group: its values are copies of values already on the
            group's grid, so its quantizer changes nothing.
        counted: Calibration counts this tensor's values. Each value the group's integer grid carries to a
            reader outside the group's data movement is counted once, where that reader reads it: a copied
            tensor is not counted, except where its group inputs exist only to feed it (a Relu output read
            by nothing but a MaxPool); there the copy is counted instead of its sources, since the values
            the MaxPool drops never reach an integer op (see ``_mark_counted``).
    """

    tensor: str
    bits: int
    group: str
    fp8: QuantPoint | None
    non_negative: bool
    why: str
    clip: tuple[float, float] | None = None
    copied: bool = False
    counted: bool = True


@dataclasses.dataclass(frozen=True)
class QuantizationPlan:
    """Everything the emission needs to know (frozen: a changed plan is a new one, ``dataclasses.replace``).

    Attributes:
        layers: Every Conv/MatMul/Gemm, converted or not.
        points: Activation points by tensor name (read-only).
        fp8_points: The source model's FP8 quantization points.
        dropped_fp8: FP8 activation quantizers that become float (their consumer stays float).
        integer_readers: The nodes that read an activation point's dequantized tensor rather than the float
            one, decided on the graph as planned: the layers with integer activations and the integer-capable
            ops all of whose float inputs are points (:func:`is_integer_op`).
    """

    layers: tuple[Layer, ...]
    points: Mapping[str, ActivationPoint]
    fp8_points: tuple[QuantPoint, ...]
    dropped_fp8: tuple[QuantPoint, ...]
    integer_readers: frozenset[ir.Node] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "points", types.MappingProxyType(dict(self.points)))
        object.__setattr__(self, "fp8_points", tuple(self.fp8_points))
        object.__setattr__(self, "dropped_fp8", tuple(self.dropped_fp8))
        object.__setattr__(self, "integer_readers", frozenset(self.integer_readers))

    def groups(self) -> dict[str, list[str]]:
        """Tensors per shared-scale group, in a deterministic order."""
        grouped: dict[str, list[str]] = {}
        for point in self.points.values():
            grouped.setdefault(point.group, []).append(point.tensor)
        return grouped


def plan_conversion(model: ir.Model, config: ConversionConfig) -> QuantizationPlan:
    """Analyse a canonical model and decide the conversion (see the module docstring).

    Args:
        model: Model in canonical FP8 form (from :func:`fp8conv.load`).
        config: The conversion options.

    Returns:
        The plan.
    """
    fp8_points = collect_quant_points(model)
    by_output = {point.output: point for point in fp8_points}
    graph = model.graph
    values = values_by_name(graph)
    nodes = layer_nodes(graph)
    overrides = select_overrides([layer_names(node) for node in nodes], config)
    layers = [_plan_layer(node, by_output, config, override) for node, override in zip(nodes, overrides, strict=True)]
    points: dict[str, ActivationPoint] = {}
    activation_bits = config.target.activation_bits

    def add(tensor: str, bits: int, why: str) -> None:
        if tensor in points:
            points[tensor] = dataclasses.replace(points[tensor], bits=max(points[tensor].bits, bits))
            return
        value = values[tensor]
        fp8 = _fp8_point_reading(value, by_output) or _fp8_point_behind_cast(value, by_output)
        points[tensor] = ActivationPoint(tensor, bits, tensor, fp8, _non_negative(value), why, _clip_bounds(value))

    for layer in layers:
        if layer.activation_bits is None:
            continue
        for tensor in layer.inputs:
            add(tensor, layer.activation_bits, "layer input")
    for layer, node in zip(layers, (node for node in graph if _is_layer(node)), strict=True):
        if layer.op_type not in FLOAT_OUTPUT_KERNELS and layer.activation_bits == KERNEL_BITS:  # QLinearConv
            add(_after_fusable_activation(node.outputs[0]).name or "", KERNEL_BITS, "conv output")
    if activation_bits == KERNEL_BITS:
        _propagate_through_integer_ops(graph, points, add)
    _group_shared_scales(graph, points)
    used = {point.fp8.output for point in points.values() if point.fp8 is not None}
    dropped = [p for p in fp8_points if p.role == "activation" and p.output not in used]
    for point in dropped:
        logger.info("FP8 quantizer %s on %s has no integer consumer; it becomes float", point.node, point.tensor)
    integer_layers = {layer.graph_node for layer in layers if layer.activation_bits is not None}
    readers = frozenset(node for node in graph if node in integer_layers or is_integer_op(node, points))
    return unify_activation_bits(QuantizationPlan(layers, points, fp8_points, dropped, readers))


def unify_activation_bits(plan: QuantizationPlan) -> QuantizationPlan:
    """The plan with one integer width per tensor: a tensor is quantized once, whoever reads it.

    A tensor read by an 8-bit and a 16-bit layer (``--int16`` selecting the key projection but not the
    query and value that share its input; an attention MatMul whose other input auto-INT16 promoted), or
    a shared-scale group (Concat, data movement) with points of both widths, gets the widest width, and so
    does every layer reading it, noted in the layer's decision; repeated until nothing changes (a widened
    layer widens its other inputs). Widening is the safe direction: 16-bit activations can only be more
    accurate, at the cost of the integer kernel (onnxruntime CPU has none for 16 bits).

    Args:
        plan: The plan (not changed).

    Returns:
        ``plan`` itself when every tensor already has one width, else the widened plan.
    """
    points, layers = dict(plan.points), list(plan.layers)
    widened = False
    while True:
        changed = False
        widths: dict[str, int] = {}
        for point in points.values():
            widths[point.group] = max(widths.get(point.group, 0), point.bits)
        for name, point in points.items():
            if point.bits != widths[point.group]:
                points[name] = dataclasses.replace(point, bits=widths[point.group])
                changed = True
        for index, layer in enumerate(layers):
            if layer.activation_bits is None:
                continue
            inputs = [t for t in layer.inputs if t in points]
            bits = max([layer.activation_bits, *(points[t].bits for t in inputs)])
            if bits > layer.activation_bits:
                wider = next(t for t in inputs if points[t].bits == bits)
                note = f"INT{bits} activations: its input {wider} is also read by a {bits}-bit layer"
                layers[index] = dataclasses.replace(layer, activation_bits=bits, decision=layer.decision.noted(note))
                logger.info("layer %s: %s", layer.node, note)
                changed = True
            for tensor in inputs:
                if points[tensor].bits < bits:  # the other inputs of a widened layer
                    points[tensor] = dataclasses.replace(points[tensor], bits=bits)
                    changed = True
        if not changed:
            break
        widened = True
    return dataclasses.replace(plan, layers=tuple(layers), points=points) if widened else plan


def values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    """The graph's inputs and node outputs (main graph), by name."""
    values: dict[str, ir.Value] = {value.name: value for value in graph.inputs if value.name}
    for node in graph:
        for value in node.outputs:
            if value.name:
                values[value.name] = value
    return values


def layer_nodes(graph: ir.Graph) -> list[ir.Node]:
    """The graph's layers: its Conv / MatMul / Gemm nodes (ai.onnx), in graph order."""
    return [node for node in graph if _is_layer(node)]


def _is_layer(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in LAYER_OPS


def _look_through_fake_quantize(value: ir.Value | None) -> ir.Value | None:
    """The tensor an FP8 activation quantizer read, if ``value`` is its output; else ``value``."""
    producer = value.producer() if value is not None else None
    if producer is not None and is_fake_quantize(producer):
        return producer.inputs[0]
    return value


def _cast_to_float_input(value: ir.Value | None) -> ir.Value | None:
    """The input of a ``Cast(to=FLOAT)`` producing ``value`` (f16/bf16 FP8 quantizers sit behind one)."""
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "Cast" or producer.domain not in ("", "ai.onnx"):
        return None
    if producer.attributes.get_int("to") != ir.DataType.FLOAT:
        return None
    return producer.inputs[0]


def _fp8_point_behind_cast(value: ir.Value, by_output: dict[str, QuantPoint]) -> QuantPoint | None:
    """The FP8 point whose (f16/bf16) output is cast to float to give ``value``, if any."""
    inner = _cast_to_float_input(value)
    return by_output.get(inner.name or "") if inner is not None else None


def _fp8_point_reading(value: ir.Value, by_output: dict[str, QuantPoint]) -> QuantPoint | None:
    """The FP8 activation point whose input is ``value`` (the quantizer it replaces), if any."""
    for consumer in value.consumers():
        if is_fake_quantize(consumer):
            point = by_output.get(consumer.outputs[0].name or "")
            if point is not None:
                return point
    return None


def _clip_bounds(value: ir.Value) -> tuple[float, float] | None:
    """(min, max) of a Clip producing ``value``; a bound that is not constant is none (±Inf)."""
    producer = value.producer()
    if producer is None or producer.op_type != "Clip" or producer.domain not in ("", "ai.onnx"):
        return None
    low, high = clip_bounds(producer)
    return (low if low is not None else -np.inf), (high if high is not None else np.inf)


def _non_negative(value: ir.Value) -> bool:
    producer = value.producer()
    if producer is None:
        return False
    if producer.op_type in NON_NEGATIVE_OPS:
        return True
    if producer.op_type == "Clip":
        low = clip_bounds(producer)[0]
        return low is not None and low >= 0.0
    return False


def _weight_axes(node: ir.Node) -> tuple[int, int | None]:
    """(output-channel axis, K axis for INT4 blocks) of the layer's weight (the fusion rules' axes)."""
    trans_b = node.op_type == "Gemm" and bool(node.attributes.get_int("transB", 0))
    return channel_axis(node.op_type, trans_b=trans_b), reduction_axis(node.op_type, trans_b=trans_b)


def _weight_codes(node: ir.Node) -> WeightCodes | None:
    """The FP8 codes behind a stored FP8 weight or a FakeQuantize of a constant (per-tensor or per-axis scale).

    ``exact_weights(node) == values[codes] * scale`` (float32), as both decode the same codes.
    """
    if is_fp8_weight_dequantize(node):
        data = node.inputs[0]
        assert data is not None
        if node.attributes.get_int("block_size", 0):
            return None
        codes, scale = constant_array(data), constant_array(node.inputs[1])
        fmt = resolve_format(FP8_DATA_TYPES[data.dtype])
        axis_attribute = node.attributes.get_int("axis", 1)
    elif is_fake_quantize(node):
        spec = read_fake_quantize(node)
        x, scale = constant_array(node.inputs[0]), constant_array(node.inputs[1])
        if spec.block_size or x is None or not spec.format.fits_code:
            return None
        fmt, axis_attribute = spec.format, spec.axis
        codes = None
    else:
        return None
    if scale is None:
        return None
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    shape = (x if codes is None else codes).shape
    axis = None
    if scale.size > 1:
        if axis_attribute is None or not shape:
            return None
        axis = axis_attribute % len(shape)
    if codes is None:
        assert x is not None
        view = [1] * len(shape)
        if axis is not None:
            view[axis] = -1
        with np.errstate(over="ignore", invalid="ignore"):
            codes = encode(x.astype(np.float32) / scale.reshape(view), fmt, saturate=spec.saturate)
    with np.errstate(over="ignore", invalid="ignore"):
        values = decode(np.arange(1 << fmt.bits, dtype=np.uint8), fmt)
    return WeightCodes(
        codes=np.asarray(codes).view(np.uint8),
        values=values,
        scale=scale if axis is not None else scale.reshape(()),
        axis=axis,
        sign_bit=1 << (fmt.bits - 1) if fmt.has_sign else None,
    )


def _exact_weight(value: ir.Value | None) -> tuple[np.ndarray | None, str | None, QuantPoint | None]:
    """(float32 weight exactly as the FP8 model used it, stored tensor name, FP8 point) or Nones."""
    if value is None:
        return None, None, None
    inner = _cast_to_float_input(value)
    if inner is not None:
        exact, source, point = _exact_weight(inner)
        return (exact.astype(np.float32) if exact is not None else None), source, point
    producer = value.producer()
    if producer is not None and (is_fake_quantize(producer) or is_fp8_weight_dequantize(producer)):
        exact = exact_weights(producer)
        if exact is None:
            return None, None, None
        return exact, producer.inputs[0].name, None
    array = constant_array(value)
    if array is not None and np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32), value.name, None
    return None, None, None


def _layer_weight(
    weight_value: ir.Value | None, by_output: dict[str, QuantPoint]
) -> tuple[np.ndarray | None, WeightCodes | None, str | None, QuantPoint | None]:
    """(weight array, weight codes, stored tensor name, FP8 point) of the constant a layer reads as its weight.

    The weight is found behind any data movement with constant parameters (Transpose, Reshape, …) and
    given as the layer reads it (the movement replayed on it); as codes when the source holds codes and a
    per-axis scale stays on one axis, else as the decoded float32 array. All None for an activation.
    """
    none = None, None, None, None
    if weight_value is None:
        return none
    movement = trace_movement(weight_value, constant=True)
    source = movement.source
    fp8_weight = by_output.get(source.name or "") or _fp8_point_behind_cast(source, by_output)
    producer = source.producer()
    codes = _weight_codes(producer) if producer is not None else None
    if codes is not None:  # decoded only when needed (weights are the largest arrays a plan holds)
        assert producer is not None
        moved = movement.apply_codes(codes)
        if moved is not None:
            return None, moved, producer.inputs[0].name, fp8_weight
        return np.ascontiguousarray(movement.apply(codes.decode())), None, producer.inputs[0].name, fp8_weight
    weight, weight_source, _ = _exact_weight(source)
    if weight is None:
        return none
    return np.ascontiguousarray(movement.apply(weight)), None, weight_source, fp8_weight


def _fp8_quantized(value: ir.Value, by_output: dict[str, QuantPoint]) -> bool:
    """Whether ``value`` is an FP8 quantizer's output, directly or through data movement (or a Cast to float)."""
    source = trace_movement(value, constant=False).source
    return source.name in by_output or _fp8_point_behind_cast(source, by_output) is not None


def _plan_layer(
    node: ir.Node, by_output: dict[str, QuantPoint], config: ConversionConfig, override: frozenset[LayerPrecision]
) -> Layer:
    name = node.name or ""
    weight_value = node.inputs[1] if len(node.inputs) > 1 else None
    weight, weight_codes, weight_source, fp8_weight = _layer_weight(weight_value, by_output)
    has_weight = weight is not None or weight_codes is not None
    if not has_weight and weight_value is not None:
        fp8_weight = by_output.get(weight_value.name or "") or _fp8_point_behind_cast(weight_value, by_output)
    data_inputs = [node.inputs[0]] if has_weight else list(node.inputs[:2])
    fp8_inputs = [value for value in data_inputs if value is not None and _fp8_quantized(value, by_output)]
    inputs = tuple((_look_through_fake_quantize(v).name or "") for v in data_inputs if v is not None)
    axis, block_axis = _weight_axes(node)
    bias = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if node.op_type == "Gemm" and bias is not None and _exact_weight(node.inputs[2])[0] is None:
        bias = None
    bias_add = _bias_add(node) if node.op_type == "MatMul" and has_weight else None
    needs_zero_bias = node.op_type == "MatMul" and has_weight and bias_add is None and _feeds_add(node)
    precision, bits, decision = _decide(
        node, has_weight, inputs, fp8_weight is not None, bool(fp8_inputs), override, config
    )
    layer = Layer(
        node=name,
        op_type=node.op_type,
        precision=precision,
        activation_bits=bits,
        decision=decision,
        weight=weight_value.name if has_weight and weight_value is not None else None,
        weight_source=weight_source,
        weight_array=weight,
        weight_codes=weight_codes,
        weight_axis=axis if has_weight else None,
        block_axis=block_axis if has_weight else None,
        bias=bias,
        bias_add=bias_add,
        needs_zero_bias=needs_zero_bias,
        inputs=inputs,
        fp8_weight=fp8_weight,
        graph_node=node,
    )
    weight_only_gemm = config.target is Target.W4A16 and precision is LayerPrecision.INT4 and node.op_type == "Gemm"
    if weight_only_gemm and node.attributes.get_int("transB", 0):
        return _fold_trans_b(layer)
    return layer


def _fold_trans_b(layer: Layer) -> Layer:
    """``layer`` with its weight as ``Bᵀ`` (``[K, N]``) for a ``Gemm(transB=1)``, to be emitted with ``transB=0``."""
    codes = layer.weight_codes
    if codes is not None:
        axis = None if codes.axis is None else 1 - codes.axis
        codes = dataclasses.replace(codes, codes=np.ascontiguousarray(codes.codes.T), axis=axis)
    array = np.ascontiguousarray(layer.weight_array.T) if layer.weight_array is not None else None
    return dataclasses.replace(
        layer,
        weight_codes=codes,
        weight_array=array,
        weight_axis=1,
        block_axis=0,
        folds_trans_b=True,
        decision=layer.decision.noted("transB folded into the stored weight ([K, N], transB=0)"),
    )


def _feeds_add(node: ir.Node) -> bool:
    """Whether the node's output goes only to one Add (which onnxruntime would fuse into a Gemm)."""
    output = node.outputs[0]
    consumers = output.consumers()
    return len(consumers) == 1 and not output.is_graph_output() and consumers[0].op_type == "Add"


def _bias_add(node: ir.Node) -> ir.Node | None:
    """The ``Add(MatMul output, constant 1-D bias)`` that is the MatMul's only consumer, if any."""
    output = node.outputs[0]
    consumers = output.consumers()
    if len(consumers) != 1 or output.is_graph_output():
        return None
    add = consumers[0]
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is output else add.inputs[0]
    bias = _exact_weight(other)[0]  # a float constant, or the exact values of FP8-stored biases (Quark)
    if bias is None or bias.ndim != 1:
        return None
    return add


def _decide(
    node: ir.Node,
    has_weight: bool,
    inputs: tuple[str, ...],
    fp8_weight: bool,
    fp8_input: bool,
    override: frozenset[LayerPrecision],
    config: ConversionConfig,
) -> tuple[LayerPrecision, int | None, Decision]:
    """(precision, activation bits, decision) of a layer."""
    target = config.target
    if LayerPrecision.FLOAT in override:
        return LayerPrecision.FLOAT, None, Decision(DecisionCode.KEPT_FLOAT, "kept float by a keep_float pattern")
    if not (fp8_weight or fp8_input):
        return LayerPrecision.FLOAT, None, Decision(DecisionCode.NOT_QUANTIZED, "not quantized in the FP8 source")
    constant = next((name for name in inputs if node.graph is not None and name in node.graph.initializers), None)
    if constant is not None:
        message = f"its input {constant} is a constant, not an activation to calibrate"
        return LayerPrecision.FLOAT, None, Decision(DecisionCode.CONSTANT_INPUT, message)
    if node.op_type == "Gemm" and node.attributes.get_int("transA", 0):
        return LayerPrecision.FLOAT, None, Decision(DecisionCode.TRANS_A, "Gemm with transA=1 has no integer kernel")
    if not has_weight:
        if node.op_type != "MatMul" or len(inputs) != 2:
            return LayerPrecision.FLOAT, None, Decision(DecisionCode.WEIGHT_NOT_CONSTANT, "weight is not a constant")
        if target is Target.W4A16:
            message = "w4a16 is weight-only; activation × activation MatMul stays float"
            return LayerPrecision.FLOAT, None, Decision(DecisionCode.WEIGHT_ONLY_ACTIVATION_MATMUL, message)
        bits = 16 if (LayerPrecision.INT16 in override or target is Target.W8A16) else 8
        decision = Decision(DecisionCode.ACTIVATION_MATMUL, "activation × activation MatMul with FP8 inputs")
        if LayerPrecision.INT4 in override:
            decision = decision.noted("an int4 pattern selects it, but it has no constant weight to make INT4")
        return LayerPrecision.INT8, bits, decision
    if target is Target.W4A16:
        if node.op_type == "Conv":
            message = "w4a16 is weight-only INT4 for MatMul/Gemm (MatMulNBits); Conv stays float"
            return LayerPrecision.FLOAT, None, Decision(DecisionCode.WEIGHT_ONLY_CONV, message)
        return LayerPrecision.INT4, None, Decision(DecisionCode.WEIGHT_ONLY_INT4, "weight-only INT4 (MatMulNBits)")
    bits = 16 if (LayerPrecision.INT16 in override or target is Target.W8A16) else 8
    int4 = target is Target.INT4 or LayerPrecision.INT4 in override
    precision = LayerPrecision.INT4 if int4 else LayerPrecision.INT8
    if fp8_weight:
        decision = Decision(DecisionCode.FP8_WEIGHT, "FP8 weight quantized in the source")
    else:
        decision = Decision(DecisionCode.FP8_INPUT, "FP8 input quantized in the source")
    if LayerPrecision.INT16 in override:
        decision = decision.noted("INT16 activations by an int16 pattern")
    if LayerPrecision.INT4 in override and target is not Target.INT4:
        decision = decision.noted("INT4 weights by an int4 pattern")
    return precision, bits, decision


def _after_fusable_activation(value: ir.Value) -> ir.Value:
    """``value``, or the output of the single Relu/Clip that consumes it (onnxruntime folds it)."""
    consumers = value.consumers()
    if len(consumers) == 1 and not value.is_graph_output():
        consumer = consumers[0]
        if consumer.op_type in FUSABLE_ACTIVATIONS and consumer.domain in ("", "ai.onnx"):
            return consumer.outputs[0]
    return value


def _float_inputs(node: ir.Node) -> list[ir.Value]:
    return [
        value
        for value in node.inputs
        if value is not None and constant_array(value) is None and value.dtype in (ir.DataType.FLOAT, None)
    ]


def _consumers_through_fake_quantize(value: ir.Value) -> Iterable[ir.Node]:
    for consumer in value.consumers():
        if is_fake_quantize(consumer):
            yield from consumer.outputs[0].consumers()
        else:
            yield consumer


def _propagate_through_integer_ops(
    graph: ir.Graph, points: dict[str, ActivationPoint], add: Callable[[str, int, str], None]
) -> None:
    """Rule (c): quantize outputs of integer-capable ops whose inputs are all quantized.

    Outputs added here that lead to no integer consumer are pruned again, so no quantizer is added
    that only adds error.
    """
    added: list[str] = []
    changed = True
    while changed:
        changed = False
        for node in graph:
            if not is_integer_op(node, points):
                continue
            output = _after_fusable_activation(node.outputs[0])
            name = output.name or ""
            if name in points or output.is_graph_output():
                continue
            consumers = list(_consumers_through_fake_quantize(output))
            if consumers and all(c.op_type in INTEGER_OPS for c in consumers):
                add(name, KERNEL_BITS, "integer op")
                added.append(name)
                changed = True
    values = values_by_name(graph)
    pruned = True
    while pruned:
        pruned = False
        for name in list(added):
            value = values[name]
            useful = any(
                is_integer_op(c, points) and (_after_fusable_activation(c.outputs[0]).name or "") in points
                for c in _consumers_through_fake_quantize(value)
            )
            if not useful:
                del points[name]
                added.remove(name)
                pruned = True


def is_integer_op(node: ir.Node, points: dict[str, ActivationPoint]) -> bool:
    """Whether ``node`` is an integer-capable op all of whose float inputs are quantized."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in INTEGER_OPS:
        return False
    inputs = _float_inputs(node)
    return bool(inputs) and all((_look_through_fake_quantize(v).name or "") in points for v in inputs)


def _group_shared_scales(graph: ir.Graph, points: dict[str, ActivationPoint]) -> None:
    """Union the groups of tensors on both sides of data-movement ops and Concat."""
    parent: dict[str, str] = {name: name for name in points}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in graph:
        if node.op_type not in SHARED_SCALE_OPS or node.domain not in ("", "ai.onnx"):
            continue
        names = [(_look_through_fake_quantize(v).name or "") for v in _float_inputs(node)]
        names.append(node.outputs[0].name or "")
        names = [name for name in names if name in points]
        if len(names) < 2:
            continue
        roots = sorted({find(name) for name in names})
        for root in roots[1:]:
            parent[root] = roots[0]
    for name, point in points.items():
        points[name] = dataclasses.replace(point, group=find(name))
    for node in graph:
        if node.op_type not in SHARED_SCALE_OPS - {"Resize"} or node.domain not in ("", "ai.onnx"):
            continue
        output = points.get(node.outputs[0].name or "")
        inputs = [points.get(_look_through_fake_quantize(v).name or "") for v in _float_inputs(node)]
        if output is not None and inputs and all(p is not None and p.group == output.group for p in inputs):
            points[output.tensor] = dataclasses.replace(output, copied=True)
    _mark_counted(graph, points)


def _mark_counted(graph: ir.Graph, points: dict[str, ActivationPoint]) -> None:
    """Set ``ActivationPoint.counted``: which tensors of a group calibration counts.

    First every tensor that is not ``copied``. Then, in graph order, a data-movement op whose group inputs
    are all counted and *forwarded* (read by this op alone, through their FP8 quantizer if any, and not graph
    outputs) hands the counting to its output: the inputs' values reach the rest of the model only through
    it. For Reshape or Concat that counts the same multiset of values; for MaxPool or Slice it counts only
    the values that survive, the ones an integer consumer meets (and on the FP8 grid of the quantizer that
    follows, when the source quantized there). Chains hand on step by step (Relu → MaxPool → Reshape).
    """
    for name, point in points.items():
        points[name] = dataclasses.replace(point, counted=not point.copied)
    for node in graph:
        if node.op_type not in SHARED_SCALE_OPS - {"Resize"} or node.domain not in ("", "ai.onnx"):
            continue
        output = points.get(node.outputs[0].name or "")
        if output is None or not output.copied:
            continue
        sources = [v for v in map(_look_through_fake_quantize, _float_inputs(node)) if v is not None]
        members = [points[v.name or ""] for v in sources]  # all in the output's group: it is copied
        if all(p.counted for p in members) and all(_forwarded(v, node) for v in sources):
            for point in members:
                points[point.tensor] = dataclasses.replace(point, counted=False)
            points[output.tensor] = dataclasses.replace(output, counted=True)


def _forwarded(value: ir.Value, reader: ir.Node) -> bool:
    """Whether ``reader`` is the only node that reads ``value`` (through its FP8 quantizer, if any)."""
    quantizers = [node for node in value.consumers() if is_fake_quantize(node)]
    if value.is_graph_output() or any(q.outputs[0].is_graph_output() for q in quantizers):
        return False
    return {id(node) for node in _consumers_through_fake_quantize(value)} == {id(reader)}
