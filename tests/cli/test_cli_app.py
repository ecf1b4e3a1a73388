"""The ``fp8conv`` group (fp8conv/cli/app.py): light --version/--help, -q/-v, the shorthand, one-line errors, exit 3."""

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

import pytest
from click.testing import CliRunner
from helpers import one_error_line, residual_cnn_file, residual_cnn_files
from paths import REPO_ROOT

import fp8conv
from fp8conv.cli import COMMANDS, cli
from fp8conv.converter import inspection
from fp8conv.errors import InternalError
from fp8conv.runtime.ort_backend import ort_log_severity

HEAVY = ("numpy", "onnx", "onnx_ir", "onnxruntime", "ml_dtypes")


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


_IMPORT_PROBE = """
import json, sys
import fp8conv
exec(sys.argv[1])
print(json.dumps({"heavy": sorted({name.partition(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))}))
"""


def _probe(code: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", code, *args, json.dumps(HEAVY)], capture_output=True, text=True, env=env, cwd=REPO_ROOT
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


# -- -q/--quiet and -v/--verbose ------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["-q", "-v"], ["-v", "-q"], ["--quiet", "--verbose"], ["-vvq"]])
def test_quiet_and_verbose_exclude_each_other_in_one_line(flags):
    line = one_error_line(CliRunner().invoke(cli, [*flags, "formats"]))
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
    source = residual_cnn_file(tmp_path)
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
    assert one_error_line(error).endswith("missing.onnx: no such file")


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
    model, data = residual_cnn_files(tmp_path)
    values = {"model": model, "data": data, "out": tmp_path / "out.npz"}
    outcome = CliRunner().invoke(cli, [*flags, *(part.format(**values) for part in command)])
    assert one_error_line(outcome) == "fp8conv: error: stopped here"
    assert seen == {"progress": progress}


# -- the shorthand in --help, click's usage errors in one line -------------------------------------------


def test_top_level_help_describes_the_model_shorthand():
    outcome = CliRunner().invoke(cli, ["--help"])
    assert outcome.exit_code == 0
    assert "or: fp8conv [OPTIONS] MODEL [CONVERT OPTIONS]..." in outcome.stdout
    text = " ".join(outcome.stdout.split())
    assert "`fp8conv MODEL.onnx [OPTIONS]` is short for `fp8conv convert MODEL.onnx [OPTIONS]`" in text
    assert "-q, --quiet" in outcome.stdout


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
    line = one_error_line(CliRunner().invoke(cli, argv))
    assert line.startswith(f"fp8conv: error: {message}")
    assert line.endswith(f" (try '{command} --help')")


def test_a_first_argument_that_is_a_file_or_looks_like_one_is_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("convrt").write_bytes(b"not onnx")  # a file named like a misspelt command: converted, not refused
    assert "convrt: not a valid ONNX protobuf" in one_error_line(CliRunner().invoke(cli, ["convrt"]))
    assert one_error_line(CliRunner().invoke(cli, ["convert.onnx"])) == "fp8conv: error: convert.onnx: no such file"
    assert one_error_line(CliRunner().invoke(cli, ["model"])) == "fp8conv: error: model: no such file"


def test_a_bare_fp8conv_prints_the_help():
    outcome = CliRunner().invoke(cli, [])
    assert outcome.exit_code == 2
    assert "or: fp8conv [OPTIONS] MODEL" in outcome.stderr
    assert "Commands:" in outcome.stderr


# -- fp8conv's own bugs: exit 3 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [InternalError("layer conv1: planned int8, written float"), KeyError("conv1")], ids=["internal", "other"]
)
def test_an_unexpected_exception_is_exit_3_in_one_line_and_the_traceback_only_with_v(tmp_path, monkeypatch, error):
    source, data = residual_cnn_files(tmp_path)

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr("fp8conv.converter.pipeline.convert", broken)
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data)])
    assert outcome.exit_code == 3, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert outcome.output.startswith("fp8conv: internal error: ")
    assert ("layer conv1: planned int8" if isinstance(error, InternalError) else "KeyError: 'conv1'") in outcome.output
    assert "Traceback" not in outcome.output
    verbose = CliRunner().invoke(cli, ["-v", str(source), "--data", str(data)])
    assert verbose.exit_code == 3
    assert "Traceback" in verbose.output


# -- the command registry and the entry points ----------------------------------------------------------------


def test_every_command_module_is_registered_once():
    modules = sorted(path.stem for path in (REPO_ROOT / "fp8conv" / "cli").glob("*.py"))
    commands = sorted(module for module in modules if module not in ("__init__", "app", "output", "schema_options"))
    assert sorted(command.callback.__module__.rpartition(".")[2] for command in COMMANDS) == commands
    assert sorted(cli.commands) == sorted(command.name for command in COMMANDS)
    assert all(cli.commands[command.name] is command for command in COMMANDS)


def test_the_console_script_entry_point_runs_the_group(capsys):
    from fp8conv.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"fp8conv, version {fp8conv.__version__}\n"
