"""Small FP8 (standard Q/DQ dialect) models with the structure real CNNs and transformers have.

Used by the conversion and verification tests: a residual CNN block (Conv+bias → Relu → Conv → Add →
Relu → MaxPool → GlobalAveragePool → Flatten → Gemm) and a transformer-style MLP (MatMul → Gelu-free
LayerNorm-like float ops → MatMul). Activations are quantized per tensor, weights per output channel,
E4M3FN, with scales calibrated on random data, like an FP8 QAT export.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fp8conv import fp8

_E4M3_MAX = 448.0


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}_node", **attrs))
        return output

    def model(self, name: str, graph_input: onnx.ValueInfoProto, graph_output: onnx.ValueInfoProto) -> onnx.ModelProto:
        """The opset-19 model of these nodes and initializers, checked with ``full_check``."""
        graph = helper.make_graph(self.nodes, name, [graph_input], [graph_output], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
        onnx.checker.check_model(model, full_check=True)
        return model

    def fp8_activation(self, tensor: str, amax: float) -> str:
        """Q→DQ with a float8 zero point; returns the DQ output ``<tensor>_fp8``."""
        scale = self.const(f"{tensor}_fp8_scale", np.float32(amax / _E4M3_MAX))
        zero = helper.make_tensor(f"{tensor}_fp8_zp", TensorProto.FLOAT8E4M3FN, [], [0.0])
        self.initializers.append(zero)
        self.nodes.append(
            helper.make_node(
                "QuantizeLinear", [tensor, scale, zero.name], [f"{tensor}_q"], name=f"{tensor}_QuantizeLinear"
            )
        )
        self.nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{tensor}_q", scale, zero.name],
                [f"{tensor}_fp8"],
                name=f"{tensor}_DequantizeLinear",
            )
        )
        return f"{tensor}_fp8"

    def fp8_weight(self, name: str, w: np.ndarray, axis: int) -> str:
        """An FP8 weight stored as FLOAT8E4M3FN codes behind DequantizeLinear (per channel)."""
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        scale = (np.abs(w).max(axis=reduce) / _E4M3_MAX).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        codes = fp8.encode(w / scale.reshape(shape), "e4m3fn")
        tensor = helper.make_tensor(name, TensorProto.FLOAT8E4M3FN, list(w.shape), codes.tobytes(), raw=True)
        self.initializers.append(tensor)
        self.const(f"{name}_scale", scale)
        self.nodes.append(
            helper.make_node(
                "DequantizeLinear", [name, f"{name}_scale"], [f"{name}_fp8"], name=f"{name}_DequantizeLinear", axis=axis
            )
        )
        return f"{name}_fp8"


def residual_cnn(seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    """``input [B,3,12,12]`` → conv1(+bias) → relu1 → conv2 → add(conv2, relu1) → relu2 → maxpool →
    conv3 → relu3 → GlobalAveragePool → flatten → gemm(+bias) → ``logits [B,10]``."""
    rng = np.random.default_rng(seed)
    g = _Graph()

    def kaiming(*shape: int) -> np.ndarray:
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    x = g.fp8_activation("input", 4.0)
    w1 = g.fp8_weight("conv1.weight", kaiming(8, 3, 3, 3), 0)
    b1 = g.const("conv1.bias", (rng.standard_normal(8) * 0.1).astype(np.float32))
    g.node("Conv", [x, w1, b1], "conv1", pads=[1, 1, 1, 1])
    g.node("Relu", ["conv1"], "relu1")
    r1 = g.fp8_activation("relu1", 4.0)
    w2 = g.fp8_weight("conv2.weight", kaiming(8, 8, 3, 3), 0)
    g.node("Conv", [r1, w2], "conv2", pads=[1, 1, 1, 1])
    g.node("Add", ["conv2", "relu1"], "add")
    g.node("Relu", ["add"], "relu2")
    g.node("MaxPool", ["relu2"], "pool", kernel_shape=[2, 2], strides=[2, 2])
    p = g.fp8_activation("pool", 6.0)
    w3 = g.fp8_weight("conv3.weight", kaiming(16, 8, 3, 3), 0)
    b3 = g.const("conv3.bias", (rng.standard_normal(16) * 0.1).astype(np.float32))
    g.node("Conv", [p, w3, b3], "conv3", pads=[1, 1, 1, 1])
    g.node("Relu", ["conv3"], "relu3")
    g.node("GlobalAveragePool", ["relu3"], "gap")
    g.node("Flatten", ["gap"], "flat")
    f = g.fp8_activation("flat", 4.0)
    w4 = g.fp8_weight("fc.weight", kaiming(10, 16), 0)
    b4 = g.const("fc.bias", (rng.standard_normal(10) * 0.1).astype(np.float32))
    g.node("Gemm", [f, w4, b4], "logits", transB=1)
    return g.model(
        "residual_cnn",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 12, 12]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10]),
    )


def concat_cnn(seed: int = 0, batch: int | str = 1, tap: bool = False) -> onnx.ModelProto:
    """``input [B,3,8,8]`` → two conv+relu branches (FP8 scales 3/448 and 6/448) → Concat → FP8 (6/448) →
    conv → GlobalAveragePool → flatten → ``logits [B,4]``: a shared-scale group whose FP8 scales differ.

    ``tap``: branch a is also read outside the Concat (GlobalAveragePool → Flatten, added to the logits)."""
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.fp8_activation("input", 4.0)
    for branch, amax in (("a", 3.0), ("b", 6.0)):
        w = g.fp8_weight(f"conv_{branch}.weight", (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), 0)
        g.node("Conv", [x, w], f"conv_{branch}", pads=[1, 1, 1, 1])
        g.node("Relu", [f"conv_{branch}"], f"relu_{branch}")
        g.fp8_activation(f"relu_{branch}", amax)
    g.node("Concat", ["relu_a_fp8", "relu_b_fp8"], "cat", axis=1)
    c = g.fp8_activation("cat", 6.0)
    w = g.fp8_weight("conv_c.weight", (rng.standard_normal((4, 8, 3, 3)) * 0.2).astype(np.float32), 0)
    g.node("Conv", [c, w], "conv_c", pads=[1, 1, 1, 1])
    g.node("GlobalAveragePool", ["conv_c"], "gap")
    if tap:
        g.node("Flatten", ["gap"], "flat_c")
        g.node("GlobalAveragePool", ["relu_a_fp8"], "gap_a")
        g.node("Flatten", ["gap_a"], "flat_a")
        g.node("Add", ["flat_c", "flat_a"], "logits")
    else:
        g.node("Flatten", ["gap"], "logits")
    return g.model(
        "concat_cnn",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4]),
    )


def mlp(seed: int = 0, batch: int = 4) -> onnx.ModelProto:
    """``input [B,32]`` → fc1 (MatMul + bias Add) → Relu → fc2 (MatMul) → Add(residual float) → ``output``.

    The second MatMul's output feeds a float Add only: it runs as MatMulIntegerToFloat.
    """
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.fp8_activation("input", 4.0)
    w1 = g.fp8_weight("fc1.weight", (rng.standard_normal((32, 64)) / np.sqrt(32)).astype(np.float32), 1)
    g.node("MatMul", [x, w1], "fc1")
    g.node("Add", ["fc1", g.const("fc1.bias", np.zeros(64, np.float32) + 0.05)], "fc1_biased")
    g.node("Relu", ["fc1_biased"], "relu")
    r = g.fp8_activation("relu", 3.0)
    w2 = g.fp8_weight("fc2.weight", (rng.standard_normal((64, 32)) / np.sqrt(64)).astype(np.float32), 1)
    g.node("MatMul", [r, w2], "fc2")
    g.node("Add", ["fc2", "input"], "output")
    return g.model(
        "mlp",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 32]),
        helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 32]),
    )
