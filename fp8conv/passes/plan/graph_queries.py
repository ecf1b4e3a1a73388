"""What the planning modules ask of a canonical graph: its layers, its values, the FP8 quantizers around a tensor.

A canonical model (:mod:`fp8conv.passes.canonical`) quantizes an activation ``x`` as ``x → FakeQuantize → x_q``;
a float16/bfloat16 one as ``... → FakeQuantize → Cast(to=FLOAT)``. The plan reasons about the tensors the
quantizers read, so these queries look through them: from ``x_q`` back to ``x``
(:func:`look_through_fake_quantize`), from ``x`` forward to the readers of ``x_q``
(:func:`consumers_through_fake_quantize`), from a ``Cast`` output to the FP8 point behind it
(:func:`fp8_point_behind_cast`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx_ir as ir

from fp8conv.passes.canonical import QuantPoint, constant_array, is_fake_quantize
from fp8conv.runtime.fusion_rules import LAYER_OPS

__all__ = [
    "cast_to_float_input",
    "consumers_through_fake_quantize",
    "float_inputs",
    "fp8_point_behind_cast",
    "is_layer",
    "layer_nodes",
    "look_through_fake_quantize",
    "values_by_name",
]


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
    return [node for node in graph if is_layer(node)]


def is_layer(node: ir.Node) -> bool:
    """Whether ``node`` is a layer: a Conv / MatMul / Gemm of the ai.onnx domain."""
    return node.domain in ("", "ai.onnx") and node.op_type in LAYER_OPS


def look_through_fake_quantize(value: ir.Value | None) -> ir.Value | None:
    """The tensor an FP8 activation quantizer read, if ``value`` is its output; else ``value``."""
    producer = value.producer() if value is not None else None
    if producer is not None and is_fake_quantize(producer):
        return producer.inputs[0]
    return value


def cast_to_float_input(value: ir.Value | None) -> ir.Value | None:
    """The input of a ``Cast(to=FLOAT)`` producing ``value`` (f16/bf16 FP8 quantizers sit behind one)."""
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "Cast" or producer.domain not in ("", "ai.onnx"):
        return None
    if producer.attributes.get_int("to") != ir.DataType.FLOAT:
        return None
    return producer.inputs[0]


def fp8_point_behind_cast(value: ir.Value, by_output: Mapping[str, QuantPoint]) -> QuantPoint | None:
    """The FP8 point whose (f16/bf16) output is cast to float to give ``value``, if any."""
    inner = cast_to_float_input(value)
    return by_output.get(inner.name or "") if inner is not None else None


def float_inputs(node: ir.Node) -> list[ir.Value]:
    """The inputs of ``node`` that are float tensors computed by the graph (not constants, not integer)."""
    return [
        value
        for value in node.inputs
        if value is not None and constant_array(value) is None and value.dtype in (ir.DataType.FLOAT, None)
    ]


def consumers_through_fake_quantize(value: ir.Value) -> Iterable[ir.Node]:
    """The nodes that read ``value``, a FakeQuantize reading it replaced by the readers of its output."""
    for consumer in value.consumers():
        if is_fake_quantize(consumer):
            yield from consumer.outputs[0].consumers()
        else:
            yield consumer
