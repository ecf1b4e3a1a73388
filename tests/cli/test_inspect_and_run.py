"""`fp8conv inspect` and `fp8conv run`, and their Python counterparts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from golden_models import GOLDEN

import fp8conv
from fp8conv.cli import cli
from fp8conv.passes.reference_runner import ReferenceRunner

RUNNABLE = sorted(name for name in GOLDEN if name != "mx_unsupported")


def _save(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.onnx"
    onnx.save(GOLDEN[name].build(), str(path))
    return path


@pytest.mark.parametrize("name", RUNNABLE)
def test_inspect_json_lists_dialects_and_quant_points(tmp_path, name):
    case = GOLDEN[name]
    result = CliRunner().invoke(cli, ["inspect", str(_save(tmp_path, name)), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["schema_version"] == "1.1"  # a string, as report.json's
    assert document["dialects"] == sorted(case.dialects)
    roles = [point["role"] for point in document["quant_points"]]
    assert roles.count("activation") == case.activation_points
    assert roles.count("weight") == case.weight_points
    for point in document["quant_points"]:
        assert {"tensor", "role", "format", "axis", "block_size"} <= set(point)


def test_inspect_table_shows_points_and_facts(tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(_save(tmp_path, "qdq_per_axis"))])
    assert result.exit_code == 0, result.output
    assert "opset        ai.onnx 19" in result.output
    assert "dialects     qdq" in result.output
    assert "per-axis (axis 0)" in result.output
    assert "e4m3fn" in result.output


def test_python_inspect_matches_load(tmp_path):
    path = _save(tmp_path, "trt_opset100")
    inspection = fp8conv.inspect(path)
    loaded = fp8conv.load(path)
    assert inspection.dialects == loaded.dialects == ("trt",)
    assert [p.tensor for p in inspection.quant_points] == [p.tensor for p in loaded.quant_points]


def test_inspect_refuses_mx_with_the_node_list(tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(_save(tmp_path, "mx_unsupported"))])
    assert result.exit_code == 2
    assert "TRT_MXFP8DynamicQuantize" in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("name", ["trt_opset100", "floatquant_e3m4", "qdq_per_tensor", "cast_e4m3fn_clip"])
def test_run_writes_the_exact_reference_outputs(tmp_path, name):
    path = _save(tmp_path, name)
    runner = ReferenceRunner(fp8conv.load(path).model)
    input_name = runner.input_names[0]
    model = onnx.load(str(path))
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(3).standard_normal([5, *shape[1:]]).astype(np.float32)
    data = tmp_path / "in.npz"
    np.savez(data, **{input_name: x})
    out = tmp_path / "out.npz"
    result = CliRunner().invoke(cli, ["run", str(path), "--data", str(data), "-o", str(out), "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    saved = np.load(out)
    assert sorted(saved.files) == sorted(runner.output_names)
    for index in range(5):
        expected = runner.run({input_name: x[index : index + 1]})
        for output_name, value in expected.items():
            np.testing.assert_array_equal(saved[output_name][index : index + 1], value)


def test_run_with_missing_input_exits_2_and_writes_nothing(tmp_path):
    path = _save(tmp_path, "qdq_per_tensor")
    data = tmp_path / "in.npz"
    np.savez(data, wrong_name=np.zeros((2, 3, 8, 8), np.float32))
    out = tmp_path / "out.npz"
    result = CliRunner().invoke(cli, ["run", str(path), "--data", str(data), "-o", str(out)])
    assert result.exit_code == 2
    assert "no data for model input" in result.output
    assert not out.exists()
