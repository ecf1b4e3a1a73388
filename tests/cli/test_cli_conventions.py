"""Command-line conventions (issue 15): fast --version/--help, -q, one-line usage errors, overwrite rule, JSON views."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fp8_models import residual_cnn
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import cli
from fp8conv.config import ConversionConfig
from fp8conv.converter import inspection
from fp8conv.passes.overrides import LayerNames, select_overrides
from fp8conv.runtime.formats import FORMATS
from fp8conv.runtime.ort_backend import ort_log_severity

ROOT = REPO_ROOT
HEAVY = ("numpy", "onnx", "onnx_ir", "onnxruntime", "ml_dtypes")

# ``python -m fp8conv ARGV`` run in one process (runpy), then the heavy packages that process imported.
_PROBE = """
import json, runpy, sys
argv, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["fp8conv", *argv]
code = 0
try:
    runpy.run_module("fp8conv", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "heavy": sorted({name.partition(".")[0] for name in sys.modules} & set(heavy))}))
"""

# ``import fp8conv``, then an optional statement, then the heavy packages imported.
_IMPORT_PROBE = """
import json, sys
import fp8conv
exec(sys.argv[1])
print(json.dumps({"heavy": sorted({name.partition(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))}))
"""


def _probe(code: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", code, *args, json.dumps(HEAVY)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- --version and --help import nothing heavy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code"), [(["--version"], 0), (["--help"], 0), (["-h"], 0), ([], 2)], ids=["version", "help", "h", "bare"]
)
def test_version_and_help_import_neither_onnx_nor_onnxruntime_nor_numpy(argv, code):
    outcome = _probe(_PROBE, json.dumps(argv))
    assert outcome["code"] == code, outcome
    assert outcome["heavy"] == [], f"fp8conv {' '.join(argv)} imported {outcome['heavy']}"


def test_the_probes_see_a_heavy_import():
    # An empty list above means something: the same probes see what a command or a public name imports.
    outcome = _probe(_PROBE, json.dumps(["inspect", "no-such-model.onnx"]))
    assert outcome["code"] == 2
    assert {"onnx", "onnx_ir"} <= set(outcome["heavy"])
    assert {"onnx", "onnx_ir", "numpy"} <= set(_probe(_IMPORT_PROBE, "fp8conv.load")["heavy"])


def test_import_fp8conv_is_lazy_and_the_public_names_resolve():
    assert _probe(_IMPORT_PROBE, "pass")["heavy"] == []
    assert _probe(_IMPORT_PROBE, "fp8conv.__version__, fp8conv.Fp8ConvError")["heavy"] == []
    for name in fp8conv.__all__:
        assert getattr(fp8conv, name) is not None, name
        assert name in dir(fp8conv)
    from fp8conv import convert, fp8
    from fp8conv.converter.pipeline import convert as defined

    assert convert is defined
    assert fp8 is sys.modules["fp8conv.fp8"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fp8conv.nope  # noqa: B018


# -- -q/--quiet ----------------------------------------------------------------------------------------------


def _model(tmp_path: Path, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    onnx.save(residual_cnn(), str(path))
    return path


def _one_error_line(outcome) -> str:
    """The one line a bad input or usage error prints: on stderr, nothing on stdout, exit code 2."""
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("fp8conv: error: ")
    assert "Usage:" not in outcome.stderr
    return lines[0]


@pytest.mark.parametrize("flags", [["-q", "-v"], ["-v", "-q"], ["--quiet", "--verbose"], ["-vvq"]])
def test_quiet_and_verbose_exclude_each_other_in_one_line(flags):
    line = _one_error_line(CliRunner().invoke(cli, [*flags, "formats"]))
    assert line == "fp8conv: error: -q/--quiet and -v/--verbose exclude each other (try 'fp8conv --help')"


@pytest.mark.parametrize(
    ("flags", "level", "severity"),
    [([], logging.WARNING, 3), (["-q"], logging.ERROR, 4), (["-v"], logging.INFO, 2), (["-vv"], logging.DEBUG, 1)],
)
def test_the_verbosity_flags_set_fp8convs_log_level_and_onnxruntimes_severity(monkeypatch, flags, level, severity):
    seen = {}

    def fake_inspect(model):
        seen["level"] = logging.getLogger("fp8conv").getEffectiveLevel()
        seen["severity"] = ort_log_severity()
        return SimpleNamespace(to_text=lambda: "inspected")

    monkeypatch.setattr(inspection, "inspect", fake_inspect)
    before = logging.getLogger("fp8conv").level
    outcome = CliRunner().invoke(cli, [*flags, "inspect", "model.onnx"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout == "inspected\n"
    assert seen == {"level": level, "severity": severity}
    assert logging.getLogger("fp8conv").level == before  # restored when the command ends


def test_quiet_leaves_only_errors_on_stderr(tmp_path):
    source = _model(tmp_path)
    loud = CliRunner().invoke(cli, [str(source), "-o", str(tmp_path / "loud.bin")])
    assert loud.exit_code == 0, loud.output
    assert "fp8conv: warning: " in loud.stderr
    assert "note: verification skipped" in loud.stderr
    quiet = CliRunner().invoke(cli, ["-q", str(source), "-o", str(tmp_path / "quiet.bin")])  # the shorthand too
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    timeless = [re.sub(r"time [0-9.]+ s", "time", out.stdout) for out in (loud, quiet)]
    assert timeless[1] == timeless[0].replace("loud.bin", "quiet.bin")  # the result itself is not quieter
    assert (tmp_path / "quiet.bin").read_bytes() == (tmp_path / "loud.bin").read_bytes()
    error = CliRunner().invoke(cli, ["-q", str(tmp_path / "missing.onnx")])
    assert _one_error_line(error).endswith("missing.onnx: no such file")


def _data(tmp_path: Path) -> Path:
    graph_input = residual_cnn().graph.input[0]
    shape = [dim.dim_value or 1 for dim in graph_input.type.tensor_type.shape.dim]
    path = tmp_path / "data.npz"
    np.savez(path, **{graph_input.name: np.random.default_rng(0).standard_normal([2, *shape[1:]]).astype(np.float32)})
    return path


@pytest.mark.parametrize(
    ("command", "module", "function"),
    [
        (["convert", "{model}", "--data", "{data}"], "fp8conv.verification.convert_and_verify", "convert_and_verify"),
        (["verify", "{model}", "{model}", "--data", "{data}"], "fp8conv.verification.verify", "verify"),
        (["run", "{model}", "--data", "{data}", "-o", "{out}"], "fp8conv.converter.reference_run", "run_reference"),
    ],
    ids=["convert", "verify", "run"],
)
@pytest.mark.parametrize(("flags", "progress"), [([], True), (["-q"], False)], ids=["default", "quiet"])
def test_quiet_turns_the_progress_bars_off(tmp_path, monkeypatch, command, module, function, flags, progress):
    seen = {}

    def stop(*args, **kwargs):
        seen["progress"] = kwargs["progress"]
        raise fp8conv.Fp8ConvError("stopped here")

    monkeypatch.setattr(importlib.import_module(module), function, stop)
    values = {"model": _model(tmp_path), "data": _data(tmp_path), "out": tmp_path / "out.npz"}
    outcome = CliRunner().invoke(cli, [*flags, *(part.format(**values) for part in command)])
    assert _one_error_line(outcome) == "fp8conv: error: stopped here"
    assert seen == {"progress": progress}


def test_run_reference_draws_no_bar_when_told_not_to(tmp_path, monkeypatch):
    import fp8conv.converter.reference_run as reference_run

    disabled = []
    real = reference_run.tqdm

    def recording(*args, **kwargs):
        disabled.append(kwargs["disable"])
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_run, "tqdm", recording)
    model, data = _model(tmp_path), _data(tmp_path)
    reference_run.run_reference(model, data, tmp_path / "a.npz")
    reference_run.run_reference(model, data, tmp_path / "b.npz", progress=False)
    assert disabled == [None, True]  # None: tqdm's own rule, a bar only on a terminal


# -- the shorthand in --help ------------------------------------------------------------------------------


def test_top_level_help_describes_the_model_shorthand():
    outcome = CliRunner().invoke(cli, ["--help"])
    assert outcome.exit_code == 0
    assert "or: fp8conv [OPTIONS] MODEL [CONVERT OPTIONS]..." in outcome.stdout
    text = " ".join(outcome.stdout.split())
    assert "`fp8conv MODEL.onnx [OPTIONS]` is short for `fp8conv convert MODEL.onnx [OPTIONS]`" in text
    assert "-q, --quiet" in outcome.stdout


# -- click's usage errors in one line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message", "command"),
    [
        (["convert"], "missing argument 'MODEL'", "fp8conv convert"),
        (["inspect"], "missing argument 'MODEL'", "fp8conv inspect"),
        (["convert", "m.onnx", "--bogus"], "no such option '--bogus'", "fp8conv convert"),
        (
            ["m.onnx", "--keep-flot", "x"],
            "no such option '--keep-flot'; did you mean '--keep-float'",
            "fp8conv convert",
        ),
        (["--bogus"], "no such option '--bogus'", "fp8conv"),
        (
            ["convert", "m.onnx", "--to", "int9"],
            "invalid value for '--to': 'int9' is not one of 'int8'",
            "fp8conv convert",
        ),
        (["m.onnx", "--activations-range", "max"], "invalid value for '--activations-range': 'max'", "fp8conv convert"),
        (["convert", "m.onnx", "--max-samples", "0"], "invalid value for '--max-samples': 0", "fp8conv convert"),
        (["run", "m.onnx", "-o", "o.npz"], "missing option '--data'", "fp8conv run"),
        (["inspect", "m.onnx", "--json=1"], "option '--json' does not take a value", "fp8conv inspect"),
        (["verify", "a.onnx", "b.onnx"], "give --data DATA.npz (or, explicitly, --random-inputs N)", "fp8conv verify"),
        (["convrt", "m.onnx"], "no such command 'convrt'; did you mean 'convert'?", "fp8conv"),
        (["inpsect", "m.onnx"], "no such command 'inpsect'; did you mean 'inspect'?", "fp8conv"),
        (["-v", "verfy", "a", "b"], "no such command 'verfy'; did you mean 'verify'?", "fp8conv"),
        (["formts"], "no such command 'formts'; did you mean 'formats'?", "fp8conv"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_commands_help(tmp_path, monkeypatch, argv, message, command):
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(CliRunner().invoke(cli, argv))
    assert line.startswith(f"fp8conv: error: {message}")
    assert line.endswith(f" (try '{command} --help')")


def test_a_first_argument_that_is_a_file_or_looks_like_one_is_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("convrt").write_bytes(b"not onnx")  # a file named like a misspelt command: converted, not refused
    assert "convrt: not a valid ONNX protobuf" in _one_error_line(CliRunner().invoke(cli, ["convrt"]))
    assert _one_error_line(CliRunner().invoke(cli, ["convert.onnx"])) == "fp8conv: error: convert.onnx: no such file"
    assert _one_error_line(CliRunner().invoke(cli, ["model"])) == "fp8conv: error: model: no such file"


def test_a_bare_fp8conv_prints_the_help():
    outcome = CliRunner().invoke(cli, [])
    assert outcome.exit_code == 2
    assert "or: fp8conv [OPTIONS] MODEL" in outcome.stderr
    assert "Commands:" in outcome.stderr


# -- overwriting an existing output ------------------------------------------------------------------------


def test_an_existing_output_is_replaced_and_a_failed_run_leaves_it_as_it_was(tmp_path):
    source = _model(tmp_path)
    before = source.read_bytes()
    output = tmp_path / "out.onnx"
    output.write_bytes(b"an older conversion")
    done = CliRunner().invoke(cli, [str(source), "-o", str(output), "--no-verify"])
    assert done.exit_code == 0, done.output
    converted = output.read_bytes()
    assert onnx.load_from_string(converted).graph.node  # the new model took its place
    again = CliRunner().invoke(cli, [str(source), "-o", str(output), "--no-verify"])  # a rerun: no flag needed
    assert again.exit_code == 0, again.output
    assert output.read_bytes() == converted
    output.write_bytes(b"an older conversion")
    failed = CliRunner().invoke(cli, [str(source), "-o", str(output), "--keep-float", "no_such_layer"])
    assert "matches no layer" in _one_error_line(failed)
    assert output.read_bytes() == b"an older conversion"
    refused = CliRunner().invoke(cli, [str(source), "-o", str(source)])
    assert _one_error_line(refused).endswith("the output would overwrite the input model")
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "out.onnx"]  # no temporaries left


def test_convert_help_states_the_overwrite_rule():
    text = " ".join(CliRunner().invoke(cli, ["convert", "--help"]).stdout.split())
    assert "An existing output file is replaced without asking" in text
    assert "MODEL itself is never overwritten (exit 2)" in text


@pytest.mark.parametrize(
    ("name", "warned"), [("out.bin", True), ("out", True), ("out.onnx", False), ("OUT.ONNX", False)]
)
def test_an_output_without_the_onnx_suffix_is_written_with_a_warning(tmp_path, name, warned):
    source = _model(tmp_path)
    outcome = CliRunner().invoke(cli, [str(source), "-o", str(tmp_path / name), "--no-verify"])
    assert outcome.exit_code == 0, outcome.output
    assert onnx.load(str(tmp_path / name)).graph.node
    warnings = [line for line in outcome.stderr.splitlines() if line.startswith("fp8conv: warning: ")]
    if warned:
        assert warnings == [
            f"fp8conv: warning: {tmp_path / name}: the output has "
            + (f"suffix {Path(name).suffix!r}" if Path(name).suffix else "no suffix")
            + ", not '.onnx'; writing an ONNX model there all the same"
        ]
    else:
        assert warnings == []


# -- formats --json ------------------------------------------------------------------------------------------


def test_formats_json_states_every_formats_facts():
    outcome = CliRunner().invoke(cli, ["formats", "--json"])
    assert outcome.exit_code == 0
    document = json.loads(outcome.stdout)
    assert document["schema_version"] == "1.0"
    entries = {entry["name"]: entry for entry in document["formats"]}
    assert list(entries) == list(FORMATS)
    for name, entry in entries.items():
        fmt = FORMATS[name]
        assert entry["bits"] == 1 + entry["exponent_bits"] + entry["mantissa_bits"] - (not entry["has_sign"])
        assert (entry["exponent_bits"], entry["mantissa_bits"], entry["bias"]) == (
            fmt.exponent_bits,
            fmt.mantissa_bits,
            fmt.bias,
        )
        assert entry["has_inf"] == (entry["style"] == "ieee")
        assert entry["has_nan"] == (entry["style"] != "none")
        assert entry["min_subnormal"] <= entry["min_normal"] <= 1.0 < entry["max_value"]
    # The numbers against an independent source: ml_dtypes' finfo, and what a cast of +Inf gives.
    for name, entry in entries.items():
        dtype = getattr(ml_dtypes, f"float{entry['bits']}_{name}")
        info = ml_dtypes.finfo(dtype)
        assert entry["max_value"] == float(info.max), name
        assert entry["min_normal"] == float(info.smallest_normal), name
        assert entry["min_subnormal"] == float(info.smallest_subnormal), name
        inf = np.array(np.inf, np.float32).astype(dtype).astype(np.float32)
        assert entry["has_inf"] == bool(np.isinf(inf)), name
    assert entries["e4m3fn"] | {"onnx_type": None} == {
        "name": "e4m3fn",
        "bits": 8,
        "exponent_bits": 4,
        "mantissa_bits": 3,
        "bias": 7,
        "max_value": 448.0,
        "min_normal": 2.0**-6,
        "min_subnormal": 2.0**-9,
        "style": "fn",
        "has_inf": False,
        "has_nan": True,
        "has_sign": True,
        "has_subnormal": True,
        "has_zero": True,
        "onnx_type": None,
    }
    assert entries["e4m3fn"]["onnx_type"] == onnx.TensorProto.FLOAT8E4M3FN


# -- inspect: the names the override patterns search -----------------------------------------------------------


def test_inspect_lists_every_name_the_override_patterns_match():
    source = ROOT / "tests" / "corpus" / "transformer.dynamo_noopt.onnx"
    document = json.loads(CliRunner().invoke(cli, ["inspect", "--json", str(source)]).stdout)
    text = CliRunner().invoke(cli, ["inspect", str(source)]).stdout
    layers = [LayerNames(l["node"], l["op_type"], tuple(l["weights"]), l["output"]) for l in document["layers"]]  # noqa: E741
    assert any(len(layer.weights) > 1 for layer in layers)  # names on the weight's path beyond the stored one
    rows = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0].startswith("node_")}
    for index, (layer, entry) in enumerate(zip(layers, document["layers"], strict=True)):
        assert entry["names"] == list(dict.fromkeys([layer.node, *layer.weights, layer.output]))
        row = rows[layer.node].replace(",", " ").split()
        assert set(entry["names"]) <= set(row), (row, entry["names"])  # every name is in the table's row
        for name in entry["names"]:  # and each one is what a pattern selects the layer by
            selected = select_overrides(layers, ConversionConfig(keep_float=(f"^{re.escape(name)}$",)))
            assert selected[index], name
