"""Throughput of exact FP8 reference execution (``ReferenceRunner``) against plain float32 onnxruntime.

Usage::

    python benchmarks/reference_execution.py                 # batch 1 and 8, every variant
    python benchmarks/reference_execution.py --repeats 30 --batches 1 8 32

The model is ResNet-18 (224×224, 1000 classes) built in code with random He-initialised weights and a
bias per conv (batch norm folded). The FP8 variants are in canonical form: every conv/fc input activation
is fake-quantized per tensor (scale = amax / max, amax measured on a float run of a random batch) and every
conv/fc weight per output channel, all in one format: e4m3fn with the runner's default lowering (float
ops), e4m3fn lowered to QuantizeLinear/DequantizeLinear (``native_qdq=True``), or ``minifloat(3, 4)``
(float ops). The baseline is the same network without quantizers on an
``ORT_ENABLE_ALL`` session. Both run on the CPU execution provider with onnxruntime's default threads, one
session each, inputs fixed; each measurement is ``--warmup`` runs then ``--repeats`` timed runs, alternating
the two sessions so both see the same machine load. Throughput is images/s from the median (and the best)
run; the ratio is reference / float32 (median). Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from machine import cpu_model

from fp8conv import fp8
from fp8conv.passes.canonical import CANONICAL_DOMAIN, QuantSpec, make_fake_quantize
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.runtime.ort_backend import create_session

STAGES = [(64, 1), (128, 2), (256, 2), (512, 2)]  # (channels, stride of the first block)
VARIANTS = {  # label: (format, native_qdq)
    "e4m3fn": (fp8.FORMATS["e4m3fn"], False),
    "e4m3fn-qdq": (fp8.FORMATS["e4m3fn"], True),
    "e3m4-minifloat": (fp8.minifloat(3, 4), False),
}


class ResNetBuilder:
    """ResNet-18 as an onnx_ir graph; ``fmt`` None builds the float model, else the canonical FP8 one."""

    def __init__(self, fmt: fp8.FloatFormat | None, act_scales: dict[str, float] | None, seed: int = 0) -> None:
        self.fmt = fmt
        self.act_scales = act_scales or {}
        self.rng = np.random.default_rng(seed)
        self.nodes: list[ir.Node] = []
        self.initializers: list[ir.Value] = []
        self.quantized: dict[str, ir.Value] = {}
        self.activations: list[str] = []  # tensors that feed a conv/fc, in order

    def const(self, name: str, array: np.ndarray) -> ir.Value:
        value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
        self.initializers.append(value)
        return value

    def op(self, op_type: str, inputs: list[ir.Value], name: str, **attrs: object) -> ir.Value:
        node = ir.node(op_type, inputs, attrs or None, outputs=[ir.Value(name=name)], name=name)
        self.nodes.append(node)
        return node.outputs[0]

    def fake_quantize(self, value: ir.Value, scale: np.ndarray, axis: int | None = None) -> ir.Value:
        assert self.fmt is not None
        s = self.const(f"{value.name}_scale", np.asarray(scale, np.float32))
        node = make_fake_quantize(value, s, QuantSpec(self.fmt, axis=axis), source="benchmark", name=f"{value.name}_fq")
        node.outputs[0].name = f"{value.name}_dequantized"
        self.nodes.append(node)
        return node.outputs[0]

    def activation(self, value: ir.Value) -> ir.Value:
        """The tensor a conv/fc reads: fake-quantized once per tensor in the FP8 variant."""
        assert value.name is not None
        if value.name not in self.activations:
            self.activations.append(value.name)
        if self.fmt is None:
            return value
        if value.name not in self.quantized:
            self.quantized[value.name] = self.fake_quantize(value, np.float32(self.act_scales[value.name]))
        return self.quantized[value.name]

    def weight(self, name: str, shape: tuple[int, ...]) -> ir.Value:
        fan_in = int(np.prod(shape[1:]))
        w = (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        value = self.const(name, w)
        if self.fmt is None:
            return value
        amax = np.abs(w).reshape(shape[0], -1).max(axis=1)
        return self.fake_quantize(value, (amax / self.fmt.max_value).astype(np.float32), axis=0)

    def conv(self, x: ir.Value, out_channels: int, kernel: int, stride: int, name: str) -> ir.Value:
        in_channels = self.channels[x.name]
        w = self.weight(f"{name}.weight", (out_channels, in_channels, kernel, kernel))
        b = self.const(f"{name}.bias", (self.rng.standard_normal(out_channels) * 0.05).astype(np.float32))
        pad = kernel // 2
        y = self.op(
            "Conv",
            [self.activation(x), w, b],
            name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
        )
        self.channels[y.name] = out_channels
        return y

    def relu(self, x: ir.Value, name: str) -> ir.Value:
        y = self.op("Relu", [x], name)
        self.channels[y.name] = self.channels[x.name]
        return y

    def block(self, x: ir.Value, channels: int, stride: int, name: str) -> ir.Value:
        out = self.relu(self.conv(x, channels, 3, stride, f"{name}.conv1"), f"{name}.relu1")
        out = self.conv(out, channels, 3, 1, f"{name}.conv2")
        shortcut = (
            x
            if stride == 1 and self.channels[x.name] == channels
            else self.conv(x, channels, 1, stride, f"{name}.downsample")
        )
        added = self.op("Add", [out, shortcut], f"{name}.add")
        self.channels[added.name] = channels
        return self.relu(added, f"{name}.relu2")

    def build(self) -> ir.Model:
        self.channels: dict[str | None, int] = {"input": 3}
        x = ir.Value(name="input", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["batch", 3, 224, 224]))
        y = self.relu(self.conv(x, 64, 7, 2, "stem.conv"), "stem.relu")
        y = self.op("MaxPool", [y], "stem.pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        self.channels[y.name] = 64
        for stage, (channels, stride) in enumerate(STAGES, start=1):
            y = self.block(y, channels, stride, f"layer{stage}.0")
            y = self.block(y, channels, 1, f"layer{stage}.1")
        pooled = self.op("GlobalAveragePool", [y], "pool")
        flat = self.op("Flatten", [pooled], "flatten")
        self.channels[flat.name] = 512
        fc_w = self.weight("fc.weight", (1000, 512))
        fc_b = self.const("fc.bias", np.zeros(1000, np.float32))
        logits = self.op("Gemm", [self.activation(flat), fc_w, fc_b], "logits", transB=1)
        logits.type, logits.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape(["batch", 1000])
        opsets = {"": 21} if self.fmt is None else {"": 21, CANONICAL_DOMAIN: 1}
        graph = ir.Graph([x], [logits], nodes=self.nodes, initializers=self.initializers, opset_imports=opsets)
        return ir.Model(graph, ir_version=10)


def calibrate(batch: np.ndarray) -> dict[str, float]:
    """amax of every conv/fc input activation on a float run (the weights are the same: same seed)."""
    builder = ResNetBuilder(None, None)
    model = builder.build()
    produced = {value.name: value for node in model.graph for value in node.outputs}
    model.graph.outputs.extend(produced[name] for name in builder.activations if name in produced)
    session = create_session(model)
    names = [value.name for value in model.graph.outputs]
    results = dict(zip(names, session.run(names, {"input": batch}), strict=True))
    scales = {name: float(np.abs(results[name]).max()) for name in builder.activations if name in results}
    scales["input"] = float(np.abs(batch).max())
    return scales


def measure(run: Callable[[], object], warmup: int) -> Callable[[], float]:
    for _ in range(warmup):
        run()

    def timed() -> float:
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    return timed


def compare(reference: Callable[[], object], baseline: Callable[[], object], warmup: int, repeats: int):
    """Median and best seconds of each, runs interleaved."""
    timers = [measure(reference, warmup), measure(baseline, warmup)]
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for index, timer in enumerate(timers):
            times[index].append(timer())
    return [(statistics.median(t), min(t)) for t in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(1)
    calibration = rng.standard_normal((4, 3, 224, 224)).astype(np.float32)
    act_amax = calibrate(calibration)
    baseline_model = ResNetBuilder(None, None).build()
    baseline_session = create_session(baseline_model, optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL)

    print("## Reference execution (`python benchmarks/reference_execution.py`)\n")
    command = " ".join(["python benchmarks/reference_execution.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"- command: `{command}`")
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} {platform.machine()}, load {load}")
    print(f"- onnxruntime {ort.__version__} (CPU EP, default threads), numpy {np.__version__}")
    print(
        f"- model: ResNet-18 224×224, random weights; FP8 variants quantize {len(act_amax)} activations per tensor "
        "and 21 conv/fc weights per output channel; "
        f"{args.warmup} warm-up runs, {args.repeats} timed runs per row, interleaved with the float32 baseline\n"
    )
    print("| variant | lowering | batch | reference img/s (median / best) | float32 img/s (median / best) | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for label in args.variants:
        fmt, native_qdq = VARIANTS[label]
        scales = {name: amax / fmt.max_value for name, amax in act_amax.items()}
        runner = ReferenceRunner(ResNetBuilder(fmt, scales).build(), native_qdq=native_qdq)
        lowering = "Q/DQ" if "QuantizeLinear" in {n.op_type for n in runner.model.graph} else "float ops"
        for batch in args.batches:
            feeds = {"input": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
            reference_logits = runner.run(feeds)["logits"]
            baseline_logits = baseline_session.run(["logits"], feeds)[0]
            if not (np.isfinite(reference_logits).all() and np.isfinite(baseline_logits).all()):
                raise SystemExit(f"{label} batch {batch}: non-finite logits")
            (ref_median, ref_best), (base_median, base_best) = compare(
                lambda feeds=feeds, runner=runner: runner.run(feeds),
                lambda feeds=feeds: baseline_session.run(["logits"], feeds),
                args.warmup,
                args.repeats,
            )
            ratio = base_median / ref_median
            print(
                f"| {label} | {lowering} | {batch} | {batch / ref_median:.1f} / {batch / ref_best:.1f} | "
                f"{batch / base_median:.1f} / {batch / base_best:.1f} | {ratio:.2f} |"
            )
    print(f"\nload after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
