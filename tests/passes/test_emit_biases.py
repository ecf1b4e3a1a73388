"""EmitBiasesPass: int32 biases through quantize_bias, exact zero biases."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from emission_helpers import planned, run_before
from fp8_models import mlp, residual_cnn
from paths import CORPUS

from fp8conv.errors import Fp8ConvError
from fp8conv.passes.emit_biases import EmitBiasesPass
from fp8conv.runtime.integer_quantization import quantize_bias

QUARK = CORPUS / "cnn.quark.onnx"  # biases stored as FP8 too


def _biases_pass(model, target: str = "int8", **options) -> tuple[ir.Model, EmitBiasesPass]:
    canonical, passes = planned(model, target, **options)
    return canonical, run_before(canonical, passes, EmitBiasesPass)


def _int32_bias(value: ir.Value) -> tuple[np.ndarray, np.ndarray]:
    dequantize = value.producer()
    assert dequantize.op_type == "DequantizeLinear"
    assert dequantize.attributes.get_int("axis") == 0
    q, scale = (v.const_value.numpy() for v in dequantize.inputs)
    assert q.dtype == np.int32
    return q, scale


def test_conv_and_gemm_biases_are_quantize_bias_of_input_and_weight_scales():
    model, biases = _biases_pass(residual_cnn())
    context = biases.context
    floats = {layer.node: layer.graph_node.inputs[2].const_value.numpy() for layer in context.plan.layers if layer.bias}
    assert set(floats) == {"conv1_node", "conv3_node", "logits_node"}
    assert biases(model).modified
    for layer in context.plan.layers:
        if layer.node not in floats:
            continue
        input_scale = context.activations[context.plan.points[layer.inputs[0]].group].scale
        want_q, want_scale = quantize_bias(floats[layer.node], input_scale, context.weights[layer.graph_node].scale)
        q, scale = _int32_bias(layer.graph_node.inputs[2])
        np.testing.assert_array_equal(q, want_q)
        np.testing.assert_array_equal(scale, want_scale)


def test_a_matmul_bias_add_is_quantized_and_a_residual_matmul_gets_an_int32_zero_bias():
    model, biases = _biases_pass(mlp())
    assert biases(model).modified
    layers = {layer.node: layer for layer in biases.context.plan.layers}
    add = layers["fc1_node"].bias_add
    q, _ = _int32_bias(add.inputs[1])
    assert q.shape == (64,)
    (zero_add,) = layers["fc2_node"].graph_node.outputs[0].consumers()
    assert zero_add.name == "fc2_node_zero_bias_Add"
    q, scale = _int32_bias(zero_add.inputs[1])
    assert not q.any()
    assert (scale == 1).all()


def test_a_weight_only_matmul_gets_a_float_zero_bias():
    model, biases = _biases_pass(mlp(), "w4a16")
    assert biases(model).modified
    fc2 = next(layer for layer in biases.context.plan.layers if layer.node == "fc2_node")
    (zero_add,) = fc2.graph_node.outputs[0].consumers()
    zero = zero_add.inputs[1]
    assert zero.dtype == ir.DataType.FLOAT
    assert not zero.const_value.numpy().any()


def test_sixteen_bit_activations_have_no_int32_bias_to_make():
    model, biases = _biases_pass(residual_cnn(), "w8a16")
    assert not biases(model).modified


def test_a_bias_quantize_bias_refuses_is_an_error_naming_the_layer():
    model, biases = _biases_pass(residual_cnn())
    conv1 = next(layer for layer in biases.context.plan.layers if layer.node == "conv1_node")
    bias = conv1.graph_node.inputs[2]
    bias.const_value = ir.tensor(np.full(8, np.nan, np.float32))
    with pytest.raises(Fp8ConvError, match="layer conv1_node: cannot quantize its bias: bias must be a finite 1-D"):
        biases(model)


def test_requires_fp8_biases_folded_first():
    model, passes = planned(str(QUARK))
    passes.passes[0](model)  # the weights, but not FoldFp8ConstantsPass
    biases = next(p for p in passes.passes if isinstance(p, EmitBiasesPass))
    with pytest.raises(ir.passes.PreconditionError, match="its bias is still behind an FP8 quantizer"):
        biases(model)


def test_ensures_no_float_bias_is_left():
    model, biases = _biases_pass(mlp())
    with pytest.raises(ir.passes.PostconditionError, match="layer fc1_node: its bias is still a float constant"):
        biases.ensures(model)


def test_ensures_the_zero_bias_is_in_place(monkeypatch):
    model, biases = _biases_pass(mlp())
    monkeypatch.setattr(EmitBiasesPass, "_insert_zero_bias", lambda self, graph, node, weight, integer=True: None)
    with pytest.raises(ir.passes.PostconditionError, match="layer fc2_node: no int32 zero bias Add after it"):
        biases(model)
