"""One name allocator (issue 12): every new value or node name avoids every name of the graph.

Normalization named its new initializers by looking at the initializers only, so a new scale could take the
name of a node output (two values of one name: an invalid model); the emission, the lowering and
normalization now share :class:`fp8conv.passes.names.NameAllocator`.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper

from fp8conv.passes.names import NameAllocator, forget_name, names_for, shared_names
from fp8conv.passes.normalize import normalize_fp8


def _value(name: str) -> ir.Value:
    return ir.Value(name=name, shape=ir.Shape([4]), type=ir.TensorType(ir.DataType.FLOAT))


def _graph() -> ir.Graph:
    """Inputs, an initializer, a named node with a named output, and an If whose branch holds a value."""
    x = _value("x")
    w = ir.Value(name="w", const_value=ir.tensor(np.ones(4, np.float32), name="w"))
    add = ir.node("Add", [x, w], name="add_node")
    add.outputs[0].name = "sum"
    inner = ir.node("Relu", [add.outputs[0]], name="inner_relu")
    inner.outputs[0].name = "inner_out"
    branch = ir.Graph([], [inner.outputs[0]], nodes=[inner], name="branch")
    condition = ir.Value(name="cond", const_value=ir.tensor(np.array(True), name="cond"))
    choose = ir.node("If", [condition], attributes={"then_branch": branch, "else_branch": branch}, name="choose")
    choose.outputs[0].name = "chosen"
    return ir.Graph([x], [choose.outputs[0]], nodes=[add, choose], initializers=[w, condition], name="g")


def test_the_allocator_knows_every_name_of_the_graph_and_its_subgraphs():
    names = NameAllocator(_graph())
    for taken in ("x", "w", "cond", "sum", "add_node", "choose", "chosen", "inner_out", "inner_relu"):
        assert taken in names
        assert names.new(taken) == f"{taken}_1"
    assert names.new("sum") == "sum_2"
    assert names.new("fresh") == "fresh"
    assert names.new("fresh") == "fresh_1"
    assert names.new("w", reuse=lambda name: name == "w") == "w"  # shared, not taken again
    names.release("fresh")
    assert names.new("fresh") == "fresh"


def test_shared_names_make_one_allocator_per_graph_for_a_run():
    graph = _graph()
    assert names_for(graph) is not names_for(graph)
    with shared_names():
        names = names_for(graph)
        assert names_for(graph) is names
        assert names.new("x") == "x_1"
        forget_name(graph, "w")
        assert "w" not in names
    assert "x_1" not in names_for(graph)  # outside a run: read from the graph again


def test_a_new_normalization_initializer_avoids_node_output_names():
    """A bare FP8 Cast pair gets a unit-scale initializer ``<x>_fp8_unit_scale``; a node output had that name."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Cast", ["r"], ["c"], to=TensorProto.FLOAT8E4M3FN, name="to_fp8"),
        helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT, name="back"),
        helper.make_node("Identity", ["x"], ["r_fp8_unit_scale"], name="tap"),
    ]
    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4]) for name in ("x", "y", "r_fp8_unit_scale")]
    graph = helper.make_graph(nodes, "g", info[:1], info[1:])
    proto = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    model = normalize_fp8(ir.from_proto(proto)).model
    names = [*model.graph.initializers, *(value.name for node in model.graph for value in node.outputs)]
    assert sorted(names) == ["r", "r_fp8_unit_scale", "r_fp8_unit_scale_1", "y"]
    fake_quantize = next(node for node in model.graph if node.op_type == "FakeQuantize")
    assert fake_quantize.inputs[1].name == "r_fp8_unit_scale_1"
    onnx.checker.check_model(ir.to_proto(model))
