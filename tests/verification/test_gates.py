"""``Gates.from_settings`` (fp8conv/verification/gates.py): defaults, then a config file, then the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fp8conv import options
from fp8conv.errors import Fp8ConvError
from fp8conv.verification.gates import DEFAULT_THRESHOLDS, Gates


def _settings(document: dict[str, object], command_line: dict[str, object]) -> options.Settings:
    file = options.file_layer("convert", Path("/configs/fp8conv.yaml"), document)
    return options.Settings("convert", "cli", [file, options.command_line_layer("convert", command_line)])


def test_the_command_line_overrides_only_the_gate_and_output_it_names():
    document = {"gates": {"min_sqnr": 30, "min_cosine": {"logits": 0.9}}, "max_abs_err": 0.5}
    gates = Gates.from_settings(_settings(document, {"min_sqnr": ("logits:25",), "min_cosine": ("off",)}))
    assert gates.threshold("min_sqnr", "logits").value == 25.0  # the flag, for the output it names
    assert gates.threshold("min_sqnr", "probs").value == 30.0  # the file's global value stays
    assert gates.threshold("min_cosine", "probs").value is None  # the flag turned the global one off
    assert gates.threshold("min_cosine", "logits").value == 0.9  # the file's per-output value stays
    assert gates.threshold("max_abs_err", "probs").value == 0.5  # a gate key of the file
    assert gates.threshold("min_sqnr", "logits").source == "cli"
    assert gates.threshold("max_abs_err", "probs").source == "config"


def test_no_gate_given_is_the_defaults():
    gates = Gates.from_settings(_settings({}, {}))
    assert gates == Gates.default()
    assert gates.global_threshold("min_sqnr") == DEFAULT_THRESHOLDS["min_sqnr"]


def test_a_bad_gate_of_a_config_file_names_the_file():
    with pytest.raises(Fp8ConvError, match=r"^/configs/fp8conv.yaml: gate min_sqnr: 'loud'"):
        Gates.from_settings(_settings({"gates": {"min_sqnr": "loud"}}, {}))
