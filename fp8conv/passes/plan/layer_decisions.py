"""A layer's precision and activation width, by the target, the overrides and what the FP8 source quantized.

Every Conv / MatMul / Gemm is a layer (:func:`plan_layer`). It is converted when the FP8 source quantized it
(its weight, or its input, went through an FP8 quantizer, possibly followed by data movement) and no
``keep_float`` pattern selects it; the rules, in the order :func:`_decide` applies them, each with its
:class:`~fp8conv.passes.plan.records.DecisionCode`:

1. ``keep_float`` pattern → float; neither weight nor input FP8-quantized → float.
2. A constant as the quantized input (nothing to calibrate), ``Gemm(transA=1)`` (no integer kernel), a
   computed weight other than an activation × activation MatMul → float.
3. Activation × activation MatMul → INT8 inputs (16 bits for ``w8a16`` or an ``int16`` pattern); float
   for the weight-only ``w4a16``.
4. ``w4a16``: MatMul/Gemm → INT4 weights with float activations (MatMulNBits); Conv → float.
5. Otherwise INT8 weights (INT4 for ``int4`` or an ``int4`` pattern) with 8-bit activations (16 for
   ``w8a16`` or an ``int16`` pattern).

A MatMul whose only consumer adds a constant 1-D bias gets that Add as its ``bias_add`` (onnxruntime fuses
MatMul + Add into Gemm, which is QGemm only with an int32 bias); one whose only consumer is an Add of
another activation gets ``needs_zero_bias``.
"""

from __future__ import annotations

import onnx_ir as ir

from fp8conv.config import ConversionConfig, LayerPrecision, Target
from fp8conv.passes.canonical import QuantPoint
from fp8conv.passes.data_movement import trace_movement
from fp8conv.passes.plan.graph_queries import fp8_point_behind_cast, look_through_fake_quantize
from fp8conv.passes.plan.layer_weights import exact_weight, fold_trans_b, layer_weight, weight_axes
from fp8conv.passes.plan.records import Decision, DecisionCode, Layer

__all__ = ["plan_layer"]


def _fp8_quantized(value: ir.Value, by_output: dict[str, QuantPoint]) -> bool:
    """Whether ``value`` is an FP8 quantizer's output, directly or through data movement (or a Cast to float)."""
    source = trace_movement(value, constant=False).source
    return source.name in by_output or fp8_point_behind_cast(source, by_output) is not None


def plan_layer(
    node: ir.Node, by_output: dict[str, QuantPoint], config: ConversionConfig, override: frozenset[LayerPrecision]
) -> Layer:
    """The plan of one layer: its precision and decision, its weight (exact, in its layout), bias and inputs.

    Args:
        node: The Conv / MatMul / Gemm.
        by_output: The model's FP8 quantization points by output name.
        config: The conversion options (the target).
        override: The precisions the override patterns select for this layer.
    """
    name = node.name or ""
    weight_value = node.inputs[1] if len(node.inputs) > 1 else None
    weight, weight_codes, weight_source, fp8_weight = layer_weight(weight_value, by_output)
    has_weight = weight is not None or weight_codes is not None
    if not has_weight and weight_value is not None:
        fp8_weight = by_output.get(weight_value.name or "") or fp8_point_behind_cast(weight_value, by_output)
    data_inputs = [node.inputs[0]] if has_weight else list(node.inputs[:2])
    fp8_inputs = [value for value in data_inputs if value is not None and _fp8_quantized(value, by_output)]
    inputs = tuple((look_through_fake_quantize(v).name or "") for v in data_inputs if v is not None)
    axis, block_axis = weight_axes(node)
    bias = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if node.op_type == "Gemm" and bias is not None and exact_weight(node.inputs[2])[0] is None:
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
        return fold_trans_b(layer)
    return layer


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
    bias = exact_weight(other)[0]  # a float constant, or the exact values of FP8-stored biases (Quark)
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
