"""--weight-rounding, --gptq-damp, --gptq-act-order, --bias-correction: through the schema, refusals in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import refused_in_one_line
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.config import ConversionConfig, WeightRounding, load_config_file
from fp8conv.errors import Fp8ConvError

DIGITS = REPO_ROOT / "models" / "digits_cnn"
MODEL, CALIB = DIGITS / "model.onnx", DIGITS / "calib.npz"

REFUSALS = {
    "gptq-without-data": (["--weight-rounding", "gptq"], "--weight-rounding gptq needs calibration data", "--data"),
    "bias-correction-without-data": (["--bias-correction"], "--bias-correction needs calibration data", "--data"),
    "damp-without-gptq": (["--data", CALIB, "--gptq-damp", "0.1"], "--gptq-damp does nothing without "
                          "--weight-rounding gptq"),
    "act-order-without-gptq": (["--data", CALIB, "--gptq-act-order"], "--gptq-act-order does nothing without "
                               "--weight-rounding gptq"),
    "damp-zero": (["--data", CALIB, "--weight-rounding", "gptq", "--gptq-damp", "0"], "--gptq-damp"),
    "unknown-rounding": (["--data", CALIB, "--weight-rounding", "adaround"], "--weight-rounding", "rtn", "gptq"),
    "gptq-in-shards": (["--data", CALIB, "--weight-rounding", "gptq", "--jobs", "2"], "--jobs cannot shard",
                       "--weight-rounding gptq"),
    "bias-correction-on-ray": (["--data", CALIB, "--bias-correction", "--executor", "ray"],
                               "--executor cannot shard", "--bias-correction"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_contradictions_and_bad_values_are_exit_2_in_one_line_and_nothing_is_written(tmp_path, case):
    flags, *parts = REFUSALS[case]
    outcome = CliRunner().invoke(cli, [str(MODEL), "--to", "int4", "-o", str(tmp_path / "m.onnx"), *map(str, flags)])
    refused_in_one_line(outcome, *parts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"weight_rounding": "gptq"}, r"^weight_rounding gptq needs calibration data .*give data=\.\.\."),
        ({"bias_correction": True}, r"^bias_correction needs calibration data"),
        ({"data": CALIB, "gptq_act_order": True}, r"^gptq_act_order does nothing without weight_rounding='gptq'$"),
    ],
)
def test_the_api_refuses_the_same(keywords, message):
    with pytest.raises(Fp8ConvError, match=message):
        fp8conv.convert(MODEL, "int4", **keywords)


def test_a_config_file_sets_them_and_the_defaults_are_rtn_without_correction(tmp_path):
    path = tmp_path / "fp8conv.yaml"
    path.write_text("weight_rounding: gptq\ngptq_damp: 0.05\ngptq_act_order: true\nbias_correction: true\n")
    settings = {name: setting.value for name, setting in load_config_file(path).items()}
    assert settings == {"weight_rounding": "gptq", "gptq_damp": 0.05, "gptq_act_order": True, "bias_correction": True}
    with pytest.raises(Fp8ConvError, match="weight_rounding gptq needs calibration data"):
        fp8conv.convert(MODEL, "int4", config=ConversionConfig(weight_rounding=WeightRounding.GPTQ))
    default = ConversionConfig()
    assert default.weight_rounding is WeightRounding.RTN
    assert not default.bias_correction
    assert (default.gptq_damp, default.gptq_act_order) == (0.01, False)
