"""``fp8conv convert`` (fp8conv/cli/convert.py): the overwrite rule, the -o suffix, config files, bad input first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import one_error_line, residual_cnn_file, residual_cnn_files

from fp8conv.cli import cli


def _written(tmp_path: Path) -> list[str]:
    """Files the conversion may have written (the model, temporaries, reports)."""
    inputs = {"model.onnx", "calib.npz"}
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in inputs and p.suffix != ".yaml")


# -- overwriting an existing output ------------------------------------------------------------------------


def test_an_existing_output_is_replaced_and_a_failed_run_leaves_it_as_it_was(tmp_path):
    source = residual_cnn_file(tmp_path)
    before = source.read_bytes()
    output = tmp_path / "out.onnx"
    output.write_bytes(b"an older conversion")
    done = CliRunner().invoke(cli, [str(source), "-o", str(output), "--no-verify"])
    assert done.exit_code == 0, done.output
    converted = output.read_bytes()
    assert onnx.load_from_string(converted).graph.node  # the new model took its place
    again = CliRunner().invoke(cli, [str(source), "-o", str(output), "--no-verify"])  # a rerun: no flag needed
    assert again.exit_code == 0, again.output
    assert output.read_bytes() == converted
    output.write_bytes(b"an older conversion")
    failed = CliRunner().invoke(cli, [str(source), "-o", str(output), "--keep-float", "no_such_layer"])
    assert "matches no layer" in one_error_line(failed)
    assert output.read_bytes() == b"an older conversion"
    refused = CliRunner().invoke(cli, [str(source), "-o", str(source)])
    assert one_error_line(refused).endswith("the output would overwrite the input model")
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "out.onnx"]  # no temporaries left


def test_convert_help_states_the_overwrite_rule():
    text = " ".join(CliRunner().invoke(cli, ["convert", "--help"]).stdout.split())
    assert "An existing output file is replaced without asking" in text
    assert "MODEL itself is never overwritten (exit 2)" in text


@pytest.mark.parametrize(
    ("name", "warned"), [("out.bin", True), ("out", True), ("out.onnx", False), ("OUT.ONNX", False)]
)
def test_an_output_without_the_onnx_suffix_is_written_with_a_warning(tmp_path, name, warned):
    source = residual_cnn_file(tmp_path)
    outcome = CliRunner().invoke(cli, [str(source), "-o", str(tmp_path / name), "--no-verify"])
    assert outcome.exit_code == 0, outcome.output
    assert onnx.load(str(tmp_path / name)).graph.node
    warnings = [line for line in outcome.stderr.splitlines() if line.startswith("fp8conv: warning: ")]
    if warned:
        assert warnings == [
            f"fp8conv: warning: {tmp_path / name}: the output has "
            + (f"suffix {Path(name).suffix!r}" if Path(name).suffix else "no suffix")
            + ", not '.onnx'; writing an ONNX model there all the same"
        ]
    else:
        assert warnings == []


# -- config files ----------------------------------------------------------------------------------------------


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
    source, data = residual_cnn_files(tmp_path)
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
    source, data = residual_cnn_files(tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--config", str(config)])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert str(config) in outcome.output
    assert message in outcome.output
    assert _written(tmp_path) == []


def test_all_zero_calibration_data_converts_with_a_warning_instead_of_crashing(tmp_path):
    """The default mse method crashed on an all-zero histogram (math domain error, exit 1)."""
    source, data = residual_cnn_files(tmp_path)
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
    source, data = residual_cnn_files(tmp_path)
    args, message = _bad_inputs(tmp_path, data)[case]
    before = set(tmp_path.iterdir())
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), *map(str, args)])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert message in outcome.output
    assert "calibrating" not in outcome.output  # refused before the conversion ran
    assert set(tmp_path.iterdir()) == before  # no model, no temporary file, no report directory
