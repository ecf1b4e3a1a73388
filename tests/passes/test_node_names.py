"""Nodes without names or with repeated names (legal ONNX) convert exactly like named ones."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from paths import REPO_ROOT

from fp8conv import load
from fp8conv.converter.pipeline import convert, convert_file
from fp8conv.passes.node_names import UniqueNodeNamesPass
from fp8conv.runtime.audit import audit_integer_kernels

MODELS = REPO_ROOT / "models"
SAMPLES = ["digits_cnn", "seq_transformer"]


def _renamed(source: Path, rename) -> onnx.ModelProto:
    model = onnx.load(source)
    for index, node in enumerate(model.graph.node):
        node.name = rename(index, node)
    return model


def _chain(names: list[str]) -> onnx.ModelProto:
    """x → Relu → Relu → … with the given node names."""
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=name) for i, name in enumerate(names)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(f"t{len(names)}", TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _names_after_pass(names: list[str]) -> tuple[list[str], bool]:
    model = ir.from_proto(_chain(names))
    result = UniqueNodeNamesPass()(model)
    return [node.name for node in model.graph], result.modified


def test_unnamed_nodes_get_op_type_names_that_skip_every_name_in_the_model():
    names, modified = _names_after_pass(["", "Relu_0", "", ""])
    assert modified
    assert names == ["Relu_1", "Relu_0", "Relu_2", "Relu_3"]


def test_repeated_names_keep_the_first_and_number_the_rest():
    names, _ = _names_after_pass(["a", "a", "a_1", "a", ""])
    assert names == ["a", "a_2", "a_1", "a_3", "Relu_0"]


def test_unique_names_are_left_alone():
    names, modified = _names_after_pass(["x", "y", "z"])
    assert names == ["x", "y", "z"]
    assert not modified


def test_loading_names_every_node_once_and_the_same_way_each_time():
    model = _renamed(MODELS / "digits_cnn" / "model.onnx", lambda index, node: "")
    first = [node.name for node in load(model).model.graph]
    second = [node.name for node in load(model).model.graph]
    assert first == second
    assert all(first)
    assert len(set(first)) == len(first)


def _summary(result) -> tuple:
    """What a conversion decided and achieved, without the node names."""
    layers = [(r.op_type, r.precision, r.activation_bits, r.reason, r.weight_bits) for r in result.layers]
    activations = [(a.tensors, a.dtype, a.scale, a.zero_point) for a in result.activations]
    kernels = [(r.op_type, r.kernel, r.integer) for r in result.audit.records]
    return layers, activations, kernels


def _no_fp8_left(model: onnx.ModelProto) -> bool:
    fp8 = {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ}
    return all(tensor.data_type not in fp8 for tensor in model.graph.initializer)


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("naming", ["empty", "duplicated"])
def test_unnamed_and_duplicate_named_samples_convert_like_the_named_ones(tmp_path, sample, naming):
    source = MODELS / sample / "model.onnx"
    data = MODELS / sample / "calib.npz"
    rename = (lambda index, node: "") if naming == "empty" else (lambda index, node: f"n{index % 2}")
    variant = tmp_path / "variant.onnx"
    onnx.save(_renamed(source, rename), variant)
    named = convert_file(source, tmp_path / "named.onnx", data=data)
    result = convert_file(variant, tmp_path / "variant.int8.onnx", data=data)
    again = convert_file(variant, tmp_path / "again.int8.onnx", data=data)
    assert result.audit.integer_count == named.audit.integer_count == len(named.layers)
    assert _summary(result) == _summary(named)
    assert _no_fp8_left(onnx.load(tmp_path / "variant.int8.onnx"))
    assert len({layer.node for layer in result.layers}) == len(result.layers)
    assert (tmp_path / "variant.int8.onnx").read_bytes() == (tmp_path / "again.int8.onnx").read_bytes()
    assert again.audit.integer_count == result.audit.integer_count


def test_the_plan_and_emission_do_not_identify_nodes_by_name():
    """A canonical model whose nodes lose their names after loading still converts every layer."""
    loaded = load(MODELS / "digits_cnn" / "model.onnx")
    for node in loaded.model.graph:
        node.name = None
    result = convert(loaded, "int8")
    proto = ir.to_proto(result.model)
    assert all(layer.precision == "int8" for layer in result.layers)
    assert _no_fp8_left(proto)
    audit = audit_integer_kernels(proto)
    assert audit.integer_count == len(audit.records) == 7
