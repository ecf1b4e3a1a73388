"""EmitActivationsPass: QuantizeLinear → DequantizeLinear on every planned tensor."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir
import pytest
from emission_helpers import planned, run_before
from fp8_models import mlp, residual_cnn

from fp8conv.passes.canonical import is_fake_quantize
from fp8conv.passes.emission import EmissionContext
from fp8conv.passes.emit_activations import EmitActivationsPass
from fp8conv.passes.plan import values_by_name


def _activations_pass(model, target: str = "int8", **options) -> tuple[ir.Model, EmitActivationsPass]:
    canonical, passes = planned(model, target, **options)
    return canonical, run_before(canonical, passes, EmitActivationsPass)


@pytest.mark.parametrize(("target", "dtype"), [("int8", ir.DataType.UINT8), ("w8a16", ir.DataType.INT16)])
def test_every_planned_tensor_is_quantized_in_place_of_its_fp8_quantizer(target, dtype):
    model, activations = _activations_pass(residual_cnn(), target)
    plan = activations.context.plan
    assert plan.points
    assert activations(model).modified
    values = values_by_name(model.graph)
    for name, point in plan.points.items():
        quantizers = [node for node in values[name].consumers() if node.op_type == "QuantizeLinear"]
        assert len(quantizers) == 1, name
        assert quantizers[0].inputs[2].dtype == dtype
        if point.fp8 is not None:  # the DQ produces the FP8 quantizer's output, under its name
            dequantize = values[point.fp8.output].producer()
            assert dequantize.op_type == "DequantizeLinear"
            assert dequantize.inputs[0] is quantizers[0].outputs[0]
        assert not any(is_fake_quantize(node) for node in values[name].consumers())


def test_one_scale_and_zero_point_per_shared_scale_group():
    model, activations = _activations_pass(residual_cnn())
    activations(model)
    plan = activations.context.plan
    assert any(len(tensors) > 1 for tensors in plan.groups().values())  # relu2 and its MaxPool
    values = values_by_name(model.graph)
    for group, tensors in plan.groups().items():
        scales = {
            id(node.inputs[1]) for t in tensors for node in values[t].consumers() if node.op_type == "QuantizeLinear"
        }
        assert len(scales) == 1, group


def test_a_weight_only_target_has_nothing_to_quantize():
    model, activations = _activations_pass(mlp(), "w4a16")
    assert not activations.context.plan.points
    assert not activations(model).modified


def test_requires_every_planned_tensor_in_the_model():
    model, activations = _activations_pass(mlp())
    context = activations.context
    point = next(iter(context.plan.points.values()))
    points = {**context.plan.points, "ghost": dataclasses.replace(point, tensor="ghost")}
    ghost = EmissionContext(dataclasses.replace(context.plan, points=points), context.weights, context.activations)
    with pytest.raises(ir.passes.PreconditionError, match="activation ghost: no such tensor in the model"):
        EmitActivationsPass(ghost)(model)


def test_requires_a_quantization_for_every_group():
    model, activations = _activations_pass(mlp())
    context = activations.context
    with pytest.raises(ir.passes.PreconditionError, match="no quantization for its group"):
        EmitActivationsPass(EmissionContext(context.plan, context.weights, {}))(model)


def test_ensures_every_planned_tensor_is_quantized():
    model, activations = _activations_pass(mlp())
    with pytest.raises(ir.passes.PostconditionError, match="activation input: not quantized to UINT8"):
        activations.ensures(model)
