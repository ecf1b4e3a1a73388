"""Emission pass 3: activation Q/DQ, ``y = DequantizeLinear(QuantizeLinear(x, s, z), s, z)`` per planned tensor.

Where an FP8 quantizer read ``x``, the pair replaces it in place and the DQ produces the FP8 quantizer's
output tensor (both source names are kept). Elsewhere the DQ output is new (``<x>_dequantized``) and the
integer readers of ``x`` (``QuantizationPlan.integer_readers``) read it. A planned graph output that no FP8
quantizer produced becomes the dequantized tensor (QLinearConv needs its output quantized).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import is_fake_quantize
from fp8conv.passes.emission import (
    ActivationQuantization,
    EmissionPass,
    insert_after_producer,
    swap_producer,
)
from fp8conv.passes.plan import values_by_name

__all__ = ["EmitActivationsPass"]


class EmitActivationsPass(EmissionPass):
    """Quantize every activation point of the plan (see the module docstring).

    ``requires``: the plan is the model's; every planned tensor is in the graph and every group has its
    quantization in the context. ``ensures``: every planned tensor reaches its group's integer grid (a
    QuantizeLinear of the group's type reads it, or, for a quantized graph output, the tensor is that
    grid's DequantizeLinear), and no FP8 quantizer reads a planned tensor any more.
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: A planned tensor or a group's quantization is missing.
        """
        super().requires(model)
        values = values_by_name(model.graph)
        for name, point in self.context.plan.points.items():
            if name not in values:
                raise ir.passes.PreconditionError(f"activation {name}: no such tensor in the model")
            if point.group not in self.context.activations:
                raise ir.passes.PreconditionError(f"activation {name}: no quantization for its group {point.group}")

    def rewrite(self, graph: ir.Graph) -> bool:
        """Insert the activation Q/DQ of the main graph in place."""
        names = self.context.names(graph)
        values = values_by_name(graph)
        group_constants: dict[str, tuple[ir.Value, ir.Value]] = {}
        for name, point in sorted(self.context.plan.points.items()):
            value = values[name]
            if point.group not in group_constants:
                quantization = self.context.activations[point.group]
                group_constants[point.group] = self._activation_constants(graph, point.group, quantization)
            scale, zero_point = group_constants[point.group]
            quantize = ir.node("QuantizeLinear", [value, scale, zero_point], name=names.new(f"{name}_QuantizeLinear"))
            quantize.outputs[0].name = names.new(f"{name}_quantized")
            insert_after_producer(graph, value, quantize)
            fake_quantizers = [c for c in value.consumers() if is_fake_quantize(c)]
            if name in self.context.plan.float_reads:
                self._float_readers_read_float(value, fake_quantizers)
            for fake_quantize in fake_quantizers:
                dequantize = ir.node("DequantizeLinear", [quantize.outputs[0], scale, zero_point])
                graph.insert_after(quantize, dequantize)
                swap_producer(graph, fake_quantize, dequantize)
            integer_readers = [
                (consumer, index)
                for consumer in list(value.consumers())
                if consumer is not quantize and self._reads_integer(consumer, point.fp8 is None)
                for index, input_value in enumerate(consumer.inputs)
                if input_value is value
            ]
            if integer_readers:
                dequantize = ir.node(
                    "DequantizeLinear",
                    [quantize.outputs[0], scale, zero_point],
                    name=names.new(f"{name}_DequantizeLinear"),
                )
                dequantize.outputs[0].name = names.new(f"{name}_dequantized")
                graph.insert_after(quantize, dequantize)
                for consumer, index in integer_readers:
                    consumer.replace_input_with(index, dequantize.outputs[0])
            if point.fp8 is None and value.is_graph_output():
                self._quantize_graph_output(graph, value, quantize, scale, zero_point)
        return bool(self.context.plan.points)

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: A planned tensor that is not quantized, or still read by FP8.
        """
        values = values_by_name(model.graph)
        for name, point in self.context.plan.points.items():
            value = values.get(name)
            data_type = self.context.activations[point.group].format.data_type
            if value is None or not (_quantized(value, data_type) or _dequantized_output(value, data_type)):
                raise ir.passes.PostconditionError(f"activation {name}: not quantized to {data_type.name}")
            if any(is_fake_quantize(consumer) for consumer in value.consumers()):
                raise ir.passes.PostconditionError(f"activation {name}: still read by an FP8 quantizer")

    def _quantize_graph_output(
        self, graph: ir.Graph, value: ir.Value, quantize: ir.Node, scale: ir.Value, zero_point: ir.Value
    ) -> None:
        """Make the graph output the dequantized tensor (QLinearConv needs its output quantized).

        The float tensor is renamed ``<name>_float`` and the DQ output takes the output's name.
        """
        names = self.context.names(graph)
        name = value.name or ""
        dequantize = ir.node(
            "DequantizeLinear",
            [quantize.outputs[0], scale, zero_point],
            name=names.new(f"{name}_DequantizeLinear"),
        )
        graph.insert_after(quantize, dequantize)
        for index, output in enumerate(graph.outputs):
            if output is value:
                graph.outputs[index] = dequantize.outputs[0]
        value.name = names.new(f"{name}_float")
        dequantize.outputs[0].name = name
        dequantize.outputs[0].shape = value.shape
        dequantize.outputs[0].type = value.type

    def _float_readers_read_float(self, value: ir.Value, fake_quantizers: list[ir.Node]) -> None:
        """Point the readers of the FP8 quantizers' outputs that are no integer readers at the float ``value``.

        ``placement=target`` (``QuantizationPlan.float_reads``): the FP8 rounding goes for them instead of
        becoming an integer one no integer kernel needs.
        """
        integer_readers = self.context.plan.integer_readers
        for fake_quantize in fake_quantizers:
            output = fake_quantize.outputs[0]
            for consumer in list(output.consumers()):
                if consumer in integer_readers:
                    continue
                for index, input_value in enumerate(consumer.inputs):
                    if input_value is output:
                        consumer.replace_input_with(index, value)

    def _reads_integer(self, consumer: ir.Node, new_point: bool) -> bool:
        """Whether ``consumer`` should read the dequantized tensor rather than the float one."""
        if consumer.op_type == "QuantizeLinear" or is_fake_quantize(consumer):
            return False
        if new_point:
            return True
        return consumer in self.context.plan.integer_readers

    def _activation_constants(
        self, graph: ir.Graph, group: str, quantization: ActivationQuantization
    ) -> tuple[ir.Value, ir.Value]:
        fmt = quantization.format
        scale = self.context.initializer(graph, f"{group}_scale", ir.tensor(np.float32(quantization.scale)))
        zero = ir.tensor(np.array(quantization.zero_point, dtype=fmt.numpy_dtype), dtype=fmt.data_type)
        return scale, self.context.initializer(graph, f"{group}_zero_point", zero)


def _quantized(value: ir.Value, data_type: ir.DataType) -> bool:
    """Whether a QuantizeLinear to ``data_type`` reads ``value``."""
    return any(_quantizes_to(consumer, data_type) for consumer in value.consumers())


def _dequantized_output(value: ir.Value, data_type: ir.DataType) -> bool:
    """Whether ``value`` is ``DequantizeLinear(QuantizeLinear(·))`` to ``data_type`` (a quantized graph output)."""
    producer = value.producer()
    if producer is None or producer.op_type != "DequantizeLinear" or producer.inputs[0] is None:
        return False
    quantize = producer.inputs[0].producer()
    return quantize is not None and _quantizes_to(quantize, data_type)


def _quantizes_to(node: ir.Node, data_type: ir.DataType) -> bool:
    zero_point = node.inputs[2] if len(node.inputs) > 2 else None
    return node.op_type == "QuantizeLinear" and zero_point is not None and zero_point.dtype == data_type
