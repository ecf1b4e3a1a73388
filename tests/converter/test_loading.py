"""Loader: every input form, external data kept lazy, and one clear error per kind of bad input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from fp8_models import residual_cnn
from onnx import TensorProto, helper, numpy_helper

import fp8conv
from fp8conv import load
from fp8conv.cli import cli
from fp8conv.converter.loading import read_model
from fp8conv.errors import ModelLoadError, UnsupportedModelError
from fp8conv.runtime.ort_backend import create_session, ort_log_severity


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


# --- initializers listed as graph inputs (Brevitas) and quiet onnxruntime sessions ----------------------


def _with_initializer_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every initializer also listed as a graph input, as Brevitas exports write them."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in copy.graph.initializer:
        copy.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return copy


def test_initializers_listed_as_graph_inputs_are_constants_said_once(tmp_path: Path, caplog):
    source = _with_initializer_inputs(residual_cnn())
    path = tmp_path / "brevitas.onnx"
    onnx.save(source, str(path))
    initializers = [tensor.name for tensor in source.graph.initializer]
    with caplog.at_level(logging.WARNING, logger="fp8conv"):
        first, second = load(path), load(path)
    assert first.constant_inputs == tuple(initializers)
    assert [value.name for value in first.model.graph.inputs] == ["input"]
    reference = load(residual_cnn())
    assert [(p.tensor, p.role, p.stored) for p in first.quant_points] == [
        (p.tensor, p.role, p.stored) for p in reference.quant_points
    ]
    assert second.constant_inputs == first.constant_inputs
    said = [r.getMessage() for r in caplog.records if "also listed as graph inputs" in r.getMessage()]
    assert said == [
        f"{path}: {len(initializers)} initializers were also listed as graph inputs; treated as constants "
        f"(first: {initializers[0]})"
    ]
    assert load(residual_cnn()).constant_inputs == ()


def test_sessions_log_at_fp8convs_verbosity(caplog, capfd):
    model = _with_initializer_inputs(_matmul_model()).SerializeToString()
    capfd.readouterr()
    caplog.set_level(logging.WARNING, logger="fp8conv")
    assert ort_log_severity() == 3
    create_session(model)
    assert "appears in graph inputs" not in capfd.readouterr().err
    caplog.set_level(logging.INFO, logger="fp8conv")
    assert ort_log_severity() == 2
    create_session(model)
    assert "Initializer weight appears in graph inputs" in capfd.readouterr().err
    caplog.set_level(logging.DEBUG, logger="fp8conv")
    assert ort_log_severity() == 1


def test_every_onnxruntime_session_of_the_package_is_opened_by_create_session():
    package = Path(fp8conv.__file__).parent
    opened = {
        str(path.relative_to(package)): path.read_text().count("InferenceSession(") for path in package.rglob("*.py")
    }
    assert {name: count for name, count in opened.items() if count} == {"runtime/ort_backend.py": 1}
