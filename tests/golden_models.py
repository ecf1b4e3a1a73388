"""Small FP8 fake-quantized ONNX models, one per dialect and granularity, built in code.

Every builder is a plain function returning an ``onnx.ModelProto`` (shape-inferred, deterministic:
weights come from a fixed seed). Most share one network::

    input [1,3,8,8] ─[quant "input"]─ Conv "conv1" (W1 [4,3,3,3], B1, pads 1) ─ Relu "relu1"
          ─[quant "relu1"]─ Conv "conv2" (W2 [4,4,3,3], pads 1) ─ output [1,4,8,8]

with activation quantizers on ``input`` and ``relu1`` and weight quantizers on ``W1`` and ``W2``;
the blocked cases use ``input [2,32] ─[quant]─ MatMul "matmul" (W [32,16]) ─ output [2,16]``.
Scales are ``amax / max`` of the format (activations: amax 4 for ``input``, 6 for ``relu1``;
weights: max |W| per tensor or per output channel).

Tensor and node names follow one scheme, so tests can point at them: for a quantized tensor
``t`` the scale is ``t_scale``, the zero point ``t_zero_point``, the quantizer node
``t_QuantizeLinear`` (or ``t_TRT_Q``, ``t_FloatQuant``, ``t_cast_fp8``; ``t_DequantizeLinear`` /
``t_TRT_DQ`` for weights stored as FP8 codes ``t_fp8`` / uint8 codes ``t_codes``) and the
dequantized tensor ``t_dequantized`` (also the FakeQuantize output after normalization).

:data:`GOLDEN` maps a case name to a :class:`GoldenCase` with the builder and what normalization
should find. :func:`with_initializer` makes a broken variant (zero scale, non-zero zero point …).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fp8conv import fp8

__all__ = ["GOLDEN", "RUNNABLE", "GoldenCase", "save_golden", "with_initializer"]

_FP8_TYPES = {
    "e4m3fn": TensorProto.FLOAT8E4M3FN,
    "e4m3fnuz": TensorProto.FLOAT8E4M3FNUZ,
    "e5m2": TensorProto.FLOAT8E5M2,
    "e5m2fnuz": TensorProto.FLOAT8E5M2FNUZ,
}
_ACT_AMAX = {"input": 4.0, "relu1": 6.0}
_IR_VERSION = 10


@dataclasses.dataclass(frozen=True)
class GoldenCase:
    """A golden model and what normalizing it must find.

    Attributes:
        build: Returns the model.
        dialects: Sorted dialect names normalization reports (empty when it must refuse the model).
        activation_points: Number of activation quantization points.
        weight_points: Number of weight quantization points.
        integer_qdq: Number of integer Q/DQ nodes that stay in the model.
        unsupported: Whether normalization must raise ``UnsupportedModelError``.
    """

    build: Callable[[], onnx.ModelProto]
    dialects: tuple[str, ...]
    activation_points: int
    weight_points: int
    integer_qdq: int = 0
    unsupported: bool = False

    @property
    def description(self) -> str:
        """The builder's docstring (what the model contains)."""
        return (self.build.__doc__ or "").strip()


# --- building blocks --------------------------------------------------------------------------------


class _Builder:
    """Collects nodes and initializers of one graph."""

    def __init__(self, opset: int = 19, custom_opsets: dict[str, int] | None = None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.opsets = {"": opset, **(custom_opsets or {})}
        self.value_info: list[onnx.ValueInfoProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def fp8_const(self, name: str, values: np.ndarray, fmt: str) -> str:
        """An FP8 initializer holding ``values`` rounded to ``fmt`` (saturating)."""
        codes = fp8.encode(values, fmt)
        tensor = helper.make_tensor(name, _FP8_TYPES[fmt], codes.shape, codes.tobytes(), raw=True)
        self.initializers.append(tensor)
        return name

    def add(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        name: str,
        ir_version: int = _IR_VERSION,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers, value_info=self.value_info)
        opsets = [helper.make_opsetid(domain, version) for domain, version in self.opsets.items()]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="fp8conv-golden")
        model.ir_version = ir_version
        return onnx.shape_inference.infer_shapes(model)


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240607)
    return {
        "W1": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "B1": (rng.standard_normal(4) * 0.1).astype(np.float32),
        "W2": (rng.standard_normal((4, 4, 3, 3)) * 0.2).astype(np.float32),
        "W": (rng.standard_normal((32, 16)) * 0.2).astype(np.float32),
    }


def _act_scale(tensor: str, fmt: str) -> np.ndarray:
    return np.float32(_ACT_AMAX[tensor] / fp8.FORMATS[fmt].max_value)


def _weight_scale(w: np.ndarray, fmt: str, per_channel: bool) -> np.ndarray:
    amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1) if per_channel else np.abs(w).max()
    return (amax / fp8.FORMATS[fmt].max_value).astype(np.float32)


# A quantizer callback adds the nodes quantizing ``tensor`` and returns the dequantized tensor's name.
_Quantizer = Callable[[_Builder, str], str]


def _conv_net(b: _Builder, act: _Quantizer | None, weight: _Quantizer, name: str) -> onnx.ModelProto:
    """The shared Conv → Relu → Conv network; ``act``/``weight`` quantize activations and weights.

    ``weight`` adds the weight initializers it needs (float, float16 or FP8 codes).
    """
    b.const("B1", _weights()["B1"])
    x = act(b, "input") if act else "input"
    w1 = weight(b, "W1")
    b.add("Conv", [x, w1, "B1"], ["conv1"], "conv1", pads=[1, 1, 1, 1])
    b.add("Relu", ["conv1"], ["relu1"], "relu1")
    r = act(b, "relu1") if act else "relu1"
    w2 = weight(b, "W2")
    b.add("Conv", [r, w2], ["output"], "conv2", pads=[1, 1, 1, 1])
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        name,
    )


def _matmul_net(b: _Builder, act: _Quantizer | None, weight: _Quantizer, name: str, ir_version: int = _IR_VERSION):
    """``input [2,32] → [act] → MatMul(W [32,16]) → output [2,16]``."""
    x = act(b, "input") if act else "input"
    w = weight(b, "W")
    b.add("MatMul", [x, w], ["output"], "matmul")
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2, 16])],
        name,
        ir_version=ir_version,
    )


def _qdq(
    b: _Builder,
    tensor: str,
    scale: np.ndarray,
    fmt: str,
    *,
    zero_point_shape: tuple[int, ...] | str | None = "scale",
    dq_zero_point: bool = True,
    output_dtype: bool = False,
    scale_type: type = np.float32,
    **attrs,
) -> str:
    """``QuantizeLinear(tensor, s, zp) → DequantizeLinear(q, s, zp)``; returns the DQ output name.

    The zero point has the scale's shape unless ``zero_point_shape`` gives one; None omits it (then
    ``output_dtype`` names the FP8 type if set).
    """
    s = b.const(f"{tensor}_scale", np.asarray(scale, dtype=scale_type))
    if zero_point_shape == "scale":
        zero_point_shape = np.shape(scale)
    q_inputs, dq_inputs = [tensor, s], [f"{tensor}_quantized", s]
    if zero_point_shape is not None:
        zp = b.fp8_const(f"{tensor}_zero_point", np.zeros(zero_point_shape, np.float32), fmt)
        q_inputs.append(zp)
        if dq_zero_point:
            dq_inputs.append(zp)
    q_attrs = dict(attrs)
    if output_dtype:
        q_attrs["output_dtype"] = _FP8_TYPES[fmt]
    b.add("QuantizeLinear", q_inputs, [f"{tensor}_quantized"], f"{tensor}_QuantizeLinear", **q_attrs)
    dq_attrs = {k: v for k, v in attrs.items() if k in ("axis", "block_size")}
    return b.add("DequantizeLinear", dq_inputs, [f"{tensor}_dequantized"], f"{tensor}_DequantizeLinear", **dq_attrs)


def _qdq_net(fmt: str = "e4m3fn", *, per_axis: bool = False, opset: int = 19, name: str, **attrs) -> onnx.ModelProto:
    weights = _weights()

    def act(b: _Builder, tensor: str) -> str:
        return _qdq(b, tensor, _act_scale(tensor, fmt), fmt, **attrs)

    def weight(b: _Builder, tensor: str) -> str:
        extra = {"axis": 0} if per_axis else {}
        b.const(tensor, weights[tensor])
        return _qdq(b, tensor, _weight_scale(weights[tensor], fmt, per_axis), fmt, **attrs, **extra)

    return _conv_net(_Builder(opset), act, weight, name)


# --- standard QDQ (dialect "qdq") --------------------------------------------------------------------


def qdq_per_tensor() -> onnx.ModelProto:
    """Standard Q→DQ (opset 19), E4M3FN, per-tensor: activations ``input``/``relu1`` and float weights
    ``W1``/``W2`` each go through ``QuantizeLinear(x, s, zp) → DequantizeLinear(q, s, zp)`` with a
    scalar FLOAT8E4M3FN zero point of 0 and no ``saturate`` attribute (default 1)."""
    return _qdq_net(name="qdq_per_tensor")


def qdq_per_axis() -> onnx.ModelProto:
    """Like ``qdq_per_tensor`` but the Conv weights are per output channel: 1-D scale [4], ``axis=0``
    on both Q and DQ; activations stay per-tensor."""
    fmt = "e4m3fn"
    weights = _weights()

    def act(b: _Builder, tensor: str) -> str:
        return _qdq(b, tensor, _act_scale(tensor, fmt), fmt)

    def weight(b: _Builder, tensor: str) -> str:
        b.const(tensor, weights[tensor])
        return _qdq(b, tensor, _weight_scale(weights[tensor], fmt, True), fmt, axis=0)

    return _conv_net(_Builder(19), act, weight, "qdq_per_axis")


def qdq_blocked() -> onnx.ModelProto:
    """Opset 21 MatMul: activation ``input`` per-tensor Q→DQ; float weight ``W`` [32,16] Q→DQ blocked
    along axis 0 with ``block_size=16`` (scale [2,16]), E4M3FN."""
    fmt = "e4m3fn"
    w = _weights()["W"]
    blocks = np.abs(w).reshape(2, 16, 16).max(axis=1) / fp8.FORMATS[fmt].max_value

    def act(b: _Builder, tensor: str) -> str:
        return _qdq(b, tensor, _act_scale(tensor, fmt), fmt)

    def weight(b: _Builder, tensor: str) -> str:
        b.const(tensor, w)
        return _qdq(b, tensor, blocks.astype(np.float32), fmt, axis=0, block_size=16)

    return _matmul_net(_Builder(21), act, weight, "qdq_blocked")


def qdq_f16_scale() -> onnx.ModelProto:
    """Float16 Q→DQ with float16 scales (opset 19): ``input``/``relu1`` are cast to float16
    (``<t>_f16``), fake-quantized with an f16 scale and cast back; weights are float16 initializers
    ``W1``/``W2`` quantized with f16 scales and cast to float for the Convs (E4M3FN, per-tensor)."""
    fmt = "e4m3fn"
    weights = _weights()

    def act(b: _Builder, tensor: str) -> str:
        half = b.add("Cast", [tensor], [f"{tensor}_f16"], f"{tensor}_to_f16", to=TensorProto.FLOAT16)
        dq = _qdq(b, half, _act_scale(tensor, fmt), fmt, scale_type=np.float16)
        return b.add("Cast", [dq], [f"{tensor}_f32"], f"{tensor}_to_f32", to=TensorProto.FLOAT)

    def weight(b: _Builder, tensor: str) -> str:
        b.const(tensor, weights[tensor].astype(np.float16))
        dq = _qdq(b, tensor, _weight_scale(weights[tensor], fmt, False), fmt, scale_type=np.float16)
        return b.add("Cast", [dq], [f"{tensor}_f32"], f"{tensor}_to_f32", to=TensorProto.FLOAT)

    return _conv_net(_Builder(19), act, weight, "qdq_f16_scale")


def qdq_zp_shape1() -> onnx.ModelProto:
    """ModelOpt's FP8 export shape: activations ``QuantizeLinear(x, s, zp[1]; saturate=1) →
    DequantizeLinear(q, s)`` (scalar scale, zero point of shape [1], DQ without zero point); weights
    stored as FLOAT8E4M3FN initializers ``W1``/``W2`` behind ``DequantizeLinear(w, s)``."""
    fmt = "e4m3fn"
    weights = _weights()

    def act(b: _Builder, tensor: str) -> str:
        return _qdq(b, tensor, _act_scale(tensor, fmt), fmt, zero_point_shape=(1,), dq_zero_point=False, saturate=1)

    def weight(b: _Builder, tensor: str) -> str:
        scale = _weight_scale(weights[tensor], fmt, False)
        b.fp8_const(f"{tensor}_fp8", weights[tensor] / scale, fmt)
        s = b.const(f"{tensor}_scale", scale)
        return b.add("DequantizeLinear", [f"{tensor}_fp8", s], [f"{tensor}_dequantized"], f"{tensor}_DequantizeLinear")

    return _conv_net(_Builder(19), act, weight, "qdq_zp_shape1")


def qdq_trt_domain() -> onnx.ModelProto:
    """ModelOpt's deploy export (``get_onnx_bytes_and_metadata``, opset 19, ``trt`` 1): ``qdq_zp_shape1``
    with the activation ``QuantizeLinear``/``DequantizeLinear`` left in the ``trt`` domain after the
    ``TRT_FP8*`` ops were renamed, and the stale ``uint8`` ``value_info`` of the TRT op on the Q outputs
    (``input_quantized`` [1,3,8,8], ``relu1_quantized`` [1,4,8,8]); weights FLOAT8E4M3FN behind standard
    ``DequantizeLinear``."""
    fmt = "e4m3fn"
    weights = _weights()
    shapes = {"input": [1, 3, 8, 8], "relu1": [1, 4, 8, 8]}

    def act(b: _Builder, tensor: str) -> str:
        output = _qdq(b, tensor, _act_scale(tensor, fmt), fmt, zero_point_shape=(1,), dq_zero_point=False, saturate=1)
        for node in b.nodes[-2:]:
            node.domain = "trt"
        b.value_info.append(helper.make_tensor_value_info(f"{tensor}_quantized", TensorProto.UINT8, shapes[tensor]))
        return output

    def weight(b: _Builder, tensor: str) -> str:
        scale = _weight_scale(weights[tensor], fmt, False)
        b.fp8_const(f"{tensor}_fp8", weights[tensor] / scale, fmt)
        s = b.const(f"{tensor}_scale", scale)
        return b.add("DequantizeLinear", [f"{tensor}_fp8", s], [f"{tensor}_dequantized"], f"{tensor}_DequantizeLinear")

    return _conv_net(_Builder(19, {"trt": 1}), act, weight, "qdq_trt_domain")


def qdq_output_dtype() -> onnx.ModelProto:
    """Opset 21 Q→DQ without zero points: ``QuantizeLinear(x, s; output_dtype=FLOAT8E4M3FN) →
    DequantizeLinear(q, s)`` for activations and float weights (per-tensor)."""
    return _qdq_net(opset=21, zero_point_shape=None, output_dtype=True, name="qdq_output_dtype")


def qdq_e4m3fnuz() -> onnx.ModelProto:
    """``qdq_per_tensor`` with FLOAT8E4M3FNUZ zero points (scales amax/240)."""
    return _qdq_net("e4m3fnuz", name="qdq_e4m3fnuz")


def qdq_e5m2() -> onnx.ModelProto:
    """``qdq_per_tensor`` with FLOAT8E5M2 zero points (scales amax/57344)."""
    return _qdq_net("e5m2", name="qdq_e5m2")


def qdq_e5m2fnuz() -> onnx.ModelProto:
    """``qdq_per_tensor`` with FLOAT8E5M2FNUZ zero points (scales amax/57344)."""
    return _qdq_net("e5m2fnuz", name="qdq_e5m2fnuz")


def qdq_saturate0() -> onnx.ModelProto:
    """``qdq_per_tensor`` with ``saturate=0`` on every QuantizeLinear (overflow becomes NaN)."""
    return _qdq_net(saturate=0, name="qdq_saturate0")


# --- stored FP8 weights (dialect "dq-weight") --------------------------------------------------------


def dq_weight() -> onnx.ModelProto:
    """FP8 weights stored as FLOAT8E4M3FN initializers behind DQ only, no activation quantization:
    ``W1`` per-tensor with an all-zero zero point ``W1_zero_point`` (normalization drops it),
    ``W2`` per output channel (scale [4], ``axis=0``) without zero point."""
    fmt = "e4m3fn"
    weights = _weights()

    def weight(b: _Builder, tensor: str) -> str:
        per_axis = tensor == "W2"
        scale = _weight_scale(weights[tensor], fmt, per_axis)
        view = scale.reshape(-1, 1, 1, 1) if per_axis else scale
        b.fp8_const(f"{tensor}_fp8", weights[tensor] / view, fmt)
        inputs = [f"{tensor}_fp8", b.const(f"{tensor}_scale", scale)]
        if not per_axis:
            inputs.append(b.fp8_const(f"{tensor}_zero_point", np.zeros((), np.float32), fmt))
        attrs = {"axis": 0} if per_axis else {}
        return b.add("DequantizeLinear", inputs, [f"{tensor}_dequantized"], f"{tensor}_DequantizeLinear", **attrs)

    return _conv_net(_Builder(19), None, weight, "dq_weight")


def dq_weight_blocked() -> onnx.ModelProto:
    """Opset 21 MatMul whose weight ``W`` [32,16] is stored as FLOAT8E5M2 behind a blocked
    ``DequantizeLinear(w, s[2,16], zp[2,16]; axis=0, block_size=16)`` with an all-zero zero point
    ``W_zero_point``; the activation is not quantized."""
    fmt = "e5m2"
    w = _weights()["W"]
    blocks = (np.abs(w).reshape(2, 16, 16).max(axis=1) / fp8.FORMATS[fmt].max_value).astype(np.float32)

    def weight(b: _Builder, tensor: str) -> str:
        b.fp8_const(f"{tensor}_fp8", w / np.repeat(blocks, 16, axis=0), fmt)
        s = b.const(f"{tensor}_scale", blocks)
        zp = b.fp8_const(f"{tensor}_zero_point", np.zeros(blocks.shape, np.float32), fmt)
        return b.add(
            "DequantizeLinear",
            [f"{tensor}_fp8", s, zp],
            [f"{tensor}_dequantized"],
            f"{tensor}_DequantizeLinear",
            axis=0,
            block_size=16,
        )

    return _matmul_net(_Builder(21), None, weight, "dq_weight_blocked")


# --- TensorRT custom ops (dialect "trt") -------------------------------------------------------------


def _trt_net(opset: int, trt_version: int) -> onnx.ModelProto:
    weights = _weights()
    b = _Builder(opset, {"trt": trt_version})

    def trt_qdq(b: _Builder, tensor: str, scale: np.ndarray) -> str:
        s = b.const(f"{tensor}_scale", scale)
        b.add("TRT_FP8QuantizeLinear", [tensor, s], [f"{tensor}_quantized"], f"{tensor}_TRT_Q", domain="trt")
        b.value_info.append(helper.make_tensor_value_info(f"{tensor}_quantized", TensorProto.UINT8, None))
        return b.add(
            "TRT_FP8DequantizeLinear",
            [f"{tensor}_quantized", s],
            [f"{tensor}_dequantized"],
            f"{tensor}_TRT_DQ",
            domain="trt",
        )

    def act(b: _Builder, tensor: str) -> str:
        return trt_qdq(b, tensor, _act_scale(tensor, "e4m3fn"))

    def weight(b: _Builder, tensor: str) -> str:
        scale = _weight_scale(weights[tensor], "e4m3fn", False)
        if tensor == "W2":
            b.const(tensor, weights[tensor])
            return trt_qdq(b, tensor, scale)
        codes = fp8.encode(weights[tensor] / scale, "e4m3fn")
        b.const(f"{tensor}_codes", codes)
        s = b.const(f"{tensor}_scale", scale)
        return b.add(
            "TRT_FP8DequantizeLinear",
            [f"{tensor}_codes", s],
            [f"{tensor}_dequantized"],
            f"{tensor}_TRT_DQ",
            domain="trt",
        )

    return _conv_net(b, act, weight, f"trt_opset{trt_version}")


def trt_opset1() -> onnx.ModelProto:
    """ModelOpt's raw TorchScript export (opset 17, ``trt`` domain version 1): activations and ``W2``
    through ``trt::TRT_FP8QuantizeLinear(x, s) → trt::TRT_FP8DequantizeLinear(q, s)`` (q uint8);
    ``W1`` stored as uint8 E4M3 codes ``W1_codes`` behind ``trt::TRT_FP8DequantizeLinear``."""
    return _trt_net(17, 1)


def trt_opset100() -> onnx.ModelProto:
    """``trt_opset1`` with ONNX opset 20 and the ``trt`` domain in version 100 (TransformerEngine's
    onnxscript ops)."""
    return _trt_net(20, 100)


# --- QONNX FloatQuant (dialect "qonnx") ---------------------------------------------------------------


def _floatquant_net(
    exponent_bits: int,
    mantissa_bits: int,
    bias: int,
    max_val: float,
    *,
    has_inf: int,
    has_nan: int,
    per_channel: bool,
    name: str,
) -> onnx.ModelProto:
    weights = _weights()
    shapes = {"input": [1, 3, 8, 8], "relu1": [1, 4, 8, 8], "W1": [4, 3, 3, 3], "W2": [4, 4, 3, 3]}
    value_info: list[onnx.ValueInfoProto] = []  # QONNX models are shape-inferred: FloatQuant keeps X's shape
    b = _Builder(17, {"qonnx.custom_op.general": 2})
    parameters = [
        b.const("fq_exponent_bitwidth", np.float32(exponent_bits)),
        b.const("fq_mantissa_bitwidth", np.float32(mantissa_bits)),
        b.const("fq_exponent_bias", np.float32(bias)),
        b.const("fq_max_val", np.float32(max_val)),
    ]

    def float_quant(b: _Builder, tensor: str, scale: np.ndarray) -> str:
        s = b.const(f"{tensor}_scale", scale)
        value_info.append(helper.make_tensor_value_info(f"{tensor}_dequantized", TensorProto.FLOAT, shapes[tensor]))
        return b.add(
            "FloatQuant",
            [tensor, s, *parameters],
            [f"{tensor}_dequantized"],
            f"{tensor}_FloatQuant",
            domain="qonnx.custom_op.general",
            has_inf=has_inf,
            has_nan=has_nan,
            has_subnormal=1,
            saturation=1,
            rounding_mode="ROUND",
        )

    def act(b: _Builder, tensor: str) -> str:
        scale = np.float32(_ACT_AMAX[tensor] / max_val)
        if per_channel and tensor == "relu1":
            scale = np.linspace(0.5, 1.0, 4, dtype=np.float32).reshape(1, 4, 1, 1) * scale
        return float_quant(b, tensor, scale)

    def weight(b: _Builder, tensor: str) -> str:
        amax = np.abs(weights[tensor]).reshape(4, -1).max(axis=1) if per_channel else np.abs(weights[tensor]).max()
        scale = (amax / max_val).astype(np.float32)
        b.const(tensor, weights[tensor])
        return float_quant(b, tensor, scale.reshape(4, 1, 1, 1) if per_channel else scale)

    b.value_info = value_info
    return _conv_net(b, act, weight, name)


def floatquant_e4m3fn() -> onnx.ModelProto:
    """Brevitas QONNX export of OCP E4M3: ``FloatQuant(x, s, E=4, M=3, bias=7, max_val=448;
    has_inf=0, has_nan=1, has_subnormal=1, saturation=1, rounding_mode=ROUND)`` on activations and
    weights, scalar scales (identical to the named format ``e4m3fn``)."""
    return _floatquant_net(4, 3, 7, 448.0, has_inf=0, has_nan=1, per_channel=False, name="floatquant_e4m3fn")


def floatquant_e3m4() -> onnx.ModelProto:
    """The FP8 whitepaper's E3M4 minifloat (bias 3, max 31, no Inf/NaN, subnormals) as QONNX
    FloatQuant: ``input`` per-tensor, ``relu1`` per channel with scale [1,4,1,1], weights per output
    channel with scales [4,1,1,1]."""
    return _floatquant_net(3, 4, 3, 31.0, has_inf=0, has_nan=0, per_channel=True, name="floatquant_e3m4")


# --- PyTorch-style Cast pairs (dialect "cast") --------------------------------------------------------


def _cast_chain(b: _Builder, tensor: str, scale: np.ndarray, fmt: str, clip: bool) -> str:
    s = b.const(f"{tensor}_scale", scale)
    data = b.add("Div", [tensor, s], [f"{tensor}_div"], f"{tensor}_div")
    if clip:
        limit = fp8.FORMATS[fmt].max_value
        low, high = b.const(f"{tensor}_clip_min", np.float32(-limit)), b.const(f"{tensor}_clip_max", np.float32(limit))
        data = b.add("Clip", [data, low, high], [f"{tensor}_clip"], f"{tensor}_clip")
    cast = b.add("Cast", [data], [f"{tensor}_fp8"], f"{tensor}_cast_fp8", to=_FP8_TYPES[fmt])
    back = b.add("Cast", [cast], [f"{tensor}_float"], f"{tensor}_cast_float", to=TensorProto.FLOAT)
    return b.add("Mul", [back, s], [f"{tensor}_dequantized"], f"{tensor}_mul")


def _cast_net(fmt: str, clip: bool, name: str) -> onnx.ModelProto:
    weights = _weights()

    def act(b: _Builder, tensor: str) -> str:
        return _cast_chain(b, tensor, _act_scale(tensor, fmt), fmt, clip)

    def weight(b: _Builder, tensor: str) -> str:
        scale = _weight_scale(weights[tensor], fmt, True).reshape(4, 1, 1, 1)
        b.const(tensor, weights[tensor])
        return _cast_chain(b, tensor, scale, fmt, False)

    return _conv_net(_Builder(20), act, weight, name)


def cast_e4m3fn_clip() -> onnx.ModelProto:
    """The dynamo exporter's form (opset 20) of ``(x/s).clamp(-448, 448).to(float8_e4m3fn).to(float32)
    * s``: ``Div → Clip(-448, 448) → Cast(to=FLOAT8E4M3FN) → Cast(to=FLOAT) → Mul`` on activations;
    weights without Clip and with per-channel scales [4,1,1,1]."""
    return _cast_net("e4m3fn", True, "cast_e4m3fn_clip")


def cast_e5m2() -> onnx.ModelProto:
    """``Div → Cast(to=FLOAT8E5M2) → Cast(to=FLOAT) → Mul`` without Clip (opset 20); activations
    per-tensor, weights per channel with scales [4,1,1,1]."""
    return _cast_net("e5m2", False, "cast_e5m2")


# --- mixed and unsupported ---------------------------------------------------------------------------


def mixed_int8() -> onnx.ModelProto:
    """Integer and FP8 QDQ in one model (opset 19): ``conv1`` is INT8 QDQ (``input`` uint8 Q/DQ with
    zero point 128, ``W1`` int8 per-channel DQ-only, ``B1`` int32 DQ), ``conv2`` FP8 (``relu1``
    E4M3FN Q→DQ, ``W2`` stored FLOAT8E4M3FN behind DQ). Normalization keeps the four integer nodes."""
    weights = _weights()
    b = _Builder(19)
    x_scale = np.float32(8.0 / 255)
    b.const("input_scale", x_scale)
    b.const("input_zero_point", np.uint8(128))
    b.add("QuantizeLinear", ["input", "input_scale", "input_zero_point"], ["input_quantized"], "input_QuantizeLinear")
    b.add(
        "DequantizeLinear",
        ["input_quantized", "input_scale", "input_zero_point"],
        ["input_dequantized"],
        "input_DequantizeLinear",
    )
    w1_scale = (np.abs(weights["W1"]).reshape(4, -1).max(axis=1) / 127).astype(np.float32)
    b.const("W1_int8", np.round(weights["W1"] / w1_scale.reshape(4, 1, 1, 1)).astype(np.int8))
    b.const("W1_scale", w1_scale)
    b.add("DequantizeLinear", ["W1_int8", "W1_scale"], ["W1_dequantized"], "W1_DequantizeLinear", axis=0)
    b.const("B1_int32", np.round(weights["B1"] / (x_scale * w1_scale)).astype(np.int32))
    b.const("B1_scale", (x_scale * w1_scale).astype(np.float32))
    b.add("DequantizeLinear", ["B1_int32", "B1_scale"], ["B1_dequantized"], "B1_DequantizeLinear", axis=0)
    b.add("Conv", ["input_dequantized", "W1_dequantized", "B1_dequantized"], ["conv1"], "conv1", pads=[1, 1, 1, 1])
    b.add("Relu", ["conv1"], ["relu1"], "relu1")
    r = _qdq(b, "relu1", _act_scale("relu1", "e4m3fn"), "e4m3fn")
    w2_scale = _weight_scale(weights["W2"], "e4m3fn", False)
    b.fp8_const("W2_fp8", weights["W2"] / w2_scale, "e4m3fn")
    b.const("W2_scale", w2_scale)
    b.add("DequantizeLinear", ["W2_fp8", "W2_scale"], ["W2_dequantized"], "W2_DequantizeLinear")
    b.add("Conv", [r, "W2_dequantized"], ["output"], "conv2", pads=[1, 1, 1, 1])
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        "mixed_int8",
    )


def mx_unsupported() -> onnx.ModelProto:
    """MX block formats (opset 24, ``trt`` 1): the activation goes through
    ``trt::TRT_MXFP8DynamicQuantize`` (node ``input_MXFP8_Q``) → ``trt::TRT_MXFP8DequantizeLinear``
    (``input_MXFP8_DQ``); the MatMul weight is MXFP4: FLOAT4E2M1 codes behind
    ``DequantizeLinear(w, s:FLOAT8E8M0[1,16]; axis=0, block_size=32)`` (``W_DequantizeLinear``)."""
    w = _weights()["W"]
    b = _Builder(24, {"trt": 1})

    def act(b: _Builder, tensor: str) -> str:
        b.add(
            "TRT_MXFP8DynamicQuantize",
            [tensor],
            [f"{tensor}_mxfp8", f"{tensor}_e8m0"],
            f"{tensor}_MXFP8_Q",
            domain="trt",
            axis=-1,
            block_size=32,
            output_dtype=TensorProto.FLOAT8E4M3FN,
        )
        return b.add(
            "TRT_MXFP8DequantizeLinear",
            [f"{tensor}_mxfp8", f"{tensor}_e8m0"],
            [f"{tensor}_dequantized"],
            f"{tensor}_MXFP8_DQ",
            domain="trt",
            axis=-1,
            block_size=32,
        )

    def weight(b: _Builder, tensor: str) -> str:
        scale = np.exp2(np.ceil(np.log2(np.abs(w).max(axis=0, keepdims=True) / 6.0)))
        b.initializers.append(numpy_helper.from_array((w / scale).astype(ml_dtypes.float4_e2m1fn), f"{tensor}_fp4"))
        b.initializers.append(numpy_helper.from_array(scale.astype(ml_dtypes.float8_e8m0fnu), f"{tensor}_scale"))
        return b.add(
            "DequantizeLinear",
            [f"{tensor}_fp4", f"{tensor}_scale"],
            [f"{tensor}_dequantized"],
            f"{tensor}_DequantizeLinear",
            axis=0,
            block_size=32,
        )

    return _matmul_net(b, act, weight, "mx_unsupported", ir_version=11)


# --- registry -----------------------------------------------------------------------------------------

GOLDEN: dict[str, GoldenCase] = {
    "qdq_per_tensor": GoldenCase(qdq_per_tensor, ("qdq",), 2, 2),
    "qdq_per_axis": GoldenCase(qdq_per_axis, ("qdq",), 2, 2),
    "qdq_blocked": GoldenCase(qdq_blocked, ("qdq",), 1, 1),
    "qdq_f16_scale": GoldenCase(qdq_f16_scale, ("qdq",), 2, 2),
    "qdq_zp_shape1": GoldenCase(qdq_zp_shape1, ("dq-weight", "qdq"), 2, 2),
    "qdq_trt_domain": GoldenCase(qdq_trt_domain, ("dq-weight", "qdq"), 2, 2),
    "qdq_output_dtype": GoldenCase(qdq_output_dtype, ("qdq",), 2, 2),
    "qdq_e4m3fnuz": GoldenCase(qdq_e4m3fnuz, ("qdq",), 2, 2),
    "qdq_e5m2": GoldenCase(qdq_e5m2, ("qdq",), 2, 2),
    "qdq_e5m2fnuz": GoldenCase(qdq_e5m2fnuz, ("qdq",), 2, 2),
    "qdq_saturate0": GoldenCase(qdq_saturate0, ("qdq",), 2, 2),
    "dq_weight": GoldenCase(dq_weight, ("dq-weight",), 0, 2),
    "dq_weight_blocked": GoldenCase(dq_weight_blocked, ("dq-weight",), 0, 1),
    "trt_opset1": GoldenCase(trt_opset1, ("trt",), 2, 2),
    "trt_opset100": GoldenCase(trt_opset100, ("trt",), 2, 2),
    "floatquant_e4m3fn": GoldenCase(floatquant_e4m3fn, ("qonnx",), 2, 2),
    "floatquant_e3m4": GoldenCase(floatquant_e3m4, ("qonnx",), 2, 2),
    "cast_e4m3fn_clip": GoldenCase(cast_e4m3fn_clip, ("cast",), 2, 2),
    "cast_e5m2": GoldenCase(cast_e5m2, ("cast",), 2, 2),
    "mixed_int8": GoldenCase(mixed_int8, ("dq-weight", "qdq"), 1, 1, integer_qdq=4),
    "mx_unsupported": GoldenCase(mx_unsupported, (), 0, 0, unsupported=True),
}
"""Every golden case by name."""


RUNNABLE = sorted(name for name in GOLDEN if name != "mx_unsupported")
"""The cases fp8conv reads and runs (all but the MX model it refuses)."""


def save_golden(directory: Path, name: str) -> Path:
    """Save the model of case ``name`` as ``directory / f"{name}.onnx"``; return the path."""
    path = directory / f"{name}.onnx"
    onnx.save(GOLDEN[name].build(), str(path))
    return path


def with_initializer(model: onnx.ModelProto, name: str, values: np.typing.ArrayLike) -> onnx.ModelProto:
    """A copy of ``model`` whose initializer ``name`` holds ``values`` (in the initializer's type).

    FP8 initializers receive the codes of ``values`` (so ``1.0`` makes a non-zero FP8 zero point);
    the shape is that of ``values``, so this also makes a scale of the wrong shape.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for index, tensor in enumerate(copy.graph.initializer):
        if tensor.name != name:
            continue
        array = np.asarray(values, dtype=np.float32)
        fmt = {v: k for k, v in _FP8_TYPES.items()}.get(tensor.data_type)
        if fmt is not None:
            codes = fp8.encode(array, fmt)
            new = helper.make_tensor(name, tensor.data_type, codes.shape, codes.tobytes(), raw=True)
        else:
            new = numpy_helper.from_array(array.astype(helper.tensor_dtype_to_np_dtype(tensor.data_type)), name)
        copy.graph.initializer[index].CopyFrom(new)
        return copy
    raise KeyError(f"no initializer {name!r}")
