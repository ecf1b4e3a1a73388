"""Emission pass 4: int32 biases for the integer kernels, and exact zero biases that steer onnxruntime's fusion.

* **Bias** of a converted Conv/Gemm with 8-bit activations (or of the ``Add(MatMul, bias)`` onnxruntime
  fuses into a Gemm): ``b`` becomes int32 ``q_b = round_half_even(b / (s_x·s_W))`` with
  ``DequantizeLinear(q_b, s_x·s_W, axis 0)``, the form onnxruntime folds into QLinearConv/QGemm, computed
  by :func:`fp8conv.runtime.integer_quantization.quantize_bias` (the one bias quantizer, with its checks).
* **Zero bias**: a MatMul whose only reader is a residual Add gets ``+ DequantizeLinear(int32 zeros)``
  (a float zero for weight-only layers), exact, so onnxruntime fuses QGemm / MatMulNBits instead of a
  float Gemm.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from fp8conv.errors import Fp8ConvError
from fp8conv.passes.emission import EmissionPass, WeightQuantization, is_fp8_quantizer
from fp8conv.passes.plan import Layer
from fp8conv.runtime.fusion_rules import KERNEL_BITS
from fp8conv.runtime.integer_quantization import quantize_bias

__all__ = ["EmitBiasesPass"]

_INT32, _INT32_ZERO, _FLOAT_ZERO = "int32", "int32 zero", "float zero"


class EmitBiasesPass(EmissionPass):
    """Quantize the biases of the 8-bit integer layers to int32; insert the planned zero biases.

    ``requires``: the plan is the model's; the biases it quantizes are not behind FP8 quantizers any more
    (:class:`~fp8conv.passes.fold_fp8_constants.FoldFp8ConstantsPass` ran) and their layers' input groups
    have a quantization. ``ensures``: no bias it quantizes is left a float constant, and every planned zero
    bias is in place (the MatMul's only reader is its Add).

    Raises:
        Fp8ConvError: From ``call``, for a bias :func:`~fp8conv.runtime.integer_quantization.quantize_bias` refuses
            (not finite, a weight scale of another length, a scale product that underflows).
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: A bias still behind an FP8 quantizer, or no input quantization.
        """
        super().requires(model)
        for layer in self.context.plan.layers:
            action = self._action(layer)
            if action is None or action[0] != _INT32:
                continue
            _, node, index = action
            bias = node.inputs[index]
            if is_fp8_quantizer(bias.producer() if bias is not None else None):
                raise ir.passes.PreconditionError(f"layer {layer.node}: its bias is still behind an FP8 quantizer")
            if self.context.plan.points[layer.inputs[0]].group not in self.context.activations:
                raise ir.passes.PreconditionError(f"layer {layer.node}: no quantization for its input")

    def rewrite(self, graph: ir.Graph) -> bool:
        """Rewrite the biases of the main graph in place."""
        modified = False
        for layer in self.context.plan.layers:
            action = self._action(layer)
            if action is None:
                continue
            kind, node, index = action
            weight = self.context.weights[layer.graph_node]
            if kind == _INT32:
                point = self.context.plan.points[layer.inputs[0]]
                input_scale = np.float32(self.context.activations[point.group].scale)
                modified |= self._quantize_bias_input(graph, layer, node, index, input_scale, weight)
            else:
                self._insert_zero_bias(graph, node, weight, integer=kind == _INT32_ZERO)
                modified = True
        return modified

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: A float bias left, or a zero bias missing.
        """
        for layer in self.context.plan.layers:
            action = self._action(layer)
            if action is None:
                continue
            kind, node, index = action
            if kind == _INT32 and _quantizable(node.inputs[index], self.context.weights.get(layer.graph_node)):
                raise ir.passes.PostconditionError(f"layer {layer.node}: its bias is still a float constant")
            if kind != _INT32 and not _adds_zero_bias(node, integer=kind == _INT32_ZERO):
                raise ir.passes.PostconditionError(f"layer {layer.node}: no {kind} bias Add after it")

    def _action(self, layer: Layer) -> tuple[str, ir.Node, int] | None:
        """What this pass does for ``layer``: ``(kind, node, bias input index)``, or None.

        Kinds: ``int32`` (quantize input ``index`` of ``node``: the layer's bias, or its bias Add's),
        ``int32 zero`` and ``float zero`` (add a zero bias after ``node``, the layer; ``index`` unused).
        """
        node = layer.graph_node
        weight = self.context.weights.get(node)
        if weight is None:
            return None
        if layer.needs_zero_bias and layer.activation_bits is None:
            return _FLOAT_ZERO, node, -1
        point = self.context.plan.points.get(layer.inputs[0]) if layer.inputs else None
        if point is None or layer.activation_bits != KERNEL_BITS or weight.block_size:  # QLinearConv/QGemm
            return None
        if layer.op_type in ("Conv", "Gemm") and layer.bias is not None:
            return _INT32, node, 2
        if layer.bias_add is not None:
            add = layer.bias_add
            return _INT32, add, 1 if add.inputs[0] is node.outputs[0] else 0
        if layer.needs_zero_bias:
            return _INT32_ZERO, node, -1
        return None

    def _insert_zero_bias(
        self, graph: ir.Graph, node: ir.Node, weight: WeightQuantization, *, integer: bool = True
    ) -> None:
        """``y = MatMul(...) + 0``: exact, and it steers onnxruntime's fusion to QGemm / MatMulNBits.

        With ``integer`` the zero is ``DequantizeLinear(int32 zeros)`` (QGemm needs an int32 bias); for
        weight-only layers a float zero constant (MatMulNBits takes a float bias).
        """
        names = self.context.names(graph)
        initializer = self.context.initializer
        output = node.outputs[0]
        channels = int(np.shape(weight.q)[-1])
        new_nodes: list[ir.Node] = []
        if integer:
            zeros = initializer(graph, f"{node.name}_zero_bias", ir.tensor(np.zeros(channels, np.int32)))
            ones = initializer(graph, f"{node.name}_zero_bias_scale", ir.tensor(np.ones(channels, np.float32)))
            dequantize = ir.node("DequantizeLinear", [zeros, ones], attributes={"axis": 0})
            dequantize.name = names.new(f"{node.name}_zero_bias_DequantizeLinear")
            dequantize.outputs[0].name = names.new(f"{node.name}_zero_bias_dequantized")
            bias = dequantize.outputs[0]
            new_nodes.append(dequantize)
        else:
            bias = initializer(graph, f"{node.name}_zero_bias", ir.tensor(np.zeros(channels, np.float32)))
        add = ir.node("Add", [output, bias], name=names.new(f"{node.name}_zero_bias_Add"))
        add.outputs[0].name = names.new(f"{output.name}_biased")
        new_nodes.append(add)
        graph.insert_after(node, new_nodes)
        for usage in list(output.uses()):
            if usage.node is not add:
                usage.node.replace_input_with(usage.idx, add.outputs[0])

    def _quantize_bias_input(
        self,
        graph: ir.Graph,
        layer: Layer,
        node: ir.Node,
        index: int,
        input_scale: np.float32,
        weight: WeightQuantization,
    ) -> bool:
        """Replace a constant 1-D float bias input by ``DequantizeLinear(int32, s_x·s_W, axis 0)``.

        Returns:
            Whether the bias was such a constant (and is now quantized).

        Raises:
            Fp8ConvError: :func:`~fp8conv.runtime.integer_quantization.quantize_bias` refuses the bias.
        """
        bias_value = node.inputs[index]
        if not _quantizable(bias_value, weight):
            return False
        assert bias_value is not None
        assert bias_value.const_value is not None
        try:
            quantized, bias_scale = quantize_bias(bias_value.const_value.numpy(), input_scale, weight.scale)
        except ValueError as error:
            raise Fp8ConvError(f"layer {layer.node}: cannot quantize its bias: {error}") from error
        names = self.context.names(graph)
        base = bias_value.name or f"{node.name}_bias"
        q_value = self.context.initializer(graph, f"{base}_quantized", ir.tensor(quantized))
        s_value = self.context.initializer(graph, f"{base}_scale", ir.tensor(bias_scale))
        dequantize = ir.node(
            "DequantizeLinear",
            [q_value, s_value],
            attributes={"axis": 0},
            name=names.new(f"{base}_DequantizeLinear"),
        )
        dequantize.outputs[0].name = names.new(f"{base}_dequantized")
        graph.insert_before(node, dequantize)
        node.replace_input_with(index, dequantize.outputs[0])
        return True


def _quantizable(bias: ir.Value | None, weight: WeightQuantization | None) -> bool:
    """Whether ``bias`` is a bias form the integer kernels take.

    That is a constant 1-D tensor (an initializer) with one entry per weight scale (or one scale); a bias
    broadcast over the channels (Gemm's ``C`` of shape ``[1]`` with per-channel weights) stays float.
    """
    if bias is None or bias.const_value is None or len(bias.const_value.shape) != 1:
        return False
    return weight is None or np.size(weight.scale) in (1, bias.const_value.shape[0])


def _adds_zero_bias(node: ir.Node, *, integer: bool) -> bool:
    """Whether the only reader of ``node``'s output adds zero to it (``DequantizeLinear(int32 0)`` or a float 0)."""
    output = node.outputs[0]
    readers = output.consumers()
    if len(readers) != 1 or readers[0].op_type != "Add" or len(readers[0].inputs) != 2:
        return False
    add = readers[0]
    bias = add.inputs[1] if add.inputs[0] is output else add.inputs[0]
    if bias is None:
        return False
    if integer:
        producer = bias.producer()
        if producer is None or producer.op_type != "DequantizeLinear":
            return False
        bias = producer.inputs[0]
        if bias is None or bias.dtype != ir.DataType.INT32:
            return False
    elif bias.dtype != ir.DataType.FLOAT:
        return False
    return bias.const_value is not None and not bias.const_value.numpy().any()
