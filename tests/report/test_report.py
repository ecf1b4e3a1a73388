"""Reports and the CLI: report.json against its schema, report.md and report.html, exit codes 0/1/2."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
from classifier_models import build_classifier, classifier_data, scale_initializer
from click.testing import CliRunner
from golden_models import GOLDEN

import fp8conv
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert_file
from fp8conv.errors import Fp8ConvError
from fp8conv.report.html import render_html
from fp8conv.report.markdown import render_markdown
from fp8conv.report.schema import SCHEMA_VERSION, report_schema, validate_report
from fp8conv.verification.verify import not_verified

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FP8 conv net + data + INT8 conversion + weights-×1.5 variant; FP8 classifier + labelled data."""
    root = tmp_path_factory.mktemp("report")
    onnx.save(GOLDEN["qdq_per_tensor"].build(), root / "conv.onnx")
    np.savez(root / "conv.npz", input=np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32))
    convert_file(root / "conv.onnx", root / "conv.int8.onnx", data=root / "conv.npz")
    scale_initializer(root / "conv.int8.onnx", root / "broken.onnx", "W1_scale_1", 1.5)
    onnx.save(build_classifier(), root / "mlp.onnx")
    classifier_data(root / "mlp.npz", root / "mlp.onnx", samples=64)
    return {
        "root": root,
        "conv": root / "conv.onnx",
        "conv_data": root / "conv.npz",
        "conv_int8": root / "conv.int8.onnx",
        "broken": root / "broken.onnx",
        "mlp": root / "mlp.onnx",
        "mlp_data": root / "mlp.npz",
    }


@pytest.fixture(scope="module")
def passing(models) -> dict:
    conversion = convert_file(models["mlp"], models["root"] / "mlp.int8.onnx", data=models["mlp_data"])
    result = fp8conv.verify(models["mlp"], conversion.output_path, models["mlp_data"], conversion=conversion)
    return result.to_json()


@pytest.fixture(scope="module")
def failing(models) -> dict:
    return fp8conv.verify(models["conv"], models["broken"], models["conv_data"]).to_json()


@pytest.fixture(scope="module")
def gated(models) -> dict:
    """The failing comparison with the per-layer gate set: layers below 20 dB are failures, and marked."""
    gates = {"min_layer_sqnr": 20}
    return fp8conv.verify(models["conv"], models["broken"], models["conv_data"], gates=gates).to_json()


class _Page(HTMLParser):
    """Collects tags and attributes of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


# --- report.json -------------------------------------------------------------------------------------


def test_schema_is_a_valid_versioned_json_schema():
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["pattern"].startswith("^1")
    assert SCHEMA_VERSION.startswith("1.")


def test_report_json_validates_for_passing_failing_and_skipped_runs(passing, failing, gated, models):
    for document in (passing, failing, not_verified(models["conv"], None, "--no-verify was given").to_json()):
        roundtrip = json.loads(json.dumps(document, allow_nan=False))  # strict JSON: no NaN/Infinity
        validate_report(roundtrip)
    assert passing["schema_version"] == SCHEMA_VERSION
    assert passing["passed"] is True
    assert failing["passed"] is False
    (output,) = passing["outputs"]
    assert {"name", "sqnr_db", "cosine", "max_abs_err", "top1_agreement", "kernel_sqnr_db"} <= set(output)
    assert passing["conversion"]["activations"][0]["method"] == "mse"
    assert [record["name"] for record in passing["conversion"]["emission_passes"]][:2] == [
        "EmitWeightsPass",
        "FoldFp8ConstantsPass",
    ]
    assert passing["kernels"]["counts_by_op"]["MatMul"] == {"integer": 2, "float": 0}
    assert failing["first_failing_layer"] is None  # no per-layer gate: layer numbers are diagnostics
    assert failing["lowest_layer"]["tensor"] == "conv1"
    validate_report(json.loads(json.dumps(gated, allow_nan=False)))
    assert gated["first_failing_layer"] == "conv1"
    assert all({"tensor", "sqnr_db", "rank"} <= set(layer) for layer in failing["layers"])


def test_schema_checks_the_emission_pass_records(passing):
    document = json.loads(json.dumps(passing, allow_nan=False))
    document["conversion"]["emission_passes"][0]["modified"] = "yes"
    with pytest.raises(jsonschema.ValidationError, match="'yes' is not of type 'boolean'"):
        validate_report(document)


def test_schema_rejects_a_report_missing_required_keys_or_with_bare_infinity(failing):
    broken = dict(failing)
    del broken["gates"]
    with pytest.raises(jsonschema.ValidationError, match="'gates' is a required property"):
        validate_report(broken)
    wrong = json.loads(json.dumps(failing))
    wrong["outputs"][0]["sqnr_db"] = "infinite"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(wrong)


def test_identical_models_write_inf_as_a_string(models):
    document = fp8conv.verify(models["conv_int8"], models["conv_int8"], models["conv_data"]).to_json()
    validate_report(document)
    layers = {layer["tensor"]: layer["sqnr_db"] for layer in document["layers"]}
    # quantization points are bit-exact; float ops differ only in float32 rounding order (reference
    # session fuses Conv+Relu, the unfused one does not)
    assert layers["input_dequantized"] == layers["relu1_dequantized"] == "inf"
    assert layers["conv1"] == "inf" or layers["conv1"] > 100.0


# --- report.md ---------------------------------------------------------------------------------------


def test_markdown_starts_with_the_verdict_and_stays_short(passing, failing, gated):
    good = render_markdown(passing)
    assert good.splitlines()[0].startswith("## ✅ fp8conv verification PASSED")
    bad = render_markdown(failing)
    assert bad.splitlines()[0] == "## ❌ fp8conv verification FAILED: 1 of 3 gates failed"
    assert "| min_sqnr | `output` | >= 20 |" in bad
    assert "lowest layer SQNR: 6.0 dB at `conv1` (Conv); per-layer numbers are diagnostics" in bad
    assert "⬅ first below" not in bad
    layered = render_markdown(gated)
    assert layered.splitlines()[0] == "## ❌ fp8conv verification FAILED: 2 of 4 gates failed"
    assert "3 of 4 layers below min_layer_sqnr 20.0 dB, first: `conv1`" in layered
    assert "`conv1` ⬅ first below" in layered
    # scaling conv1's weight scale also broke its bias-scale consistency: onnxruntime stops fusing it
    assert "**Kernels** (all): Conv 1/2 on integer kernels." in bad
    assert "- layer `conv1` (Conv as Conv): bias scale differs" in bad
    assert len(bad) < 10_000
    assert len(good) < 10_000


def test_markdown_of_a_skipped_verification_says_so(models):
    text = render_markdown(not_verified(models["conv"], None, "--no-verify was given").to_json())
    assert text.startswith("## ⚠️ fp8conv verification NOT VERIFIED: --no-verify was given\n")


# --- report.html -------------------------------------------------------------------------------------


def test_html_is_self_contained_with_embedded_plots(passing, failing, gated):
    for document, images in ((passing, 3), (failing, 3)):
        html = render_html(document)
        page = _parse(html)
        assert page.tags[0] == "html"
        assert "body" in page.tags
        assert "script" not in page.tags
        assert "link" not in page.tags
        assert "iframe" not in page.tags
        sources = [value for tag, name, value in page.attributes if tag == "img" and name == "src"]
        assert len(sources) >= images  # layer SQNR plot, error histogram, range plot
        for source in sources:
            prefix = "data:image/png;base64,"
            assert source.startswith(prefix)
            assert base64.b64decode(source[len(prefix) :]).startswith(PNG_SIGNATURE)
        references = [value for _, name, value in page.attributes if name in ("href", "src", "action")]
        assert not [value for value in references if not value.startswith("data:")]
        assert "url(" not in html
        assert "@import" not in html
        assert "http://" not in html
        assert "https://" not in html
    text = " ".join(_parse(render_html(failing)).text)
    assert "fp8conv verification FAILED" in text
    assert "first below the gate" not in text
    assert "lowest layer SQNR (diagnostic)" in text
    text = " ".join(_parse(render_html(gated)).text)
    assert "first below the gate" in text
    assert "first layer below min_layer_sqnr 20.0 dB" in text


def test_html_escapes_names(failing):
    document = json.loads(json.dumps(failing))
    document["layers"][0]["tensor"] = "<script>alert(1)</script>"
    page = _parse(render_html(document))
    assert "script" not in page.tags


# --- writing reports ---------------------------------------------------------------------------------


def test_write_reports_writes_three_files(models, tmp_path):
    result = fp8conv.verify(models["conv"], models["broken"], models["conv_data"])
    paths = fp8conv.write_reports(result, tmp_path / "out")
    assert sorted(path.name for path in paths.values()) == ["report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == result.to_json()
    assert (tmp_path / "out" / "report.md").read_text().startswith("## ❌")
    (tmp_path / "file").write_text("x")
    with pytest.raises(Fp8ConvError, match="needs a directory"):
        fp8conv.write_reports(result, tmp_path / "file")


# --- CLI ---------------------------------------------------------------------------------------------


def _run(args: list[str]):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def test_cli_verify_exit_0_on_pass_with_reports(models, tmp_path):
    result = _run(
        ["verify", models["conv"], models["conv_int8"], "--data", models["conv_data"], "--report", tmp_path / "r"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verification PASSED")
    assert "lowest layer SQNR:" in result.output
    assert "kernels: Conv 2/2" in result.output
    validate_report(json.loads((tmp_path / "r" / "report.json").read_text()))


def test_cli_verify_exit_1_on_a_failed_gate_and_reports_are_written(models, tmp_path):
    result = _run(
        ["verify", models["conv"], models["broken"], "--data", models["conv_data"], "--report", tmp_path / "r"]
    )
    assert result.exit_code == 1, result.output
    assert "FAILED min_sqnr on output" in result.output
    for name in ("report.json", "report.md", "report.html"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["lowest_layer"]["tensor"] == "conv1"


def test_cli_gate_flags_and_config_file(models, tmp_path):
    strict = _run(
        ["verify", models["conv"], models["conv_int8"], "--data", models["conv_data"], "--min-sqnr", "output:60"]
    )
    assert strict.exit_code == 1
    assert "needs >= 60" in strict.output
    loose = _run(["verify", models["conv"], models["broken"], "--data", models["conv_data"], "--min-sqnr", "off"])
    assert loose.exit_code == 0, loose.output
    (tmp_path / "gates.toml").write_text("[gates]\nmin_sqnr = 3\nmax_abs_err = { output = 100 }\n")
    configured = _run(
        ["verify", models["conv"], models["broken"], "--data", models["conv_data"], "--config", tmp_path / "gates.toml",
         "--json"]
    )  # fmt: skip
    assert configured.exit_code == 0, configured.output
    gates = {(gate["name"], gate["source"]) for gate in json.loads(configured.output)["gates"]}
    assert ("min_sqnr", "config") in gates
    assert ("max_abs_err", "config") in gates
    flag_wins = _run(
        ["verify", models["conv"], models["broken"], "--data", models["conv_data"], "--config", tmp_path / "gates.toml",
         "--min-sqnr", "20"]
    )  # fmt: skip
    assert flag_wins.exit_code == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "missing.npz"], "no such data file"),
        (["--data", "DATA", "--min-sqnr", "loud"], "not a number"),
        (["--data", "DATA", "--min-cosine", "nosuch:0.5"], "do not have"),
        ([], "give --data"),
        (["--data", "DATA", "--random-inputs", "4"], "not both"),
        (["--data", "DATA", "--optimization-level", "turbo"], "turbo"),
    ],
)
def test_cli_verify_exit_2_on_bad_input_and_nothing_written(models, tmp_path, extra, message):
    args = [models["conv_data"] if a == "DATA" else a for a in extra]
    result = _run(["verify", models["conv"], models["conv_int8"], *args, "--report", tmp_path / "r"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_cli_verify_bad_model_is_exit_2(models, tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    result = _run(["verify", tmp_path / "junk.onnx", models["conv_int8"], "--data", models["conv_data"]])
    assert result.exit_code == 2
    assert result.output.startswith("fp8conv: error:")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_convert_and_verify_in_one_go(models, tmp_path):
    out = tmp_path / "m.int8.onnx"
    result = _run([models["mlp"], "--to", "int8", "--data", models["mlp_data"], "-o", out, "--report", tmp_path / "r"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "verification PASSED" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    validate_report(report)
    assert report["verified"]
    assert report["conversion"]["config"]["target"] == "int8"
    assert report["data"]["source"] == str(models["mlp_data"])
    assert report["layers"][0]["activation"]["method"] == "mse"  # conversion records attached to layers


def test_cli_convert_failing_gate_still_writes_model_and_reports(models, tmp_path):
    out = tmp_path / "m.int8.onnx"
    args = [models["mlp"], "--to", "int8", "--data", models["mlp_data"], "-o", out, "--report", tmp_path / "r"]
    result = _run([*args, "--min-sqnr", "90"])
    assert result.exit_code == 1, result.output
    assert out.is_file()
    assert onnx.load(out).graph.node
    assert json.loads((tmp_path / "r" / "report.json").read_text())["passed"] is False
    assert (tmp_path / "r" / "report.md").read_text().startswith("## ❌")


def test_cli_convert_without_data_skips_verification_with_a_note(models, tmp_path):
    plain = _run([models["mlp"], "--to", "int8", "-o", tmp_path / "a.onnx"])
    assert plain.exit_code == 0, plain.output
    assert "verification skipped: no data" in plain.output
    reported = _run([models["mlp"], "--to", "int8", "-o", tmp_path / "b.onnx", "--report", tmp_path / "r"])
    assert reported.exit_code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    validate_report(report)
    assert report["verified"] is False
    assert report["kernels"]["integer_count"] == 2
    assert report["warnings"][0].startswith("no data to verify on")
    skipped = _run([models["mlp"], "--data", models["mlp_data"], "-o", tmp_path / "c.onnx", "--no-verify"])
    assert skipped.exit_code == 0
    assert "verification" not in skipped.output


def test_cli_convert_with_random_inputs_warns_in_the_report(models, tmp_path):
    result = _run([models["mlp"], "-o", tmp_path / "m.onnx", "--random-inputs", "16", "--report", tmp_path / "r"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["data"]["random"] is True
    assert report["data"]["samples"] == 16
    assert any("random inputs" in warning for warning in report["warnings"])
    assert "**random inputs**" in (tmp_path / "r" / "report.md").read_text()


def test_cli_convert_verify_data_and_bad_gate_are_checked(models, tmp_path):
    held_out = _run(
        [models["mlp"], "--data", models["mlp_data"], "--verify-data", models["mlp_data"], "-o", tmp_path / "m.onnx",
         "--json"]
    )  # fmt: skip
    assert held_out.exit_code == 0, held_out.output
    document = json.loads(held_out.output[held_out.output.index("{") :])
    assert document["data"]["labels"] is True
    assert document["conversion"] is not None
    bad = _run([models["mlp"], "--data", models["mlp_data"], "-o", tmp_path / "n.onnx", "--max-top1-drop", "x"])
    assert bad.exit_code == 2
    assert not (tmp_path / "n.onnx").exists()
