"""Where the activation quantizers go: the tensors that get ``QuantizeLinear → DequantizeLinear``.

Placed by onnxruntime's CPU fusion rules (:mod:`fp8conv.runtime.fusion_rules`), each point with the rule that
placed it (:attr:`~fp8conv.passes.plan.records.ActivationPoint.why`):

a. ``layer input``: the data inputs of the layers with integer activations; for an FP8 activation quantizer
   the tensor it read, so the integer quantizer replaces it in place (both tensor names kept).
b. ``conv output``: the output of an 8-bit Conv (QLinearConv needs a quantized output), after a following
   Relu/Clip, which onnxruntime folds into the quantizer's zero point. MatMul/Gemm outputs are quantized
   only when (a) or (c) asks for it: otherwise they run as MatMulIntegerToFloat/QGemm with a float output,
   adding no error the FP8 model did not have.
c. ``integer op``: forward through ops with integer kernels (Add, Mul, pools, Concat, data movement; 8-bit
   targets only): when every float input of such an op is quantized and its output (after Relu/Clip) feeds
   only integer-capable consumers, the output is quantized too (QLinearAdd, integer MaxPool, …); outputs
   that lead to no integer reader are pruned again.
d. ``source quantizer`` (``placement=source`` only, for comparison): every other tensor the FP8 model quantized,
   whether or not an integer kernel reads it (LayerNorm inputs included), placed before (c).

A tensor placed twice keeps the wider width. Each point records the FP8 quantizer it replaces, whether the
tensor is known to be ``>= 0`` (Relu, Sigmoid, Softmax, Clip with a lower bound ``>= 0``) and the constant
bounds of a Clip producing it. Every point starts in a group of its own
(:mod:`fp8conv.passes.plan.scale_groups` joins them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import QuantPoint, is_fake_quantize
from fp8conv.passes.plan.graph_queries import (
    consumers_through_fake_quantize,
    float_inputs,
    fp8_point_behind_cast,
    look_through_fake_quantize,
    values_by_name,
)
from fp8conv.passes.plan.records import ActivationPoint, Layer
from fp8conv.runtime.clip_bounds import clip_bounds
from fp8conv.runtime.fusion_rules import FLOAT_OUTPUT_KERNELS, FUSABLE_ACTIVATIONS, INTEGER_OPS, KERNEL_BITS

__all__ = ["NON_NEGATIVE_OPS", "SOURCE_QUANTIZER", "is_integer_op", "place_activation_points"]

SOURCE_QUANTIZER = "source quantizer"
"""The ``why`` of an activation point that only ``placement=source`` places (rule (d))."""

NON_NEGATIVE_OPS = frozenset({"Relu", "Sigmoid", "Softmax"})


def place_activation_points(
    graph: ir.Graph,
    layers: Sequence[Layer],
    by_output: Mapping[str, QuantPoint],
    activation_bits: int | None,
    *,
    source: bool = False,
) -> dict[str, ActivationPoint]:
    """The activation points of rules (a), (b), (d) and (c), by tensor name, each in a group of its own.

    Args:
        graph: The canonical model's main graph.
        layers: Its layers, planned (:func:`~fp8conv.passes.plan.layer_decisions.plan_layer`).
        by_output: The model's FP8 quantization points by output name.
        activation_bits: The target's activation width (rule (c) only for 8 bits; None: weight-only).
        source: Rule (d), ``placement=source``: a point on every tensor an FP8 activation quantizer reads.
    """
    values = values_by_name(graph)
    points: dict[str, ActivationPoint] = {}

    def add(tensor: str, bits: int, why: str) -> None:
        if tensor in points:
            points[tensor] = dataclasses.replace(points[tensor], bits=max(points[tensor].bits, bits))
            return
        value = values[tensor]
        fp8 = _fp8_point_reading(value, by_output) or fp8_point_behind_cast(value, by_output)
        points[tensor] = ActivationPoint(tensor, bits, tensor, fp8, _non_negative(value), why, _clip_range(value))

    for layer in layers:
        if layer.activation_bits is None:
            continue
        for tensor in layer.inputs:
            add(tensor, layer.activation_bits, "layer input")
    for layer in layers:
        if layer.op_type not in FLOAT_OUTPUT_KERNELS and layer.activation_bits == KERNEL_BITS:  # QLinearConv
            add(_after_fusable_activation(layer.graph_node.outputs[0]).name or "", KERNEL_BITS, "conv output")
    if source and activation_bits is not None:
        for fp8 in by_output.values():
            if fp8.role == "activation" and fp8.tensor in values and fp8.tensor not in points:
                add(fp8.tensor, activation_bits, SOURCE_QUANTIZER)
    if activation_bits == KERNEL_BITS:
        _propagate_through_integer_ops(graph, points, add)
    return points


def _after_fusable_activation(value: ir.Value) -> ir.Value:
    """``value``, or the output of the single Relu/Clip that consumes it (onnxruntime folds it)."""
    consumers = value.consumers()
    if len(consumers) == 1 and not value.is_graph_output():
        consumer = consumers[0]
        if consumer.op_type in FUSABLE_ACTIVATIONS and consumer.domain in ("", "ai.onnx"):
            return consumer.outputs[0]
    return value


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
            consumers = list(consumers_through_fake_quantize(output))
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
                for c in consumers_through_fake_quantize(value)
            )
            if not useful:
                del points[name]
                added.remove(name)
                pruned = True


def is_integer_op(node: ir.Node, points: dict[str, ActivationPoint]) -> bool:
    """Whether ``node`` is an integer-capable op all of whose float inputs are quantized."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in INTEGER_OPS:
        return False
    inputs = float_inputs(node)
    return bool(inputs) and all((look_through_fake_quantize(v).name or "") in points for v in inputs)


def _fp8_point_reading(value: ir.Value, by_output: Mapping[str, QuantPoint]) -> QuantPoint | None:
    """The FP8 activation point whose input is ``value`` (the quantizer it replaces), if any."""
    for consumer in value.consumers():
        if is_fake_quantize(consumer):
            point = by_output.get(consumer.outputs[0].name or "")
            if point is not None:
                return point
    return None


def _clip_range(value: ir.Value) -> tuple[float, float] | None:
    """(min, max) of a Clip producing ``value``; a bound that is not constant is none (±Inf)."""
    producer = value.producer()
    if producer is None or producer.op_type != "Clip" or producer.domain not in ("", "ai.onnx"):
        return None
    low, high = clip_bounds(producer)
    return (low if low is not None else -np.inf), (high if high is not None else np.inf)


def _non_negative(value: ir.Value) -> bool:
    """Whether ``value`` is known to be >= 0: a Relu, Sigmoid or Softmax output, or a Clip with a lower bound >= 0."""
    producer = value.producer()
    if producer is None:
        return False
    if producer.op_type in NON_NEGATIVE_OPS:
        return True
    if producer.op_type == "Clip":
        low = clip_bounds(producer)[0]
        return low is not None and low >= 0.0
    return False
