"""Results print in one line (issue 15): printing a ConversionResult or VerificationResult dumped numpy histograms."""

from __future__ import annotations

import onnx
from paths import REPO_ROOT

import fp8conv

DIGITS = REPO_ROOT / "models" / "digits_cnn"
MODEL, CALIB = DIGITS / "model.onnx", DIGITS / "calib.npz"


def test_the_results_print_a_short_line_and_say_how_to_save(tmp_path):
    result = fp8conv.convert(MODEL, data=CALIB)
    text = repr(result)
    assert text == (
        "<ConversionResult int8: 7/7 layers converted, 64 calibration samples, 0 warnings, not written (.save(path))>"
    )
    assert result.save(tmp_path / "m.onnx") is result
    assert repr(result).endswith(f"written to {tmp_path / 'm.onnx'}>")
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    verification = fp8conv.verify(MODEL, tmp_path / "m.onnx", CALIB)
    line = repr(verification)
    assert line.startswith("<VerificationResult passed: ")
    assert "SQNR logits " in line
    assert len(line) < 120
    assert "\n" not in line
    assert "array" not in line
    skipped = fp8conv.convert_and_verify(MODEL, output=tmp_path / "n.onnx")
    assert repr(skipped.verification).startswith("<VerificationResult not verified (no data to verify on")
    assert len(repr(skipped)) < 400
