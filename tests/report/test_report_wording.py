"""Reports and terminal output that read right (issue 15), on the shipped sample models.

* Per-layer SQNR is a diagnostic unless ``--min-layer-sqnr`` is set: a passing run with a layer below 20 dB
  names the lowest layer in neutral words and marks nothing; with the gate, layers below it fail the run.
* Verifying on the calibration data itself is said in the terminal, report.md and report.json.
* The terminal's columns: ``top-1 agree`` (with the FP8 model), accuracy only with labels, a legend.
* report.md groups kernel reasons and cuts long lists with "and N more"; plots keep tensor names and match
  their tables. (The conversion summary's grouping: tests/converter/test_conversion_messages.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.axes
import pytest
from click.testing import CliRunner
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.report import html as html_module
from fp8conv.report import plots
from fp8conv.report.formatting import shorten, worst_layers
from fp8conv.report.html import render_html
from fp8conv.report.markdown import render_markdown
from fp8conv.report.schema import validate_report
from fp8conv.verification.gates import LAYER_GATE, Gates, evaluate_layer_gate
from fp8conv.verification.inputs import data_role

MODELS = REPO_ROOT / "models"
MOBILENET = MODELS / "digits_mobilenet"


def _run(args: list) -> object:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _reports(directory: Path) -> dict:
    return {
        "json": json.loads((directory / "report.json").read_text()),
        "md": (directory / "report.md").read_text(),
        "html": (directory / "report.html").read_text(),
    }


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory) -> dict:
    """digits_mobilenet converted to INT8 and verified on its calibration data (no labels): it passes."""
    root = tmp_path_factory.mktemp("mobilenet")
    out = root / "m.int8.onnx"
    result = _run([MOBILENET / "model.onnx", "--to", "int8", "--data", MOBILENET / "calib.npz", "-o", out,
                   "--report", root / "r"])  # fmt: skip
    return {"root": root, "model": out, "exit_code": result.exit_code, "output": result.output, **_reports(root / "r")}


@pytest.fixture(scope="module")
def held_out(mobilenet) -> dict:
    """The same conversion verified on held-out data with labels."""
    root = mobilenet["root"]
    result = _run([MOBILENET / "model.onnx", "--to", "int8", "--data", MOBILENET / "calib.npz", "--verify-data",
                   MOBILENET / "eval.npz", "-o", root / "h.int8.onnx", "--report", root / "h"])  # fmt: skip
    return {"exit_code": result.exit_code, "output": result.output, **_reports(root / "h")}


# --- per-layer numbers: diagnostics, or a gate -------------------------------------------------------


def test_a_passing_run_with_a_layer_below_20_db_says_so_in_neutral_words(mobilenet):
    report = mobilenet["json"]
    lowest = report["lowest_layer"]
    assert lowest["sqnr_db"] < 20.0  # the situation under test: a layer below the output gate's 20 dB
    assert mobilenet["exit_code"] == 0, mobilenet["output"]
    assert report["passed"] is True
    assert report["layer_threshold_db"] is None
    assert report["first_failing_layer"] is None
    assert not any(layer["below_threshold"] or layer["first_below_threshold"] for layer in report["layers"])
    assert {gate["name"] for gate in report["gates"]}.isdisjoint({LAYER_GATE})
    sentence = f"lowest layer SQNR: {lowest['sqnr_db']:.1f} dB at {lowest['tensor']} ({lowest['op_type']}); " + (
        "per-layer numbers are diagnostics"
    )
    assert sentence in mobilenet["output"]
    assert "first below" not in mobilenet["output"]
    markdown = mobilenet["md"]
    assert "per-layer numbers are diagnostics" in markdown
    assert "⬅" not in markdown
    assert "❌" not in markdown
    assert "⚠ |" not in markdown
    page = mobilenet["html"]
    assert 'class="fail"' not in page  # no red row anywhere: every gate passed, every kernel is integer
    assert 'class="first"' not in page
    assert "lowest layer SQNR (diagnostic)" in page


def _plot_calls(monkeypatch) -> dict[str, list]:
    calls: dict[str, list] = {"axhspan": [], "scatter": [], "xticks": []}
    original_span, original_scatter, original_ticks = (
        matplotlib.axes.Axes.axhspan,
        matplotlib.axes.Axes.scatter,
        matplotlib.axes.Axes.set_xticks,
    )

    def axhspan(self, *args, **kwargs):
        calls["axhspan"].append(kwargs.get("color"))
        return original_span(self, *args, **kwargs)

    def scatter(self, *args, **kwargs):
        calls["scatter"].append(kwargs.get("color"))
        return original_scatter(self, *args, **kwargs)

    def set_xticks(self, ticks, labels=None, **kwargs):
        calls["xticks"].append(list(labels or []))
        return original_ticks(self, ticks, labels, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhspan", axhspan)
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", scatter)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xticks", set_xticks)
    return calls


def test_the_layer_plot_draws_red_only_with_the_layer_gate(mobilenet, monkeypatch):
    calls = _plot_calls(monkeypatch)
    assert plots.layer_sqnr_plot(mobilenet["json"]) is not None
    assert calls["axhspan"] == []
    assert plots._RED not in calls["scatter"]
    (labels,) = calls["xticks"]
    assert labels == [layer["tensor"] for layer in mobilenet["json"]["layers"]]  # names, not indices
    gated = json.loads(json.dumps(mobilenet["json"]))
    gated["layer_threshold_db"] = 20.0
    for layer in gated["layers"]:
        layer["below_threshold"] = layer["sqnr_db"] < 20.0
    calls = _plot_calls(monkeypatch)
    plots.layer_sqnr_plot(gated)
    assert calls["axhspan"] == [plots._RED]
    assert plots._RED in calls["scatter"]


def test_min_layer_sqnr_fails_the_run_and_marks_the_layers(mobilenet, tmp_path):
    reference, candidate, data = MOBILENET / "model.onnx", mobilenet["model"], MOBILENET / "calib.npz"
    result = _run(["verify", reference, candidate, "--data", data, "--min-layer-sqnr", "20", "--report", tmp_path])
    assert result.exit_code == 1, result.output
    reports = _reports(tmp_path)
    report = reports["json"]
    validate_report(report)
    below = [layer["tensor"] for layer in report["layers"] if layer["sqnr_db"] < 20.0]
    assert below  # the same layers as the passing run: now they are failures
    assert report["layer_threshold_db"] == 20.0
    assert report["first_failing_layer"] == below[0]
    assert [layer["tensor"] for layer in report["layers"] if layer["below_threshold"]] == below
    assert report["gate_settings"][LAYER_GATE] == {"global": 20.0, "outputs": {}}
    (gate,) = [gate for gate in report["gates"] if gate["name"] == LAYER_GATE]
    assert gate["passed"] is False
    assert gate["source"] == "cli"
    assert gate["value"] == pytest.approx(report["lowest_layer"]["sqnr_db"])
    assert (
        f"{len(below)} of {len(report['layers'])} layers below 20 dB; first in graph order: {below[0]}" in gate["note"]
    )
    assert f"FAILED {LAYER_GATE}:" in result.output
    assert f"first: {below[0]}" in result.output
    assert f"`{below[0]}` ⬅ first below" in reports["md"] or len(below) > 10
    assert 'class="first"' in reports["html"]
    lowest = report["lowest_layer"]["sqnr_db"]
    loose = _run(["verify", reference, candidate, "--data", data, "--min-layer-sqnr", f"{lowest - 1:.1f}"])
    assert loose.exit_code == 0, loose.output
    assert "every layer meets min_layer_sqnr" in loose.output
    (tmp_path / "gates.toml").write_text("[gates]\nmin_layer_sqnr = 20\n")
    configured = _run(["verify", reference, candidate, "--data", data, "--config", tmp_path / "gates.toml", "--json"])
    assert configured.exit_code == 1
    (gate,) = [gate for gate in json.loads(configured.output)["gates"] if gate["name"] == LAYER_GATE]
    assert gate["source"] == "config"
    per_output = _run(["verify", reference, candidate, "--data", data, "--min-layer-sqnr", "logits:20"])
    assert per_output.exit_code == 2
    assert "one value for every layer" in per_output.output


def test_the_layer_gate_is_off_by_default_and_fails_when_no_layer_was_compared(mobilenet):
    gates = Gates.default()
    assert gates.layer_threshold is None
    assert gates.to_json()[LAYER_GATE] == {"global": None, "outputs": {}}
    assert evaluate_layer_gate(gates, []) is None
    assert Gates.coerce({"min-layer-sqnr": 18}).layer_threshold == 18.0
    assert Gates.coerce({"min_layer_sqnr": "off"}).layer_threshold is None
    unmatched = evaluate_layer_gate(Gates.coerce({"min_layer_sqnr": 18}), [])
    assert unmatched.passed is False
    assert "no layer was compared" in unmatched.note
    result = fp8conv.verify(
        MOBILENET / "model.onnx", mobilenet["model"], MOBILENET / "calib.npz", per_layer=False,
        gates={"min_layer_sqnr": 18},
    )  # fmt: skip
    assert [gate.name for gate in result.failed_gates] == [LAYER_GATE]
    assert result.exit_code == 1


# --- verification data -------------------------------------------------------------------------------


def test_verifying_on_the_calibration_data_is_said_everywhere(mobilenet, held_out):
    report = mobilenet["json"]
    role = report["verification_data"]
    assert role["source"] == "calibration"
    assert role["path"] == str(MOBILENET / "calib.npz")
    assert "--verify-data" in role["warning"]
    assert role["warning"] in report["warnings"]
    assert "warning: verified on the calibration data itself" in mobilenet["output"]
    assert "(**the calibration data**)" in mobilenet["md"]
    assert "- verified on the calibration data itself" in mobilenet["md"]
    assert "<b>the calibration data</b>" in mobilenet["html"]
    separate = held_out["json"]["verification_data"]
    assert separate == {"source": "separate", "path": str(MOBILENET / "eval.npz"), "warning": None}
    assert "calibration data" not in held_out["output"].split("verification PASSED")[1]
    assert "the calibration data" not in held_out["md"]


def test_data_role_without_a_conversion_record_or_on_disk_data_is_unknown(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"x")
    (tmp_path / "b.npz").write_bytes(b"x")
    conversion = {"calibration_source": str(tmp_path / "a.npz")}
    assert data_role(str(tmp_path / "a.npz"), False, None)["source"] == "unknown"
    assert data_role("arrays", False, {"calibration_source": "arrays"})["source"] == "unknown"
    assert data_role(str(tmp_path / "b.npz"), False, conversion)["source"] == "separate"
    assert data_role(str(tmp_path / ".." / tmp_path.name / "a.npz"), False, conversion)["source"] == "calibration"
    assert data_role("x", False, {"calibration_source": None})["source"] == "separate"  # data-free conversion
    assert data_role("8 random inputs", True, conversion) == {"source": "random", "path": None, "warning": None}


# --- the terminal's columns and the gates' help ------------------------------------------------------


def test_the_terminal_labels_top1_as_agreement_shows_accuracy_with_labels_and_explains_the_columns(mobilenet, held_out):
    for run, labelled in ((mobilenet, False), (held_out, True)):
        lines = run["output"].splitlines()
        header = next(line for line in lines if line.strip().startswith("output"))
        assert "top-1 agree" in header
        assert ("accuracy ref → cand" in header) is labelled
        legend = lines[lines.index(header) + 2]
        assert legend.strip().startswith("quant dB = unfused QDQ graph vs FP8 (quantization error); kernel dB = ")
        assert len(legend) <= 120
    (output,) = held_out["json"]["outputs"]
    row = next(line for line in held_out["output"].splitlines() if line.strip().startswith("logits"))
    assert f"{100 * output['reference_accuracy']:.2f} % → {100 * output['candidate_accuracy']:.2f} %" in row
    assert "top-1 agree" in held_out["md"]
    assert "quant: its QDQ graph without fusion vs the reference (quantization error)" in held_out["md"]


@pytest.mark.parametrize("command", ["convert", "verify"])
def test_the_rate_gates_help_explains_the_wilson_bound(command):
    text = " ".join(_run([command, "--help"]).output.split())
    for flag in ("--max-top1-drop", "--max-accuracy-drop"):
        help_text = text[text.index(flag) :][:700]
        assert "95 % Wilson lower bound" in help_text, help_text
    assert "--min-layer-sqnr DB" in text


# --- noise ---------------------------------------------------------------------------------------------


def test_markdown_groups_kernel_reasons_and_says_how_many_more(mobilenet):
    report = json.loads(json.dumps(mobilenet["json"]))
    same = [
        {"node": f"n{i}", "op_type": "MatMul", "kernel": "MatMul", "integer": False, "reason": "same"}
        for i in range(14)
    ]
    other = [
        {"node": f"m{i}", "op_type": "Conv", "kernel": "Conv", "integer": False, "reason": f"reason {i}"}
        for i in range(12)
    ]
    report["kernels"]["records"] = same + other
    markdown = render_markdown(report)
    assert "- 14 layers (`n0`, `n1`, `n2`, … and 11 more): same" in markdown
    assert "- layer `m8` (Conv as Conv): reason 8" in markdown
    assert "reason 9" not in markdown  # 1 group of 14 + 9 more lines = 10 lines
    assert "- … and 3 more reasons (report.html lists every layer)" in markdown


# --- plots and their tables ----------------------------------------------------------------------------


def test_many_tensors_keep_their_names_cut_with_an_ellipsis():
    layers = [
        {"tensor": f"/model/encoder/layers.{i}/self_attn/q_proj/MatMul_output_0", "rank": 200 - i,
         "first_below_threshold": i == 77}
        for i in range(200)
    ]  # fmt: skip
    positions, labels = plots.tick_labels(layers)
    assert 40 <= len(positions) <= 50
    assert 77 in positions
    assert 199 in positions  # rank 1
    assert all(len(label) <= 28 and "…" in label for label in labels)
    # the shared prefix /model/encoder/ goes, the layer number stays: the labels tell the tensors apart
    assert labels == [shorten(layers[i]["tensor"].removeprefix("/model/encoder/"), 28) for i in positions]
    assert len(set(labels)) == len(labels)
    assert labels[positions.index(77)].startswith("layers.77/")
    assert shorten("abcdefghij", 7) == "abc…hij"
    assert shorten("short") == "short"
    few = [{"tensor": name, "rank": 1, "first_below_threshold": False} for name in ("conv1", "conv2")]
    assert plots.tick_labels(few) == ([0, 1], ["conv1", "conv2"])


def test_the_range_plot_has_the_rows_of_the_worst_layers_table(mobilenet, monkeypatch):
    captured = []
    original = plots.range_plot
    monkeypatch.setattr(
        html_module.plots, "range_plot", lambda layers: captured.append(list(layers)) or original(layers)
    )
    page = render_html(mobilenet["json"])
    (rows,) = captured
    table = page[page.index("<h2>Worst layers</h2>") : page.index("<h2>Error histograms</h2>")]
    in_table = re.findall(r'<td class="n">\d+</td><td><code>([^<]+)</code>', table)
    assert len(in_table) == 10
    assert [row["tensor"] for row in rows] == in_table == [row["tensor"] for row in worst_layers(mobilenet["json"])]
    assert len(plots.range_labels(rows)) == 10
