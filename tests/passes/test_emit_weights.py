"""EmitWeightsPass: integer weights behind DequantizeLinear, float layers on their exact float weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import pytest
from emission_helpers import planned
from fp8_models import mlp, residual_cnn

from fp8conv.passes.emission import EmissionContext, reads_integer_weight
from fp8conv.passes.emit_weights import EmitWeightsPass


def _weights_pass(model, target: str = "int8", **options) -> tuple[ir.Model, EmitWeightsPass]:
    canonical, passes = planned(model, target, **options)
    first = passes.passes[0]
    assert isinstance(first, EmitWeightsPass)
    return canonical, first


def test_every_integer_layer_reads_an_int8_dequantize_of_its_quantized_weight():
    model, weights_pass = _weights_pass(residual_cnn())
    result = weights_pass(model)
    assert result.modified
    context = weights_pass.context
    for layer in context.plan.layers:
        weight = context.weights[layer.graph_node]
        assert reads_integer_weight(layer.graph_node, weight), layer.node
        dequantize = layer.graph_node.inputs[1].producer()
        stored = dequantize.inputs[0].const_value.numpy()
        np.testing.assert_array_equal(stored, weight.q)
        # The DQ took over the FP8 weight's name and its node's name.
        assert dequantize.outputs[0].name == f"{layer.weight_source}_fp8"


def test_int4_weights_are_stored_as_int4():
    model, weights_pass = _weights_pass(mlp(), "int4")
    weights_pass(model)
    for layer in weights_pass.context.plan.layers:
        stored = layer.graph_node.inputs[1].producer().inputs[0]
        assert stored.dtype == ir.DataType.INT4, layer.node


def test_a_float_layer_reads_its_exact_float_weight():
    model, weights_pass = _weights_pass(mlp(), keep_float=("fc1",))
    assert weights_pass(model).modified
    fc1 = next(layer for layer in weights_pass.context.plan.layers if layer.node == "fc1_node")
    weight = fc1.graph_node.inputs[1]
    assert weight.is_initializer()
    assert weight.name == "fc1.weight_fp8_exact"
    np.testing.assert_array_equal(weight.const_value.numpy(), fc1.weight_values)


def test_nothing_to_do_is_not_modified():
    model, weights_pass = _weights_pass(mlp())
    empty = dataclasses.replace(weights_pass.context.plan, layers=())
    result = EmitWeightsPass(EmissionContext(empty, {}, weights_pass.context.activations))(model)
    assert not result.modified


def test_requires_a_plan_of_this_model():
    _, weights_pass = _weights_pass(mlp())
    other, _ = _weights_pass(mlp())
    with pytest.raises(ir.passes.PreconditionError, match="layer fc1_node: its node is not in the model"):
        weights_pass(other)


def test_requires_the_integer_weight_of_every_integer_layer():
    model, weights_pass = _weights_pass(mlp())
    context = weights_pass.context
    missing = EmissionContext(context.plan, {}, context.activations)
    with pytest.raises(ir.passes.PreconditionError, match="layer fc1_node: planned int8, no integer weight"):
        EmitWeightsPass(missing)(model)


def test_requires_weights_not_emitted_yet():
    model, weights_pass = _weights_pass(mlp())
    weights_pass(model)
    with pytest.raises(ir.passes.PreconditionError, match="layer fc1_node: its integer weight is emitted already"):
        weights_pass(model)


def test_ensures_every_integer_weight_is_emitted(monkeypatch):
    model, weights_pass = _weights_pass(residual_cnn())
    original = EmitWeightsPass._emit_weight

    def skip_conv3(self, graph, node, layer, weight):
        if layer.node != "conv3_node":
            original(self, graph, node, layer, weight)

    monkeypatch.setattr(EmitWeightsPass, "_emit_weight", skip_conv3)
    with pytest.raises(ir.passes.PostconditionError, match="layer conv3_node: planned int8 but its weight is not"):
        weights_pass(model)


def test_ensures_no_float_layer_reads_its_weight_through_fp8(monkeypatch):
    model, weights_pass = _weights_pass(mlp(), keep_float=("fc2",))
    monkeypatch.setattr(EmitWeightsPass, "_materialize_float_weight", lambda self, graph, node, layer: False)
    with pytest.raises(ir.passes.PostconditionError, match="layer fc2_node: float, but reads its weight through FP8"):
        weights_pass(model)
