"""Exit codes and one-line errors of the CLI: bad input is 2, fp8conv's own bugs are 3, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fp8_models import residual_cnn

from fp8conv.cli import cli
from fp8conv.errors import InternalError


def _source(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "model.onnx"
    model = residual_cnn()
    onnx.save(model, str(path))
    graph_input = model.graph.input[0]
    shape = [dim.dim_value or 1 for dim in graph_input.type.tensor_type.shape.dim]
    data = tmp_path / "calib.npz"
    x = np.random.default_rng(1).standard_normal([8, *shape[1:]]).astype(np.float32)
    np.savez(data, **{graph_input.name: x})
    return path, data


def _written(tmp_path: Path) -> list[str]:
    """Files the conversion may have written (the model, temporaries, reports)."""
    inputs = {"model.onnx", "calib.npz"}
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in inputs and p.suffix != ".yaml")


@pytest.mark.parametrize(
    ("suffix", "text", "where"),
    [
        ("yaml", "target: int8\nkeep_float: [a\n  b: c\n", ":3:4: YAML syntax error"),
        ("yml", "weights_range: max\n\tactivations_range: mse\n", ":2:1: YAML syntax error"),
        ("toml", 'target = "int8"\nkeep_float = [\n', ":3:1: TOML syntax error"),
    ],
    ids=["yaml-flow", "yaml-tab", "toml"],
)
def test_a_config_syntax_error_is_one_line_with_file_and_line_exit_2(tmp_path, suffix, text, where):
    source, data = _source(tmp_path)
    config = tmp_path / f"bad.{suffix}"
    config.write_text(text)
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--config", str(config)])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert f"{config}{where}" in outcome.output
    assert "Traceback" not in outcome.output
    assert not (tmp_path / "model.int8.onnx").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keep_float: 5\n", "keep_float must be a regex or a list of regexes"),
        ("max_calibration_samples: many\n", "max_calibration_samples must be an integer"),
        ("percentile: high\n", "percentile must be a number"),
        ("target: int9\n", "target must be one of"),
        ("full_range_weights: maybe\n", "full_range_weights must be true or false"),
        ("fp8conv: 3\n", "'fp8conv' must be a table"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_bad_input_naming_the_file(tmp_path, text, message):
    source, data = _source(tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--config", str(config)])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert str(config) in outcome.output
    assert message in outcome.output
    assert _written(tmp_path) == []


@pytest.mark.parametrize(
    "error", [InternalError("layer conv1: planned int8, written float"), KeyError("conv1")], ids=["internal", "other"]
)
def test_an_unexpected_exception_is_exit_3_in_one_line_and_the_traceback_only_with_v(tmp_path, monkeypatch, error):
    source, data = _source(tmp_path)

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr("fp8conv.converter.pipeline.convert_file", broken)
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data)])
    assert outcome.exit_code == 3, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert outcome.output.startswith("fp8conv: internal error: ")
    assert ("layer conv1: planned int8" if isinstance(error, InternalError) else "KeyError: 'conv1'") in outcome.output
    assert "Traceback" not in outcome.output
    verbose = CliRunner().invoke(cli, ["-v", str(source), "--data", str(data)])
    assert verbose.exit_code == 3
    assert "Traceback" in verbose.output


def test_all_zero_calibration_data_converts_with_a_warning_instead_of_crashing(tmp_path):
    """The default mse method crashed on an all-zero histogram (math domain error, exit 1)."""
    source, data = _source(tmp_path)
    name = next(iter(np.load(data).keys()))
    zeros = tmp_path / "zeros.npz"
    np.savez(zeros, **{name: np.zeros_like(np.load(data)[name])})
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(zeros), "--no-verify"])
    assert outcome.exit_code == 0, outcome.output
    assert f"activation {name}: the calibration data gave it only zeros" in outcome.output
    assert (tmp_path / "model.int8.onnx").is_file()
