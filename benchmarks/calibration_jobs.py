"""Calibration wall time with --jobs 1, 2, 4 (local processes), and whether every file is the same bytes.

Usage::

    python benchmarks/calibration_jobs.py                         # seq_transformer and a 4x512 synthetic transformer
    python benchmarks/calibration_jobs.py --jobs 1 2 4 --samples 1024 --synthetic 4x512 --seq 64 --repeat 2

Models: ``models/seq_transformer/model.onnx`` with its ``calib.npz`` grown to ``--samples`` samples (copies with
their tokens shuffled), and a
synthetic FP8 decoder (``benchmarks/make_fp8_transformer.py``, ``LAYERSxHIDDEN``, ``--seq`` tokens,
``--synthetic-samples`` standard-normal samples) written to a temporary directory. For each model and
``--jobs`` value, ``convert(MODEL, "int8", DATA, jobs=N)`` runs in this process; the time is its
``calibration`` stage (spawning the worker processes, opening the reference in each, counting, merging; not
the parent's reference session, the same for every N), the best of ``--repeat`` runs. Every output is
serialized and compared with the ``--jobs 1`` output byte for byte.

Also measured, once per model, what a worker must do before it counts (the choice of
:class:`~fp8conv.runtime.reference.PortableReference`): open the reference from the lowered model's bytes
(what the workers do; the bytes travel once per process) against loading the source by path, planning and
lowering it again (load + plan + ReferenceRunner).

The CPUs the process may use (its affinity: run under ``taskset -c 0-3`` for a 4-core machine) decide the
threads; the load average is printed, since a shared machine's other work slows every N.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import cpu_model  # noqa: E402

from fp8conv import load  # noqa: E402
from fp8conv.config import ConversionConfig  # noqa: E402
from fp8conv.converter.collection import StatisticsCollector  # noqa: E402
from fp8conv.converter.pipeline import convert  # noqa: E402
from fp8conv.converter.shards import available_cpus  # noqa: E402
from fp8conv.passes.plan import plan_conversion  # noqa: E402

SEQ_TRANSFORMER = HERE.parent / "models" / "seq_transformer"


def tiled(path: Path, samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of ``path`` grown to ``samples`` samples: copies whose tokens (axis 1) are shuffled per sample.

    Every copy after the first is a new set of sequences of the same tokens, so the shards see different
    values (identical copies would give every shard the same histogram shape, which hides a merge error).
    """
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "labels"}
    count = len(next(iter(arrays.values())))
    rng = np.random.default_rng(seed)
    grown = {key: [value] for key, value in arrays.items()}
    for _ in range(1, -(-samples // count)):
        order = np.argsort(rng.random((count, next(iter(arrays.values())).shape[1])), axis=1)
        for key, value in arrays.items():
            grown[key].append(np.take_along_axis(value, order.reshape(*order.shape, *[1] * (value.ndim - 2)), axis=1))
    return {key: np.concatenate(parts)[:samples] for key, parts in grown.items()}


def synthetic(folder: Path, spec: str, seq: int, samples: int) -> tuple[Path, Path]:
    """Write the synthetic transformer ``LAYERSxHIDDEN`` and its calibration data into ``folder``."""
    import make_fp8_transformer as generator

    layers, hidden = (int(part) for part in spec.split("x"))
    model = folder / f"synthetic-{spec}.onnx"
    generator.write(generator.build(layers=layers, hidden=hidden, seq=seq), model)
    data = folder / f"synthetic-{spec}.calib.npz"
    np.savez(data, **generator.calibration(samples=samples, seq=seq, hidden=hidden))
    return model, data


def worker_setup(model: Path) -> tuple[float, float, int]:
    """(seconds to open the portable reference, seconds to load + plan + lower by path, bytes sent per worker)."""
    began = time.perf_counter()
    loaded = load(model).model
    config = ConversionConfig()
    collector = StatisticsCollector(loaded, plan_conversion(loaded, config), config)
    by_path = time.perf_counter() - began
    portable = collector.runner.portable()
    size = len(pickle.dumps(portable))
    began = time.perf_counter()
    portable.open(intra_op_threads=1)
    return time.perf_counter() - began, by_path, size


def measure(name: str, model: Path, data: Path, jobs: list[int], repeat: int) -> list[str]:
    """Table rows for one model."""
    rows = []
    reference_bytes = None
    baseline = None
    for count in jobs:
        best = float("inf")
        for _ in range(repeat):
            result = convert(model, "int8", data, jobs=count)
            best = min(best, result.stage_seconds["calibration"])
            serialized = ir.to_proto(result.model).SerializeToString()
        digest = hashlib.sha256(serialized).hexdigest()[:16]
        if reference_bytes is None:
            reference_bytes, baseline = serialized, best
        same = "yes" if serialized == reference_bytes else "**NO**"
        rows.append(
            f"| {name} | {result.calibration_samples} | {count} | {best:.2f} | {baseline / best:.2f}× | {same} "
            f"| `{digest}` |"
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--samples", type=int, default=1024, help="seq_transformer samples (calib.npz tiled)")
    parser.add_argument("--synthetic", default="4x512", help="LAYERSxHIDDEN of the synthetic transformer ('' skips)")
    parser.add_argument("--seq", type=int, default=64, help="tokens per synthetic sample")
    parser.add_argument("--synthetic-samples", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    if args.jobs[0] != 1:
        parser.error("--jobs must start with 1 (the reference for the speedups and the bytes)")
    print(
        f"# {cpu_model()}; {available_cpus()} CPUs in this process's affinity ({os.cpu_count()} online); "
        f"load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    rows = [
        "| model | samples | --jobs | calibration s | speedup | same bytes | sha256 |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    print("\n".join(rows), flush=True)
    with tempfile.TemporaryDirectory(prefix="fp8conv-jobs-") as tmp:
        folder = Path(tmp)
        data = folder / "seq_transformer.calib.npz"
        np.savez(data, **tiled(SEQ_TRANSFORMER / "calib.npz", args.samples))
        cases = [("seq_transformer", SEQ_TRANSFORMER / "model.onnx", data)]
        if args.synthetic:
            model, calib = synthetic(folder, args.synthetic, args.seq, args.synthetic_samples)
            cases.append((f"synthetic {args.synthetic} seq {args.seq}", model, calib))
        setups = []
        for name, model, calib in cases:
            rows += measure(name, model, calib, args.jobs, args.repeat)
            opened, by_path, size = worker_setup(model)
            setups.append(
                f"- {name}: a worker opens the reference from its bytes in {opened:.2f} s ({size / 1e6:.2f} MB "
                f"pickled, once per process); loading, planning and lowering the source by path takes {by_path:.2f} s"
            )
            print(setups[-1], flush=True)
    print(f"# load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
