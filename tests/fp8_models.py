"""Small FP8 (standard Q/DQ dialect) models with the structure real CNNs and transformers have.

Used by the conversion and verification tests: a residual CNN block (Conv+bias → Relu → Conv → Add →
Relu → MaxPool → GlobalAveragePool → Flatten → Gemm) and a transformer-style MLP (MatMul → Gelu-free
LayerNorm-like float ops → MatMul). Activations are quantized per tensor, weights per output channel,
E4M3FN, with scales calibrated on random data, like an FP8 QAT export.

:func:`modelopt_transformer` is a transformer block as ModelOpt's raw TorchScript export writes it
(``trt::TRT_FP8QuantizeLinear`` / ``TRT_FP8DequantizeLinear``, per-tensor scales, weights behind
``Transpose``/``Reshape``, ``Constant`` weights, ``Gemm(transB=1)``, FP8 attention MatMuls).
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
        self.value_info: list[onnx.ValueInfoProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}_node", **attrs))
        return output

    def model(
        self,
        name: str,
        graph_input: onnx.ValueInfoProto,
        graph_output: onnx.ValueInfoProto,
        opsets: dict[str, int] | None = None,
    ) -> onnx.ModelProto:
        """The model of these nodes and initializers (opset 19 unless told), checked with ``full_check``."""
        graph = helper.make_graph(self.nodes, name, [graph_input], [graph_output], self.initializers)
        graph.value_info.extend(self.value_info)
        imports = [helper.make_opsetid(domain, version) for domain, version in (opsets or {"": 19}).items()]
        model = helper.make_model(graph, opset_imports=imports, ir_version=10)
        onnx.checker.check_model(model, full_check=True)
        return model

    def constant_node(self, name: str, array: np.ndarray) -> str:
        """A ``Constant`` node producing ``array`` (TorchScript exports some parameters so)."""
        self.nodes.append(
            helper.make_node(
                "Constant", [], [name], name=f"{name}_Constant", value=numpy_helper.from_array(np.asarray(array))
            )
        )
        return name

    def trt_fp8(self, tensor: str, amax: float, tag: str | None = None) -> str:
        """``trt::TRT_FP8QuantizeLinear(x, s) → trt::TRT_FP8DequantizeLinear(q, s)``, ``s = amax / 448``.

        Returns the DQ output ``<tag>_fp8`` (``tag`` defaults to ``tensor``; several quantizers of one
        tensor need their own tags).
        """
        tag = tag or tensor
        s = self.const(f"{tag}_fp8_scale", np.float32(amax / _E4M3_MAX))
        self.nodes.append(
            helper.make_node("TRT_FP8QuantizeLinear", [tensor, s], [f"{tag}_q"], name=f"{tag}_TRT_Q", domain="trt")
        )
        self.value_info.append(helper.make_tensor_value_info(f"{tag}_q", TensorProto.UINT8, None))
        self.nodes.append(
            helper.make_node(
                "TRT_FP8DequantizeLinear", [f"{tag}_q", s], [f"{tag}_fp8"], name=f"{tag}_TRT_DQ", domain="trt"
            )
        )
        return f"{tag}_fp8"

    def trt_fp8_codes(self, name: str, w: np.ndarray, *, constant: bool = False) -> str:
        """A weight stored as uint8 E4M3 codes (an initializer or a ``Constant``) behind
        ``trt::TRT_FP8DequantizeLinear`` (per-tensor scale)."""
        scale = np.float32(np.abs(w).max() / _E4M3_MAX)
        (self.constant_node if constant else self.const)(f"{name}_codes", fp8.encode(w / scale, "e4m3fn"))
        self.const(f"{name}_fp8_scale", scale)
        self.nodes.append(
            helper.make_node(
                "TRT_FP8DequantizeLinear",
                [f"{name}_codes", f"{name}_fp8_scale"],
                [f"{name}_fp8"],
                name=f"{name}_TRT_DQ",
                domain="trt",
            )
        )
        return f"{name}_fp8"

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


def modelopt_transformer(seed: int = 0, batch: int | str = "batch") -> onnx.ModelProto:
    """One pre-LayerNorm transformer block as ModelOpt's raw TorchScript export writes it (opset 17, ``trt`` 1).

    ``input [B,8,32]`` → LayerNorm → q/k/v Linear → 2-head attention → out Linear → residual Add →
    LayerNorm → Reshape ``[B·8, 32]`` → fc1 Gemm → Gelu (Erf form) → fc2 Gemm → Reshape → residual Add →
    ``output``. Every quantizer is ``trt::TRT_FP8QuantizeLinear → trt::TRT_FP8DequantizeLinear`` with a
    per-tensor scale ``amax / 448``; each Linear quantizes its own input. Weight paths (torch's Linear on a
    3-D input is ``MatMul(x, Transpose(W))`` + bias ``Add``):

    * ``q``: float initializer ``[32,32]`` → FP8 Q/DQ → Transpose → MatMul;
    * ``k``: ``Constant`` node → FP8 Q/DQ → Transpose → MatMul;
    * ``v``: float initializer ``[1,32,32]`` → FP8 Q/DQ → Reshape ``[32,32]`` → Transpose → MatMul;
    * ``o``: uint8 E4M3 codes (a ``Constant``) behind ``trt::TRT_FP8DequantizeLinear`` → Transpose → MatMul;
    * ``fc1``: float initializer → FP8 Q/DQ → ``Gemm(transB=1)``; ``fc2``: ``Constant`` → FP8 Q/DQ →
      ``Gemm(transB=1)``.

    Attention: the heads are quantized before their ``Transpose`` (``[B,T,H,16]``), as the raw export
    does: ``scores = MatMul(Transpose(FP8(q)), Transpose(FP8(k)))`` → Div 4 → Softmax → FP8 →
    ``MatMul(·, Transpose(FP8(v)))``.
    """
    rng = np.random.default_rng(seed)
    g = _Graph()
    d, t, n_heads, ff = 32, 8, 2, 64
    head = d // n_heads

    def weight(n: int, k: int) -> np.ndarray:
        return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)

    def fp8_weight(name: str, w: np.ndarray, *, constant: bool = False) -> str:
        (g.constant_node if constant else g.const)(name, w)
        return g.trt_fp8(name, float(np.abs(w).max()))

    def bias(name: str, n: int) -> str:
        return g.const(name, (rng.standard_normal(n) * 0.05).astype(np.float32))

    def layer_norm(x: str, name: str) -> str:
        scale = g.const(f"{name}.weight", (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        shift = g.const(f"{name}.bias", (0.05 * rng.standard_normal(d)).astype(np.float32))
        return g.node("LayerNormalization", [x, scale, shift], name, axis=-1, epsilon=1e-5)

    def linear(x: str, weight_t: str, name: str, amax: float) -> str:
        g.node("MatMul", [g.trt_fp8(x, amax, tag=f"{name}_input"), weight_t], f"{name}_matmul")
        return g.node("Add", [f"{name}_matmul", bias(f"{name}.bias", d)], name)

    def heads(x: str, perm: list[int]) -> str:
        """``[B,T,D]`` → Reshape ``[B,T,H,d]`` → FP8 → Transpose ``perm``."""
        g.node("Reshape", [x, g.const(f"{x}_heads_shape", np.array([0, 0, n_heads, head], np.int64))], f"{x}_split")
        return g.node("Transpose", [g.trt_fp8(f"{x}_split", 4.0)], f"{x}_heads", perm=perm)

    ln1 = layer_norm("input", "ln1")
    g.node("Transpose", [fp8_weight("q.weight", weight(d, d))], "q.weight_t", perm=[1, 0])
    g.node("Transpose", [fp8_weight("k.weight", weight(d, d), constant=True)], "k.weight_t", perm=[1, 0])
    v_shape = g.const("v.weight_shape", np.array([d, d], np.int64))
    g.node("Reshape", [fp8_weight("v.weight", weight(d, d)[None]), v_shape], "v.weight_2d")
    g.node("Transpose", ["v.weight_2d"], "v.weight_t", perm=[1, 0])
    q, k, v = (linear(ln1, f"{name}.weight_t", name, 4.0) for name in ("q", "k", "v"))
    g.node("MatMul", [heads(q, [0, 2, 1, 3]), heads(k, [0, 2, 3, 1])], "scores")
    g.node("Div", ["scores", g.const("scores_divisor", np.float32(np.sqrt(head)))], "scores_scaled")
    g.node("Softmax", ["scores_scaled"], "probs", axis=-1)
    g.node("MatMul", [g.trt_fp8("probs", 1.0), heads(v, [0, 2, 1, 3])], "context_heads")
    g.node("Transpose", ["context_heads"], "context_t", perm=[0, 2, 1, 3])
    g.node("Reshape", ["context_t", g.const("context_shape", np.array([0, 0, d], np.int64))], "context")
    g.node("Transpose", [g.trt_fp8_codes("o.weight", weight(d, d), constant=True)], "o.weight_t", perm=[1, 0])
    attention = linear("context", "o.weight_t", "o", 3.0)
    g.node("Add", ["input", attention], "residual1")
    ln2 = layer_norm("residual1", "ln2")
    g.node("Reshape", [ln2, g.const("tokens_shape", np.array([-1, d], np.int64))], "tokens")
    fc1_weight = fp8_weight("fc1.weight", weight(ff, d))
    g.node("Gemm", [g.trt_fp8("tokens", 4.0), fc1_weight, bias("fc1.bias", ff)], "fc1", transB=1)
    g.node("Div", ["fc1", g.const("gelu_sqrt2", np.float32(np.sqrt(2.0)))], "gelu_scaled")
    g.node("Erf", ["gelu_scaled"], "gelu_erf")
    g.node("Add", ["gelu_erf", g.const("gelu_one", np.float32(1.0))], "gelu_erf1")
    g.node("Mul", ["fc1", "gelu_erf1"], "gelu_x")
    g.node("Mul", ["gelu_x", g.const("gelu_half", np.float32(0.5))], "gelu")
    fc2_weight = fp8_weight("fc2.weight", weight(d, ff), constant=True)
    g.node("Gemm", [g.trt_fp8("gelu", 4.0), fc2_weight, bias("fc2.bias", d)], "fc2", transB=1)
    g.node("Reshape", ["fc2", g.const("block_shape", np.array([-1, t, d], np.int64))], "mlp")
    g.node("Add", ["residual1", "mlp"], "output")
    return g.model(
        "modelopt_transformer",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, t, d]),
        helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, t, d]),
        opsets={"": 17, "trt": 1},
    )


def linear(transposed: bool, seed: int = 0) -> onnx.ModelProto:
    """``input [4,32]`` → FP8 → MatMul with one FP8 weight ``W [32,16]`` (per output channel) → ``output [4,16]``.

    ``transposed``: the weight is stored as ``Wᵀ [16,32]`` with its scale on axis 0 and reaches the MatMul
    through ``Transpose`` (torch's Linear); the two models compute the same function with the same FP8 codes.
    """
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((32, 16)) / np.sqrt(32)).astype(np.float32)
    g = _Graph()
    x = g.fp8_activation("input", 4.0)
    if transposed:
        weight = g.node("Transpose", [g.fp8_weight("w", np.ascontiguousarray(w.T), 0)], "w_t", perm=[1, 0])
    else:
        weight = g.fp8_weight("w", w, 1)
    g.node("MatMul", [x, weight], "output")
    return g.model(
        "linear",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, 32]),
        helper.make_tensor_value_info("output", TensorProto.FLOAT, [4, 16]),
    )
