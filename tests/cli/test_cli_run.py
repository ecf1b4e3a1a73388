"""``fp8conv run`` (fp8conv/cli/run.py): the exact FP8 reference's outputs saved by name."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from golden_models import save_golden

import fp8conv
from fp8conv.cli import cli
from fp8conv.passes.reference_runner import ReferenceRunner


@pytest.mark.parametrize("name", ["trt_opset100", "floatquant_e3m4", "qdq_per_tensor", "cast_e4m3fn_clip"])
def test_run_writes_the_exact_reference_outputs(tmp_path, name):
    path = save_golden(tmp_path, name)
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
    path = save_golden(tmp_path, "qdq_per_tensor")
    data = tmp_path / "in.npz"
    np.savez(data, wrong_name=np.zeros((2, 3, 8, 8), np.float32))
    out = tmp_path / "out.npz"
    result = CliRunner().invoke(cli, ["run", str(path), "--data", str(data), "-o", str(out)])
    assert result.exit_code == 2
    assert "no data for model input" in result.output
    assert not out.exists()
