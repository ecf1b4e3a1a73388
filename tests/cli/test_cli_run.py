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


def test_run_takes_every_option_from_a_config_file_and_flags_override_it(tmp_path):
    """run's options come from the option schema: a config file can hold model, data, output and batch size."""
    path = save_golden(tmp_path, "qdq_per_tensor")
    runner = ReferenceRunner(fp8conv.load(path).model)
    x = np.random.default_rng(4).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", **{runner.input_names[0]: x})
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {path.name}\ndata: in.npz\noutput: from_file.npz\nbatch_size: 1\n")
    from_file = CliRunner().invoke(cli, ["run", "--config", str(config)])
    assert from_file.exit_code == 0, from_file.output
    overridden = CliRunner().invoke(cli, ["run", "--config", str(config), "-o", str(tmp_path / "flag.npz")])
    assert overridden.exit_code == 0, overridden.output
    first, second = np.load(tmp_path / "from_file.npz"), np.load(tmp_path / "flag.npz")
    assert first.files == second.files == list(runner.output_names)
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.parametrize(("missing", "flag"), [("--data", "--data"), ("-o", "--output")])
def test_run_without_a_required_option_is_one_line_naming_it(tmp_path, missing, flag):
    path = save_golden(tmp_path, "qdq_per_tensor")
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 3, 8, 8), np.float32))
    given = {"--data": str(tmp_path / "in.npz"), "-o": str(tmp_path / "out.npz")}
    del given[missing]
    result = CliRunner().invoke(cli, ["run", str(path), *[part for pair in given.items() for part in pair]])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"missing option '{flag}'" in lines[0]
    assert not (tmp_path / "out.npz").exists()


def test_run_help_marks_the_required_options():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for flag in ("--data PATH", "--output PATH", "--batch-size N"):
        described = text.split(flag, 1)[1].split(" --", 1)[0]
        assert ("[required]" in described) is (flag != "--batch-size N"), described
