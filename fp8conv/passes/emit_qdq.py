"""Rewrite a canonical FP8 model into an integer QDQ model, following a conversion plan.

Algebra, per part of the graph (``s`` scales, ``z`` zero points, ``q`` integers):

* **Weights** of converted layers: the FP8 weight ``W`` (exactly as the FP8 model used it, in the layout
  the layer reads: data movement such as ``Transpose``/``Reshape`` between the FP8 quantizer and the
  layer is folded into the stored weight) becomes an integer initializer ``q_W`` and
  ``DequantizeLinear(q_W, s_W[, axis, block_size]) = s_W·q_W``; the DQ produces the tensor the layer
  read before (its name is kept), and the movement ops, left without readers, are removed. A
  ``Gemm(transB=1)`` whose plan folds ``transB`` gets ``q_W`` as ``[K, N]`` and ``transB=0``.
* **Bias** of converted Conv/Gemm with 8-bit activations: ``b`` becomes int32
  ``q_b = round_half_even(b / (s_x·s_W))`` with ``DequantizeLinear(q_b, s_x·s_W, axis 0)``, the form
  onnxruntime folds into QLinearConv/QGemm.
* **Activations**: a tensor ``x`` in the plan gets ``y = DequantizeLinear(QuantizeLinear(x, s, z), s, z)``.
  Where an FP8 quantizer read ``x``, the pair replaces it in place and the DQ produces the FP8
  quantizer's output tensor (both source names are kept). Elsewhere the DQ output is new
  (``<x>_dequantized``) and the integer consumers of ``x`` read it.
* **Float layers** read their FP8 weights as exact float initializers; FP8 activation quantizers with no
  integer consumer are removed (the value flows through unchanged).

The result imports ai.onnx at ``max(source opset, 21)`` when INT16, INT4 or blocked quantization
appears, else at the source opset; the ``ai.fp8conv`` domain is gone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as ir_common
from onnxscript import version_converter

from fp8conv.converter.data_movement import trace_movement
from fp8conv.converter.plan import Layer, QuantizationPlan, is_integer_op, values_by_name
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import (
    CANONICAL_DOMAIN,
    constant_array,
    is_fake_quantize,
    is_fp8_weight_dequantize,
    read_fake_quantize,
)
from fp8conv.passes.dequantize_fp8 import exact_weights, remove_fake_quantize
from fp8conv.passes.values import take_over

__all__ = ["ActivationQuantization", "EmitQdqPass", "WeightQuantization"]

logger = logging.getLogger(__name__)

_INT_TYPES = {
    "uint8": ir.DataType.UINT8,
    "int8": ir.DataType.INT8,
    "int16": ir.DataType.INT16,
    "uint16": ir.DataType.UINT16,
}


@dataclasses.dataclass(frozen=True)
class ActivationQuantization:
    """Integer quantization of one activation group.

    Attributes:
        scale: float32 scale.
        zero_point: Zero point (0 for symmetric types).
        dtype: ``uint8``, ``int8``, ``int16`` or ``uint16``.
    """

    scale: float
    zero_point: int
    dtype: str


@dataclasses.dataclass(frozen=True)
class WeightQuantization:
    """Integer weights of one layer, ready for ``DequantizeLinear``.

    Attributes:
        q: Integer values (int8 storage; INT4 values in [-8, 7]).
        scale: float32 scales shaped for DequantizeLinear (scalar, 1-D per axis, or blocked).
        axis: Per-channel or block axis; None per tensor.
        block_size: INT4 block length; None otherwise.
        bits: 4 or 8 (7-bit weights are stored as int8).
    """

    q: np.ndarray
    scale: np.ndarray
    axis: int | None
    block_size: int | None
    bits: int


class EmitQdqPass(ir.passes.InPlacePass):
    """Turn a canonical FP8 model into an integer QDQ model (see the module docstring).

    Nodes are identified by object: the plan's ``Layer.graph_node`` (and ``bias_add``) are nodes of the
    model the pass rewrites, and ``weights`` is keyed by them; no node is looked up by its name.

    Attributes:
        plan: Where the integer quantizers go.
        weights: Integer weights per converted layer (by the layer's node).
        activations: Quantization per activation group (by group name).
    """

    def __init__(
        self,
        plan: QuantizationPlan,
        weights: Mapping[ir.Node, WeightQuantization],
        activations: Mapping[str, ActivationQuantization],
    ) -> None:
        super().__init__()
        self.plan = plan
        self.weights = weights
        self.activations = activations

    def requires(self, model: ir.Model) -> None:
        """The plan was made for this model: every layer's node is a node of its main graph."""
        for layer in self.plan.layers:
            if layer.graph_node.graph is not model.graph:
                raise ir.passes.PreconditionError(f"layer {layer.node}: its node is not in the model being rewritten")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite ``model`` in place."""
        graph = model.graph
        self._names = _NameAllocator(graph)
        integer_layers = {layer.graph_node for layer in self.plan.layers if layer.activation_bits is not None}
        # Decided on the graph as planned, before any rewiring changes the inputs of these nodes.
        self._integer_readers = {
            node for node in graph if node in integer_layers or is_integer_op(node, self.plan.points)
        }
        for layer in self.plan.layers:
            node = layer.graph_node
            if layer.weight is None:
                continue
            if node in self.weights:
                self._emit_weight(graph, node, layer, self.weights[node])
            else:
                self._materialize_float_weight(graph, node, layer)
        self._fold_constant_quantizers(graph)
        self._emit_activations(graph)
        self._emit_biases(graph)
        self._remove_remaining_fp8(graph)
        _set_opsets(model, self._needs_opset_21())
        graph.sort()
        ir_common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified=True)

    # -- weights -------------------------------------------------------------------------------

    def _emit_weight(self, graph: ir.Graph, node: ir.Node, layer: Layer, weight: WeightQuantization) -> None:
        value = node.inputs[1]
        assert value is not None
        base = layer.weight_source or value.name or layer.node
        dtype = ir.DataType.INT4 if weight.bits == 4 else ir.DataType.INT8
        q_value = self._initializer(graph, f"{base}_quantized", ir.tensor(weight.q.astype(np.int8), dtype=dtype))
        s_value = self._initializer(graph, f"{base}_scale", ir.tensor(np.asarray(weight.scale, np.float32)))
        attributes: dict[str, int] = {}
        if weight.axis is not None and (weight.scale.size > 1 or weight.block_size):
            attributes["axis"] = weight.axis
        if weight.block_size:
            attributes["block_size"] = weight.block_size
        inputs = [q_value, s_value]
        if weight.bits == 8:
            # An explicit int8 zero point: onnxruntime's QGemm fusion does not fire without one.
            zero = np.zeros(np.shape(weight.scale) if not weight.block_size else weight.scale.shape, np.int8)
            inputs.append(self._initializer(graph, f"{base}_zero_point", ir.tensor(zero)))
        dequantize = ir.node("DequantizeLinear", inputs, attributes=attributes)
        # Declared as what it computes: the stored layout (a folded transB changes it) in float32.
        dequantize.outputs[0].shape = ir.Shape(np.shape(weight.q))
        dequantize.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
        graph.insert_before(node, dequantize)
        if layer.folds_trans_b:
            node.attributes["transB"] = ir.AttrInt64("transB", 0)
        producer = value.producer()
        if producer is not None and all(use.node is node for use in value.uses()):
            _swap_producer(graph, producer, dequantize)
        else:
            dequantize.name = self._names.new(f"{base}_DequantizeLinear")
            dequantize.outputs[0].name = self._names.new(f"{base}_dequantized")
            node.replace_input_with(1, dequantize.outputs[0])

    def _materialize_float_weight(self, graph: ir.Graph, node: ir.Node, layer: Layer) -> None:
        """A float layer reads its FP8 weight as the exact float initializer (movement ops kept in place)."""
        value = node.inputs[1]
        assert value is not None
        source = trace_movement(value, constant=True).source
        producer = source.producer()
        if producer is None or not layer.has_weight:
            return
        if not (is_fake_quantize(producer) or is_fp8_weight_dequantize(producer)):
            return
        base = layer.weight_source or source.name or layer.node
        weight = exact_weights(producer)
        assert weight is not None
        exact = self._initializer(graph, f"{base}_fp8_exact", ir.tensor(weight))
        source.replace_all_uses_with(exact)

    def _fold_constant_quantizers(self, graph: ir.Graph) -> None:
        """Every FP8 quantizer of a constant that is no layer's weight becomes its exact float initializer.

        Biases and other constants stored as FP8 (AMD Quark quantizes biases to FP8 too) compute
        ``decode(codes)·s`` exactly in float32, so the initializer holds the very values the FP8 model
        used; biases of integer layers are then requantized to int32 like any float bias.
        """
        for node in list(graph):
            if not (is_fake_quantize(node) or is_fp8_weight_dequantize(node)):
                continue
            output = node.outputs[0]
            if output.name in self.plan.points or output.is_graph_output():
                continue
            values = exact_weights(node)
            if values is None:
                continue
            base = node.inputs[0].name if node.inputs[0] is not None else output.name
            exact = self._initializer(graph, f"{base}_fp8_exact", ir.tensor(values))
            output.replace_all_uses_with(exact)

    # -- activations ---------------------------------------------------------------------------

    def _emit_activations(self, graph: ir.Graph) -> None:
        values = values_by_name(graph)
        group_constants: dict[str, tuple[ir.Value, ir.Value]] = {}
        for name, point in sorted(self.plan.points.items()):
            value = values[name]
            quantization = self.activations[point.group]
            if point.group not in group_constants:
                group_constants[point.group] = self._activation_constants(graph, point.group, quantization)
            scale, zero_point = group_constants[point.group]
            quantize = ir.node(
                "QuantizeLinear", [value, scale, zero_point], name=self._names.new(f"{name}_QuantizeLinear")
            )
            quantize.outputs[0].name = self._names.new(f"{name}_quantized")
            self._insert_after_producer(graph, value, quantize)
            fake_quantizers = [c for c in value.consumers() if is_fake_quantize(c)]
            for fake_quantize in fake_quantizers:
                dequantize = ir.node("DequantizeLinear", [quantize.outputs[0], scale, zero_point])
                graph.insert_after(quantize, dequantize)
                _swap_producer(graph, fake_quantize, dequantize)
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
                    name=self._names.new(f"{name}_DequantizeLinear"),
                )
                dequantize.outputs[0].name = self._names.new(f"{name}_dequantized")
                graph.insert_after(quantize, dequantize)
                for consumer, index in integer_readers:
                    consumer.replace_input_with(index, dequantize.outputs[0])
            if point.fp8 is None and value.is_graph_output():
                self._quantize_graph_output(graph, value, quantize, scale, zero_point)

    def _quantize_graph_output(
        self, graph: ir.Graph, value: ir.Value, quantize: ir.Node, scale: ir.Value, zero_point: ir.Value
    ) -> None:
        """Make the graph output the dequantized tensor (QLinearConv needs its output quantized).

        The float tensor is renamed ``<name>_float`` and the DQ output takes the output's name.
        """
        name = value.name or ""
        dequantize = ir.node(
            "DequantizeLinear",
            [quantize.outputs[0], scale, zero_point],
            name=self._names.new(f"{name}_DequantizeLinear"),
        )
        graph.insert_after(quantize, dequantize)
        for index, output in enumerate(graph.outputs):
            if output is value:
                graph.outputs[index] = dequantize.outputs[0]
        value.name = self._names.new(f"{name}_float")
        dequantize.outputs[0].name = name
        dequantize.outputs[0].shape = value.shape
        dequantize.outputs[0].type = value.type

    def _reads_integer(self, consumer: ir.Node, new_point: bool) -> bool:
        """Whether ``consumer`` should read the dequantized tensor rather than the float one."""
        if consumer.op_type == "QuantizeLinear" or is_fake_quantize(consumer):
            return False
        if new_point:
            return True
        return consumer in self._integer_readers

    def _activation_constants(
        self, graph: ir.Graph, group: str, quantization: ActivationQuantization
    ) -> tuple[ir.Value, ir.Value]:
        dtype = _INT_TYPES[quantization.dtype]
        scale = self._initializer(graph, f"{group}_scale", ir.tensor(np.float32(quantization.scale)))
        zero = ir.tensor(np.array(quantization.zero_point, dtype=dtype.numpy()), dtype=dtype)
        return scale, self._initializer(graph, f"{group}_zero_point", zero)

    # -- bias ----------------------------------------------------------------------------------

    def _emit_biases(self, graph: ir.Graph) -> None:
        for layer in self.plan.layers:
            node = layer.graph_node
            weight = self.weights.get(node)
            point = self.plan.points.get(layer.inputs[0]) if layer.inputs else None
            if weight is not None and layer.needs_zero_bias and layer.activation_bits is None:
                self._insert_zero_bias(graph, node, weight, integer=False)
                continue
            if weight is None or point is None or layer.activation_bits != 8 or weight.block_size:
                continue
            input_scale = np.float32(self.activations[point.group].scale)
            if layer.op_type in ("Conv", "Gemm") and layer.bias is not None:
                self._quantize_bias_input(graph, node, 2, input_scale, weight)
            elif layer.bias_add is not None:
                add = layer.bias_add
                index = 1 if add.inputs[0] is node.outputs[0] else 0
                self._quantize_bias_input(graph, add, index, input_scale, weight)
            elif layer.needs_zero_bias:
                self._insert_zero_bias(graph, node, weight)

    def _insert_zero_bias(
        self, graph: ir.Graph, node: ir.Node, weight: WeightQuantization, *, integer: bool = True
    ) -> None:
        """``y = MatMul(...) + 0``: exact, and it steers onnxruntime's fusion to QGemm / MatMulNBits.

        With ``integer`` the zero is ``DequantizeLinear(int32 zeros)`` (QGemm needs an int32 bias); for
        weight-only layers a float zero constant (MatMulNBits takes a float bias).
        """
        output = node.outputs[0]
        channels = int(np.shape(weight.q)[-1])
        new_nodes: list[ir.Node] = []
        if integer:
            zeros = self._initializer(graph, f"{node.name}_zero_bias", ir.tensor(np.zeros(channels, np.int32)))
            ones = self._initializer(graph, f"{node.name}_zero_bias_scale", ir.tensor(np.ones(channels, np.float32)))
            dequantize = ir.node("DequantizeLinear", [zeros, ones], attributes={"axis": 0})
            dequantize.name = self._names.new(f"{node.name}_zero_bias_DequantizeLinear")
            dequantize.outputs[0].name = self._names.new(f"{node.name}_zero_bias_dequantized")
            bias = dequantize.outputs[0]
            new_nodes.append(dequantize)
        else:
            bias = self._initializer(graph, f"{node.name}_zero_bias", ir.tensor(np.zeros(channels, np.float32)))
        add = ir.node("Add", [output, bias], name=self._names.new(f"{node.name}_zero_bias_Add"))
        add.outputs[0].name = self._names.new(f"{output.name}_biased")
        new_nodes.append(add)
        graph.insert_after(node, new_nodes)
        for usage in list(output.uses()):
            if usage.node is not add:
                usage.node.replace_input_with(usage.idx, add.outputs[0])

    def _quantize_bias_input(
        self, graph: ir.Graph, node: ir.Node, index: int, input_scale: np.float32, weight: WeightQuantization
    ) -> None:
        """Replace a float bias input by ``DequantizeLinear(int32, s_x·s_W, axis 0)``.

        ``q_b = round_half_even(b / (s_x·s_W))`` saturated to int32, with ``s_x·s_W`` a float32 product
        (the scale onnxruntime's QLinearConv/QGemm assume).
        """
        bias_value = node.inputs[index]
        if bias_value is None or bias_value.const_value is None:
            return
        bias = bias_value.const_value.numpy().astype(np.float32)
        if bias.ndim != 1 or np.size(weight.scale) not in (1, bias.size):
            return  # a bias broadcast over the channels (Gemm's C, an Add) stays float
        weight_scale = np.broadcast_to(np.asarray(weight.scale, np.float32), bias.shape)
        bias_scale = (input_scale * weight_scale).astype(np.float32)
        quantized = np.clip(np.rint(bias.astype(np.float64) / bias_scale), -(2**31), 2**31 - 1).astype(np.int32)
        base = bias_value.name or f"{node.name}_bias"
        q_value = self._initializer(graph, f"{base}_quantized", ir.tensor(quantized))
        s_value = self._initializer(graph, f"{base}_scale", ir.tensor(bias_scale))
        dequantize = ir.node(
            "DequantizeLinear",
            [q_value, s_value],
            attributes={"axis": 0},
            name=self._names.new(f"{base}_DequantizeLinear"),
        )
        dequantize.outputs[0].name = self._names.new(f"{base}_dequantized")
        graph.insert_before(node, dequantize)
        node.replace_input_with(index, dequantize.outputs[0])

    # -- leftovers ------------------------------------------------------------------------------

    def _remove_remaining_fp8(self, graph: ir.Graph) -> None:
        """Drop the FP8 activation quantizers that have no integer consumer (the value flows through).

        A saturating per-tensor quantizer on a graph output keeps its saturation:
        ``y = clip(x, -m·s, m·s)`` (``m`` the format's max), since an FP8 model's outputs stop at ``±m·s``
        (tools calibrate output scales on data, and logits past the FP8 range were clipped in the model the
        user trained or validated); only the rounding to the FP8 grid is dropped.
        """
        for node in list(graph):
            if not is_fake_quantize(node):
                continue
            if node.outputs[0].is_graph_output() and self._clip_output_at_fp8_range(graph, node):
                continue
            remove_fake_quantize(node)

    def _clip_output_at_fp8_range(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Replace an output FakeQuantize by a Clip at its FP8 range; False where that is not its function."""
        spec = read_fake_quantize(node)
        scale = constant_array(node.inputs[1])
        if not spec.saturate or scale is None or scale.size != 1:
            return False
        bound = np.asarray(spec.format.max_value * scale.reshape(()), dtype=scale.dtype)
        base = node.outputs[0].name or node.name or "output"
        low = self._initializer(graph, f"{base}_fp8_min", ir.tensor(-bound))
        high = self._initializer(graph, f"{base}_fp8_max", ir.tensor(bound))
        clip = ir.node("Clip", [node.inputs[0], low, high], name=self._names.new(f"{base}_fp8_saturation"))
        graph.insert_before(node, clip)
        take_over(node.outputs[0], clip.outputs[0])
        graph.remove(node, safe=True)
        return True

    def _needs_opset_21(self) -> bool:
        wide = any(q.dtype in ("int16", "uint16") for q in self.activations.values())
        return wide or any(w.bits == 4 or w.block_size for w in self.weights.values())

    # -- helpers -------------------------------------------------------------------------------

    def _initializer(self, graph: ir.Graph, name: str, tensor: ir.TensorProtocol) -> ir.Value:
        value = ir.Value(
            name=self._names.new(name), const_value=tensor, shape=tensor.shape, type=ir.TensorType(tensor.dtype)
        )
        graph.register_initializer(value)
        return value

    def _insert_after_producer(self, graph: ir.Graph, value: ir.Value, node: ir.Node) -> None:
        producer = value.producer()
        if producer is None:
            first = next(iter(graph), None)
            if first is None:
                graph.append(node)
            else:
                graph.insert_before(first, node)
        else:
            graph.insert_after(producer, node)


class _NameAllocator:
    """Deterministic unique names: ``base``, then ``base_1``, ``base_2`` and so on."""

    def __init__(self, graph: ir.Graph) -> None:
        self._taken = {value.name for value in graph.inputs if value.name}
        self._taken |= {name for name in graph.initializers}
        for node in ir.traversal.RecursiveGraphIterator(graph):
            if node.name:
                self._taken.add(node.name)
            self._taken |= {value.name for value in node.outputs if value.name}

    def new(self, base: str) -> str:
        name, counter = base, 0
        while name in self._taken:
            counter += 1
            name = f"{base}_{counter}"
        self._taken.add(name)
        return name


def _swap_producer(graph: ir.Graph, old: ir.Node, new: ir.Node) -> None:
    """Let ``new`` (already in the graph) take over ``old``'s output (name, declared type and shape) and node name.

    ``old`` is removed.
    """
    node_name = old.name
    take_over(old.outputs[0], new.outputs[0])
    graph.remove(old, safe=True)
    new.name = node_name


def _set_opsets(model: ir.Model, needs_21: bool) -> None:
    """Drop the canonical domain; raise ai.onnx to 21 when the emitted Q/DQ need it, converting every op.

    Raising the import alone would leave ops whose signature changed on the way invalid (``ReduceMean``'s
    ``axes`` attribute became an input at 18, ``Split``'s and ``Squeeze``'s at 13), so the model goes
    through the ONNX version converter (onnxscript's, falling back to onnx's own adapters).

    Raises:
        Fp8ConvError: When an op of the model has no adapter to opset 21.
    """
    model.opset_imports.pop(CANONICAL_DOMAIN, None)
    model.graph.opset_imports.pop(CANONICAL_DOMAIN, None)
    current = model.opset_imports.get("", 13)
    if not needs_21 or current >= 21:
        return
    try:
        version_converter.convert_version(model, 21, fallback=True)
    except Exception as exc:  # the converters raise several unrelated types
        raise Fp8ConvError(
            f"the target needs opset 21 (INT4/INT16/blocked Q/DQ) and the model (opset {current}) cannot be "
            f"converted to it: {exc}"
        ) from exc
