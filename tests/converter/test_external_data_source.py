"""A source model with external data converts, verifies, runs and is inspected from any working directory.

Tensors the conversion leaves as they are (a bias, a LayerNorm weight) stayed references to the source's
data file: a model written without external data pointed at that file (relative to its own directory,
where it is not), and ``onnx.checker`` on the written bytes looked for it in the working directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from fp8_models import mlp

from fp8conv.cli import cli
from fp8conv.converter.saving import self_contained_proto


def _source(directory: Path) -> tuple[Path, Path]:
    """``mlp`` with every tensor in ``model.onnx.data``, and its calibration data, in ``directory``."""
    directory.mkdir()
    path = directory / "model.onnx"
    onnx.save(mlp(batch="batch"), path, save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    data = directory / "calib.npz"
    np.savez(data, input=np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32))
    return path, data


def _invoke(*argv: object):
    return CliRunner().invoke(cli, [str(arg) for arg in argv])


def _external_tensors(path: Path) -> list[str]:
    proto = onnx.load(path, load_external_data=False)
    return [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


@pytest.mark.parametrize("target", ["int8", "w4a16"])
def test_convert_and_verify_from_another_directory_writes_what_the_model_directory_writes(
    tmp_path, monkeypatch, target
):
    source, data = _source(tmp_path / "a")
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    away = _invoke(source, "--to", target, "--data", data, "-o", "out.onnx", "--min-sqnr", "off")
    assert away.exit_code == 0, away.output
    monkeypatch.chdir(source.parent)
    home = _invoke(source, "--to", target, "--data", data, "-o", "out.onnx", "--min-sqnr", "off")
    assert home.exit_code == 0, home.output
    assert (elsewhere / "out.onnx").read_bytes() == (source.parent / "out.onnx").read_bytes()
    assert _external_tensors(elsewhere / "out.onnx") == []  # nothing points at the source's data file
    assert not (elsewhere / "out.onnx.data").exists()


def test_verify_run_and_inspect_from_another_directory(tmp_path, monkeypatch):
    source, data = _source(tmp_path / "a")
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    converted = _invoke(source, "--data", data, "-o", "sub/out.onnx", "--external-data", "--no-verify")
    assert converted.exit_code == 0, converted.output
    assert _external_tensors(elsewhere / "sub" / "out.onnx")
    verified = _invoke("verify", source, "sub/out.onnx", "--data", data)
    assert verified.exit_code == 0, verified.output
    ran = _invoke("run", source, "--data", data, "-o", "outputs.npz")
    assert ran.exit_code == 0, ran.output
    assert np.load(elsewhere / "outputs.npz")["output"].shape == (16, 32)
    inspected = _invoke("inspect", source)
    assert inspected.exit_code == 0, inspected.output
    assert "model.onnx.data" in inspected.output


def test_self_contained_proto_is_the_proto_of_the_same_tensors_in_memory(tmp_path):
    source, _ = _source(tmp_path / "a")
    lazy = ir.load(source)
    assert any(isinstance(v.const_value, ir.ExternalTensor) for v in lazy.graph.initializers.values())
    in_memory = ir.load(source)
    for value in in_memory.graph.initializers.values():
        if isinstance(value.const_value, ir.ExternalTensor):
            value.const_value = ir.tensor(value.const_value.numpy(), name=value.name)
    assert self_contained_proto(lazy).SerializeToString() == ir.to_proto(in_memory).SerializeToString()
    assert any(isinstance(v.const_value, ir.ExternalTensor) for v in lazy.graph.initializers.values())  # unchanged
