"""Build the corpus of real FP8 exports: two tiny float networks, exported to FP8 ONNX by each real tool.

Run in the exporters' own virtual environment (see README.md beside this file)::

    /work/corpus-venv/bin/python tests/corpus/build.py

Writes, beside this file:

* ``<net>_calib.npz`` / ``<net>_eval.npz``: the fixed calibration and evaluation inputs of each network,
  keyed by graph input name (``input``), first axis = samples;
* ``<net>.<tool>.onnx``: the FP8 export, as the tool wrote it (never edited afterwards);
* ``<net>.<tool>.outputs.npz``: the tool's own FP8 outputs on the evaluation inputs, keyed by graph
  output name (torch-side tools: the quantized torch module in eager mode; ONNX-side tools: onnxruntime
  running the file with every graph optimization disabled);
* ``manifest.json``: one entry per file (tool, version, network, expected dialects, tolerance, counts);
  ``failures`` lists the exports a tool could not produce, with the error.

Everything is seeded: the same packages give the same files.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx.external_data_helper
import onnxruntime as ort
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
SAMPLES = 24
GRID = 32.0  # inputs are multiples of 1/GRID: they compress well and are exact in every float format
OPSET = 17
FP8_MAX = 448.0
NETWORKS = ("cnn", "transformer")
INPUT = "input"
OUTPUT = "logits"
FP8_TYPES = {onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ, onnx.TensorProto.FLOAT8E5M2}

logging.basicConfig(level=logging.WARNING)
warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------------------------------
# The float networks


class Cnn(nn.Module):
    """Conv-BN-Relu, MaxPool, a residual block (Add), Conv-BN-Relu, GlobalAveragePool, Linear head."""

    def __init__(self, width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv4 = nn.Conv2d(width, 2 * width, 3, padding=1, stride=2)
        self.bn4 = nn.BatchNorm2d(2 * width)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        y = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(x + self.bn3(self.conv3(y)))
        x = torch.relu(self.bn4(self.conv4(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Transformer(nn.Module):
    """One pre-LayerNorm transformer block (single-head attention, Gelu FFN), mean-pool, Linear head."""

    def __init__(self, dim: int = 16, hidden: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn1 = nn.Linear(dim, hidden)
        self.ffn2 = nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, classes)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        attention = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        x = x + self.o(torch.matmul(attention, v))
        x = x + self.ffn2(nn.functional.gelu(self.ffn1(self.ln2(x))))
        return self.head(x.mean(dim=1))


INPUT_SHAPES = {"cnn": (3, 8, 8), "transformer": (4, 16)}
# Conv/MatMul/Gemm the float network exports to, and those with a weight (Linear: MatMul/Gemm).
LAYERS = {"cnn": 5, "transformer": 9}
WEIGHT_MATMULS = {"cnn": 1, "transformer": 7}
WEIGHT_LAYERS = {"cnn": 5, "transformer": 7}  # Conv + Linear: the layers torch-side tools quantize


def build_network(net: str) -> nn.Module:
    """The seeded float network, BatchNorm statistics from a few train-mode passes on random data (CNN head
    bias zero)."""
    torch.manual_seed(SEED)
    model = Cnn() if net == "cnn" else Transformer()
    generator = torch.Generator().manual_seed(SEED + 1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
    if net == "cnn":
        model.train()
        with torch.no_grad():
            # The head's random bias is larger than the spread of the pooled features: with it, almost every
            # image gets the same class and the top-1 criteria would not discriminate.
            model.head.bias.zero_()
            for _ in range(10):
                model(torch.randn(16, *INPUT_SHAPES[net], generator=generator) * 1.5 + 0.3)
    return model.eval()


def make_inputs(net: str) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and evaluation inputs on a 1/32 grid: seeded normal samples, for the CNN with a
    per-sample gain and per-channel offset (i.i.d. noise images all look alike after global pooling,
    which would make every image's logits nearly the same)."""
    rng = np.random.default_rng(SEED + (0 if net == "cnn" else 100))
    shape = (SAMPLES, *INPUT_SHAPES[net])
    sets = []
    for _ in range(2):
        x = rng.standard_normal(shape)
        if net == "cnn":
            x = x * rng.uniform(0.5, 2.0, (SAMPLES, 1, 1, 1)) + rng.normal(0.0, 0.75, (SAMPLES, 3, 1, 1))
        sets.append((np.round(x * GRID) / GRID).astype(np.float32))
    return sets[0], sets[1]


# --------------------------------------------------------------------------------------------------
# Helpers


def version(package: str) -> str:
    return importlib.metadata.version(package)


def eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float32)


def torchscript_export(model: nn.Module, x: np.ndarray, path: Path | io.BytesIO, **kwargs) -> None:
    kwargs.setdefault("opset_version", OPSET)
    kwargs.setdefault("dynamic_axes", {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    torch.onnx.export(
        model,
        (torch.from_numpy(x[:1]),),
        path,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamo=False,
        **kwargs,
    )


def ort_outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime on the file with every graph optimization disabled (executes the QDQ graph literally)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return run_session(session, x)


def run_session(session: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    (graph_input,) = session.get_inputs()
    batch = graph_input.shape[0]
    step = batch if isinstance(batch, int) and batch > 0 else len(x)
    names = [o.name for o in session.get_outputs()]
    chunks = [session.run(names, {graph_input.name: x[i : i + step]}) for i in range(0, len(x), step)]
    return {name: np.concatenate([c[k] for c in chunks]).astype(np.float32) for k, name in enumerate(names)}


def eager_outputs(model: nn.Module, path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The torch module's outputs, named by the file's single graph output."""
    (output,) = onnx.load(str(path), load_external_data=False).graph.output
    return {output.name: eager(model, x)}


class Reader:
    """onnxruntime/Quark calibration data reader: one sample per call."""

    def __init__(self, x: np.ndarray, name: str = INPUT) -> None:
        self._samples = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)

    def rewind(self) -> None:  # Quark calls it between passes
        pass


def count_ops(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        key = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
        counts[key] = counts.get(key, 0) + 1
    return counts


def fp8_quantizers(path: Path) -> int:
    """FP8 quantizer nodes of the file, counted by op type (one quantization point each).

    QuantizeLinear with a float8 zero point or output_dtype, DequantizeLinear over a float8
    initializer (weights stored in FP8), trt::TRT_FP8QuantizeLinear, qonnx FloatQuant, Cast to float8.
    """
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = attribute.t.data_type
    count = 0
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "QuantizeLinear":
            zp_type = types.get(node.input[2]) if len(node.input) > 2 else None
            out_type = attrs["output_dtype"].i if "output_dtype" in attrs else None
            count += zp_type in FP8_TYPES or out_type in FP8_TYPES
        elif node.op_type == "DequantizeLinear":
            count += types.get(node.input[0]) in FP8_TYPES
        elif node.op_type in ("TRT_FP8QuantizeLinear", "FloatQuant"):
            count += 1
        elif node.op_type == "Cast":
            count += attrs["to"].i in FP8_TYPES
    return count


def dq_fed_layers(path: Path) -> tuple[int, int, int]:
    """Conv/MatMul/Gemm whose two first inputs both come from DequantizeLinear (ONNX-side tools).

    Returns (all such layers, those whose weight is a constant: an initializer behind the DQ, directly
    or through a QuantizeLinear; and the MatMul/Gemm among those).
    """
    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {t.name for t in graph.initializer}

    def constant_behind(dq: onnx.NodeProto) -> bool:
        source = dq.input[0]
        quantize = producers.get(source)
        return source in initializers or (quantize is not None and quantize.input[0] in initializers)

    layers = weights = matmuls = 0
    for node in graph.node:
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            sources = [producers.get(name) for name in node.input[:2]]
            if all(s is not None and s.op_type == "DequantizeLinear" for s in sources):
                layers += 1
                if constant_behind(sources[1]):
                    weights += 1
                    matmuls += node.op_type != "Conv"
    return layers, weights, matmuls


def file_size(path: Path) -> int:
    return path.stat().st_size


# --------------------------------------------------------------------------------------------------
# Tolerances: per-sample error e_i = max|fp8conv_i - tool_i| / max|tool_i| over the sample's outputs.
# A sample is "close" when e_i <= close; at least min_close_fraction of the samples must be close and
# every sample must have e_i <= max. An FP8 rounding flip (a value within a float32 ulp of a rounding
# midpoint, rounded the other way because the float ops before the quantizer summed in another order)
# moves one element of one sample by one FP8 step; a wrong scale, format, saturation or a missed
# quantizer moves every sample.

TOLERANCES = {
    "onnxruntime": {
        "close": 1e-6,
        "min_close_fraction": 0.9,
        "max": 2e-3,
        "why": "onnxruntime (every optimization off) computes the file's own graph; the exact FP8 reference "
        "differs only where onnxruntime's fused float kernels (Gemm, Conv+Add, LayerNorm) sum in another order, "
        "which flips an FP8 rounding in rare samples (one flip moved one CNN sample by 4e-4 of its range)",
    },
    "torch": {
        "close": 1e-6,
        "min_close_fraction": 0.75,
        "max": 5e-3,
        "why": "the tool's users get torch eager numbers: torch's CPU convolution/matmul kernels accumulate in a "
        "different order than onnxruntime's (float32 results differ by about 1e-7 relative), which can flip an "
        "FP8 rounding in rare samples (measured: no flip in this corpus, worst 2e-7)",
    },
}


# --------------------------------------------------------------------------------------------------
# Exporters. Each returns the path written and its outputs; it raises when the tool cannot export.


class Job:
    """Everything an exporter needs for one network."""

    def __init__(self, net: str) -> None:
        self.net = net
        self.model = build_network(net)
        self.calib, self.eval = make_inputs(net)
        self.notes: list[str] = []
        self.expected_from = ""
        self.dir = Path(tempfile.mkdtemp(prefix=f"corpus-{net}-"))
        self.float_path = self.dir / "float.onnx"
        torchscript_export(self.model, self.calib, self.float_path)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(self.float_path)))
        onnx.save(inferred, str(self.float_path))

    def path(self, tool: str) -> Path:
        return HERE / f"{self.net}.{tool}.onnx"

    def forward_loop(self) -> Callable[[nn.Module], None]:
        batches = [torch.from_numpy(self.calib[i : i + 8]) for i in range(0, SAMPLES, 8)]

        def loop(model: nn.Module) -> None:
            with torch.no_grad():
                for batch in batches:
                    model(batch)

        return loop


def ort_quantize_static(job: Job, per_channel: bool) -> tuple[Path, dict]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    path = job.path("ort_per_channel" if per_channel else "ort_per_tensor")
    options = {
        "quant_format": QuantFormat.QDQ,
        "activation_type": QuantType.QFLOAT8E4M3FN,
        "weight_type": QuantType.QFLOAT8E4M3FN,
        "calibrate_method": CalibrationMethod.Distribution,
        "per_channel": per_channel,
    }
    try:
        quantize_static(str(job.float_path), str(path), Reader(job.calib), **options)
        outputs = ort_outputs(path, job.eval)
        if not all(np.isfinite(value).all() for value in outputs.values()):
            raise FloatingPointError("the FP8 model's outputs are NaN")
    except (AttributeError, FloatingPointError) as error:
        # Transformer, default options: onnxruntime gives the Softmax output a fixed [0, 1] range without
        # the avg/std its FP8 scale needs (AttributeError); without Softmax, the scalar constants of the
        # attention scale and Gelu get FP8 scale std/std_fp8 = 0 or NaN (NaN outputs). The user's way out:
        # quantize the GEMMs only.
        job.notes.append(
            f"default op types fail: {type(error).__name__}: {str(error)[:48]}; "
            "op_types_to_quantize=[Conv, MatMul, Gemm]"
        )
        options["op_types_to_quantize"] = ["Conv", "MatMul", "Gemm"]
        quantize_static(str(job.float_path), str(path), Reader(job.calib), **options)
    return path, ort_outputs(path, job.eval)


def quark_fp8(job: Job) -> tuple[Path, dict]:
    from onnxruntime.quantization import QuantType
    from quark.onnx import ModelQuantizer
    from quark.onnx.quantization.config.config import Config
    from quark.onnx.quantization.config.legacy import QuantizationConfig

    path = job.path("quark")
    config = Config(
        global_quant_config=QuantizationConfig(
            activation_type=QuantType.QFLOAT8E4M3FN, weight_type=QuantType.QFLOAT8E4M3FN
        )
    )
    ModelQuantizer(config).quantize_model(str(job.float_path), str(path), Reader(job.calib))
    return path, ort_outputs(path, job.eval)


def modelopt_quantized(job: Job) -> nn.Module:
    import modelopt.torch.quantization as mtq

    return mtq.quantize(copy.deepcopy(job.model), mtq.FP8_DEFAULT_CFG, job.forward_loop())


def modelopt_raw(job: Job) -> tuple[Path, dict]:
    model = modelopt_quantized(job)
    path = job.path("modelopt_raw")
    torchscript_export(model, job.calib, path)
    return path, eager_outputs(model, path, job.eval)


def modelopt_deploy(job: Job) -> tuple[Path, dict]:
    from modelopt.torch._deploy.utils import get_onnx_bytes_and_metadata
    from modelopt.torch._deploy.utils.torch_onnx import OnnxBytes

    model = modelopt_quantized(job)
    path = job.path("modelopt_deploy")
    onnx_bytes, _ = get_onnx_bytes_and_metadata(model, (torch.from_numpy(job.calib[:1]),))
    path.write_bytes(OnnxBytes.from_bytes(onnx_bytes).get_onnx_model_file_bytes())
    # The file is not the eager module: ModelOpt's exporter adds a fixed-scale (1/448) FP8 Q/DQ after
    # Softmax and re-quantizes Conv weights with a float16 scale. Its own outputs are the file's standard
    # Q/DQ semantics (what TensorRT runs): onnxruntime on a copy whose trt-domain Q/DQ are the ai.onnx ops
    # they are, stale value_info dropped. The committed file is the tool's bytes.
    standard = onnx.load(str(path))
    for node in standard.graph.node:
        if node.domain == "trt" and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.domain = ""
    del standard.graph.value_info[:]
    copy_path = job.dir / "deploy_standard_domain.onnx"
    onnx.save(standard, str(copy_path))
    outputs = ort_outputs(copy_path, job.eval)
    (name,) = outputs
    eager_error = np.abs(outputs[name] - eager(model, job.eval)).max() / np.abs(outputs[name]).max()
    job.notes.append(
        "expected outputs: onnxruntime (ORT_DISABLE_ALL) on a copy with the trt-domain QuantizeLinear/"
        f"DequantizeLinear as ai.onnx ops; the torch eager module differs from the file by up to {eager_error:.2g} "
        "of the output range (Softmax FP8 Q/DQ and float16 Conv weight scales added by the exporter)"
    )
    job.expected_from = "onnxruntime, ORT_DISABLE_ALL, trt-domain Q/DQ read as ai.onnx Q/DQ (on a copy)"
    return path, outputs


def modelopt_onnx_ptq(job: Job) -> tuple[Path, dict]:
    from modelopt.onnx.quantization import quantize

    path = job.path("modelopt_onnx")
    quantize(
        str(job.float_path),
        quantize_mode="fp8",
        calibration_data={INPUT: job.calib},
        calibration_eps=["cpu"],
        high_precision_dtype="fp32",
        output_path=str(path),
        log_level="ERROR",
    )
    return path, ort_outputs(path, job.eval)


def brevitas_quantized(job: Job) -> nn.Module:
    import brevitas.nn as qnn
    from brevitas.graph.calibrate import calibration_mode
    from brevitas.quant.float_quant_ocp import (
        Fp8e4m3OCPActPerTensorFloat,
        Fp8e4m3OCPWeightPerChannelFloat,
        Fp8e4m3OCPWeightPerTensorFloat,
    )

    model = copy.deepcopy(job.model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                layer = qnn.QuantConv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    bias=True,
                    weight_quant=Fp8e4m3OCPWeightPerChannelFloat,
                    input_quant=Fp8e4m3OCPActPerTensorFloat,
                )
            elif isinstance(child, nn.Linear):
                layer = qnn.QuantLinear(
                    child.in_features,
                    child.out_features,
                    bias=True,
                    weight_quant=Fp8e4m3OCPWeightPerTensorFloat,
                    input_quant=Fp8e4m3OCPActPerTensorFloat,
                )
            else:
                continue
            layer.load_state_dict(child.state_dict(), strict=False)
            setattr(parent, name, layer)
    model.eval()
    with torch.no_grad(), calibration_mode(model):
        job.forward_loop()(model)
    return model.eval()


def brevitas_export(job: Job, kind: str) -> tuple[Path, dict]:
    from brevitas.export import export_onnx_qcdq, export_qonnx

    model = brevitas_quantized(job)  # a fresh module per export: brevitas caches its export handlers
    path = job.path(f"brevitas_{kind}")
    export = export_onnx_qcdq if kind == "qcdq" else export_qonnx
    export(model, torch.from_numpy(job.calib[:1]), export_path=str(path), input_names=[INPUT], output_names=[OUTPUT])
    return path, eager_outputs(model, path, job.eval)


class FakeQuantize(nn.Module):
    """``(x/s).clamp(-448, 448).to(float8_e4m3fn).to(float32) * s`` with a calibrated scale buffer."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x / self.scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(torch.float32) * self.scale


class FakeQuantLayer(nn.Module):
    """A Conv2d/Linear with FP8 fake-quantized input (per tensor) and weight (per output channel)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, input_amax: float) -> None:
        super().__init__()
        self.layer = layer
        self.input_quant = FakeQuantize(torch.tensor(input_amax / FP8_MAX))
        amax = layer.weight.detach().abs().flatten(1).amax(dim=1)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        self.weight_quant = FakeQuantize((amax / FP8_MAX).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_quant(self.layer.weight)
        x = self.input_quant(x)
        if isinstance(self.layer, nn.Conv2d):
            return nn.functional.conv2d(x, weight, self.layer.bias, self.layer.stride, self.layer.padding)
        return nn.functional.linear(x, weight, self.layer.bias)


def hand_written_fake_quant(job: Job) -> nn.Module:
    """The float network with FakeQuantLayer around every Conv2d/Linear, input scales = max|x|/448."""
    model = copy.deepcopy(job.model)
    amax: dict[str, float] = {}
    hooks = [
        module.register_forward_hook(
            lambda m, args, out, name=name: amax.__setitem__(name, max(amax.get(name, 0.0), float(args[0].abs().max())))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
    job.forward_loop()(model)
    for hook in hooks:
        hook.remove()
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d | nn.Linear):
                full = f"{parent_name}.{name}" if parent_name else name
                setattr(parent, name, FakeQuantLayer(child, amax[full]))
    return model.eval()


def dynamo_export(job: Job, optimize: bool) -> tuple[Path, dict]:
    model = hand_written_fake_quant(job)
    path = job.path("dynamo_opt" if optimize else "dynamo_noopt")
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model,
        (torch.from_numpy(job.calib[:2]),),
        str(path),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamo=True,
        optimize=optimize,
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )
    if optimize and fp8_quantizers(path) < 2 * WEIGHT_LAYERS[job.net]:
        job.notes.append(
            "the exporter's optimizer constant-folded every weight fake-quantization: weights are float "
            "initializers holding FP8 values x scale; only the activation quantizers remain"
        )
    return path, eager_outputs(model, path, job.eval)


def torchscript_fake_quant(job: Job) -> tuple[Path, dict]:
    model = hand_written_fake_quant(job)
    path = job.path("torchscript")
    buffer = io.BytesIO()  # written to the corpus only when the export succeeds
    torchscript_export(model, job.calib, buffer)
    path.write_bytes(buffer.getvalue())
    return path, eager_outputs(model, path, job.eval)


# tool key, exporter, package versions that made the file, dialects, tolerance key, how the tool is called,
# layers the tool quantized ("all": every Conv/MatMul/Gemm fed by DequantizeLinear, counted in the file)
EXPORTS: list[tuple[str, Callable[[Job], tuple[Path, dict]], list[str], list[str], str, str, str]] = [
    (
        "ort_per_tensor",
        lambda job: ort_quantize_static(job, per_channel=False),
        ["onnxruntime"],
        ["dq-weight", "qdq"],
        "onnxruntime",
        "onnxruntime.quantization.quantize_static(float.onnx, QDQ, activation_type=weight_type="
        "QuantType.QFLOAT8E4M3FN, calibrate_method=CalibrationMethod.Distribution)",
        "dq",
    ),
    (
        "ort_per_channel",
        lambda job: ort_quantize_static(job, per_channel=True),
        ["onnxruntime"],
        ["dq-weight", "qdq"],
        "onnxruntime",
        "onnxruntime.quantization.quantize_static(..., the same, per_channel=True)",
        "dq",
    ),
    (
        "quark",
        quark_fp8,
        ["amd-quark", "onnxruntime"],
        ["dq-weight", "qdq"],
        "onnxruntime",
        "quark.onnx.ModelQuantizer(Config(global_quant_config=QuantizationConfig(activation_type="
        "weight_type=QuantType.QFLOAT8E4M3FN))).quantize_model(float.onnx, out, reader)",
        "dq",
    ),
    (
        "modelopt_onnx",
        modelopt_onnx_ptq,
        ["nvidia-modelopt", "onnxruntime"],
        ["qdq"],
        "onnxruntime",
        "modelopt.onnx.quantization.quantize(float.onnx, quantize_mode='fp8', calibration_eps=['cpu'], "
        "high_precision_dtype='fp32')",
        "dq",
    ),
    (
        "modelopt_raw",
        modelopt_raw,
        ["nvidia-modelopt", "torch"],
        ["trt"],
        "torch",
        "mtq.quantize(model, mtq.FP8_DEFAULT_CFG, forward_loop); torch.onnx.export(..., dynamo=False, "
        "opset_version=17)",
        "weights",
    ),
    (
        "modelopt_deploy",
        modelopt_deploy,
        ["nvidia-modelopt", "torch"],
        ["dq-weight", "qdq"],
        "onnxruntime",
        "mtq.quantize(...); modelopt.torch._deploy.utils.get_onnx_bytes_and_metadata(model, (x[:1],))",
        "weights",
    ),
    (
        "brevitas_qcdq",
        lambda job: brevitas_export(job, "qcdq"),
        ["brevitas", "torch"],
        ["qdq"],
        "torch",
        "brevitas QuantConv2d(weight_quant=Fp8e4m3OCPWeightPerChannelFloat)/QuantLinear(weight_quant="
        "Fp8e4m3OCPWeightPerTensorFloat), input_quant=Fp8e4m3OCPActPerTensorFloat, calibration_mode; "
        "brevitas.export.export_onnx_qcdq(model, x[:1], export_path=...) (default: dynamo)",
        "weights",
    ),
    (
        "brevitas_qonnx",
        lambda job: brevitas_export(job, "qonnx"),
        ["brevitas", "torch"],
        ["qonnx"],
        "torch",
        "the same brevitas model; brevitas.export.export_qonnx(model, x[:1], export_path=...) (default: dynamo)",
        "weights",
    ),
    (
        "dynamo_opt",
        lambda job: dynamo_export(job, optimize=True),
        ["torch", "onnxscript"],
        ["cast"],
        "torch",
        "(x/s).clamp(-448,448).to(torch.float8_e4m3fn).to(torch.float32)*s on every Conv/Linear input "
        "(per tensor) and weight (per channel); torch.onnx.export(..., dynamo=True, optimize=True)",
        "weights",
    ),
    (
        "dynamo_noopt",
        lambda job: dynamo_export(job, optimize=False),
        ["torch", "onnxscript"],
        ["cast"],
        "torch",
        "the same module; torch.onnx.export(..., dynamo=True, optimize=False)",
        "weights",
    ),
    (
        "torchscript",
        torchscript_fake_quant,
        ["torch"],
        ["cast"],
        "torch",
        "the same module; torch.onnx.export(..., dynamo=False, opset_version=17)",
        "weights",
    ),
]


def strip_exporter_annotations(path: Path) -> bool:
    """Remove the torch exporter's ``pkg.torch.*``/``namespace`` metadata_props (stack traces, FX nodes).

    They are inert annotations, hold this machine's paths (so the file would differ between machines)
    and are most of the file's size. Nothing else is touched. Returns whether anything was removed.
    """
    model = onnx.load(str(path), load_external_data=False)

    def strip(holder: object) -> bool:
        props = holder.metadata_props
        keep = [p for p in props if not (p.key.startswith("pkg.torch.") or p.key == "namespace")]
        if len(keep) == len(props):
            return False
        kept = [(p.key, p.value) for p in keep]
        del props[:]
        for key, value in kept:
            props.add(key=key, value=value)
        return True

    graph = model.graph
    holders = [model, graph, *graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]
    changed = [strip(holder) for holder in holders]
    if any(changed):
        path.write_bytes(model.SerializeToString())
    return any(changed)


def export_one(net: str, tool: str) -> dict:
    """Run one exporter in this process; the manifest entry, or the failure."""
    _, export, packages, dialects, tolerance, call, quantized = next(e for e in EXPORTS if e[0] == tool)
    job = Job(net)
    target = job.path(tool)
    target.unlink(missing_ok=True)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            path, outputs = export(job)
        onnx.load(str(path))  # the tool wrote a readable file
    except Exception as error:  # record the tool's own error and go on
        target.unlink(missing_ok=True)
        traceback.print_exc()
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        message = f"{type(error).__name__}: {lines[0] if lines else ''}"
        return {"network": net, "tool": tool, "call": call, "error": message[:400], "notes": job.notes}
    if not all(np.isfinite(value).all() for value in outputs.values()):
        path.unlink()
        return {
            "network": net,
            "tool": tool,
            "call": call,
            "error": "the FP8 model's outputs are not finite",
            "notes": job.notes,
        }
    stripped = strip_exporter_annotations(path)
    leftover = path.with_name(path.name + ".data")
    if leftover.exists() and not any(
        onnx.external_data_helper.uses_external_data(t)
        for t in onnx.load(str(path), load_external_data=False).graph.initializer
    ):
        leftover.unlink()  # the exporter's first, external-data save; the final file does not reference it
        job.notes.append(f"the exporter also left {leftover.name}, which the file does not reference: deleted")
    if fp8_quantizers(path) == 0:
        path.unlink()
        return {
            "network": net,
            "tool": tool,
            "call": call,
            "error": "the tool wrote no FP8 quantizer",
            "notes": job.notes,
        }
    outputs_file = HERE / f"{net}.{tool}.outputs.npz"
    np.savez_compressed(outputs_file, **outputs)
    if quantized == "dq":
        layers, weight_layers, weight_matmuls = dq_fed_layers(path)
    else:  # torch-side tools quantize the input and weight of every Conv2d/Linear module
        layers, weight_layers, weight_matmuls = WEIGHT_LAYERS[net], WEIGHT_LAYERS[net], WEIGHT_MATMULS[net]
    return {
        "file": path.name,
        "network": net,
        "tool": tool,
        "versions": {package: version(package) for package in packages},
        "call": call,
        "notes": job.notes
        + (["torch exporter annotations (metadata_props pkg.torch.*, namespace) removed"] if stripped else []),
        "dialects": dialects,
        "inputs": {"calibration": f"{net}_calib.npz", "evaluation": f"{net}_eval.npz"},
        "expected_outputs": outputs_file.name,
        "expected_from": job.expected_from
        or (
            "onnxruntime on the file, ORT_DISABLE_ALL"
            if tolerance == "onnxruntime"
            else "the quantized torch module in eager mode"
        ),
        "tolerance": {"basis": tolerance}
        | {key: TOLERANCES[tolerance][key] for key in ("close", "min_close_fraction", "max")},
        "fp8_quantizers": fp8_quantizers(path),
        "layers": LAYERS[net],
        "quantized_layers": layers,
        "quantized_weight_layers": weight_layers,
        "weight_matmuls": weight_matmuls,
        "ops": count_ops(path),
        "size_bytes": file_size(path),
    }


ENVIRONMENT = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnx-ir",
    "numpy",
    "ml_dtypes",
    "brevitas",
    "nvidia-modelopt",
    "amd-quark",
    "onnxoptimizer",
    "onnx_graphsurgeon",
)


def main() -> int:
    """Every (network, tool) export in its own process (the tools patch onnxruntime and torch)."""
    if len(sys.argv) == 3:
        print("RESULT " + json.dumps(export_one(sys.argv[1], sys.argv[2])), flush=True)
        return 0
    entries: list[dict] = []
    failures: list[dict] = []
    networks: dict[str, dict] = {}
    scratch = tempfile.mkdtemp(prefix="corpus-build-")
    for net in NETWORKS:
        calib, evaluation = make_inputs(net)
        classes = len(set(eager(build_network(net), evaluation).argmax(axis=1).tolist()))
        if classes < 3:  # the accuracy criteria (cosine, top-1 agreement) would not discriminate
            raise SystemExit(f"{net}: the float network predicts only {classes} classes on the evaluation inputs")
        networks[net] = {"input_shape": [SAMPLES, *INPUT_SHAPES[net]], "float_top1_classes": classes}
        np.savez_compressed(HERE / f"{net}_calib.npz", **{INPUT: calib})
        np.savez_compressed(HERE / f"{net}_eval.npz", **{INPUT: evaluation})
        for tool, *_ in EXPORTS:
            print(f"== {net} {tool}", flush=True)
            run = subprocess.run(
                [sys.executable, __file__, net, tool],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
                cwd=scratch,  # Quark writes quantized_info.csv into the working directory
            )
            results = [line[7:] for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if not results:
                result = {"network": net, "tool": tool, "error": f"exporter process died (exit {run.returncode})"}
                print(run.stderr[-3000:], file=sys.stderr)
            else:
                result = json.loads(results[-1])
            if "error" in result:
                print(f"   FAILED: {result['error']}", flush=True)
                failures.append(result)
            else:
                print(
                    f"   {result['file']}: {result['size_bytes']} bytes, {result['fp8_quantizers']} FP8 quantizers",
                    flush=True,
                )
                entries.append(result)
    environment = {package: version(package) for package in ENVIRONMENT}
    environment["python"] = sys.version.split()[0]
    manifest = {
        "environment": environment,
        "networks": networks,
        "tolerances": TOLERANCES,
        "files": entries,
        "failures": failures,
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{len(entries)} files, {len(failures)} failures", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
