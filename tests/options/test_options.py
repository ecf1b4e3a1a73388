"""One option schema (issue 15): flags, config keys, Python keywords and the README table come from it.

Every item of the issue has a test here: options a config file refused or spelled differently, options that
existed in one place only, values that crashed instead of naming the option, contradictions accepted silently,
data that the API could not take, results that printed histograms.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from paths import REPO_ROOT

import fp8conv
from fp8conv import options
from fp8conv.cli import cli
from fp8conv.config import ConversionConfig, load_config_file
from fp8conv.errors import Fp8ConvError
from fp8conv.options.table import TABLE_BEGIN, TABLE_END, markdown_table, readme_block

ROOT = REPO_ROOT
DIGITS = ROOT / "models" / "digits_cnn"
MODEL, CALIB, EVAL = DIGITS / "model.onnx", DIGITS / "calib.npz", DIGITS / "eval.npz"


def _invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _refused(outcome: object, *parts: str) -> str:
    """Exit 2, one line ``fp8conv: error: ...`` holding every part."""
    assert outcome.exit_code == 2, outcome.output
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1, outcome.output
    assert lines[0].startswith("fp8conv: error: "), lines[0]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _config(tmp_path: Path, text: str, name: str = "fp8conv.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _record(outcome: object) -> dict:
    """The conversion record of a ``--json`` run (the verification report's or the bare record)."""
    document = json.loads(outcome.stdout)
    return document.get("conversion") or document


# -- the schema and what is derived from it ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", options.COMMANDS)
def test_the_click_options_are_the_schema_s(command):
    params = {param.name: param for param in cli.commands[command].params if not getattr(param, "hidden", False)}
    expected = {option.name: option for option in options.for_command(command) if option.on_command_line}
    assert list(params) == list(expected)
    for name, param in params.items():
        option = expected[name]
        if option.positional:
            assert param.param_type_name == "argument"
            continue
        assert option.flag == "--" + name.replace("_", "-")
        assert option.flag in param.opts
        if option.kind is options.Kind.FLAG:
            assert param.secondary_opts == ["--no-" + option.flag[2:]]
        if option.kind is options.Kind.CHOICE:
            assert list(param.type.choices) == [str(choice) for choice in option.choices]


def test_the_readme_option_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert TABLE_BEGIN in readme
    assert TABLE_END in readme
    assert readme_block(readme) == markdown_table(), "run: python -m fp8conv.options --write README.md"
    for option in options.OPTIONS:
        assert f"`{option.flag if option.on_command_line else option.name}`" in markdown_table()


def test_python_m_fp8conv_options_checks_and_rewrites_the_table(tmp_path, capsys):
    from fp8conv.options.table import main

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{TABLE_BEGIN}\n| stale |\n{TABLE_END}\n\nrest\n")
    assert main(["--check", str(readme)]) == 1
    assert main(["--write", str(readme)]) == 0
    assert main(["--check", str(readme)]) == 0
    assert readme.read_text().endswith(f"{TABLE_END}\n\nrest\n")
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == markdown_table()


def test_every_configuration_field_is_one_option_with_the_same_default():
    fields = {field.name: field.default for field in dataclasses.fields(ConversionConfig)}
    assert set(options.FIELD_OPTIONS) == set(fields)
    for field, default in fields.items():
        option = options.FIELD_OPTIONS[field]
        assert option.field_value(option.check(option.default)) == default, field
        assert option.api == options.API_FUNCTIONS


def test_the_gate_options_are_the_gates_with_their_defaults():
    from fp8conv.verification.gates import DEFAULT_THRESHOLDS, GATE_NAMES, KERNEL_GATE, LAYER_GATE

    assert (*GATE_NAMES, LAYER_GATE, KERNEL_GATE) == options.GATE_OPTIONS
    for name in (*GATE_NAMES, LAYER_GATE):
        assert options.option(name).default == DEFAULT_THRESHOLDS[name], name


def test_the_optimization_levels_are_the_audit_s():
    from fp8conv.runtime.audit import OPTIMIZATION_LEVELS

    assert sorted(options.option("optimization_level").choices) == sorted(OPTIMIZATION_LEVELS)


@pytest.mark.parametrize(
    ("function", "skip"),
    [
        (fp8conv.convert, {"model", "config", "progress", "options"}),
        (fp8conv.convert_file, {"src", "dst", "progress", "options"}),
        (fp8conv.convert_and_verify, {"model", "config", "progress", "options", "skip_reason"}),
    ],
)
def test_the_keyword_parameters_of_the_api_are_options_of_it(function, skip):
    parameters = set(inspect.signature(function).parameters) - skip
    takes = {option.name for option in options.for_function(function.__name__)}
    assert parameters <= takes, parameters - takes
    for name in parameters:
        default = inspect.signature(function).parameters[name].default
        option = options.option(name)
        assert default == option.default or (name == "to" and default is None), name  # to=None: config's


# -- a config file can hold everything a command line can --------------------------------------------------------------


def test_a_config_file_holds_model_data_output_target_verification_data_and_gates(tmp_path):
    """to, data, verify_data and min_sqnr were refused as unknown; model and output could not be given."""
    (tmp_path / "out").mkdir()
    config = _config(
        tmp_path,
        f"model: {MODEL}\nto: w8a16\ndata: {CALIB}\nverify_data: {EVAL}\noutput: out/m.onnx\nmin_sqnr: 200\n",
    )
    outcome = _invoke("--config", config, "--json")  # no MODEL argument: `fp8conv --config FILE` converts
    assert outcome.exit_code == 1, outcome.output  # the 200 dB gate of the file fails
    document = json.loads(outcome.stdout)
    assert (tmp_path / "out" / "m.onnx").is_file()  # relative to the file
    assert document["conversion"]["config"]["target"] == "w8a16"
    assert document["data"]["source"] == str(EVAL)
    assert document["data"]["samples"] == len(np.load(EVAL)["input"])
    assert [(gate["threshold"], gate["source"]) for gate in document["gates"] if gate["name"] == "min_sqnr"] == [
        (200.0, "config")
    ]


def test_flags_override_the_config_file_and_patterns_add_to_it(tmp_path):
    config = _config(tmp_path, f"to: w8a16\ndata: {CALIB}\nmax-samples: 8\nkeep_float: '^node_matmul$'\n")
    outcome = _invoke(MODEL, "--config", config, "--to", "int8", "--keep-float", "conv2d_5", "--no-verify", "--json",
                      "-o", tmp_path / "m.onnx")  # fmt: skip
    assert outcome.exit_code == 0, outcome.output
    record = _record(outcome)
    assert record["config"]["target"] == "int8"
    assert record["config"]["max_calibration_samples"] == 8  # max-samples: kebab-case keys are read too
    assert record["calibration_samples"] == 8
    assert record["config"]["keep_float"] == ["^node_matmul$", "conv2d_5"]
    assert {layer["node"] for layer in record["layers"] if layer["precision"] == "float"} == {
        "node_matmul",
        "node_conv2d_5",
    }


@pytest.mark.parametrize(
    ("old", "new", "value", "field", "expected"),
    [
        ("target", "to", "w8a16", "target", "w8a16"),
        ("max_calibration_samples", "max_samples", "8", "max_calibration_samples", 8),
        ("auto_int16_below_db", "auto_int16", "25", "auto_int16_below_db", 25.0),
    ],
)
def test_the_old_config_spellings_still_work_with_a_deprecation_warning(tmp_path, caplog, old, new, value, field,
                                                                       expected):  # fmt: skip
    config = _config(tmp_path, f"{old}: {value}\n")
    with caplog.at_level(logging.WARNING, logger="fp8conv.options"):
        layer = load_config_file(config)
    assert [record.getMessage() for record in caplog.records] == [f"{config}: the key {old} is deprecated: use {new}"]
    (setting,) = layer.values()
    assert setting.option.name == new
    outcome = _invoke(MODEL, "--config", config, "--data", CALIB, "--no-verify", "--json", "-o", tmp_path / "m.onnx")
    assert outcome.exit_code == 0, outcome.output
    assert _record(outcome)["config"][field] == expected


def test_a_key_given_twice_in_two_spellings_is_refused(tmp_path):
    config = _config(tmp_path, "to: int8\ntarget: int4\n")
    _refused(_invoke(MODEL, "--config", config), f"{config}: target: to sets to too: keep one")


def test_an_unknown_config_key_names_the_close_ones(tmp_path):
    config = _config(tmp_path, "max_sample: 4\n")
    _refused(_invoke(MODEL, "--config", config), "unknown option(s) max_sample (did you mean max_samples?)")


def test_the_config_only_options_are_flags_now(tmp_path):
    """percentile, calibration_workers and calibration_batch_size existed only in the config file."""
    outcome = _invoke(MODEL, "--data", CALIB, "--activations-range", "percentile", "--percentile", "99.5",
                      "--calibration-workers", "1", "--calibration-batch-size", "4", "--no-verify", "--json",
                      "-o", tmp_path / "m.onnx")  # fmt: skip
    assert outcome.exit_code == 0, outcome.output
    config = _record(outcome)["config"]
    assert (config["percentile"], config["calibration_workers"], config["calibration_batch_size"]) == (99.5, 1, 4)


# -- a bad value is one line naming the option, everywhere -----------------------------------------------------------


BAD_VALUES = {
    "percentile": (["--activations-range", "percentile", "--percentile", "40"],
                   "invalid value for '--percentile': 40.0 is not in the range 50.0<x<=100.0", "percentile: high",
                   {"percentile": "high"}, "percentile must be a number in (50, 100]"),
    "max-samples": (["--max-samples", "-5"], "invalid value for '--max-samples': -5 is not in the range x>=1",
                    "max_samples: -5", {"max_samples": -5}, "max_samples must be an integer >= 1"),
    "deprecated-key": (None, None, "max_calibration_samples: -5", {"max_calibration_samples": -5},
                       "max_calibration_samples must be an integer >= 1"),
    "block-size": (["--int4-block-size", "48"], "--int4-block-size must be one of 0, 16, 32, 64, 128, 256, got 48",
                   "int4_block_size: 48", {"int4_block_size": 48},
                   "int4_block_size must be one of 0, 16, 32, 64, 128, 256"),
    "nan": (["--auto-int16", "nan"], "--auto-int16 must be a number, got nan", "auto_int16: .nan",
            {"auto_int16": float("nan")}, "auto_int16 must be a number"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_names_the_option_on_the_command_line_in_a_file_and_in_python(tmp_path, case):
    """'percentile: high' gave "'<' not supported"; max_calibration_samples -5 "calibration saw no finite values"."""
    flags, cli_message, key, keyword, message = BAD_VALUES[case]
    if flags is not None:
        _refused(_invoke(MODEL, "--data", CALIB, *flags), cli_message)
    config = _config(tmp_path, key + "\n")
    _refused(_invoke(MODEL, "--data", CALIB, "--config", config), f"{config}: {message}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(Fp8ConvError) as error:
            fp8conv.convert(MODEL, data=CALIB, **keyword)
    assert str(error.value).startswith(message)
    assert not (DIGITS / "model.int8.onnx").exists()


def test_the_int4_block_sizes_are_the_same_everywhere_and_0_is_per_channel(tmp_path):
    """The config took 16-256 and the CLI 0/32/64/128, where 0 meant per channel on the CLI only."""
    for size in ("16", "256"):
        outcome = _invoke(MODEL, "--to", "w4a16", "--int4-block-size", size, "--no-verify", "--json",
                          "-o", tmp_path / f"{size}.onnx")  # fmt: skip
        assert outcome.exit_code == 0, outcome.output
        assert _record(outcome)["config"]["int4_block_size"] == int(size)
    config = _config(tmp_path, "to: w4a16\nint4_block_size: 0\n")
    outcome = _invoke(MODEL, "--config", config, "--no-verify", "--json", "-o", tmp_path / "0.onnx")
    assert outcome.exit_code == 0, outcome.output
    assert _record(outcome)["config"]["int4_block_size"] is None
    per_channel = fp8conv.convert(MODEL, "w4a16", int4_block_size=0)
    assert per_channel.config.int4_block_size is None
    assert ConversionConfig(int4_block_size=None).int4_block_size is None


def test_a_bad_target_lists_the_valid_ones():
    with pytest.raises(Fp8ConvError, match=r"^to must be one of int8, int4, w8a16, w4a16, got 'int3'$"):
        fp8conv.convert(MODEL, to="int3")
    _refused(_invoke(MODEL, "--to", "int3"), "'--to'", "'int3' is not one of 'int8', 'int4', 'w8a16', 'w4a16'")


def test_an_unknown_keyword_names_the_close_ones_or_the_function_that_takes_it():
    with pytest.raises(Fp8ConvError, match=r"convert\(\) got an unknown keyword 'max_sampels' \(did you mean max_s"):
        fp8conv.convert(MODEL, max_sampels=4)
    with pytest.raises(Fp8ConvError, match=r"'verify_data': it is a keyword of convert_and_verify\(\)"):
        fp8conv.convert(MODEL, verify_data=EVAL)
    with pytest.raises(Fp8ConvError, match=r"'min_sqnr': give gates=\{'min_sqnr': ...\}"):
        fp8conv.convert_file(MODEL, min_sqnr=20)
    with pytest.raises(Fp8ConvError, match=r"convert_and_verify\(\) got an unknown keyword 'weight_range'"):
        fp8conv.convert_and_verify(MODEL, weight_range="max")


def test_an_old_keyword_warns_and_means_the_same(tmp_path):
    with pytest.warns(DeprecationWarning, match="the keyword auto_int16_below_db is deprecated: use auto_int16"):
        old = fp8conv.convert(MODEL, data=CALIB, auto_int16_below_db=30.0)
    new = fp8conv.convert(MODEL, data=CALIB, auto_int16=30.0)
    assert old.config == new.config
    assert old.config.auto_int16_below_db == 30.0
    with (
        pytest.warns(DeprecationWarning, match="max_calibration_samples"),
        pytest.raises(Fp8ConvError, match="give max_s"),
    ):
        fp8conv.convert(MODEL, data=CALIB, max_samples=4, max_calibration_samples=8)


def test_a_usage_error_is_one_line():
    _refused(_invoke(MODEL, "--no-such-flag"), "no such option '--no-such-flag'")
    _refused(_invoke(MODEL, "--max-samples", "many"), "'--max-samples'", "'many' is not a valid integer")
    _refused(_invoke("convert"), "missing argument 'MODEL' (or 'model' in a --config file)")


# -- contradictions are refused, one line naming the option -----------------------------------------------------------


CONTRADICTIONS = {
    "auto-int16-without-data": (["--auto-int16", "25"], "--auto-int16 needs calibration data", "give --data"),
    "block-size-with-int8": (["--to", "int8", "--int4-block-size", "64"], "--int4-block-size does nothing with "
                             "--to int8 and no --int4 pattern", ""),
    "keep-float-and-int16": (["--data", CALIB, "--keep-float", "conv2d_1", "--int16", "conv2d_1"],
                             "layer node_conv2d_1 (Conv) is selected by keep_float pattern 'conv2d_1' and by int16",
                             ""),
    "no-verify-with-gates": (["--data", CALIB, "--no-verify", "--min-sqnr", "30"], "--min-sqnr does nothing with "
                             "--no-verify", "a gate that never runs"),
    "no-verify-with-verify-data": (["--data", CALIB, "--no-verify", "--verify-data", EVAL], "--verify-data does "
                                   "nothing with --no-verify", ""),
    "mse-without-data": (["--activations-range", "mse"], "--activations-range mse needs calibration data",
                         "--activations-range fp8"),
    "int4-with-int16": (["--data", CALIB, "--to", "int4", "--int16", "conv"], "--int16 contradicts --to int4",
                        "--to int8 with --int4 and --int16"),
    "w8a16-with-auto-int16": (["--data", CALIB, "--to", "w8a16", "--auto-int16", "25"], "--auto-int16 does nothing "
                              "with --to w8a16: every activation is INT16 already", ""),
    "int4-with-int4-patterns": (["--to", "w4a16", "--int4", "matmul"], "--int4 does nothing with --to w4a16", ""),
    "percentile-without-method": (["--data", CALIB, "--percentile", "99.9"], "--percentile does nothing without "
                                  "--activations-range percentile", ""),
    "max-samples-without-data": (["--max-samples", "4"], "--max-samples needs calibration data", ""),
    "random-and-verify-data": (["--data", CALIB, "--verify-data", EVAL, "--random-inputs", "4"],
                               "--random-inputs and --verify-data are two inputs to verify on", "not both"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_a_contradiction_is_exit_2_in_one_line_and_nothing_is_written(tmp_path, case):
    flags, *parts = CONTRADICTIONS[case]
    output = tmp_path / "m.onnx"
    _refused(_invoke(MODEL, "-o", output, *flags), *[part for part in parts if part])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"auto_int16": 25}, r"^auto_int16 needs calibration data .*: give data=\.\.\.$"),
        ({"int4_block_size": 64}, r"^int4_block_size does nothing with to='int8' and no int4=\.\.\. pattern"),
        (
            {"activations_range": "minmax"},
            r"^activations_range minmax needs calibration data: give data=\.\.\., or activations_range='fp8'",
        ),
        (
            {"to": "int4", "int16": ["conv"]},
            r"^int16 contradicts to='int4', whose .* give to='int8' with int4=\.\.\. and int16=\.\.\.$",
        ),
        ({"data": CALIB, "percentile": 99.0}, r"^percentile does nothing without activations_range='percentile'$"),
    ],
)
def test_the_api_refuses_the_same_contradictions(keywords, message):
    with pytest.raises(Fp8ConvError, match=message):
        fp8conv.convert(MODEL, **keywords)
    with pytest.raises(Fp8ConvError, match=message):
        fp8conv.convert(MODEL, config=ConversionConfig(**{options.option(k).field or k: v for k, v in keywords.items()
                                                           if k != "data"}), data=keywords.get("data"))  # fmt: skip


def test_the_api_refuses_verification_options_without_verification(tmp_path):
    with pytest.raises(Fp8ConvError, match=r"^verify_data does nothing with verify=False"):
        fp8conv.convert_and_verify(MODEL, data=CALIB, output=tmp_path / "m.onnx", verify=False, verify_data=EVAL)
    with pytest.raises(Fp8ConvError, match=r"^gates holds accuracy gates \(min_sqnr\), which do nothing"):
        fp8conv.convert_and_verify(MODEL, output=tmp_path / "m.onnx", verify=False, gates={"min_sqnr": 30})
    kernels_only = fp8conv.convert_and_verify(
        MODEL, output=tmp_path / "m.onnx", verify=False, gates={"min_integer_kernels": 7}
    )
    assert [gate.name for gate in kernels_only.verification.gates] == ["min_integer_kernels"]
    assert list(tmp_path.iterdir()) == [tmp_path / "m.onnx"]


def test_a_config_file_s_gates_with_no_verify_on_the_command_line_warn_and_the_kernel_gate_stays(tmp_path):
    """A file shared by several runs: --no-verify voids its accuracy gates (a warning), not its kernel gate."""
    config = _config(tmp_path, "min_sqnr: 30\ngates:\n  min_cosine: 0.9\n  min_integer_kernels: 8\n")
    outcome = _invoke(MODEL, "--config", config, "--no-verify", "-o", tmp_path / "m.onnx")
    assert outcome.exit_code == 1, outcome.output  # the file's min_integer_kernels 8 > 7 layers
    assert f"{config}: min_sqnr is ignored: it does nothing with --no-verify" in outcome.output
    assert f"{config}: gates is ignored: it holds accuracy gates (min_cosine)" in outcome.output
    assert "FAILED min_integer_kernels: 7, needs >= 8" in outcome.output
    config.write_text("min_sqnr: 30\nverify: false\n")  # both from the file: a contradiction
    _refused(_invoke(MODEL, "--config", config, "-o", tmp_path / "n.onnx"), f"{config}: min_sqnr does nothing")


def test_a_config_file_option_the_target_flag_voids_is_dropped_with_a_warning(tmp_path):
    config = _config(tmp_path, f"data: {CALIB}\nauto_int16: 25\nint4_block_size: 64\n")
    outcome = _invoke(MODEL, "--config", config, "--to", "w8a16", "--no-verify", "--json", "-o", tmp_path / "m.onnx")
    assert outcome.exit_code == 0, outcome.output
    assert f"{config}: auto_int16 is ignored: it does nothing with --to w8a16" in outcome.stderr
    assert f"{config}: int4_block_size is ignored" in outcome.stderr
    record = _record(outcome)
    assert (record["config"]["auto_int16_below_db"], record["config"]["int4_block_size"]) == (None, 32)


def test_a_tuning_option_a_target_does_not_use_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="fp8conv.options"):
        result = fp8conv.convert(MODEL, "w8a16", activation_type="int8")
    assert "activation_type is ignored: it does nothing with to='w8a16'" in caplog.text
    assert result.config.activation_type.value == "int8"  # recorded as given


# -- data: files, arrays, readers, for convert and verify alike --------------------------------------------------------


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: get_next() gives a feed dict, then None."""

    def __init__(self, x: np.ndarray, batch: int) -> None:
        self.feeds = iter([{"input": x[start : start + batch]} for start in range(0, len(x), batch)])
        self.calls = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.calls += 1
        return next(self.feeds, None)


def _calib() -> np.ndarray:
    return np.load(CALIB)["input"]


def test_convert_takes_a_dict_an_array_a_reader_and_a_generator_with_the_result_of_the_file(tmp_path):
    """convert(data=dict) raised a raw TypeError."""
    x = _calib()
    expected = fp8conv.convert_file(MODEL, tmp_path / "file.onnx", data=CALIB, audit=False)

    def generator() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(x), 16):
            yield {"input": x[start : start + 16]}

    for name, data in [("dict", {"input": x}), ("array", x), ("reader", _Reader(x, 5)), ("generator", generator())]:
        result = fp8conv.convert(MODEL, data=data)
        assert result.calibration_samples == len(x), name
        result.save(tmp_path / f"{name}.onnx")
        assert (tmp_path / f"{name}.onnx").read_bytes() == (tmp_path / "file.onnx").read_bytes(), name
    assert expected.calibration_samples == len(x)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (5, "data must be a data file or directory, {input: array}"),
        ({"nope": np.zeros((2, 1, 8, 8), np.float32)}, "data: no data for model input(s) input (found: nope)"),
        ([{"input": np.zeros((2, 1, 8, 8), np.float32)}, "x"], "data: feed 1 is a str, not {input name: array}"),
        (iter([]), "data: the reader gave no feeds"),
        ({"input": np.zeros((2, 1, 8, 8), np.float32), "labels": np.zeros(3)}, "must share the first (sample) axis"),
    ],
    ids=["number", "missing-input", "bad-feed", "empty", "counts"],
)
def test_bad_in_memory_data_is_one_line(data, message):
    with pytest.raises(Fp8ConvError) as error:
        fp8conv.convert(MODEL, data=data)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_convert_and_verify_reads_a_reader_once_for_calibration_and_verification(tmp_path):
    x = _calib()
    reader = _Reader(x, 8)
    outcome = fp8conv.convert_and_verify(MODEL, "int8", reader, output=tmp_path / "m.onnx")
    assert reader.calls == len(x) // 8 + 1  # every feed, then the None
    assert outcome.conversion.calibration_samples == len(x)
    assert outcome.verification.data["samples"] == len(x)
    by_file = fp8conv.convert_and_verify(MODEL, "int8", CALIB, output=tmp_path / "f.onnx")
    assert outcome.verification.outputs[0].total.sqnr_db == by_file.verification.outputs[0].total.sqnr_db
    with_labels = {"input": x, "labels": np.zeros(len(x), np.int64)}
    held_out = fp8conv.convert_and_verify(MODEL, data=CALIB, verify_data=with_labels, output=tmp_path / "h.onnx")
    assert held_out.verification.data["labels"] is True


def test_verify_takes_a_reader_and_an_array(tmp_path):
    x = _calib()
    converted = tmp_path / "m.onnx"
    fp8conv.convert_file(MODEL, converted, data=CALIB, audit=False)
    by_reader = fp8conv.verify(MODEL, converted, _Reader(x, 16))
    by_array = fp8conv.verify(MODEL, converted, x)
    assert by_reader.data["samples"] == by_array.data["samples"] == len(x)
    assert by_reader.outputs[0].total.sqnr_db == by_array.outputs[0].total.sqnr_db


def test_two_input_models_need_named_arrays(tmp_path):
    from fp8conv.converter.data import open_samples

    with pytest.raises(Fp8ConvError, match=r"a single array can only feed a model with one input, not 2 \(a, b\)"):
        open_samples(np.zeros((2, 3)), ["a", "b"])
    samples = open_samples(({"a": np.zeros((2, 3)), "b": np.ones((2, 3))} for _ in range(3)), ["a", "b"])
    assert samples.num_samples == 6
    assert [sorted(feed) for feed in samples.batches(4)] == [["a", "b"]] * 3


def test_a_configuration_s_target_is_kept_when_to_is_not_given():
    """to defaulted to int8 and overrode config=ConversionConfig(target=...)."""
    assert fp8conv.convert(MODEL, config=ConversionConfig(target="w4a16")).config.target.value == "w4a16"
    assert fp8conv.convert(MODEL, "int4", config=ConversionConfig(target="w4a16")).config.target.value == "int4"


def test_verify_reads_its_models_and_options_from_a_config_file_shared_with_convert(tmp_path):
    converted = tmp_path / "m.onnx"
    fp8conv.convert_file(MODEL, converted, data=CALIB, audit=False)
    config = _config(tmp_path, f"reference: {MODEL}\ncandidate: m.onnx\ndata: {EVAL}\nto: int8\nper-layer: false\n")
    outcome = _invoke("verify", "--config", config, "--json")
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.stdout)
    assert (document["candidate"]["path"], document["data"]["source"], document["layers"]) == (
        str(converted),
        str(EVAL),
        [],
    )
    with_layers = _invoke("verify", "--config", config, "--per-layer", "--json")
    assert json.loads(with_layers.stdout)["layers"]
    alias = _invoke("verify", MODEL, converted, "--data", EVAL, "--no-layers", "--json")
    assert json.loads(alias.stdout)["layers"] == []
    _refused(_invoke("verify", MODEL, converted, "--data", EVAL, "--random-inputs", "3"), "not both")
