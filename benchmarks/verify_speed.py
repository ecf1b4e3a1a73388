"""Verification time and memory against the plain onnxruntime forward passes it needs (issue 14).

Usage::

    python benchmarks/verify_speed.py                                   # seq_transformer, digits_cnn, MiniLM
    python benchmarks/verify_speed.py --minilm /tmp/placement/minilm_ptq --samples 512 --repeat 2
    python benchmarks/verify_speed.py --baseline /tmp/main-src          # also time another fp8conv tree

For every model (``models/seq_transformer``, ``models/digits_cnn`` and, when ``--minilm DIR`` holds
``model.onnx`` and ``eval.npz``, the ModelOpt-PTQ MiniLM), the INT8 candidate is made once with
``fp8conv MODEL --to int8 --data CALIB --no-verify`` into ``--workdir`` (never into the repository) and the
evaluation data is tiled (or cut) to ``--samples`` samples. Then, each in its own process, one after the
other, ``--repeat`` times in turn:

* ``forward``: the plain onnxruntime forward passes verification needs, over the same data in the same
  batches (``--batch-size``, verification's default 16) with onnxruntime's default threads, as verification
  runs them: the FP8 reference as fp8conv lowers it (``ReferenceRunner``, no captures), the deployed INT8
  candidate (``ORT_ENABLE_ALL``) and the unfused candidate (``ORT_DISABLE_ALL``), graph outputs only. Only the
  ``run`` calls are timed (the sessions are made first); their sum is the denominator of the ratios.
* ``verify --no-layers`` and ``verify`` (per-layer comparison): ``python -m fp8conv verify REF CAND --data
  DATA --json``, timed as a whole process (start-up, loading, sessions, integer-kernel audit and report
  included).

Peak RSS is each child's ``ru_maxrss`` (``os.wait4``). ``--memory-samples 32,1024`` adds per-layer
``verify`` runs of the largest model on those sample counts: verification memory should not grow with
samples (with ``--memory-baseline``, for ``--baseline`` too).
``--baseline SRC`` runs the two ``verify`` cases with the fp8conv package found in ``SRC`` as well,
in turn with the current tree, so that before/after ratios see the same machine load. The table is printed
as Markdown; ``--json PATH`` writes the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_FORWARD = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
from fp8conv.converter.loading import load
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.runtime.ort_backend import create_session

reference, candidate, data, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
arrays = dict(np.load(data))
arrays.pop("labels", None)
count = len(next(iter(arrays.values())))
batches = [{k: v[i : i + size] for k, v in arrays.items()} for i in range(0, count - count % size, size)]
runner = ReferenceRunner(load(reference).model)
deployed = create_session(candidate)
unfused = create_session(candidate, optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
times = {}
for name, run in (
    ("reference", runner.run),
    ("deployed", lambda feeds: deployed.run(None, feeds)),
    ("unfused", lambda feeds: unfused.run(None, feeds)),
):
    started = time.perf_counter()
    for feeds in batches:
        run(feeds)
    times[name] = time.perf_counter() - started
print(json.dumps(times))
"""


def run_child(argv: list[str], src: Path) -> tuple[int, float, float, str]:
    """Run ``argv`` with ``src`` first on PYTHONPATH; (exit code, wall seconds, peak RSS MB of the child, stdout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"verify_speed.{os.getpid()}.out"
    with open(out_path, "w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    out_path.unlink()
    return process.returncode, seconds, usage.ru_maxrss / 1024, stdout


def tiled(source: Path, target: Path, samples: int) -> Path:
    """``source``'s arrays tiled (or cut) along the first axis to ``samples`` samples, saved at ``target``."""
    arrays = dict(np.load(source))
    count = len(next(iter(arrays.values())))
    reps = -(-samples // count)
    np.savez(target, **{k: np.concatenate([v] * reps)[:samples] for k, v in arrays.items()})
    return target


def prepare(name: str, model: Path, calib: Path, evaluation: Path, workdir: Path, samples: int) -> dict[str, Path]:
    """The model, its INT8 candidate (converted once) and the data of ``samples`` samples."""
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    candidate = folder / "model.int8.onnx"
    if not candidate.exists():
        argv = [sys.executable, "-m", "fp8conv", "-q", str(model), "--to", "int8", "--data", str(calib)]
        code, _, _, _ = run_child([*argv, "-o", str(candidate), "--no-verify"], ROOT)
        if code != 0:
            raise SystemExit(f"{name}: conversion failed (exit {code})")
    return {
        "reference": model,
        "candidate": candidate,
        "data": tiled(evaluation, folder / f"eval{samples}.npz", samples),
    }


def verify_argv(paths: dict[str, Path], data: Path, per_layer: bool) -> list[str]:
    argv = [sys.executable, "-m", "fp8conv", "verify", str(paths["reference"]), str(paths["candidate"])]
    return [*argv, "--data", str(data), "--json", *([] if per_layer else ["--no-layers"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minilm", type=Path, default=Path("/tmp/placement/minilm_ptq"))
    parser.add_argument("--samples", type=int, default=512, help="samples of MiniLM (the others: their eval.npz)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/verify-speed"))
    parser.add_argument("--baseline", type=Path, help="another source tree holding an fp8conv package to time too")
    parser.add_argument("--memory-samples", default="32,1024", help="sample counts of the memory runs ('' skips)")
    parser.add_argument("--memory-baseline", action="store_true", help="the memory runs with --baseline too")
    parser.add_argument("--models", default="seq_transformer,digits_cnn,minilm")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    models: dict[str, tuple[Path, Path, Path, int]] = {}
    for name in args.models.split(","):
        if name == "minilm":
            if (args.minilm / "model.onnx").exists():
                folder = args.minilm
                models[name] = (folder / "model.onnx", folder / "calib.npz", folder / "eval.npz", args.samples)
            else:
                print(f"(no MiniLM in {args.minilm}: skipped)", file=sys.stderr)
        else:
            folder = ROOT / "models" / name
            count = len(next(iter(np.load(folder / "eval.npz").values())))
            models[name] = (folder / "model.onnx", folder / "calib.npz", folder / "eval.npz", count)

    trees = {"current": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
    rows: list[dict[str, object]] = []
    for name, (model, calib, evaluation, samples) in models.items():
        paths = prepare(name, model, calib, evaluation, args.workdir, samples)
        for repeat in range(args.repeat):
            argv = [sys.executable, "-c", _FORWARD, str(paths["reference"]), str(paths["candidate"])]
            code, wall, rss, out = run_child([*argv, str(paths["data"]), str(args.batch_size)], ROOT)
            if code != 0:
                raise SystemExit(f"{name}: forward passes failed (exit {code})")
            forward = json.loads(out.strip().splitlines()[-1])
            row: dict[str, object] = {"model": name, "samples": samples, "repeat": repeat, "forward": forward}
            row["forward_s"] = sum(forward.values())
            row["forward_rss_mb"] = rss
            print(f"{name} forward: {json.dumps(forward)}", file=sys.stderr, flush=True)
            for tree, src in trees.items():
                for case, per_layer in (("outputs", False), ("layers", True)):
                    code, wall, rss, _ = run_child(verify_argv(paths, paths["data"], per_layer), src)
                    if code not in (0, 1):  # 1: a gate failed, which is a verdict, not a failure
                        raise SystemExit(f"{name}: verify ({tree}, {case}) failed (exit {code})")
                    row[f"{tree}_{case}_s"], row[f"{tree}_{case}_rss_mb"] = wall, rss
                    print(f"{name} {tree} {case}: {wall:.1f} s, {rss:.0f} MB", file=sys.stderr, flush=True)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    memory: list[dict[str, object]] = []
    if args.memory_samples and models:
        name = "minilm" if "minilm" in models else next(iter(models))
        model, calib, evaluation, _ = models[name]
        paths = prepare(name, model, calib, evaluation, args.workdir, args.samples)
        for samples in [int(s) for s in args.memory_samples.split(",")]:
            data = tiled(evaluation, args.workdir / name / f"eval{samples}.npz", samples)
            for tree, src in trees.items() if args.memory_baseline else [("current", ROOT)]:
                code, wall, rss, _ = run_child(verify_argv(paths, data, True), src)
                memory.append({"model": name, "samples": samples, "tree": tree, "seconds": wall, "rss_mb": rss})
                print(json.dumps(memory[-1]), file=sys.stderr, flush=True)

    load = os.getloadavg()
    print(f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {platform.machine()}, nproc {os.cpu_count()}")
    print(f"- load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
    print(f"- command: `python benchmarks/verify_speed.py {' '.join(sys.argv[1:])}`".replace("  ", " "))
    print()
    header = "| model | samples | run | forward s (ref + dep + unf) | verify --no-layers s (×) | verify s (×) |"
    header += " RSS MB: forward / --no-layers / verify |"
    print(header)
    print("| --- | ---: | ---: | --- | ---: | ---: | --- |")
    for row in rows:
        f = row["forward"]
        for tree in trees:
            forward_s = float(row["forward_s"])  # type: ignore[arg-type]
            outputs_s, layers_s = float(row[f"{tree}_outputs_s"]), float(row[f"{tree}_layers_s"])  # type: ignore[arg-type]
            label = f"{row['repeat']}" + ("" if tree == "current" else f" ({tree})")
            print(
                f"| {row['model']} | {row['samples']} | {label} | {forward_s:.2f} ({f['reference']:.2f} + "  # type: ignore[index]
                f"{f['deployed']:.2f} + {f['unfused']:.2f}) | {outputs_s:.2f} ({outputs_s / forward_s:.2f}×) | "  # type: ignore[index]
                f"{layers_s:.2f} ({layers_s / forward_s:.2f}×) | {float(row['forward_rss_mb']):.0f} / "  # type: ignore[arg-type]
                f"{float(row[f'{tree}_outputs_rss_mb']):.0f} / {float(row[f'{tree}_layers_rss_mb']):.0f} |"  # type: ignore[arg-type]
            )
    if memory:
        print()
        print("| model | samples | tree | verify (per layer) s | peak RSS MB |")
        print("| --- | ---: | --- | ---: | ---: |")
        for entry in memory:
            print(
                f"| {entry['model']} | {entry['samples']} | {entry['tree']} | {float(entry['seconds']):.1f} | "  # type: ignore[arg-type]
                f"{float(entry['rss_mb']):.0f} |"  # type: ignore[arg-type]
            )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
