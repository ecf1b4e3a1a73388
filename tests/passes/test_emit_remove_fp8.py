"""RemoveFp8Pass: the FP8 activation quantizers no integer reader took over go; an output one keeps its Clip."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from emission_helpers import planned, run_before
from fp8_models import _Graph, mlp
from onnx import TensorProto, helper

from fp8conv.passes.canonical import is_fake_quantize
from fp8conv.passes.emit_activations import EmitActivationsPass
from fp8conv.passes.remove_fp8 import RemoveFp8Pass


def _remove_pass(model, target: str = "int8") -> tuple[ir.Model, RemoveFp8Pass]:
    canonical, passes = planned(model, target)
    return canonical, run_before(canonical, passes, RemoveFp8Pass)


def _fp8_output_model():
    """``x → FP8 → MatMul(FP8 W) → FP8 → y``: the last FP8 quantizer is on the graph output."""
    g = _Graph()
    x = g.fp8_activation("x", 4.0)
    w = g.fp8_weight("w", (np.random.default_rng(0).standard_normal((8, 4)) * 0.3).astype(np.float32), 1)
    g.node("MatMul", [x, w], "mm")
    g.fp8_activation("mm", 2.0)
    return g.model(
        "fp8_output",
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
        helper.make_tensor_value_info("mm_fp8", TensorProto.FLOAT, [2, 4]),
    )


def test_dropped_fp8_quantizers_go_and_the_value_flows_through():
    model, remove = _remove_pass(mlp(), "w4a16")  # weight-only: every FP8 activation quantizer is dropped
    assert sum(is_fake_quantize(node) for node in model.graph) == len(remove.context.plan.dropped_fp8) > 0
    assert remove(model).modified
    assert not any(is_fake_quantize(node) for node in model.graph)
    fc1 = next(layer for layer in remove.context.plan.layers if layer.node == "fc1_node")
    assert fc1.graph_node.inputs[0] is model.graph.inputs[0]


def test_a_saturating_fp8_quantizer_on_a_graph_output_becomes_a_clip_at_its_range():
    model, remove = _remove_pass(_fp8_output_model(), "w4a16")
    assert remove(model).modified
    (output,) = model.graph.outputs
    clip = output.producer()
    assert (output.name, clip.op_type, clip.name) == ("mm_fp8", "Clip", "mm_fp8_fp8_saturation")
    bound = np.float32(448.0) * np.float32(2.0 / 448.0)
    assert clip.inputs[1].const_value.numpy() == -bound
    assert clip.inputs[2].const_value.numpy() == bound


def test_nothing_left_is_not_modified():
    model, remove = _remove_pass(mlp(), "w4a16")
    remove(model)
    assert not remove(model).modified


def test_requires_the_planned_quantizers_replaced_first():
    model, passes = planned(mlp())
    run_before(model, passes, EmitActivationsPass)
    remove = next(p for p in passes.passes if isinstance(p, RemoveFp8Pass))
    with pytest.raises(ir.passes.PreconditionError, match="activation input: its FP8 quantizer is not replaced yet"):
        remove(model)


def test_ensures_no_fp8_quantizer_is_left():
    model, remove = _remove_pass(mlp(), "w4a16")
    with pytest.raises(ir.passes.PostconditionError, match="is left in the graph"):
        remove.ensures(model)
