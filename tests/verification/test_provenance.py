"""Provenance in every report: versions, CPU and its kernel flags, UTC time, file digests, command line, paths."""

from __future__ import annotations

import datetime
import hashlib
import json
import shlex
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import onnx_ir
import onnxruntime
import pytest
from click.testing import CliRunner
from golden_models import GOLDEN

import fp8conv
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert_file
from fp8conv.report.html import render_html
from fp8conv.report.markdown import render_markdown
from fp8conv.report.schema import SCHEMA_VERSION, report_schema, validate_report
from fp8conv.verification.provenance import KERNEL_FLAGS, PYTHON_API, cpu_info, file_digest, parse_cpuinfo
from fp8conv.verification.verify import not_verified


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("provenance")
    onnx.save(GOLDEN["qdq_per_tensor"].build(), root / "conv.onnx")
    np.savez(root / "conv.npz", input=np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32))
    convert_file(root / "conv.onnx", root / "conv.int8.onnx", data=root / "conv.npz")
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cli_report_records_the_command_versions_cpu_time_and_file_digests(files, monkeypatch):
    monkeypatch.chdir(files)
    args = ["verify", "conv.onnx", "conv.int8.onnx", "--data", "conv.npz", "--report", "out dir"]
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((files / "out dir" / "report.json").read_text())
    validate_report(report)
    provenance = report["provenance"]
    assert (
        provenance["command"]
        == shlex.join(["fp8conv", *args])
        == ("fp8conv verify conv.onnx conv.int8.onnx --data conv.npz --report 'out dir'")
    )
    assert provenance["versions"] == {
        "fp8conv": fp8conv.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "onnx_ir": onnx_ir.__version__,
        "numpy": np.__version__,
        "python": provenance["versions"]["python"],
    }
    created = datetime.datetime.strptime(provenance["created_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert before <= created <= datetime.datetime.now(datetime.timezone.utc)
    assert provenance["root"] == str(files.resolve())
    assert provenance["files"] == {
        "reference": {"path": "conv.onnx", "sha256": _sha256(files / "conv.onnx")},
        "candidate": {"path": "conv.int8.onnx", "sha256": _sha256(files / "conv.int8.onnx")},
        "data": {"path": "conv.npz", "sha256": _sha256(files / "conv.npz")},
    }
    markdown = (files / "out dir" / "report.md").read_text()
    assert "`conv.onnx` (FP8, exact reference) vs `conv.int8.onnx`" in markdown
    assert f"onnxruntime {onnxruntime.__version__}" in markdown
    assert "fp8conv verify conv.onnx conv.int8.onnx --data conv.npz --report 'out dir'" in markdown
    page = (files / "out dir" / "report.html").read_text()
    assert "<h2>Provenance</h2>" in page
    assert _sha256(files / "conv.int8.onnx") in page


def test_the_python_api_says_so_also_after_a_cli_run_in_the_same_process(files, monkeypatch):
    monkeypatch.chdir(files)
    assert CliRunner().invoke(cli, ["verify", "conv.onnx", "conv.int8.onnx", "--data", "conv.npz"]).exit_code == 0
    report = fp8conv.verify(files / "conv.onnx", files / "conv.int8.onnx", files / "conv.npz").to_json()
    assert report["provenance"]["command"] == PYTHON_API


def test_paths_outside_the_current_directory_are_relative_to_their_common_parent(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = fp8conv.verify(files / "conv.onnx", files / "conv.int8.onnx", files / "conv.npz").to_json()
    assert report["provenance"]["root"] == str(files.resolve())
    assert report["provenance"]["files"]["candidate"]["path"] == "conv.int8.onnx"
    assert "`conv.onnx` (FP8, exact reference)" in render_markdown(report)


def test_every_report_has_provenance_also_when_nothing_was_verified(files):
    report = not_verified(files / "conv.onnx", None, "--no-verify was given").to_json()
    validate_report(report)
    assert report["provenance"]["files"] == {
        "reference": {
            "path": report["provenance"]["files"]["reference"]["path"],
            "sha256": _sha256(files / "conv.onnx"),
        }
    }
    assert "Provenance" in render_html(report)
    document = json.loads(json.dumps(report))
    del document["provenance"]
    with pytest.raises(jsonschema.ValidationError, match="'provenance' is a required property"):
        validate_report(document)


def test_the_cpu_flags_are_the_kernel_relevant_ones_from_proc_cpuinfo():
    info = cpu_info()
    assert set(info["flags"]) <= set(KERNEL_FLAGS)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        line = next((line for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")), "")
        present = set(line.partition(":")[2].split())
        assert info["flags"] == [flag for flag in KERNEL_FLAGS if flag in present]
        assert info["flags_source"] == "/proc/cpuinfo"
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm bf16\nCPU part\t: 0xd40\n")
    assert arm["flags"] == ["asimd", "asimddp", "i8mm", "bf16", "sve"]
    x86 = parse_cpuinfo("model name\t: Some CPU @ 2GHz\nflags\t\t: fpu sse4_2 avx2 avx512_vnni amx_int8 ht\n")
    assert x86["model"] == "Some CPU @ 2GHz"
    assert x86["flags"] == ["sse4_2", "avx2", "avx512_vnni", "amx_int8"]
    unknown = parse_cpuinfo("")
    assert unknown["flags"] == []
    assert unknown["flags_source"] == "unavailable"


def test_a_data_directory_digest_covers_its_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.npy").write_bytes(b"1")
    first = file_digest(tmp_path / "d")
    (tmp_path / "d" / "a.npy").write_bytes(b"2")
    assert file_digest(tmp_path / "d") != first
    (tmp_path / "f").write_bytes(b"abc")
    assert file_digest(tmp_path / "f") == hashlib.sha256(b"abc").hexdigest()


def test_schema_version_is_a_string_in_inspect_and_in_report_json(files):
    inspected = CliRunner().invoke(cli, ["inspect", str(files / "conv.onnx"), "--json"])
    assert inspected.exit_code == 0
    document = json.loads(inspected.output)
    report = not_verified(files / "conv.onnx", None, "no data").to_json()
    assert isinstance(document["schema_version"], str)
    assert isinstance(report["schema_version"], str)
    # 1.2: provenance.golden_outputs/execution_providers, conversion.fp8_quantizers, outputs[].task;
    # 1.3: conversion.weight_methods (GPTQ, bias correction)
    assert SCHEMA_VERSION == "1.3"
    assert report_schema()["$id"].endswith(f"report-{SCHEMA_VERSION}.json")
