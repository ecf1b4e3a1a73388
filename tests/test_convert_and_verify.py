"""convert_and_verify (issue 12): one load of the source, one serialization of the candidate, the same numbers.

The spy counts what the code paths call: protobuf parses (``ModelProto.ParseFromString``, which ``onnx.load``,
``onnx.load_model_from_string`` and ``onnx_ir.load`` all end in), ``onnx.checker``'s C++ entry points (on bytes
and on a path, which reads the file again), ``ModelProto.SerializeToString``, ``onnx_ir``'s deserialization (of
which bytes, and the op types of the graph), the FP8 normalization and what every onnxruntime session is given.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert, convert_file
from fp8conv.errors import Fp8ConvError, InternalError
from fp8conv.passes import normalize
from fp8conv.verification.runners import (
    Candidate,
    Fp8ReferenceRunner,
    Runner,
    deployed_runner,
    read_candidate,
    unfused_runner,
    with_graph_outputs,
)
from fp8conv.verification.verify import verify

DIGITS = REPO_ROOT / "models" / "digits_cnn"
SOURCE = DIGITS / "model.onnx"
CALIB = DIGITS / "calib.npz"


@dataclasses.dataclass
class Spy:
    """What was parsed, checked, serialized, deserialized, normalized and given to onnxruntime."""

    parsed: list[bytes] = dataclasses.field(default_factory=list)
    checked: list[Any] = dataclasses.field(default_factory=list)
    checked_paths: list[str] = dataclasses.field(default_factory=list)
    serialized: list[tuple[str, int, bytes]] = dataclasses.field(default_factory=list)
    deserialized: list[tuple[bytes | None, frozenset[str]]] = dataclasses.field(default_factory=list)
    protos: list[tuple[onnx.ModelProto, bytes]] = dataclasses.field(default_factory=list, repr=False)
    normalized: int = 0
    sessions: list[Any] = dataclasses.field(default_factory=list)

    def serializations(self, producer: str) -> list[bytes]:
        """Serializations of whole models (with nodes) that ``producer`` produced."""
        return [data for name, nodes, data in self.serialized if name == producer and nodes]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    record = Spy()
    parse, serialize = onnx.ModelProto.ParseFromString, onnx.ModelProto.SerializeToString
    check, check_path = onnx.checker.C.check_model, onnx.checker.C.check_model_path
    deserialize, normalize_fp8 = ir.serde.deserialize_model, normalize.normalize_fp8
    session = ort.InferenceSession.__init__

    def parsing(self, data, *args, **kwargs):
        record.parsed.append(bytes(data))
        record.protos.append((self, bytes(data)))
        return parse(self, data, *args, **kwargs)

    def serializing(self, *args, **kwargs):
        data = serialize(self, *args, **kwargs)
        record.serialized.append((self.producer_name, len(self.graph.node), data))
        return data

    def checking(data, *args, **kwargs):
        record.checked.append(data)
        return check(data, *args, **kwargs)

    def checking_path(path, *args, **kwargs):
        record.checked_paths.append(path)
        return check_path(path, *args, **kwargs)

    def deserializing(proto, *args, **kwargs):
        parsed_from = next((data for parsed, data in record.protos if parsed is proto), None)
        record.deserialized.append((parsed_from, frozenset(node.op_type for node in proto.graph.node)))
        return deserialize(proto, *args, **kwargs)

    def normalizing(*args, **kwargs):
        record.normalized += 1
        return normalize_fp8(*args, **kwargs)

    def opening(self, source, *args, **kwargs):
        record.sessions.append(source)
        return session(self, source, *args, **kwargs)

    monkeypatch.setattr(onnx.ModelProto, "ParseFromString", parsing)
    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", serializing)
    monkeypatch.setattr(onnx.checker.C, "check_model", checking)
    monkeypatch.setattr(onnx.checker.C, "check_model_path", checking_path)
    monkeypatch.setattr(ir.serde, "deserialize_model", deserializing)
    monkeypatch.setattr(normalize, "normalize_fp8", normalizing)
    monkeypatch.setattr(ort.InferenceSession, "__init__", opening)
    return record


def test_convert_and_verify_parses_the_source_once_and_serializes_the_candidate_once(tmp_path, spy):
    source = SOURCE.read_bytes()
    outcome = fp8conv.convert_and_verify(SOURCE, "int8", CALIB, output=tmp_path / "out.onnx")
    written = (tmp_path / "out.onnx").read_bytes()

    assert outcome.verification.verified
    assert outcome.passed
    # The source: read and parsed once, checked once on those bytes (no path check re-reading the file),
    # deserialized and normalized once.
    assert [data for data in spy.parsed if data == source] == [source]
    assert spy.checked_paths == []
    assert [data for data, _ in spy.deserialized if data == source] == [source]
    # Besides, only the graph onnxruntime optimized for the audit (its integer kernels) is deserialized: the
    # audit reads the conversion's onnx_ir model itself, never a parse of the candidate.
    others = [ops for data, ops in spy.deserialized if data != source]
    assert len(others) == 1
    assert "QLinearConv" in others[0]
    assert spy.normalized == 1
    # The candidate: serialized once, never parsed back, checked once on the bytes written.
    assert spy.serializations("fp8conv") == [written]
    assert not any(data.startswith(written) for data in spy.parsed)
    assert spy.checked == [source, written]
    # Those bytes are what the audit's and the deployed session load; the unfused one appends its outputs.
    candidate_sessions = [s for s in spy.sessions if isinstance(s, bytes) and s.startswith(written)]
    assert candidate_sessions.count(written) == 2
    assert len(candidate_sessions) == 3
    # The reference: lowered and serialized for calibration's runner and for verification's, never re-read.
    assert len(spy.serializations(onnx.load_model_from_string(source).producer_name)) <= 2


def test_the_two_step_path_reads_the_source_and_candidate_again(tmp_path, spy):
    """What convert_and_verify saves: the same work done as convert_file, then verify of the two files."""
    result = convert_file(SOURCE, tmp_path / "out.onnx", data=CALIB)
    verify(SOURCE, result.output_path, CALIB, conversion=result)
    source, written = SOURCE.read_bytes(), (tmp_path / "out.onnx").read_bytes()
    assert spy.parsed.count(source) == 2  # convert's load and verify's load
    assert spy.parsed.count(written) == 1  # verify reads the candidate back
    assert spy.normalized == 2


def _comparable(document: Any) -> Any:
    """The document without timings and timestamps, files by their names only (outputs in two directories)."""
    if isinstance(document, dict):
        skipped = ("seconds", "stage_seconds", "created_utc")
        return {key: _comparable(value) for key, value in document.items() if key not in skipped}
    if isinstance(document, list):
        return [_comparable(value) for value in document]
    if isinstance(document, str) and document.endswith(".onnx"):
        return Path(document).name
    return document


@pytest.mark.parametrize(
    ("to", "options"),
    [("int8", {}), ("int4", {"optimization_level": "basic"})],
    ids=["int8", "int4-basic"],
)
def test_the_report_and_the_file_equal_those_of_convert_file_then_verify(tmp_path, to, options):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = convert_file(SOURCE, tmp_path / "old" / "out.onnx", to=to, data=CALIB)
    old_report = verify(SOURCE, old.output_path, DIGITS / "eval.npz", conversion=old, **options)
    new = fp8conv.convert_and_verify(
        SOURCE, to, CALIB, output=tmp_path / "new" / "out.onnx", verify_data=DIGITS / "eval.npz", **options
    )
    assert (tmp_path / "old" / "out.onnx").read_bytes() == (tmp_path / "new" / "out.onnx").read_bytes()
    assert _comparable(new.to_json()) == _comparable(old_report.to_json())
    assert new.to_json()["kernels"]["optimization_level"] == options.get("optimization_level", "all")
    assert new.exit_code == old_report.exit_code


def test_convert_of_a_loaded_model_leaves_it_as_it_was_and_gives_the_file_conversion(tmp_path):
    loaded = fp8conv.load(SOURCE)
    before = ir.to_proto(loaded.model).SerializeToString()
    result = convert(loaded, "int8", CALIB)
    assert ir.to_proto(loaded.model).SerializeToString() == before
    fp8conv.converter.pipeline.write_converted(result, tmp_path / "a.onnx", audit=False)
    convert_file(SOURCE, tmp_path / "b.onnx", data=CALIB, audit=False)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_not_verified_without_data_or_when_turned_off_with_the_kernel_gate(tmp_path):
    no_data = fp8conv.convert_and_verify(SOURCE, output=tmp_path / "a.onnx")
    assert not no_data.verification.verified
    assert no_data.verification.warnings[0].startswith("no data to verify on")
    assert [gate.name for gate in no_data.verification.gates] == ["min_integer_kernels"]
    assert no_data.passed
    off = fp8conv.convert_and_verify(SOURCE, data=CALIB, output=tmp_path / "b.onnx", verify=False, skip_reason="why")
    assert off.verification.warnings == ["why"]
    assert off.conversion.calibration_samples == 64
    assert (tmp_path / "b.onnx").is_file()


def test_bad_verification_input_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(Fp8ConvError, match="gates name output"):
        fp8conv.convert_and_verify(SOURCE, data=CALIB, output=tmp_path / "a.onnx", gates={"min_sqnr": {"nope": 3}})
    with pytest.raises(Fp8ConvError, match="not both"):
        fp8conv.convert_and_verify(SOURCE, output=tmp_path / "a.onnx", verify_data=CALIB, random_inputs=3)
    with pytest.raises(Fp8ConvError, match="unknown optimization level"):
        fp8conv.convert_and_verify(SOURCE, output=tmp_path / "a.onnx", optimization_level="fast")
    with pytest.raises(Fp8ConvError, match="overwrite the input"):
        fp8conv.convert_and_verify(SOURCE, data=CALIB, output=SOURCE)
    assert list(tmp_path.iterdir()) == []


def test_a_candidate_that_fails_the_checker_is_an_internal_error_and_is_not_written(tmp_path, monkeypatch):
    def failing(data, *args, **kwargs):
        if b"fp8conv.version" in bytes(data):
            raise onnx.checker.ValidationError("node 3: bad")

    monkeypatch.setattr(onnx.checker.C, "check_model", failing)
    with pytest.raises(InternalError, match=r"the converted model fails onnx\.checker: node 3: bad"):
        fp8conv.convert_and_verify(SOURCE, data=CALIB, output=tmp_path / "a.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_external_data_is_verified(tmp_path):
    """onnxruntime used to look for the external data of the bytes it was given in the working directory."""
    outcome = fp8conv.convert_and_verify(SOURCE, data=CALIB, output=tmp_path / "out" / "m.onnx", external_data=True)
    assert (tmp_path / "out" / "m.onnx.data").is_file()
    assert outcome.verification.verified
    assert outcome.passed
    again = verify(SOURCE, tmp_path / "out" / "m.onnx", CALIB)
    assert again.outputs[0].total.sqnr_db == outcome.verification.outputs[0].total.sqnr_db


def test_the_cli_convert_runs_convert_and_verify(tmp_path, monkeypatch):
    calls = []
    real = fp8conv.verification.convert_and_verify.convert_and_verify

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fp8conv.verification.convert_and_verify, "convert_and_verify", recording)
    outcome = CliRunner().invoke(cli, [str(SOURCE), "--data", str(CALIB), "-o", str(tmp_path / "a.onnx"), "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert len(calls) == 1
    assert calls[0]["output"] == tmp_path / "a.onnx"
    assert json.loads(outcome.output[outcome.output.index("{") :])["verified"]


# -- runners ---------------------------------------------------------------------------------------------


def _candidate(tmp_path: Path) -> Candidate:
    convert_file(SOURCE, tmp_path / "c.onnx", data=CALIB, audit=False)
    return read_candidate(tmp_path / "c.onnx")


def test_the_three_executions_are_runners(tmp_path):
    candidate = _candidate(tmp_path)
    reference = fp8conv.load(SOURCE)
    runners = [Fp8ReferenceRunner(reference.model), deployed_runner(candidate, "all"), unfused_runner(candidate)]
    feeds = {"input": np.load(DIGITS / "eval.npz")["input"][:4]}
    for runner in runners:
        assert isinstance(runner, Runner)
        assert runner.input_names == ("input",)
        outputs = runner.run(feeds)
        assert list(outputs) == list(runner.output_names) == ["logits"]
        assert outputs["logits"].shape == (4, 10)
    assert [runner.name for runner in runners] == ["FP8 reference", "deployed candidate", "unfused candidate"]


def test_a_failed_candidate_run_names_the_candidate(tmp_path):
    runner = deployed_runner(_candidate(tmp_path), "all")
    with pytest.raises(Fp8ConvError, match="onnxruntime run of the candidate failed"):
        runner.run({"input": np.zeros((1, 2), np.float32)})


def test_appended_outputs_equal_outputs_added_to_the_model(tmp_path):
    """The unfused candidate's captures appended to the serialized bytes equal a model edited and re-serialized."""
    candidate = _candidate(tmp_path)
    values = [node.outputs[0] for node in candidate.model.graph if node.op_type in ("Conv", "Relu")]
    names = [value.name for value in values]
    appended = onnx.load_model_from_string(with_graph_outputs(candidate.serialized, values))
    assert [output.name for output in appended.graph.output] == ["logits", *names]
    onnx.checker.check_model(appended)
    edited = ir.from_proto(ir.to_proto(candidate.model))
    produced = {value.name: value for node in edited.graph for value in node.outputs}
    edited.graph.outputs.extend(produced[name] for name in names)
    feeds = {"input": np.load(DIGITS / "eval.npz")["input"][:8]}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    runs = [
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
            ["logits", *names], feeds
        )
        for model in (appended, ir.to_proto(edited))
    ]
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
    assert unfused_runner(candidate, names).output_names == ("logits", *names)
    assert with_graph_outputs(candidate.serialized, []) is candidate.serialized
