"""Wall time and peak memory of fp8conv on synthetic FP8 transformers of growing size (issue 14).

Usage::

    python benchmarks/scale.py                                  # 2x1024, 10x1024, 7x2048 (100 MB, 500 MB, 1.4 GB)
    python benchmarks/scale.py --sizes 2x1024,15x2048 --cap-gb 8 --workdir /tmp/scale-models/bench

Each size ``LAYERSxHIDDEN`` is made by ``benchmarks/make_fp8_transformer.py`` (float32 weights behind
FP8 Q/DQ per output channel unless ``--weights fp8``; external data in one file; ``--samples``
calibration samples of ``--seq`` tokens) in ``WORKDIR/model-LxH/``. Then every case runs as its own
process, one after the other, with the working directory ``WORKDIR/run`` (not the model's directory):

* ``inspect``: ``fp8conv inspect MODEL``;
* ``int8 --no-verify``, ``int8``: ``fp8conv MODEL --to int8 --data CALIB -o OUT`` without and with
  verification (per-layer comparison, the default);
* ``w4a16 --no-verify``, ``w4a16``: the same with ``--to w4a16`` (gates off: the synthetic weights are not
  trained, INT4 error is not the point here);
* ``ort forward``: the plain onnxruntime forward pass of the source model by path (``ORT_ENABLE_ALL``)
  over the calibration samples in batches of 2: what running the model costs at all.

A watchdog samples the child's resident set (``/proc/PID/status`` ``VmRSS``) every 0.2 s and kills its
process group above ``--cap-gb`` (default 8: the machine is shared); peak RSS is the child's
``ru_maxrss`` from ``os.wait4``. Outputs are deleted after each case; ``--keep`` keeps the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GENERATOR = HERE / "make_fp8_transformer.py"
DEFAULT_SIZES = "2x1024,10x1024,7x2048"

_FORWARD = """
import sys, numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])["hidden_states"]
for start in range(0, len(x), 2):
    session.run(None, {"hidden_states": x[start : start + 2]})
"""


@dataclasses.dataclass
class Measurement:
    """One case of one size."""

    size: str
    model_mb: float
    case: str
    exit_code: int
    seconds: float
    peak_rss_mb: float
    killed: bool


def watched(argv: list[str], cwd: Path, cap_bytes: float, timeout: float) -> tuple[int, float, float, bool]:
    """Run ``argv`` under the RSS watchdog; (exit code, wall seconds, peak RSS in MB, killed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = cwd / "stderr.log"
    started = time.perf_counter()
    with open(log, "wb") as stderr:
        child = subprocess.Popen(
            argv, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
        )
    killed = False
    status_file = f"/proc/{child.pid}/status"
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(status_file) as handle:
                rss = next((int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:")), 0)
        except OSError:
            rss = 0
        if rss > cap_bytes or time.perf_counter() - started > timeout:
            os.killpg(child.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    errors = log.read_text(errors="replace").strip().splitlines()
    if child.returncode not in (0, 1) and errors:
        print(f"  {argv[2:4]}: exit {child.returncode}: {errors[-1]}", file=sys.stderr)
    return child.returncode, seconds, usage.ru_maxrss / 1024, killed


def cases(model: Path, calib: Path, out: Path) -> dict[str, list[str]]:
    """The command lines measured, by case name."""
    fp8conv = [sys.executable, "-m", "fp8conv"]
    convert = [*fp8conv, str(model), "--data", str(calib), "-o", str(out)]
    return {
        "inspect": [*fp8conv, "inspect", str(model)],
        "int8 --no-verify": [*convert, "--to", "int8", "--no-verify"],
        "int8": [*convert, "--to", "int8"],
        "w4a16 --no-verify": [*convert, "--to", "w4a16", "--no-verify"],
        "w4a16": [*convert, "--to", "w4a16", "--min-sqnr", "off", "--min-cosine", "off"],
        "ort forward": [sys.executable, "-c", _FORWARD, str(model), str(calib)],
    }


def measure_size(spec: str, args: argparse.Namespace) -> list[Measurement]:
    layers, hidden = (int(part) for part in spec.lower().split("x"))
    model_dir = args.workdir / f"model-{spec}"
    model = model_dir / "model.onnx"
    calib = model_dir / "model.calib.npz"
    if not model.exists():
        generate = [sys.executable, str(GENERATOR), "-o", str(model), "--layers", str(layers), "--hidden", str(hidden)]
        generate += ["--weights", args.weights, "--seq", str(args.seq), "--samples", str(args.samples)]
        code, seconds, rss, _ = watched(generate, args.workdir, args.cap_gb * 1e9, args.timeout)
        if code != 0:
            raise SystemExit(f"generating {spec} failed (exit {code})")
        print(f"{spec}: generated in {seconds:.1f} s, peak RSS {rss:.0f} MB", file=sys.stderr)
    model_mb = sum(path.stat().st_size for path in model_dir.glob("model.onnx*")) / 1e6
    run_dir = args.workdir / "run"
    run_dir.mkdir(exist_ok=True)
    out = run_dir / "out.onnx"
    results = []
    for case, argv in cases(model, calib, out).items():
        if args.cases and case not in args.cases:
            continue
        code, seconds, rss, killed = watched(argv, run_dir, args.cap_gb * 1e9, args.timeout)
        results.append(Measurement(spec, model_mb, case, code, seconds, rss, killed))
        print(
            f"{spec} {case}: exit {code}{' (killed)' if killed else ''}, {seconds:.1f} s, {rss:.0f} MB", file=sys.stderr
        )
        for path in run_dir.glob("out.onnx*"):
            path.unlink()
    if not args.keep:
        shutil.rmtree(model_dir)
    return results


def table(results: list[Measurement], cap_gb: float) -> str:
    lines = [
        "| model | MB | case | exit | wall s | peak RSS MB |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for m in results:
        code = f"killed at {cap_gb:g} GB" if m.killed else str(m.exit_code)
        lines.append(f"| {m.size} | {m.model_mb:.0f} | {m.case} | {code} | {m.seconds:.1f} | {m.peak_rss_mb:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="LAYERSxHIDDEN,... (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/scale-models/bench"))
    parser.add_argument("--weights", choices=("float", "fp8"), default="float")
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--cap-gb", type=float, default=8.0, help="kill a case above this RSS (default 8)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="kill a case after this many seconds")
    parser.add_argument("--cases", nargs="*", help="only these cases (names as in the table)")
    parser.add_argument("--keep", action="store_true", help="keep the generated models")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.sizes.split(","):
        results += measure_size(spec, args)
    print(table(results, args.cap_gb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
