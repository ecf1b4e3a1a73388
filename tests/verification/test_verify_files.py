"""``verify_files`` (fp8conv/verification/verify_files.py): what ``fp8conv verify`` runs."""

from __future__ import annotations

import pytest
from helpers import residual_cnn_files

from fp8conv.converter.loading import ParsedModel
from fp8conv.errors import Fp8ConvError
from fp8conv.verification import verify as verify_module
from fp8conv.verification.gates import Gates
from fp8conv.verification.verify_files import verify_files


def test_the_reference_is_parsed_once_and_handed_to_verify(tmp_path, monkeypatch):
    model, data = residual_cnn_files(tmp_path)
    seen = {}

    def recording(reference, candidate, data, **kwargs):
        seen.update(reference=reference, candidate=candidate, data=data, kwargs=kwargs)
        return "verified"

    monkeypatch.setattr(verify_module, "verify", recording)
    assert verify_files(model, model, data, gates=Gates.default(), seed=3, random_inputs=None) == "verified"
    assert isinstance(seen["reference"], ParsedModel)  # not the path: verify() does not read it again
    assert (seen["candidate"], seen["data"]) == (model, data)
    assert seen["kwargs"] == {"gates": Gates.default(), "seed": 3, "random_inputs": None}


def test_the_checks_come_before_verify(tmp_path, monkeypatch):
    model, data = residual_cnn_files(tmp_path)
    monkeypatch.setattr(verify_module, "verify", lambda *args, **kwargs: pytest.fail("verified first"))
    gates = Gates.default().with_specs("min_sqnr", ["nosuch:20"])
    with pytest.raises(Fp8ConvError, match="gates name output"):
        verify_files(model, model, data, gates=gates)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(Fp8ConvError, match="cannot write the reports"):
        verify_files(model, model, data, gates=Gates.default(), report_dir=tmp_path / "a_file" / "report")


def test_an_unreadable_reference_is_the_loaders_error(tmp_path):
    _, data = residual_cnn_files(tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(Fp8ConvError, match=r"broken\.onnx: not a valid ONNX protobuf"):
        verify_files(tmp_path / "broken.onnx", tmp_path / "model.onnx", data, gates=Gates.default())
