"""Command-line conventions (issue 15): fast --version/--help, -q, one-line usage errors, overwrite rule, JSON views."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fp8conv

ROOT = Path(__file__).resolve().parent.parent
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
