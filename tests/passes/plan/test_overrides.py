"""Per-layer overrides select layers by any name a user can see: node, weight, output tensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fp8_models import mlp, residual_cnn
from paths import REPO_ROOT

from fp8conv import load
from fp8conv.cli import cli
from fp8conv.config import ConversionConfig
from fp8conv.converter.inspection import inspect
from fp8conv.converter.pipeline import convert
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.plan import plan_conversion

MODELS = REPO_ROOT / "models"
SEQ = MODELS / "seq_transformer"


def _decisions(model, **options) -> dict[str, tuple[str, int | None]]:
    plan = plan_conversion(load(model).model, ConversionConfig(**options))
    return {layer.node: (layer.precision, layer.activation_bits) for layer in plan.layers}


@pytest.mark.parametrize(
    "pattern", [r"^conv2_node$", r"^conv2\.weight$", r"^conv2$"], ids=["node", "weight", "output-tensor"]
)
def test_each_kind_of_name_selects_the_layer(pattern):
    plain = _decisions(residual_cnn())
    kept = _decisions(residual_cnn(), keep_float=[pattern])
    assert plain["conv2_node"] == ("int8", 8)
    assert kept["conv2_node"] == ("float", None)
    assert {name: kept[name] for name in kept if name != "conv2_node"} == {
        name: plain[name] for name in plain if name != "conv2_node"
    }


def test_the_stored_weight_name_of_every_dialect_selects_the_layer():
    """The FP8 initializer's name (Q/DQ file) and the float weight's name (Cast-pair file) both work."""
    fp8 = _decisions(SEQ / "model.onnx", int16=[r"^layers\.0\.fc1\.weight_fp8$"])
    cast = _decisions(SEQ / "model.cast.onnx", int16=[r"^layers\.0\.fc1\.weight$"])
    for decisions in (fp8, cast):
        assert [name for name, (_, bits) in decisions.items() if bits == 16] == ["node_matmul_7"]


def test_a_pattern_that_matches_nothing_is_an_error_listing_close_names():
    with pytest.raises(Fp8ConvError, match=r"--keep-float \(keep_float\) pattern '\^cnov2' matches no layer") as error:
        _decisions(residual_cnn(), keep_float=["^cnov2"])
    assert "conv2" in str(error.value).split("close:")[1]
    assert "\n" not in str(error.value)


def test_a_layer_both_kept_float_and_int16_is_an_error_naming_it():
    with pytest.raises(Fp8ConvError, match=r"layer conv2_node \(Conv\) is selected by keep_float pattern 'conv2'"):
        _decisions(residual_cnn(), keep_float=["conv2"], int16=[r"^conv2\.weight"])


def test_int4_patterns_give_int4_weights_to_the_selected_layers_only(tmp_path):
    result = convert(mlp(), "int8", int4=[r"^fc2\.weight$"], int16=["fc2"])
    precision = {layer.node: (layer.precision, layer.activation_bits) for layer in result.layers}
    assert precision == {"fc1_node": ("int8", 8), "fc2_node": ("int4", 16)}
    dtypes = {name: v.const_value.dtype.name for name, v in result.model.graph.initializers.items()}
    assert dtypes["fc2.weight_quantized"] == "INT4"
    assert dtypes["fc1.weight_quantized"] == "INT8"


def test_a_single_string_is_one_pattern():
    assert ConversionConfig(keep_float="^conv").keep_float == ("^conv",)
    with pytest.raises(Fp8ConvError, match="patterns must be strings"):
        ConversionConfig(int16=[3])


def test_the_readme_override_example_on_seq_transformer():
    """`--int16 'attention' --keep-float '^head'`: the 8 attention projections get INT16, the head stays float."""
    decisions = _decisions(SEQ / "model.onnx", int16=["attention"], keep_float=["^head"])
    int16 = sorted(name for name, (_, bits) in decisions.items() if bits == 16)
    assert int16 == sorted(f"node_matmul_{i}" for i in (1, 2, 3, 6, 9, 10, 11, 14))
    assert [name for name, (precision, _) in decisions.items() if precision == "float"] == ["node_matmul_17"]
    assert sum(decisions[name] == ("int8", 8) for name in decisions) == 9


def test_inspect_lists_the_names_of_every_layer():
    inspection = inspect(SEQ / "model.onnx")
    text = inspection.to_text()
    document = inspection.to_json()
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("node_matmul")}
    assert rows["node_matmul_17"][:3] == ["MatMul", "head.weight_fp8", "matmul_17"]
    assert rows["node_matmul_4"] == ["MatMul", "-", "matmul_4", "-"]
    assert len(document["layers"]) == 18
    head = document["layers"][-1]
    assert head["node"] == "node_matmul_17"
    assert head["output"] == "matmul_17"
    assert head["weights"][0] == "head.weight_fp8"


def _cli(tmp_path: Path, *arguments: str):
    source = tmp_path / "model.onnx"
    onnx.save(residual_cnn(), source)
    data = tmp_path / "data.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((4, 3, 12, 12)).astype(np.float32))
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--no-verify", *arguments])
    return outcome, tmp_path / "model.int8.onnx"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--int4", "nothing_like_this"], "--int4 (int4) pattern 'nothing_like_this' matches no layer"),
        (["--keep-float", "conv1", "--int16", "conv1"], "layer conv1_node (Conv) is selected by keep_float"),
    ],
    ids=["no-match", "contradiction"],
)
def test_cli_override_errors_exit_2_with_one_line_and_write_nothing(tmp_path, arguments, message):
    outcome, output = _cli(tmp_path, *arguments)
    assert outcome.exit_code == 2
    assert message in outcome.output
    assert outcome.output.count("\n") == 1
    assert not output.exists()


def test_cli_int4_option_and_config_key(tmp_path):
    config = tmp_path / "fp8conv.yaml"
    config.write_text("int4: '^logits'\n")
    outcome, output = _cli(tmp_path, "--int4", r"^conv3\.weight", "--config", str(config), "--json")
    assert outcome.exit_code == 0, outcome.output
    layers = {layer["node"]: layer["precision"] for layer in json.loads(outcome.stdout)["layers"]}
    assert layers == {"conv1_node": "int8", "conv2_node": "int8", "conv3_node": "int4", "logits_node": "int4"}
    assert output.is_file()


def test_the_readme_override_example_meets_the_default_integer_kernel_gate(tmp_path):
    """The two softmax·V MatMuls write into the INT16 inputs of their projections: no 8-bit kernel exists for
    an INT16 output quantizer, so the coverage gate does not expect one; the rest run on integer kernels."""
    result = convert(SEQ / "model.onnx", int16=["attention"], keep_float=["^head"])
    planned = {layer.node for layer in result.written.layers if layer.planned_integer_kernel}
    assert not {"node_matmul_5", "node_matmul_13"} & planned
    assert len(planned) == 7
    outcome = CliRunner().invoke(
        cli,
        [
            str(SEQ / "model.onnx"),
            "--int16",
            "attention",
            "--keep-float",
            "^head",
            "--data",
            str(SEQ / "calib.npz"),
            "-o",
            str(tmp_path / "out.onnx"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "FAILED" not in outcome.output
