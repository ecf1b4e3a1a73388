"""Exit codes and one-line errors of the CLI: bad input is 2, fp8conv's own bugs are 3, never a traceback."""

from __future__ import annotations

import importlib
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

    monkeypatch.setattr("fp8conv.converter.pipeline.convert", broken)
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


# -- every input is checked before anything is written --------------------------------------------------------


def _labelled(tmp_path: Path, data: Path, name: str, *, labels: int | None = None, **changes) -> Path:
    """A copy of the calibration data with labels (``labels`` of them), or with arrays changed."""
    arrays = dict(np.load(data))
    count = len(next(iter(arrays.values())))
    arrays["labels"] = np.zeros(count if labels is None else labels, np.int64)
    arrays.update(changes)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def _bad_inputs(tmp_path: Path, data: Path) -> dict[str, tuple[list[str], str]]:
    x = np.load(data)["input"]
    (tmp_path / "a_file").write_text("")
    (tmp_path / "gates.yaml").write_text("gates:\n  min_sqnr: loud\n")
    return {
        "labels-length": (["--verify-data", _labelled(tmp_path, data, "short", labels=len(x) - 3)], "labels=5"),
        "verify-shape": (["--verify-data", _labelled(tmp_path, data, "shape", input=x[:, :, :6])], "dimension 2 is 6"),
        "verify-dtype": (["--verify-data", _labelled(tmp_path, data, "f64", input=x.astype(np.float64))], "float64"),
        "verify-missing": (["--verify-data", tmp_path / "nothing.npz"], "no such data file"),
        "gate-output": (["--min-sqnr", "nosuch:20"], "gates name output(s) nosuch"),
        "config-gate": (["--config", tmp_path / "gates.yaml"], "gates.yaml: gate min_sqnr: 'loud'"),
        "output-under-a-file": (["-o", tmp_path / "a_file" / "out.onnx"], "cannot write the model"),
        "report-under-a-file": (["--report", tmp_path / "a_file" / "report"], "cannot write the reports"),
    }


BAD_INPUTS = [
    "labels-length", "verify-shape", "verify-dtype", "verify-missing", "gate-output", "config-gate",
    "output-under-a-file", "report-under-a-file",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_a_bad_input_is_exit_2_before_anything_is_written(tmp_path, case):
    """--verify-data with labels of the wrong length used to exit 2 after the model was written."""
    source, data = _source(tmp_path)
    args, message = _bad_inputs(tmp_path, data)[case]
    before = set(tmp_path.iterdir())
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), *map(str, args)])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert message in outcome.output
    assert "calibrating" not in outcome.output  # refused before the conversion ran
    assert set(tmp_path.iterdir()) == before  # no model, no temporary file, no report directory


def test_verify_checks_where_its_reports_go_before_it_runs(tmp_path, monkeypatch):
    source, data = _source(tmp_path)
    (tmp_path / "a_file").write_text("")

    def not_reached(*args, **kwargs):
        raise AssertionError("verification ran although its reports cannot be written")

    monkeypatch.setattr(importlib.import_module("fp8conv.verification.verify"), "verify", not_reached)
    report = tmp_path / "a_file" / "report"
    outcome = CliRunner().invoke(
        cli, ["verify", str(source), str(source), "--data", str(data), "--report", str(report)]
    )
    assert outcome.exit_code == 2, outcome.output
    assert f"{report}: cannot write the reports: {tmp_path / 'a_file'} is not a directory" in outcome.output


def test_convert_file_refuses_an_output_it_cannot_write_before_converting(tmp_path, monkeypatch):
    from fp8conv.converter import pipeline
    from fp8conv.errors import Fp8ConvError

    source, data = _source(tmp_path)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(pipeline, "convert", lambda *args, **kwargs: pytest.fail("converted first"))
    with pytest.raises(Fp8ConvError, match=r"cannot write the model: .*a_file is not a directory"):
        pipeline.convert_file(source, tmp_path / "a_file" / "out.onnx", data=data)
