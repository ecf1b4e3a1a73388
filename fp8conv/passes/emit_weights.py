"""Emission pass 1: every planned layer's weight, integer behind DequantizeLinear or exact float.

* A converted layer's FP8 weight ``W`` (exactly as the FP8 model used it, in the layout the layer reads:
  data movement such as ``Transpose``/``Reshape`` between the FP8 quantizer and the layer is folded into
  the stored weight) becomes an integer initializer ``q_W`` and ``DequantizeLinear(q_W, s_W[, axis,
  block_size]) = s_W·q_W``; the DQ produces the tensor the layer read before (its name is kept), and the
  movement ops, left without readers, go at the cleanup. A ``Gemm(transB=1)`` whose plan folds ``transB``
  gets ``q_W`` as ``[K, N]`` and ``transB=0``.
* A float layer reads its FP8 weight as the exact float initializer (movement ops kept in place).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from fp8conv.passes.data_movement import trace_movement
from fp8conv.passes.dequantize_fp8 import exact_weights
from fp8conv.passes.emission import (
    EmissionPass,
    WeightQuantization,
    is_fp8_quantizer,
    reads_integer_weight,
    swap_producer,
)
from fp8conv.passes.plan import Layer

__all__ = ["EmitWeightsPass"]


class EmitWeightsPass(EmissionPass):
    """Write every planned layer's weight: integer (``context.weights``) or, for float layers, exact float.

    ``requires``: the plan is the model's; every integer layer with a constant weight has its integer
    weight in the context, every integer weight belongs to a layer, and none is emitted yet.
    ``ensures``: every layer with an integer weight reads it from a DequantizeLinear of an INT8/INT4
    initializer; no float layer reads its constant weight through an FP8 quantizer.
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: A violated precondition, naming the layer.
        """
        super().requires(model)
        weights = self.context.weights
        planned = {layer.graph_node for layer in self.context.plan.layers}
        for node in weights:
            if node not in planned:
                raise ir.passes.PreconditionError(f"integer weight for node {node.name}, which is no planned layer")
        for layer in self.context.plan.layers:
            node = layer.graph_node
            if layer.is_integer and layer.has_weight and node not in weights:
                raise ir.passes.PreconditionError(f"layer {layer.node}: planned {layer.precision}, no integer weight")
            if node in weights and reads_integer_weight(node, weights[node]):
                raise ir.passes.PreconditionError(f"layer {layer.node}: its integer weight is emitted already")

    def rewrite(self, graph: ir.Graph) -> bool:
        """Rewrite the weights of the main graph in place."""
        modified = False
        for layer in self.context.plan.layers:
            node = layer.graph_node
            if layer.weight is None:
                continue
            if node in self.context.weights:
                self._emit_weight(graph, node, layer, self.context.weights[node])
                modified = True
            else:
                modified |= self._materialize_float_weight(graph, node, layer)
        return modified

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: A violated postcondition, naming the layer.
        """
        for layer in self.context.plan.layers:
            node = layer.graph_node
            weight = self.context.weights.get(node)
            if weight is not None and not reads_integer_weight(node, weight):
                raise ir.passes.PostconditionError(
                    f"layer {layer.node}: planned {layer.precision} but its weight is not read from a "
                    f"DequantizeLinear of an {weight.data_type.name} initializer"
                )
            if weight is None and layer.has_weight and layer.weight is not None and _behind_fp8_quantizer(node):
                raise ir.passes.PostconditionError(f"layer {layer.node}: float, but reads its weight through FP8")

    def _emit_weight(self, graph: ir.Graph, node: ir.Node, layer: Layer, weight: WeightQuantization) -> None:
        names = self.context.names(graph)
        value = node.inputs[1]
        assert value is not None
        base = layer.weight_source or value.name or layer.node
        initializer = self.context.initializer
        q_value = initializer(graph, f"{base}_quantized", ir.tensor(weight.q.astype(np.int8), dtype=weight.data_type))
        s_value = initializer(graph, f"{base}_scale", ir.tensor(np.asarray(weight.scale, np.float32)))
        attributes: dict[str, int] = {}
        if weight.axis is not None and (weight.scale.size > 1 or weight.block_size):
            attributes["axis"] = weight.axis
        if weight.block_size:
            attributes["block_size"] = weight.block_size
        inputs = [q_value, s_value]
        if weight.bits == 8:
            # An explicit int8 zero point: onnxruntime's QGemm fusion does not fire without one.
            zero = np.zeros(np.shape(weight.scale) if not weight.block_size else weight.scale.shape, np.int8)
            inputs.append(initializer(graph, f"{base}_zero_point", ir.tensor(zero)))
        dequantize = ir.node("DequantizeLinear", inputs, attributes=attributes)
        # Declared as what it computes: the stored layout (a folded transB changes it) in float32.
        dequantize.outputs[0].shape = ir.Shape(np.shape(weight.q))
        dequantize.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
        graph.insert_before(node, dequantize)
        if layer.folds_trans_b:
            node.attributes["transB"] = ir.AttrInt64("transB", 0)
        producer = value.producer()
        if producer is not None and all(use.node is node for use in value.uses()):
            swap_producer(graph, producer, dequantize)
        else:
            dequantize.name = names.new(f"{base}_DequantizeLinear")
            dequantize.outputs[0].name = names.new(f"{base}_dequantized")
            node.replace_input_with(1, dequantize.outputs[0])

    def _materialize_float_weight(self, graph: ir.Graph, node: ir.Node, layer: Layer) -> bool:
        """A float layer reads its FP8 weight as the exact float initializer (movement ops kept in place).

        Returns:
            Whether the weight was behind an FP8 quantizer (and now is not).
        """
        value = node.inputs[1]
        assert value is not None
        source = trace_movement(value, constant=True).source
        producer = source.producer()
        if producer is None or not layer.has_weight or not is_fp8_quantizer(producer):
            return False
        base = layer.weight_source or source.name or layer.node
        weight = exact_weights(producer)
        assert weight is not None
        exact = self.context.initializer(graph, f"{base}_fp8_exact", ir.tensor(weight))
        source.replace_all_uses_with(exact)
        return True


def _behind_fp8_quantizer(node: ir.Node) -> bool:
    """Whether the layer's weight (input 1), traced through constant data movement, is an FP8 quantizer's output."""
    value = node.inputs[1] if len(node.inputs) > 1 else None
    return value is not None and is_fp8_quantizer(trace_movement(value, constant=True).source.producer())
