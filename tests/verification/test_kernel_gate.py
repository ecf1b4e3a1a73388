"""The min_integer_kernels gate: a layer planned on an integer kernel that onnxruntime runs in float fails.

The real case: a Gemm with ``beta != 1`` and a bias is planned INT8 (QGemm), but onnxruntime's QGemm fusion
needs beta 1, so the deployed session runs it in float. Before the gate this was a log line and exit 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fp8_models import residual_cnn
from onnx import helper
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert_file
from fp8conv.errors import Fp8ConvError
from fp8conv.report.schema import validate_report
from fp8conv.verification.gates import Gates, KernelThreshold
from fp8conv.verification.verify import not_verified

DIGITS = REPO_ROOT / "models" / "digits_cnn"
FAILED = "FAILED min_integer_kernels: 3, needs >= 4"


@pytest.fixture(scope="module")
def beta_gemm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """residual_cnn whose Gemm has beta=0.5: planned INT8, run by onnxruntime as a float Gemm."""
    root = tmp_path_factory.mktemp("beta_gemm")
    model = residual_cnn()
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    gemm.attribute.append(helper.make_attribute("beta", 0.5))
    onnx.save(model, root / "model.onnx")
    data = root / "calib.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((8, 3, 12, 12)).astype(np.float32))
    return {"root": root, "model": root / "model.onnx", "data": data}


def _run(*args: str):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def test_a_planned_int8_layer_run_in_float_fails_the_default_gate(beta_gemm, tmp_path):
    report = tmp_path / "report"
    outcome = _run(beta_gemm["model"], "--data", beta_gemm["data"], "-o", tmp_path / "out.onnx", "--report", report)
    assert outcome.exit_code == 1, outcome.output
    assert FAILED in outcome.output
    assert "logits_node (Gemm as Gemm): Gemm beta=0.5 with a bias: QGemm needs beta 1" in outcome.output
    document = json.loads((report / "report.json").read_text())
    validate_report(document)
    (gate,) = [gate for gate in document["gates"] if gate["name"] == "min_integer_kernels"]
    assert (gate["value"], gate["threshold"], gate["passed"], gate["source"]) == (3, 4, False, "default")
    assert document["gate_settings"]["min_integer_kernels"] == {"global": 4, "outputs": {}}
    assert "min_integer_kernels" in (report / "report.md").read_text()


@pytest.mark.parametrize("with_report", [False, True], ids=["terminal", "report"])
def test_the_gate_needs_no_data_and_holds_without_verification(beta_gemm, tmp_path, with_report):
    report = tmp_path / "report"
    args = [beta_gemm["model"], "--no-verify", "-o", tmp_path / "out.onnx"] + (
        ["--report", report] if with_report else []
    )
    outcome = _run(*args)
    assert outcome.exit_code == 1, outcome.output
    assert FAILED in outcome.output
    assert (tmp_path / "out.onnx").is_file()
    if with_report:
        document = json.loads((report / "report.json").read_text())
        validate_report(document)
        assert (document["verified"], document["passed"]) == (False, False)
        assert "FAILED" in (report / "report.md").read_text().splitlines()[0]
        assert "min_integer_kernels" in (report / "report.html").read_text()


@pytest.mark.parametrize(("spec", "code"), [("3", 0), ("4", 1), ("off", 0), ("plan", 1)])
def test_an_explicit_threshold_overrides_the_plan(beta_gemm, tmp_path, spec, code):
    outcome = _run(beta_gemm["model"], "--no-verify", "-o", tmp_path / "out.onnx", "--min-integer-kernels", spec)
    assert outcome.exit_code == code, outcome.output


def test_the_gate_reads_the_config_file(beta_gemm, tmp_path):
    config = tmp_path / "fp8conv.yaml"
    config.write_text("gates:\n  min_integer_kernels: 3\n")
    outcome = _run(beta_gemm["model"], "--no-verify", "-o", tmp_path / "out.onnx", "--config", config)
    assert outcome.exit_code == 0, outcome.output


def test_an_explicit_threshold_without_the_audit_fails_saying_so(beta_gemm, tmp_path):
    outcome = _run(
        beta_gemm["model"], "--no-verify", "--no-audit", "-o", tmp_path / "o.onnx", "--min-integer-kernels", "1"
    )
    assert outcome.exit_code == 1, outcome.output
    assert "needs the integer-kernel audit" in outcome.output
    assert _run(beta_gemm["model"], "--no-verify", "--no-audit", "-o", tmp_path / "o.onnx").exit_code == 0


def test_at_an_optimization_level_without_fusion_every_planned_layer_fails_the_gate(beta_gemm, tmp_path):
    result = convert_file(DIGITS / "model.onnx", tmp_path / "digits.onnx", data=DIGITS / "calib.npz")
    verified = fp8conv.verify(
        DIGITS / "model.onnx", tmp_path / "digits.onnx", DIGITS / "calib.npz", conversion=result,
        optimization_level="basic", per_layer=False,
    )  # fmt: skip
    (gate,) = [gate for gate in verified.gates if gate.name == "min_integer_kernels"]
    assert (gate.value, gate.threshold, gate.passed) == (0.0, 7.0, False)
    assert verified.exit_code == 1


def test_verify_without_a_conversion_checks_only_an_explicit_threshold(tmp_path):
    converted = convert_file(DIGITS / "model.onnx", tmp_path / "digits.onnx").output_path
    base = [
        "verify", DIGITS / "model.onnx", converted, "--data", DIGITS / "calib.npz", "--no-layers", "--json",
    ]  # fmt: skip
    plain = json.loads(_run(*base).output)
    assert "min_integer_kernels" not in {gate["name"] for gate in plain["gates"]}
    strict = _run(*base, "--min-integer-kernels", "8")
    assert strict.exit_code == 1
    (gate,) = [gate for gate in json.loads(strict.output)["gates"] if gate["name"] == "min_integer_kernels"]
    assert (gate["value"], gate["threshold"]) == (7, 8)
    assert gate["note"] == "7 of 7 Conv/MatMul/Gemm on integer kernels"


@pytest.mark.parametrize(
    ("target", "planned"),
    [("int8", 7), ("int4", 0), ("w8a16", 0), ("w4a16", 1)],
)
def test_the_default_counts_the_layers_onnxruntime_has_an_integer_kernel_for(tmp_path, target, planned):
    """int8: every layer; int4 (4-bit weights, 8-bit activations) and w8a16 (16-bit): none; w4a16: the MatMul."""
    result = convert_file(DIGITS / "model.onnx", tmp_path / "digits.onnx", to=target)
    assert sum(layer.planned_integer_kernel for layer in result.written.layers) == planned
    skipped = not_verified(DIGITS / "model.onnx", result.output_path, "test", conversion=result)
    (gate,) = skipped.gates
    assert (gate.threshold, gate.passed) == (planned, True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("plan", KernelThreshold(None, True, "cli")), ("off", KernelThreshold(None, False, "cli")),
     ("12", KernelThreshold(12, True, "cli")), ("0", KernelThreshold(0, True, "cli"))],
)  # fmt: skip
def test_kernel_threshold_specs(spec, expected):
    assert Gates.default().with_specs("min-integer-kernels", [spec]).kernels == expected


@pytest.mark.parametrize("spec", ["-1", "2.5", "many", "logits:3", "inf"])
def test_bad_kernel_threshold_specs_are_bad_input(spec):
    with pytest.raises(Fp8ConvError, match="min_integer_kernels"):
        Gates.default().with_specs("min_integer_kernels", [spec])
