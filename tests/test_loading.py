"""Loader: every input form, external data kept lazy, and one clear error per kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from fp8conv.cli import cli
from fp8conv.converter.loading import read_model
from fp8conv.errors import ModelLoadError, UnsupportedModelError


def _matmul_model(opset: int = 21, weight_shape: tuple[int, int] = (64, 32)) -> onnx.ModelProto:
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal(weight_shape).astype(np.float32), "weight"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"], name="matmul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight_shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight_shape[1]])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save_with_external_data(model: onnx.ModelProto, path: Path, location: str) -> None:
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )


def test_path_with_external_data_stays_lazy(tmp_path: Path):
    path = tmp_path / "model.onnx"
    _save_with_external_data(_matmul_model(), path, "model.data")
    model, source = read_model(path)
    weight = model.graph.initializers["weight"].const_value
    assert isinstance(weight, ir.ExternalTensor)
    assert source.external_data == ("model.data",)
    assert source.size_bytes == path.stat().st_size + (tmp_path / "model.data").stat().st_size
    np.testing.assert_array_equal(weight.numpy(), numpy_helper.to_array(_matmul_model().graph.initializer[0]))


@pytest.mark.parametrize("form", ["proto", "ir"])
def test_in_memory_inputs_are_not_modified(form: str):
    proto = _matmul_model()
    before = proto.SerializeToString()
    given = proto if form == "proto" else ir.from_proto(proto)
    model, source = read_model(given)
    model.graph.remove(next(iter(model.graph)), safe=False)
    assert source.path is None
    assert source.opset == 21
    if form == "proto":
        assert proto.SerializeToString() == before
    else:
        assert len(given.graph) == 1


def test_graphsurgeon_graph_is_accepted():
    import onnx_graphsurgeon as gs

    model, source = read_model(gs.import_onnx(_matmul_model()))
    assert [node.op_type for node in model.graph] == ["MatMul"]
    assert source.opset == 21


def _expect_error(path: Path, fragment: str, error: type[Exception] = ModelLoadError) -> None:
    with pytest.raises(error, match=fragment):
        read_model(path)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    assert fragment.replace("\\", "") in result.output.replace(str(path.parent) + os.sep, "")


def test_missing_file(tmp_path: Path):
    _expect_error(tmp_path / "nope.onnx", "no such file")


def test_not_an_onnx_file(tmp_path: Path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    _expect_error(path, "not")


def test_truncated_protobuf(tmp_path: Path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(_matmul_model().SerializeToString()[:-7])
    _expect_error(path, "truncated")


def test_missing_external_data_file(tmp_path: Path):
    path = tmp_path / "model.onnx"
    _save_with_external_data(_matmul_model(), path, "weights.bin")
    (tmp_path / "weights.bin").unlink()
    _expect_error(path, "'weights.bin' of tensor 'weight' is missing")


def test_external_data_outside_the_model_directory_is_refused(tmp_path: Path):
    inner = tmp_path / "inner"
    inner.mkdir()
    path = inner / "model.onnx"
    _save_with_external_data(_matmul_model(), path, "weights.bin")
    os.replace(inner / "weights.bin", tmp_path / "weights.bin")
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../weights.bin"
    onnx.save_model(model, str(path))
    _expect_error(path, "resolves outside")


def test_absolute_external_data_location_is_refused(tmp_path: Path):
    path = tmp_path / "model.onnx"
    _save_with_external_data(_matmul_model(), path, "weights.bin")
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = str(tmp_path / "weights.bin")
    onnx.save_model(model, str(path))
    _expect_error(path, "absolute location")


def test_symlink_out_of_the_model_directory_is_refused(tmp_path: Path):
    inner = tmp_path / "inner"
    inner.mkdir()
    path = inner / "model.onnx"
    _save_with_external_data(_matmul_model(), path, "weights.bin")
    os.replace(inner / "weights.bin", tmp_path / "secret.bin")
    (inner / "weights.bin").symlink_to(tmp_path / "secret.bin")
    _expect_error(path, "resolves outside")


def test_short_external_data_file(tmp_path: Path):
    path = tmp_path / "model.onnx"
    _save_with_external_data(_matmul_model(), path, "weights.bin")
    data = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").write_bytes(data[: len(data) // 2])
    _expect_error(path, "too short")


def test_graph_failing_the_checker(tmp_path: Path):
    model = _matmul_model()
    model.graph.node[0].input[1] = "undefined_tensor"
    path = tmp_path / "bad.onnx"
    onnx.save_model(model, str(path))
    _expect_error(path, "fails onnx.checker")


def test_unsupported_opset(tmp_path: Path):
    path = tmp_path / "old.onnx"
    onnx.save_model(_matmul_model(opset=9), str(path))
    _expect_error(path, "opset 9 is not supported", UnsupportedModelError)


def test_cycle_is_reported_with_its_nodes(tmp_path: Path):
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "cycle.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    _expect_error(path, "cycle through nodes first, second")
