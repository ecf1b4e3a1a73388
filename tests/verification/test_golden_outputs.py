"""Golden outputs (--save-outputs / --load-outputs) and the candidate's execution providers (--providers), issue 15."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from helpers import refused_in_one_line
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.report.schema import validate_report
from fp8conv.verification.golden import FORMAT, METADATA_KEY, read_metadata

ROOT = REPO_ROOT
MODELS = ROOT / "models" / "digits_cnn"
MODEL, CAST, CALIB, EVAL = (MODELS / name for name in ("model.onnx", "model.cast.onnx", "calib.npz", "eval.npz"))
COMPARED = ("outputs", "layers", "skipped_layers", "gates", "passed", "data")


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _quiet(*args: object):
    """A run with -q: errors only (no progress bars), so that a refusal is the only line."""
    return _invoke("-q", *args)


def _numbers(document: dict) -> dict:
    """What verification measured (not the time, the provenance or the reference's description)."""
    return {key: document[key] for key in COMPARED}


def _convert(tmp: Path, name: str, *more: object) -> tuple[int, dict]:
    outcome = _invoke(MODEL, "--data", CALIB, "--verify-data", EVAL, "-o", tmp / f"{name}.onnx", "--json", *more)
    assert outcome.exit_code in (0, 1), outcome.output
    return outcome.exit_code, json.loads(outcome.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A plain convert-and-verify run, one that saves the golden outputs, and one that loads them."""
    tmp = tmp_path_factory.mktemp("golden")
    _, plain = _convert(tmp, "plain")
    _, saved = _convert(tmp, "saved", "--save-outputs", tmp / "golden.npz")
    _, loaded = _convert(tmp, "loaded", "--load-outputs", tmp / "golden.npz", "--report", tmp / "report")
    return {"tmp": tmp, "plain": plain, "saved": saved, "loaded": loaded, "golden": tmp / "golden.npz"}


# --- round trip ----------------------------------------------------------------------------------------------


def test_loaded_outputs_give_the_numbers_of_a_fresh_run(runs):
    plain, saved, loaded = runs["plain"], runs["saved"], runs["loaded"]
    assert plain["verified"]
    assert plain["layers"]  # per-layer comparison on: intermediate tensors were stored
    assert _numbers(saved) == _numbers(plain)  # recording changes nothing
    assert _numbers(loaded) == _numbers(plain)  # bit-identical statistics, every output and layer
    assert plain["outputs"][0]["sqnr_db"] > 20


def test_the_file_is_a_plain_npz_with_json_metadata(runs):
    with np.load(runs["golden"], allow_pickle=False) as archive:
        metadata = json.loads(str(archive[METADATA_KEY][0]))
        assert metadata["format"] == FORMAT
        assert metadata["outputs"] == ["logits"]
        assert metadata["samples"] == 360
        assert metadata["per_layer"] is True
        assert len(metadata["tensors"]) == len(runs["plain"]["layers"]) + len(runs["plain"]["skipped_layers"])
        assert archive["output_0"].shape == (360, 10)
        assert {f"tensor_{index}" for index in range(len(metadata["tensors"]))} <= set(archive.files)
    assert metadata["reference"] == {"sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest(), "of": "file"}
    assert metadata["inputs"]["names"] == ["input"]
    assert metadata["inputs"]["samples"] == 360
    assert metadata["fp8conv_version"] == fp8conv.__version__
    assert read_metadata(runs["golden"]) == metadata


def test_the_stored_outputs_are_the_fp8_reference_s(runs):
    x = np.load(EVAL)["input"]
    expected = ReferenceRunner(fp8conv.load(MODEL).model).run({"input": x[:16]})["logits"]
    with np.load(runs["golden"], allow_pickle=False) as archive:
        np.testing.assert_allclose(archive["output_0"][:16], expected, rtol=1e-5, atol=1e-5)


def test_the_saved_file_is_byte_identical_across_runs(runs):
    again = runs["tmp"] / "again.npz"
    _convert(runs["tmp"], "again", "--save-outputs", again)
    assert again.read_bytes() == runs["golden"].read_bytes()
    assert not list(runs["tmp"].glob(".*.tmp"))  # written atomically: no temporary file left


def test_the_report_says_the_reference_was_loaded(runs):
    loaded, saved = runs["loaded"], runs["saved"]
    digest = hashlib.sha256(runs["golden"].read_bytes()).hexdigest()
    golden = loaded["provenance"]["golden_outputs"]
    assert golden["mode"] == "loaded"
    assert golden["sha256"] == digest == loaded["provenance"]["files"]["golden_outputs"]["sha256"]
    assert golden["samples"] == 360
    assert golden["tensors"] == len(read_metadata(runs["golden"])["tensors"])
    assert "golden outputs loaded from" in loaded["reference"]["numerics"]
    assert saved["provenance"]["golden_outputs"]["mode"] == "saved"
    assert saved["provenance"]["golden_outputs"]["sha256"] == digest
    assert "golden_outputs" not in runs["plain"]["provenance"]
    for document in (loaded, saved, runs["plain"]):
        assert document["schema_version"] == "1.3"
        validate_report(document)
    report = runs["tmp"] / "report"
    assert "Reference outputs loaded from `" in (report / "report.md").read_text()
    assert "the FP8 reference was not run" in (report / "report.html").read_text()


def test_the_terminal_says_the_reference_was_loaded(runs):
    outcome = _invoke(
        MODEL, "--data", CALIB, "--verify-data", EVAL, "-o", runs["tmp"] / "t.onnx", "--load-outputs", runs["golden"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "reference outputs loaded from" in outcome.stdout
    assert "the FP8 reference was not run" in outcome.stdout


def test_fp8conv_verify_loads_what_the_convert_path_saved(runs):
    candidate = runs["tmp"] / "saved.onnx"
    fresh = _invoke("verify", MODEL, candidate, "--data", EVAL, "--json")
    loaded = _invoke("verify", MODEL, candidate, "--data", EVAL, "--json", "--load-outputs", runs["golden"])
    assert fresh.exit_code == loaded.exit_code == 0, loaded.output
    assert _numbers(json.loads(loaded.stdout)) == _numbers(json.loads(fresh.stdout))


def test_outputs_only_round_trip(runs):
    tmp = runs["tmp"]
    _, plain = _convert(tmp, "o1", "--no-per-layer")
    _, _ = _convert(tmp, "o2", "--no-per-layer", "--save-outputs", tmp / "outputs.npz")
    _, loaded = _convert(tmp, "o3", "--no-per-layer", "--load-outputs", tmp / "outputs.npz")
    assert read_metadata(tmp / "outputs.npz")["tensors"] == []
    assert _numbers(loaded) == _numbers(plain)
    assert loaded["layers"] == []
    # the full file serves an outputs-only comparison too (its tensors are not read); its outputs are those the
    # reference computed while its tensors were captured, which can round differently in the last bits (the
    # captures keep onnxruntime from fusing float ops), so they are the per-layer run's outputs
    _, from_full = _convert(tmp, "o4", "--no-per-layer", "--load-outputs", runs["golden"])
    assert from_full["layers"] == []
    assert from_full["outputs"] == runs["plain"]["outputs"]
    for got, fresh in zip(from_full["outputs"], plain["outputs"], strict=True):
        assert got["sqnr_db"] == pytest.approx(fresh["sqnr_db"], abs=0.05)


def test_random_inputs_round_trip_and_another_seed_is_other_inputs(runs):
    tmp = runs["tmp"]
    args = ("verify", MODEL, tmp / "saved.onnx", "--random-inputs", 40, "--seed", 3, "--json")
    fresh = _invoke(*args)
    assert fresh.exit_code in (0, 1), fresh.output  # random inputs may fail a gate: the file is written all the same
    assert _invoke(*args, "--save-outputs", tmp / "random.npz").exit_code == fresh.exit_code
    loaded = _invoke(*args, "--load-outputs", tmp / "random.npz")
    assert loaded.exit_code == fresh.exit_code, loaded.output
    assert _numbers(json.loads(loaded.stdout)) == _numbers(json.loads(fresh.stdout))
    other = ("verify", MODEL, tmp / "saved.onnx", "--random-inputs", 40, "--seed", 4)
    refused_in_one_line(_invoke(*other, "--load-outputs", tmp / "random.npz"), "random.npz", "other inputs")


# --- refusals: exit 2, one line, nothing written ---------------------------------------------------------------


def test_loading_against_another_model_is_refused_before_anything_is_written(runs):
    tmp = runs["tmp"]
    output, report = tmp / "other.onnx", tmp / "other-report"
    outcome = _quiet(
        CAST, "--data", CALIB, "--verify-data", EVAL, "-o", output, "--report", report, "--load-outputs", runs["golden"]
    )
    refused_in_one_line(outcome, str(runs["golden"]), "another reference model", "sha256")
    assert not output.exists()
    assert not report.exists()
    verify = _invoke("verify", CAST, tmp / "saved.onnx", "--data", EVAL, "--load-outputs", runs["golden"])
    refused_in_one_line(verify, "another reference model")


def test_loading_against_other_data_is_refused_and_nothing_is_written(runs):
    tmp = runs["tmp"]
    output, report = tmp / "otherdata.onnx", tmp / "otherdata-report"
    outcome = _quiet(
        MODEL,
        "--data",
        CALIB,
        "--verify-data",
        CALIB,
        "-o",
        output,
        "--report",
        report,
        "--load-outputs",
        runs["golden"],
    )
    refused_in_one_line(outcome, str(runs["golden"]), "other inputs", "360 samples", "64")
    assert not output.exists()
    assert not report.exists()
    # the same samples, one changed
    x = np.load(EVAL)["input"].copy()
    x[7, 0, 0, 0] += 1.0
    np.savez(tmp / "changed.npz", input=x)
    changed = _invoke(
        "verify", MODEL, tmp / "saved.onnx", "--data", tmp / "changed.npz", "--load-outputs", runs["golden"]
    )
    refused_in_one_line(changed, "other inputs")


def test_a_file_without_the_tensors_the_per_layer_comparison_needs_is_refused(runs):
    tmp = runs["tmp"]
    _convert(tmp, "p1", "--no-per-layer", "--save-outputs", tmp / "no-tensors.npz")
    output = tmp / "p2.onnx"
    outcome = _quiet(
        MODEL, "--data", CALIB, "--verify-data", EVAL, "-o", output, "--load-outputs", tmp / "no-tensors.npz"
    )
    refused_in_one_line(outcome, "no-tensors.npz", "no intermediate tensors", "--no-per-layer")
    assert not output.exists()


def test_a_file_that_lacks_some_tensors_names_them(runs, tmp_path):
    metadata = read_metadata(runs["golden"])
    with np.load(runs["golden"], allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    dropped = metadata["tensors"].pop()  # the last tensor, whose array is the last entry
    del arrays[f"tensor_{len(metadata['tensors'])}"]
    arrays[METADATA_KEY] = np.array([json.dumps(metadata)])
    np.savez(tmp_path / "partial.npz", **arrays)
    outcome = _invoke(
        "verify", MODEL, runs["tmp"] / "saved.onnx", "--data", EVAL, "--load-outputs", tmp_path / "partial.npz"
    )
    refused_in_one_line(outcome, "partial.npz", "lacks 1 intermediate tensor", repr(dropped), "--no-per-layer")


def test_a_file_that_is_no_golden_outputs_file_is_refused(runs, tmp_path):
    refused_in_one_line(
        _invoke("verify", MODEL, runs["tmp"] / "saved.onnx", "--data", EVAL, "--load-outputs", EVAL),
        "eval.npz",
        "not an fp8conv golden-outputs file",
    )
    missing = tmp_path / "missing.npz"
    refused_in_one_line(
        _invoke("verify", MODEL, runs["tmp"] / "saved.onnx", "--data", EVAL, "--load-outputs", missing),
        "missing.npz",
        "no such file",
    )


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (("--save-outputs", "g.npz", "--load-outputs", "g.npz"), ("--save-outputs", "exclude each other")),
        (("--save-outputs", "a.npz", "--load-outputs", "b.npz"), ("--save-outputs", "exclude each other")),
        (("--load-outputs", "g.npz", "--no-verify"), ("--load-outputs", "--no-verify")),
        (("--save-outputs", "g.npz", "--no-verify"), ("--save-outputs", "--no-verify")),
        (("--providers", "CPUExecutionProvider", "--no-verify"), ("--providers", "--no-verify")),
        (("--save-outputs", str(CALIB)), ("--save-outputs", "--data", "overwrite")),
        (("--save-outputs", str(MODEL)), ("--save-outputs", "MODEL", "overwrite")),
        (("--save-outputs", "out.onnx"), ("--save-outputs", "--output", "overwrite")),
    ],
)
def test_contradictions_are_refused_in_one_line(tmp_path, monkeypatch, extra, parts):
    monkeypatch.chdir(tmp_path)
    outcome = _quiet(MODEL, "--data", CALIB, "-o", "out.onnx", *extra)
    refused_in_one_line(outcome, *parts)
    assert not (tmp_path / "out.onnx").exists()
    assert not (tmp_path / "g.npz").exists()


def test_saving_over_the_default_output_or_an_input_of_verify_is_refused(runs, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(MODEL.read_bytes())
    default_output = tmp_path / "m.int8.onnx"
    refused_in_one_line(_quiet(model, "--data", CALIB, "--save-outputs", default_output), "m.int8.onnx", "overwrite")
    assert not default_output.exists()
    candidate = runs["tmp"] / "saved.onnx"
    before = candidate.read_bytes()
    refused_in_one_line(
        _invoke("verify", MODEL, candidate, "--data", EVAL, "--save-outputs", candidate), "CANDIDATE", "overwrite"
    )
    assert candidate.read_bytes() == before


def test_the_options_come_from_a_config_file(runs, tmp_path):
    config = tmp_path / "fp8conv.yaml"
    config.write_text(f"load_outputs: {runs['golden']}\nproviders: [CPUExecutionProvider]\n")
    outcome = _invoke(
        MODEL, "--config", config, "--data", CALIB, "--verify-data", EVAL, "-o", tmp_path / "c.onnx", "--json"
    )
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.stdout)
    assert document["provenance"]["golden_outputs"]["mode"] == "loaded"
    assert _numbers(document) == _numbers(runs["plain"])


# --- execution providers ---------------------------------------------------------------------------------------


def test_an_unknown_or_unavailable_provider_is_refused_listing_the_available_ones(runs, tmp_path):
    available = ", ".join(ort.get_available_providers())
    output = tmp_path / "p.onnx"
    unknown = _quiet(MODEL, "--data", CALIB, "-o", output, "--providers", "NoSuchExecutionProvider")
    refused_in_one_line(unknown, "--providers", "NoSuchExecutionProvider is unknown to onnxruntime", available)
    assert not output.exists()
    missing = next(name for name in ort.get_all_providers() if name not in ort.get_available_providers())
    verify = _invoke("verify", MODEL, runs["tmp"] / "saved.onnx", "--data", EVAL, "--providers", missing)
    refused_in_one_line(verify, f"{missing} is not available here", available)


def test_the_cpu_provider_given_explicitly_is_the_default(runs, tmp_path):
    _, explicit = _convert(tmp_path, "cpu", "--providers", "CPUExecutionProvider")
    assert _numbers(explicit) == _numbers(runs["plain"])
    for document in (explicit, runs["plain"]):
        providers = document["provenance"]["execution_providers"]
        assert providers["candidate"] == ["CPUExecutionProvider"]
        assert providers["candidate_session"] == ["CPUExecutionProvider"]
        assert providers["audit"] == providers["reference"] == ["CPUExecutionProvider"]


def test_the_providers_reach_the_candidate_s_sessions(runs, monkeypatch):
    from fp8conv.runtime import ort_backend

    seen: list[list[str]] = []
    real = ort_backend.ort.InferenceSession

    def recording(source, options, providers, **kwargs):
        seen.append(list(providers))
        return real(source, options, providers=providers, **kwargs)

    monkeypatch.setattr(ort_backend.ort, "InferenceSession", recording)
    fp8conv.verify(MODEL, runs["tmp"] / "saved.onnx", EVAL, providers=["CPUExecutionProvider"], per_layer=False)
    assert seen
    assert all(providers == ["CPUExecutionProvider"] for providers in seen)
    if "AzureExecutionProvider" in ort.get_available_providers():  # the one other provider of the CPU wheel
        seen.clear()
        result = fp8conv.verify(
            MODEL, runs["tmp"] / "saved.onnx", EVAL, providers="AzureExecutionProvider,CPUExecutionProvider"
        )
        assert ["AzureExecutionProvider", "CPUExecutionProvider"] in seen  # the deployed and unfused runs
        assert ["CPUExecutionProvider"] in seen  # the reference and the audit stay on CPU
        candidate = result.to_json()["provenance"]["execution_providers"]["candidate"]
        assert candidate == ["AzureExecutionProvider", "CPUExecutionProvider"]


# --- Python API --------------------------------------------------------------------------------------------------


def test_the_python_api_saves_and_loads(tmp_path):
    golden = tmp_path / "golden.npz"
    saved = fp8conv.convert_and_verify(
        MODEL, "int8", CALIB, output=tmp_path / "m.onnx", verify_data=EVAL, save_outputs=golden
    )
    loaded = fp8conv.verify(MODEL, tmp_path / "m.onnx", EVAL, load_outputs=golden)
    fresh = fp8conv.verify(MODEL, tmp_path / "m.onnx", EVAL)
    assert _numbers(loaded.to_json()) == _numbers(fresh.to_json())
    assert loaded.to_json()["provenance"]["golden_outputs"]["mode"] == "loaded"
    again = fp8conv.convert_and_verify(
        MODEL, "int8", CALIB, output=tmp_path / "n.onnx", verify_data=EVAL, load_outputs=golden
    )
    assert _numbers(again.to_json()) == _numbers(saved.to_json())  # with the conversion record: its kernel gate
    with pytest.raises(Fp8ConvError, match="another reference model"):
        fp8conv.verify(CAST, tmp_path / "m.onnx", EVAL, load_outputs=golden)
    with pytest.raises(Fp8ConvError, match="exclude each other"):
        fp8conv.verify(MODEL, tmp_path / "m.onnx", EVAL, load_outputs=golden, save_outputs=tmp_path / "x.npz")
    with pytest.raises(Fp8ConvError, match=r"save_outputs.*load_outputs.*exclude each other"):
        fp8conv.convert_and_verify(
            MODEL, "int8", CALIB, output=tmp_path / "k.onnx", load_outputs=golden, save_outputs=tmp_path / "x.npz"
        )
    with pytest.raises(Fp8ConvError, match="does nothing with verify=False"):
        fp8conv.convert_and_verify(MODEL, "int8", CALIB, output=tmp_path / "k.onnx", load_outputs=golden, verify=False)
    with pytest.raises(Fp8ConvError, match="--providers: Bogus is unknown to onnxruntime"):
        fp8conv.verify(MODEL, tmp_path / "m.onnx", EVAL, providers="Bogus")
    assert not (tmp_path / "k.onnx").exists()
    assert not (tmp_path / "x.npz").exists()


def test_an_in_memory_reference_is_hashed_by_its_canonical_serialization(tmp_path):
    proto = onnx.load(MODEL)
    candidate = tmp_path / "m.onnx"
    golden = tmp_path / "memory.npz"
    fp8conv.convert_and_verify(proto, "int8", CALIB, output=candidate, verify_data=EVAL, save_outputs=golden)
    assert read_metadata(golden)["reference"]["of"] == "canonical serialization"
    fresh = fp8conv.verify(proto, candidate, EVAL)
    loaded = fp8conv.verify(onnx.load(MODEL), candidate, EVAL, load_outputs=golden)  # an equal model, read again
    assert _numbers(loaded.to_json()) == _numbers(fresh.to_json())
    with pytest.raises(Fp8ConvError, match="another reference model"):
        fp8conv.verify(MODEL, candidate, EVAL, load_outputs=golden)  # the file: hashed as a file
    other = onnx.load(MODEL)
    other.graph.initializer[0].raw_data = bytes(len(other.graph.initializer[0].raw_data))
    with pytest.raises(Fp8ConvError, match="another reference model"):
        fp8conv.verify(other, candidate, EVAL, load_outputs=golden)
