"""A ResNet-18 (224×224, 1000 classes) in the standard FP8 QDQ dialect, built with ``onnx.helper``.

Usage::

    python benchmarks/resnet18_fp8.py OUT.onnx [--fmt e4m3fn] [--seed 0] [--data DATA.npz --samples 32]

Topology (torchvision's ``resnet18`` written out by hand; torchvision is not needed): 7×7/2 stem conv,
ReLU, 3×3/2 MaxPool, four stages of two BasicBlocks (64, 128, 256, 512 channels; 1×1/2 downsample convs
on the shortcut where the shape changes), residual ``Add`` + ReLU, GlobalAveragePool, Flatten, Gemm to
1000 classes. Batch norm is folded into every conv: Kaiming-normal (fan-in, ReLU gain) conv weights are
multiplied per output channel by ``gamma / sqrt(var + eps)`` of a random BN, the bias is
``beta - mean * gamma / sqrt(var + eps)``; the second conv of each block gets smaller gammas, as trained
ResNets have. Weights therefore differ in range from channel to channel, as in a real network.

FP8 dialect (what ModelOpt / TensorRT-style exporters write):

* the input activation of every Conv and the Gemm goes through ``QuantizeLinear → DequantizeLinear`` with
  a per-tensor float scale (amax / FP8 max, amax measured on a float run of a few random images) and a
  ``FLOAT8E4M3FN`` (or ``FLOAT8E5M2``) zero point; a tensor read by two convs is quantized once;
* every Conv/Gemm weight is an FP8 initializer behind ``DequantizeLinear`` with per-output-channel
  scales (``axis=0``; the Gemm has ``transB=1`` so its output channels are axis 0 too);
* biases stay float32; opset 19 (the first with FP8 Q/DQ).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

INPUT = "input"
OUTPUT = "logits"
OPSET = 19
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block)
FORMATS = {  # name: (ONNX type, numpy type, largest finite value)
    "e4m3fn": (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn, 448.0),
    "e5m2": (TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2, 57344.0),
}


@dataclasses.dataclass
class ConvSpec:
    """One conv (or the fc layer) of the network, with its BN-folded float weights."""

    name: str
    input: str
    output: str
    weight: np.ndarray
    bias: np.ndarray
    attrs: dict[str, object]
    op_type: str = "Conv"


class FloatResNet18:
    """The float network as a list of nodes plus the layers whose inputs/weights get quantized."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.layers: list[ConvSpec] = []
        self.channels = {INPUT: 3}

    def folded_conv(self, out_c: int, in_c: int, kernel: int, gamma_scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Kaiming-normal weight with a random batch norm folded in (per-channel scale and bias)."""
        fan_in = in_c * kernel * kernel
        w = self.rng.standard_normal((out_c, in_c, kernel, kernel)) * np.sqrt(2.0 / fan_in)
        gamma = np.abs(self.rng.normal(1.0, 0.3, out_c)) * gamma_scale + 1e-2
        beta = self.rng.normal(0.0, 0.1, out_c)
        mean = self.rng.normal(0.0, 0.1, out_c)
        var = self.rng.uniform(0.5, 2.0, out_c)
        factor = gamma / np.sqrt(var + 1e-5)
        weight = w * factor[:, None, None, None]
        return weight.astype(np.float32), (beta - mean * factor).astype(np.float32)

    def conv(self, x: str, out_c: int, kernel: int, stride: int, name: str, gamma_scale: float = 1.0) -> str:
        weight, bias = self.folded_conv(out_c, self.channels[x], kernel, gamma_scale)
        pad = kernel // 2
        attrs = {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [pad] * 4}
        self.layers.append(ConvSpec(name, x, name, weight, bias, attrs))
        self.channels[name] = out_c
        return name

    def op(self, op_type: str, inputs: list[str], name: str, channels: int, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        self.channels[name] = channels
        return name

    def layer_node(self, layer: ConvSpec) -> None:
        """Placeholder for the layer, in topological position (rewritten by :func:`make_graph`)."""
        self.nodes.append(helper.make_node("_layer", [layer.input], [layer.output], name=layer.name))

    def conv_node(self, x: str, out_c: int, kernel: int, stride: int, name: str, gamma_scale: float = 1.0) -> str:
        y = self.conv(x, out_c, kernel, stride, name, gamma_scale)
        self.layer_node(self.layers[-1])
        return y

    def block(self, x: str, channels: int, stride: int, name: str) -> str:
        y = self.conv_node(x, channels, 3, stride, f"{name}.conv1")
        y = self.op("Relu", [y], f"{name}.relu1", channels)
        y = self.conv_node(y, channels, 3, 1, f"{name}.conv2", gamma_scale=0.5)
        shortcut = x
        if stride != 1 or self.channels[x] != channels:
            shortcut = self.conv_node(x, channels, 1, stride, f"{name}.downsample")
        y = self.op("Add", [y, shortcut], f"{name}.add", channels)
        return self.op("Relu", [y], f"{name}.relu2", channels)

    def build(self) -> FloatResNet18:
        y = self.conv_node(INPUT, 64, 7, 2, "stem.conv")
        y = self.op("Relu", [y], "stem.relu", 64)
        y = self.op("MaxPool", [y], "stem.pool", 64, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        for stage, (channels, stride) in enumerate(STAGES, start=1):
            y = self.block(y, channels, stride, f"layer{stage}.0")
            y = self.block(y, channels, 1, f"layer{stage}.1")
        y = self.op("GlobalAveragePool", [y], "pool", 512)
        y = self.op("Flatten", [y], "flatten", 512)
        fan_in = 512
        weight = (self.rng.standard_normal((1000, fan_in)) * np.sqrt(1.0 / fan_in)).astype(np.float32)
        bias = self.rng.normal(0.0, 0.01, 1000).astype(np.float32)
        fc = ConvSpec("fc", y, OUTPUT, weight, bias, {"transB": 1}, op_type="Gemm")
        self.layers.append(fc)
        self.layer_node(fc)
        return self


def graph_io() -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    x = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, 224, 224])
    y = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 1000])
    return x, y


def float_model(net: FloatResNet18, extra_outputs: list[str] = ()) -> onnx.ModelProto:
    """The float network (used to measure activation ranges)."""
    layers = {layer.name: layer for layer in net.layers}
    nodes, inits = [], []
    for node in net.nodes:
        if node.op_type != "_layer":
            nodes.append(node)
            continue
        layer = layers[node.name]
        inits += [
            numpy_helper.from_array(layer.weight, f"{layer.name}.weight"),
            numpy_helper.from_array(layer.bias, f"{layer.name}.bias"),
        ]
        inputs = [layer.input, f"{layer.name}.weight", f"{layer.name}.bias"]
        nodes.append(helper.make_node(layer.op_type, inputs, [layer.output], name=layer.name, **layer.attrs))
    x, y = graph_io()
    outputs = [y] + [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in extra_outputs]
    graph = helper.make_graph(nodes, "resnet18", [x], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


def activation_amax(net: FloatResNet18, images: np.ndarray) -> dict[str, float]:
    """amax of every Conv/Gemm input on a float run of ``images``."""
    names = sorted({layer.input for layer in net.layers} - {INPUT})
    model = float_model(net, names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(names, session.run(names, {INPUT: images}), strict=True))
    amax = {name: float(np.abs(v).max()) for name, v in values.items()}
    amax[INPUT] = float(np.abs(images).max())
    return amax


def fp8_weight(layer: ConvSpec, fmt: str) -> tuple[list[onnx.TensorProto], onnx.NodeProto]:
    """FP8 weight initializer, per-output-channel scale and its DequantizeLinear."""
    onnx_type, np_type, fp8_max = FORMATS[fmt]
    amax = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).max(axis=1)
    scale = (amax / fp8_max).astype(np.float32)
    codes = (layer.weight / scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))).astype(np_type)
    name = f"{layer.name}.weight"
    tensor = helper.make_tensor(name, onnx_type, codes.shape, codes.view(np.uint8).tobytes(), raw=True)
    scale_init = numpy_helper.from_array(scale, f"{name}_scale")
    dq = helper.make_node("DequantizeLinear", [name, f"{name}_scale"], [f"{name}_dq"], name=f"{name}_dq", axis=0)
    return [tensor, scale_init], dq


def fp8_activation(tensor: str, amax: float, fmt: str) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """Per-tensor QuantizeLinear → DequantizeLinear with an FP8 zero point."""
    onnx_type, _, fp8_max = FORMATS[fmt]
    scale = numpy_helper.from_array(np.array(max(amax, 1e-12) / fp8_max, np.float32), f"{tensor}_scale")
    zero = helper.make_tensor(f"{tensor}_zero_point", onnx_type, [], [0.0])
    q = helper.make_node("QuantizeLinear", [tensor, scale.name, zero.name], [f"{tensor}_q"], name=f"{tensor}_q")
    dq = helper.make_node(
        "DequantizeLinear", [f"{tensor}_q", scale.name, zero.name], [f"{tensor}_dq"], name=f"{tensor}_dq"
    )
    return [scale, zero], [q, dq]


def fp8_model(net: FloatResNet18, amax: dict[str, float], fmt: str) -> onnx.ModelProto:
    """The network in the standard FP8 QDQ dialect."""
    layers = {layer.name: layer for layer in net.layers}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    quantized: set[str] = set()
    for node in net.nodes:
        if node.op_type != "_layer":
            nodes.append(node)
            continue
        layer = layers[node.name]
        if layer.input not in quantized:
            act_inits, act_nodes = fp8_activation(layer.input, amax[layer.input], fmt)
            inits += act_inits
            nodes += act_nodes
            quantized.add(layer.input)
        w_inits, w_dq = fp8_weight(layer, fmt)
        inits += [*w_inits, numpy_helper.from_array(layer.bias, f"{layer.name}.bias")]
        nodes.append(w_dq)
        inputs = [f"{layer.input}_dq", w_dq.output[0], f"{layer.name}.bias"]
        nodes.append(helper.make_node(layer.op_type, inputs, [layer.output], name=layer.name, **layer.attrs))
    x, y = graph_io()
    graph = helper.make_graph(nodes, "resnet18_fp8", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)
    model.producer_name = "benchmarks/resnet18_fp8.py"
    onnx.checker.check_model(model, full_check=True)
    return model


def build_resnet18_fp8(path: str | Path, fmt: str = "e4m3fn", seed: int = 0, calibration_images: int = 4) -> Path:
    """Write ResNet-18 in the FP8 QDQ dialect to ``path``; activation scales from ``calibration_images``
    standard-normal images (seed ``seed + 1``). Returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    net = FloatResNet18(seed).build()
    images = np.random.default_rng(seed + 1).standard_normal((calibration_images, 3, 224, 224)).astype(np.float32)
    path = Path(path)
    onnx.save(fp8_model(net, activation_amax(net, images), fmt), path)
    return path


def write_calibration_data(path: str | Path, samples: int = 32, seed: int = 2) -> Path:
    """``samples`` standard-normal 224×224 images in an ``.npz`` keyed by the input name."""
    images = np.random.default_rng(seed).standard_normal((samples, 3, 224, 224)).astype(np.float32)
    path = Path(path)
    np.savez(path, **{INPUT: images})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--fmt", default="e4m3fn", choices=sorted(FORMATS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="also write calibration images here (.npz)")
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args(argv)
    build_resnet18_fp8(args.output, args.fmt, args.seed)
    print(f"wrote {args.output}")
    if args.data:
        write_calibration_data(args.data, args.samples)
        print(f"wrote {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
