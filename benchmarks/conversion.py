"""Conversion cost and INT8 latency: fp8conv against dequantize-to-float + onnxruntime ``quantize_static``.

Usage::

    python benchmarks/conversion.py                       # both sections, Markdown on stdout
    python benchmarks/conversion.py --repeats 3 --latency-runs 200 --workdir /tmp/fp8conv-bench
    python benchmarks/conversion.py --run fp8conv --model M.onnx --data D.npz --out O.onnx --profile P.prof

Model and data: ResNet-18 (224×224, 1000 classes) in the standard FP8 QDQ dialect from
``benchmarks/resnet18_fp8.py`` (e4m3fn, per-tensor activation Q/DQ, FP8 weight initializers with
per-output-channel scales, BN folded) and 32 standard-normal calibration images in an ``.npz``.

Section 1, conversion: every path runs in its own Python subprocess (``--run VARIANT``), one after the
other, interleaved, ``--repeats`` times; the child times its work with ``perf_counter`` (imports excluded;
the process wall time including interpreter start and imports is reported too) and the parent reads the
child's peak RSS from ``os.wait4``'s ``ru_maxrss``. Variants:

* ``fp8conv``: ``convert_file(src, dst, to="int8", data=npz, audit=True)`` with its defaults (``mse``
  ranges; calibration batches of 2 on 2 threads sharing one onnxruntime session);
* ``fp8conv-noaudit``: the same with ``audit=False``;
* ``ort``: what a user without fp8conv does: dequantize the FP8 model to float (every FP8 weight
  initializer replaced by its exact float value, every activation Q→DQ pair removed), then
  ``quant_pre_process`` and ``quantize_static`` (QDQ, ``per_channel=True``, MinMax, uint8 activations,
  int8 weights) over the same samples, fed in batches of ``--batch`` (default 8, its fastest of 4, 8 and
  16 on the 2-core machine of ``RESULTS.md``).

After the tables: fp8conv's time per pipeline stage (``ConversionResult.stage_seconds``). ``--profile``
runs one child under cProfile, which sees the main thread only (not the calibration workers).

Section 2, latency of the results on onnxruntime CPU: ``ORT_ENABLE_ALL``, batch 1, sequential execution,
``intra_op_num_threads`` = the machine's cores; ``--warmup`` runs each, then ``--latency-runs`` rounds
that run the three models once each (order rotated every round); the median per model; all that
``--latency-rounds`` times with fresh sessions, and the median over those. Also the number of
Conv/Gemm nodes that run as integer kernels (``fp8conv.runtime.audit``) and the agreement of each model's
logits with the exact FP8 reference (``ReferenceRunner``) on ``--eval-samples`` fresh images: SQNR (dB)
and top-1 agreement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import cpu_model

VARIANTS = ("fp8conv", "fp8conv-noaudit", "ort")
INPUT = "input"

# -- child side: one conversion path, timed, in its own process ------------------------------------


def vm_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmHWM``: peak RSS so far, ``VmRSS``: current)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_fp8conv(model: Path, data: Path, out: Path, audit: bool) -> dict[str, float]:
    from fp8conv.converter.pipeline import convert_file

    t0 = time.perf_counter()
    result = convert_file(model, out, to="int8", data=data, audit=audit)
    total = time.perf_counter() - t0
    phases = dict(result.stage_seconds)
    phases["other"] = total - sum(phases.values())
    return phases


def dequantize_fp8_model(src: Path, dst: Path) -> None:
    """Float model with the FP8 model's exact numbers: FP8 weights decoded × scale, activation Q→DQ removed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {out: index for index, node in enumerate(graph.node) for out in node.output}
    rename: dict[str, str] = {}
    dropped: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        if source in inits:  # FP8 weight
            codes = numpy_helper.to_array(inits[source]).astype(np.float32)
            scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1:
                scale = scale.reshape([-1 if d == axis % codes.ndim else 1 for d in range(codes.ndim)])
            new_inits.append(numpy_helper.from_array(codes * scale, node.output[0]))
            dropped.add(index)
        elif source in producers and graph.node[producers[source]].op_type == "QuantizeLinear":  # act. fake-quant
            rename[node.output[0]] = graph.node[producers[source]].input[0]
            dropped.update({index, producers[source]})
    nodes = [node for index, node in enumerate(graph.node) if index not in dropped]
    for node in nodes:
        node.input[:] = [rename.get(name, name) for name in node.input]
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    onnx.save(model, dst)


class NpzReader:
    """``CalibrationDataReader`` over an ``.npz`` (first axis = samples), ``batch`` samples per feed."""

    def __init__(self, data: Path, batch: int) -> None:
        with np.load(data, allow_pickle=False) as npz:
            self.arrays = {name: npz[name] for name in npz.files}
        self.batch = batch
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        count = len(next(iter(self.arrays.values())))
        if self.position >= count:
            return None
        start, self.position = self.position, self.position + self.batch
        return {name: array[start : self.position] for name, array in self.arrays.items()}

    def rewind(self) -> None:
        self.position = 0


def run_ort(model: Path, data: Path, out: Path, batch: int) -> dict[str, float]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    float_path = out.with_name(out.stem + ".float.onnx")
    pre_path = out.with_name(out.stem + ".pre.onnx")
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    dequantize_fp8_model(model, float_path)
    t1 = time.perf_counter()
    quant_pre_process(str(float_path), str(pre_path))
    t2 = time.perf_counter()
    quantize_static(
        pre_path,
        out,
        NpzReader(data, batch),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    t3 = time.perf_counter()
    phases.update({"dequantize": t1 - t0, "quant_pre_process": t2 - t1, "quantize_static": t3 - t2})
    return phases


def block_torch() -> None:
    """Make this process behave as if torch were not installed.

    ``onnxruntime.tools`` (imported by ``quant_pre_process`` for symbolic shape inference) imports torch
    whenever ``importlib.util.find_spec("torch")`` finds it; torch is irrelevant to the conversion, but costs
    seconds and hundreds of MiB. ``find_spec`` returns None for a ``None`` entry in ``sys.modules``.
    """
    sys.modules["torch"] = None  # type: ignore[assignment]


def import_path(variant: str, allow_torch: bool) -> None:
    """Import everything the variant's timed work would import lazily (imports are not timed)."""
    if variant == "ort":
        if not allow_torch:
            block_torch()
        import onnxruntime.quantization
        import onnxruntime.tools.symbolic_shape_infer  # noqa: F401
    else:
        import importlib
        import pkgutil

        import fp8conv.converter.pipeline
        import fp8conv.passes
        import fp8conv.runtime.audit

        for module in pkgutil.walk_packages(fp8conv.passes.__path__, "fp8conv.passes."):
            importlib.import_module(module.name)  # the dialect normalizers are imported on first use


def child(args: argparse.Namespace) -> int:
    """``--run VARIANT``: convert once, write ``{"seconds", "phases", ...}`` to ``--result``."""
    import_path(args.run, args.ort_torch)
    if args.run == "ort":

        def work() -> dict[str, float]:
            return run_ort(args.model, args.data, args.out, args.batch)
    else:

        def work() -> dict[str, float]:
            return run_fp8conv(args.model, args.data, args.out, audit=args.run == "fp8conv")

    rss_after_imports = vm_kib("VmRSS")
    modules = set(sys.modules)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    phases = profiled(work, args.profile) if args.profile else work()
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    record = {
        "variant": args.run,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "phases": phases,
        "rss_after_imports_kib": rss_after_imports,
        "vm_hwm_kib": vm_kib("VmHWM"),
        "imported_during_work": sorted({name.split(".")[0] for name in set(sys.modules) - modules}),
        "torch_loaded": sys.modules.get("torch") is not None,
    }
    if args.result:
        args.result.write_text(json.dumps(record))
    else:
        print(json.dumps(record))
    return 0


def profiled(work: Callable[[], dict[str, float]], path: Path) -> dict[str, float]:
    """Run ``work`` under cProfile, dump the stats to ``path`` and print the top functions."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    phases = profile.runcall(work)
    profile.dump_stats(path)
    stats = pstats.Stats(profile, stream=sys.stderr).strip_dirs()
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)
    return phases


# -- parent side: orchestration, latency, report ---------------------------------------------------


def prepare(workdir: Path, samples: int) -> tuple[Path, Path]:
    """Build the FP8 ResNet-18 and the calibration images (deterministic)."""
    from resnet18_fp8 import build_resnet18_fp8, write_calibration_data

    workdir.mkdir(parents=True, exist_ok=True)
    model = build_resnet18_fp8(workdir / "resnet18_fp8.onnx", fmt="e4m3fn", seed=0)
    data = write_calibration_data(workdir / f"calibration_{samples}.npz", samples)
    return model, data


def output_path(workdir: Path, variant: str) -> Path:
    return workdir / f"resnet18.{variant}.int8.onnx"


def spawn(
    variant: str,
    model: Path,
    data: Path,
    workdir: Path,
    batch: int,
    profile: Path | None = None,
    ort_torch: bool = False,
) -> dict:
    """Run one variant in a fresh interpreter; its timings plus the process's wall time and peak RSS."""
    result = workdir / f"{variant}.json"
    command = [sys.executable, __file__, "--run", variant, "--model", str(model), "--data", str(data)]
    command += ["--out", str(output_path(workdir, variant)), "--result", str(result), "--batch", str(batch)]
    command += ["--profile", str(profile)] if profile else []
    command += ["--ort-torch"] if ort_torch else []
    with open(workdir / f"{variant}.log", "w") as log:
        t0 = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - t0
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{variant} failed ({process.returncode}); see {workdir / f'{variant}.log'}")
    record = json.loads(result.read_text())
    return record | {"process_wall": wall, "peak_rss_kib": usage.ru_maxrss}


def conversions(model: Path, data: Path, workdir: Path, args: argparse.Namespace) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            runs[variant].append(spawn(variant, model, data, workdir, args.batch, ort_torch=args.ort_torch))
    return runs


def import_notes(runs: dict[str, list[dict]]) -> list[str]:
    """What each path imported inside its timed work, and whether torch was loaded."""
    lines = []
    for variant, rs in runs.items():
        late = sorted({name for r in rs for name in r["imported_during_work"]})
        torch = "yes" if any(r["torch_loaded"] for r in rs) else "no"
        rss = max(r["rss_after_imports_kib"] for r in rs)
        lines.append(
            f"- {variant}: RSS after imports {mib(rss):.0f} MiB; torch loaded: {torch}; packages first imported "
            f"inside the timed work: {', '.join(late) or 'none'}"
        )
    return lines


def mib(kib: float) -> float:
    return kib / 1024.0


def conversion_table(runs: dict[str, list[dict]]) -> tuple[list[str], dict[str, float]]:
    """Markdown rows and the ratios against the ``ort`` path (best time, max peak RSS)."""
    best = {v: min(r["seconds"] for r in rs) for v, rs in runs.items()}
    wall = {v: min(r["process_wall"] for r in rs) for v, rs in runs.items()}
    rss = {v: max(r["peak_rss_kib"] for r in rs) for v, rs in runs.items()}
    cpu = {v: min(r["cpu_seconds"] for r in rs) for v, rs in runs.items()}
    lines = [
        "| path | conversion s (best / median) | CPU s (best) | process wall s (best) | peak RSS MiB (max) | "
        "time ratio | wall ratio | RSS ratio | phases of the best run (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratios: dict[str, float] = {}
    for variant, rs in runs.items():
        fastest = min(rs, key=lambda r: r["seconds"])
        phases = ", ".join(f"{k} {v:.2f}" for k, v in fastest["phases"].items())
        median = statistics.median(r["seconds"] for r in rs)
        t_ratio, w_ratio, m_ratio = best[variant] / best["ort"], wall[variant] / wall["ort"], rss[variant] / rss["ort"]
        ratios |= {f"{variant}.time": t_ratio, f"{variant}.wall": w_ratio, f"{variant}.rss": m_ratio}
        ratios[f"{variant}.cpu"] = cpu[variant] / cpu["ort"]
        lines.append(
            f"| {variant} | {best[variant]:.2f} / {median:.2f} | {cpu[variant]:.2f} | {wall[variant]:.2f} | "
            f"{mib(rss[variant]):.0f} | "
            f"{t_ratio:.2f}× | {w_ratio:.2f}× | {m_ratio:.2f}× | {phases} |"
        )
    return lines, ratios


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    # Three sessions live in one process: with spinning on, the idle sessions' pool threads spin after
    # their runs and steal the cores from the one that runs (measured here: ~6 ms alone, 14-30 ms
    # interleaved, the ratio swinging 0.7-1.5x between rounds). Off, each model times as it does alone.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latencies(paths: dict[str, Path], warmup: int, runs: int) -> dict[str, float]:
    """Median seconds per batch-1 run of each model, runs interleaved with a rotating order."""
    sessions = {name: session(path) for name, path in paths.items()}
    feed = {INPUT: np.random.default_rng(7).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            sessions[name].run(None, feed)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((other.astype(np.float64) - reference) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / noise)


def agreement(fp8_model: Path, paths: dict[str, Path], samples: int) -> dict[str, tuple[float, float]]:
    """SQNR (dB) and top-1 agreement of each model's logits against the exact FP8 reference."""
    import fp8conv
    from fp8conv.passes.reference_runner import ReferenceRunner

    images = np.random.default_rng(3).standard_normal((samples, 3, 224, 224)).astype(np.float32)
    runner = ReferenceRunner(fp8conv.load(fp8_model).model)
    reference = np.concatenate([runner.run({INPUT: images[i : i + 1]})["logits"] for i in range(samples)])
    result = {}
    for name, path in paths.items():
        s = session(path)
        logits = np.concatenate([s.run(None, {INPUT: images[i : i + 1]})[0] for i in range(samples)])
        top1 = float(np.mean(logits.argmax(1) == reference.argmax(1)))
        result[name] = (sqnr_db(reference, logits), top1)
    return result


def kernel_counts(path: Path) -> str:
    from fp8conv.runtime.audit import audit_integer_kernels

    audit = audit_integer_kernels(path)
    by_op = ", ".join(f"{op} {c['integer']}/{c['integer'] + c['float']}" for op, c in audit.counts_by_op().items())
    kernels = sorted({r.kernel for r in audit.records})
    return f"{audit.integer_count}/{len(audit.records)} ({by_op}; kernels: {', '.join(kernels)})"


def latency_section(fp8_model: Path, workdir: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    ort_int8 = output_path(workdir, "ort")
    paths = {
        "fp8conv INT8": output_path(workdir, "fp8conv"),
        "quantize_static INT8": ort_int8,
        "FP32 (dequantized FP8)": ort_int8.with_name(ort_int8.stem + ".float.onnx"),
    }
    # Fresh sessions per round: on a shared VM one set of sessions can be 30 % off another for the same
    # model, so the table gives the median over rounds and the range of the per-round ratios.
    rounds = [latencies(paths, args.warmup, args.latency_runs) for _ in range(args.latency_rounds)]
    median = {name: statistics.median(r[name] for r in rounds) for name in paths}
    per_round = sorted(r["fp8conv INT8"] / r["quantize_static INT8"] for r in rounds)
    accuracy = agreement(fp8_model, paths, args.eval_samples)
    counts = {name: kernel_counts(path) if "INT8" in name else "0 (float model)" for name, path in paths.items()}
    lines = [
        "| model | median ms | vs quantize_static | vs FP32 | integer kernels (Conv/Gemm) | "
        f"SQNR vs FP8 ref (dB) | top-1 = FP8 ref ({args.eval_samples} imgs) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    base_q, base_f = median["quantize_static INT8"], median["FP32 (dequantized FP8)"]
    for name, seconds in median.items():
        sqnr, top1 = accuracy[name]
        lines.append(
            f"| {name} | {seconds * 1e3:.2f} | {seconds / base_q:.2f}× | {seconds / base_f:.2f}× | {counts[name]} | "
            f"{sqnr:.1f} | {top1:.0%} |"
        )
    lines.append(
        f"\nfp8conv / quantize_static per round ({args.latency_rounds} rounds of fresh sessions): "
        + ", ".join(f"{ratio:.2f}×" for ratio in per_round)
    )
    ratios = {"latency.vs_qs": median["fp8conv INT8"] / base_q, "latency.vs_fp32": median["fp8conv INT8"] / base_f}
    return lines, ratios


def goals_table(ratios: dict[str, float]) -> list[str]:
    goals = [
        ("conversion time, fp8conv (with audit) / quantize_static path", "fp8conv.time", 0.5),
        ("conversion time, fp8conv (no audit) / quantize_static path", "fp8conv-noaudit.time", 0.5),
        ("process wall, fp8conv (with audit) / quantize_static path", "fp8conv.wall", 0.5),
        ("CPU time, fp8conv (with audit) / quantize_static path (load-insensitive)", "fp8conv.cpu", 0.5),
        ("peak RSS, fp8conv (with audit) / quantize_static path", "fp8conv.rss", 1.0),
        ("peak RSS, fp8conv (no audit) / quantize_static path", "fp8conv-noaudit.rss", 1.0),
        ("INT8 latency, fp8conv / quantize_static", "latency.vs_qs", 1.05),
        ("INT8 latency, fp8conv / FP32", "latency.vs_fp32", 0.65),
    ]
    lines = ["| goal | measured | target | met |", "|---|---:|---:|:---:|"]
    for label, key, target in goals:
        if key in ratios:
            met = "yes" if ratios[key] <= target else "**no**"
            lines.append(f"| {label} | {ratios[key]:.2f}× | ≤ {target:.2f}× | {met} |")
    return lines


def header(argv: list[str]) -> list[str]:
    import onnxruntime as ort

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        "## Conversion cost and INT8 latency (`python benchmarks/conversion.py`)\n",
        f"- command: `{' '.join(['python benchmarks/conversion.py', *argv])}`",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, load before {load}",
        f"- onnxruntime {ort.__version__} (CPU EP), numpy {np.__version__}",
    ]


def stage_section(runs: dict[str, list[dict]]) -> list[str]:
    """Where fp8conv's time goes: ``ConversionResult.stage_seconds`` of each run, best and median per stage."""
    records = runs["fp8conv"]
    stages = list(records[0]["phases"])
    lines = [
        "### fp8conv stages (`ConversionResult.stage_seconds`, wall time; calibration overlaps the weight "
        "search and the sample loading, which run in a background thread)\n",
        "| stage | best s | median s | share of the median run |",
        "|---|---:|---:|---:|",
    ]
    median_run = sorted(records, key=lambda record: record["seconds"])[len(records) // 2]
    for stage in stages:
        values = [record["phases"].get(stage, 0.0) for record in records]
        share = median_run["phases"].get(stage, 0.0) / median_run["seconds"]
        lines.append(f"| {stage} | {min(values):.3f} | {statistics.median(values):.3f} | {share:.0%} |")
    return [*lines, ""]


def parent(args: argparse.Namespace, argv: list[str]) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fp8conv-bench-"))
    lines = header(argv)
    model, data = prepare(workdir, args.samples)
    lines.append(
        f"- model: ResNet-18 FP8 (e4m3fn QDQ, {model.stat().st_size / 1e6:.1f} MB); {args.samples} calibration "
        f"images; quantize_static calibrates in batches of {args.batch}, fp8conv with its defaults; "
        f"best of {args.repeats} interleaved subprocess runs; "
        "peak RSS = max over runs of the child's `ru_maxrss` (`os.wait4`)\n"
    )
    runs = conversions(model, data, workdir, args)
    rows, ratios = conversion_table(runs)
    lines += ["### Conversion (ratios against the quantize_static path)\n", *rows, "", *import_notes(runs), ""]
    if args.latency_runs > 0:
        lat_rows, lat_ratios = latency_section(model, workdir, args)
        ratios |= lat_ratios
        lines += [
            f"### INT8 latency (onnxruntime CPU, ORT_ENABLE_ALL, batch 1, {os.cpu_count()} intra-op threads, "
            f"{args.warmup} warm-up runs, median of {args.latency_runs} interleaved runs, median of "
            f"{args.latency_rounds} rounds of fresh sessions)\n",
            *lat_rows,
            "",
        ]
    lines += ["### Goals\n", *goals_table(ratios), ""]
    lines += stage_section(runs)
    lines.append(f"load after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; work dir {workdir}\n")
    print("\n".join(lines))
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where models, data and outputs go (default: a temp dir)")
    parser.add_argument("--samples", type=int, default=32, help="calibration images")
    parser.add_argument(
        "--batch", type=int, default=8, help="calibration batch of the quantize_static path (its fastest of 4/8/16)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="subprocess runs per conversion path")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--latency-runs", type=int, default=100, help="0 skips the latency section")
    parser.add_argument("--latency-rounds", type=int, default=5, help="rounds of fresh sessions (median taken)")
    parser.add_argument("--eval-samples", type=int, default=32, help="images for the SQNR / top-1 check")
    child_options = parser.add_argument_group("child mode (one conversion in this process)")
    child_options.add_argument("--run", choices=VARIANTS)
    child_options.add_argument("--model", type=Path)
    child_options.add_argument("--data", type=Path)
    child_options.add_argument("--out", type=Path)
    child_options.add_argument("--result", type=Path, help="write the JSON record here (default: stdout)")
    child_options.add_argument("--profile", type=Path, help="run under cProfile (main thread only), dump stats here")
    parser.add_argument(
        "--ort-torch",
        action="store_true",
        help="let the quantize_static path import torch as onnxruntime.tools does when torch is installed "
        "(default: hidden, as on a machine without torch)",
    )
    args = parser.parse_args(argv)
    if args.run and not (args.model and args.data and args.out):
        parser.error("--run needs --model, --data and --out")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    return child(args) if args.run else parent(args, argv)


if __name__ == "__main__":
    sys.exit(main())
