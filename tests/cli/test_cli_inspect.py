"""``fp8conv inspect`` (fp8conv/cli/inspect.py) and its Python counterpart."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from golden_models import GOLDEN, RUNNABLE, save_golden
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.config import ConversionConfig
from fp8conv.passes.overrides import LayerNames, select_overrides


@pytest.mark.parametrize("name", RUNNABLE)
def test_inspect_json_lists_dialects_and_quant_points(tmp_path, name):
    case = GOLDEN[name]
    result = CliRunner().invoke(cli, ["inspect", str(save_golden(tmp_path, name)), "--json"])
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
    result = CliRunner().invoke(cli, ["inspect", str(save_golden(tmp_path, "qdq_per_axis"))])
    assert result.exit_code == 0, result.output
    assert "opset        ai.onnx 19" in result.output
    assert "dialects     qdq" in result.output
    assert "per-axis (axis 0)" in result.output
    assert "e4m3fn" in result.output


def test_python_inspect_matches_load(tmp_path):
    path = save_golden(tmp_path, "trt_opset100")
    inspection = fp8conv.inspect(path)
    loaded = fp8conv.load(path)
    assert inspection.dialects == loaded.dialects == ("trt",)
    assert [p.tensor for p in inspection.quant_points] == [p.tensor for p in loaded.quant_points]


def test_inspect_refuses_mx_with_the_node_list(tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(save_golden(tmp_path, "mx_unsupported"))])
    assert result.exit_code == 2
    assert "TRT_MXFP8DynamicQuantize" in result.output
    assert result.output.count("\n") == 1


def test_inspect_lists_every_name_the_override_patterns_match():
    source = REPO_ROOT / "tests" / "corpus" / "transformer.dynamo_noopt.onnx"
    document = json.loads(CliRunner().invoke(cli, ["inspect", "--json", str(source)]).stdout)
    text = CliRunner().invoke(cli, ["inspect", str(source)]).stdout
    layers = [LayerNames(l["node"], l["op_type"], tuple(l["weights"]), l["output"]) for l in document["layers"]]  # noqa: E741
    assert any(len(layer.weights) > 1 for layer in layers)  # names on the weight's path beyond the stored one
    rows = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0].startswith("node_")}
    for index, (layer, entry) in enumerate(zip(layers, document["layers"], strict=True)):
        assert entry["names"] == list(dict.fromkeys([layer.node, *layer.weights, layer.output]))
        row = rows[layer.node].replace(",", " ").split()
        assert set(entry["names"]) <= set(row), (row, entry["names"])  # every name is in the table's row
        for name in entry["names"]:  # and each one is what a pattern selects the layer by
            selected = select_overrides(layers, ConversionConfig(keep_float=(f"^{re.escape(name)}$",)))
            assert selected[index], name


def test_inspect_reads_its_model_from_a_config_file(tmp_path):
    path = save_golden(tmp_path, "qdq_per_tensor")
    config = tmp_path / "fp8conv.toml"
    config.write_text(f'[fp8conv]\nmodel = "{path.name}"\njson = true\n')
    from_file = CliRunner().invoke(cli, ["inspect", "--config", str(config)])
    direct = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert from_file.exit_code == direct.exit_code == 0, from_file.output
    assert json.loads(from_file.output) == json.loads(direct.output)
