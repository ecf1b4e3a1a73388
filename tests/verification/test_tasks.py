"""Gates that fit the output: top-1 only for classifier outputs; embeddings are judged by SQNR and cosine."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fp8_models import _Graph
from onnx import TensorProto, helper

from fp8conv.cli import cli
from fp8conv.options import Task
from fp8conv.verification.tasks import infer_task

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((8, 10)).astype(np.float32)
UNIT = LOGITS / np.linalg.norm(LOGITS, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("name", "array", "labels", "task"),
    [
        ("logits", LOGITS, False, Task.CLASSIFICATION),  # [N, C], not unit-norm: logits
        ("logits", LOGITS, True, Task.CLASSIFICATION),
        ("output", UNIT, False, Task.EMBEDDING),  # unit-norm rows: a normalized embedding
        ("output", UNIT, True, Task.CLASSIFICATION),  # labels say classifier
        ("sentence_embedding", LOGITS, False, Task.EMBEDDING),  # the name says so
        ("pooled", LOGITS[:, :1], False, Task.EMBEDDING),
        ("output", LOGITS[:, :1], False, Task.REGRESSION),  # C = 1
        ("output", RNG.standard_normal((8, 4, 3)).astype(np.float32), False, Task.REGRESSION),
    ],
)
def test_task_inference(name, array, labels, task):
    inferred, reason = infer_task(name, array, array, len(array), has_labels=labels)
    assert inferred is task
    assert reason


def test_a_declared_task_wins_and_says_so():
    assert infer_task("logits", LOGITS, LOGITS, 8, declared="embedding") == (Task.EMBEDDING, "--task embedding")
    task, reason = infer_task("y", LOGITS[:, :1], LOGITS[:, :1], 8, declared="classification")
    assert task is Task.CLASSIFICATION
    assert "no top-1" in reason


def _embedding_model() -> onnx.ModelProto:
    """``input [N, 16]`` → FP8 → MatMul (FP8 W) → LpNormalization → ``output [N, 8]`` (unit-norm rows)."""
    g = _Graph()
    w = g.fp8_weight("w", (np.random.default_rng(1).standard_normal((16, 8)) * 0.3).astype(np.float32), 1)
    g.node("MatMul", [g.fp8_activation("input", 4.0), w], "features")
    g.node("LpNormalization", ["features"], "output", axis=-1, p=2)
    return g.model(
        "embedding",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16]),
        helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 8]),
    )


def _report(tmp_path, *flags: str) -> dict:
    source = tmp_path / "model.onnx"
    onnx.save(_embedding_model(), str(source))
    data = tmp_path / "data.npz"
    np.savez(data, input=np.random.default_rng(2).standard_normal((32, 16)).astype(np.float32))
    report = tmp_path / "report"
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "--report", str(report), *flags])
    assert outcome.exit_code in (0, 1), outcome.output
    return json.loads((report / "report.json").read_text())


def test_an_embedding_model_has_no_top1_gate(tmp_path):
    document = _report(tmp_path)
    (output,) = document["outputs"]
    assert output["task"] == "embedding"
    assert "unit-norm" in output["task_reason"]
    assert output["top1_agreement"] is None
    gates = {gate["name"] for gate in document["gates"]}
    assert "max_top1_drop" not in gates
    assert {"min_sqnr", "min_cosine"} <= gates
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| top-1 agree |" not in markdown
    assert "| task |" in markdown


def test_task_classification_brings_the_top1_gate_back(tmp_path):
    document = _report(tmp_path, "--task", "classification")
    (output,) = document["outputs"]
    assert output["task"] == "classification"
    assert output["top1_agreement"] is not None
    assert "max_top1_drop" in {gate["name"] for gate in document["gates"]}


def test_a_bad_task_is_one_line_naming_the_option(tmp_path):
    outcome = CliRunner().invoke(cli, [str(tmp_path / "m.onnx"), "--task", "ranking"])
    assert outcome.exit_code == 2
    assert "--task" in outcome.output
    assert "ranking" in outcome.output
