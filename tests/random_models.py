"""Random small FP8 fake-quantized graphs for the property tests (:mod:`tests.test_properties`).

A :class:`NetSpec` is drawn by :func:`net_specs` (a hypothesis strategy) and turned into an ONNX model by
:func:`build`. The network starts from ``input [1, C, H, W]`` and applies a random sequence of

* layers: ``Conv`` (1x1 or 3x3, optional bias), ``Transpose → MatMul → Transpose`` (a 1x1 conv over NHWC),
  and after a ``Reshape`` to ``[1, F]``: ``MatMul`` and ``Gemm`` (``transB`` 0 or 1, optional bias);
* float ops: ``Relu``, ``Clip``, ``Add`` and ``Concat`` with an earlier tensor of a fitting shape,
  ``MaxPool``/``AveragePool`` (3x3 stride 1 or 2x2 stride 2).

Every layer input is FP8-quantized (or, for some layers, only its weight is) in a dialect drawn per
quantizer, as the real exporters write them: standard ``QuantizeLinear``/``DequantizeLinear`` (zero point
of the scale's shape, of shape ``[1]`` as ModelOpt writes, or in the ``trt`` domain), TensorRT's
``TRT_FP8QuantizeLinear``/``TRT_FP8DequantizeLinear``, QONNX ``FloatQuant`` and the PyTorch exporter's
``Div → [Clip] → Cast → Cast → Mul``. Weights are float behind a quantizer (per tensor or per output
channel), FP8 initializers behind ``DequantizeLinear`` or uint8 codes behind ``TRT_FP8DequantizeLinear``.
Node names are unique, empty, duplicated or a mix.

Activation scales are ``margin * amax / max_value`` with ``amax`` measured on the float network over the
calibration samples (a first build without quantizers), so the FP8 source does not saturate on them.
:class:`BuiltNet` also returns what :func:`tests.test_properties` needs to bound the INT8 error: each
activation point's values on the float network and each layer's weight.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from fp8conv import fp8

SAMPLES = 12
ACT_DIALECTS = ("qdq", "qdq_zp1", "qdq_trt_domain", "trt", "floatquant", "cast_clip", "cast")
WEIGHT_DIALECTS = ("qdq", "fp8_dq", "trt_codes", "floatquant", "cast")
_FP8_TYPES = {"e4m3fn": TensorProto.FLOAT8E4M3FN, "e5m2": TensorProto.FLOAT8E5M2}
_E4M3 = fp8.FORMATS["e4m3fn"]


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """How one tensor is FP8-quantized: dialect, format, per-channel (weights) and scale margin."""

    dialect: str
    fmt: str = "e4m3fn"
    per_channel: bool = False
    margin: float = 1.1


@dataclasses.dataclass(frozen=True)
class Op:
    """One step of the network: ``kind`` with its parameters (see :func:`build`)."""

    kind: str
    channels: int = 0
    kernel: int = 1
    bias: bool = False
    trans_b: bool = False
    other: int = 0
    act: Quantizer | None = None
    weight: Quantizer | None = None


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """A random network: input shape, steps, node-name mode and the seed of its weights and data."""

    channels: int
    size: int
    ops: tuple[Op, ...]
    names: str
    seed: int

    @property
    def has_matmul_layer(self) -> bool:
        """Whether a MatMul or Gemm with a weight is among the layers (``w4a16`` converts only those)."""
        return any(op.kind in ("matmul", "gemm", "nhwc_matmul") for op in self.ops)


@dataclasses.dataclass
class ActivationPoint:
    """An FP8-quantized activation: its float values over the samples and its format."""

    tensor: str
    fmt: str
    values: np.ndarray


@dataclasses.dataclass
class BuiltNet:
    """The FP8 model, its calibration samples and what the error bound needs."""

    model: onnx.ModelProto
    samples: np.ndarray
    activations: list[ActivationPoint]
    weights: dict[str, np.ndarray]


# --- strategies ----------------------------------------------------------------------------------------


def _quantizers(dialects: tuple[str, ...], channel_choice: bool) -> st.SearchStrategy[Quantizer]:
    @st.composite
    def draw(draw_: st.DrawFn) -> Quantizer:
        dialect = draw_(st.sampled_from(dialects))
        fmt = "e4m3fn"
        if dialect in ("qdq", "cast", "cast_clip", "fp8_dq"):
            fmt = draw_(st.sampled_from(["e4m3fn", "e4m3fn", "e5m2"]))
        per_channel = channel_choice and dialect != "trt_codes" and draw_(st.booleans())
        margin = draw_(st.sampled_from([1.05, 1.5, 3.0]))
        return Quantizer(dialect, fmt, per_channel, margin)

    return draw()


@st.composite
def net_specs(draw: st.DrawFn, max_ops: int = 6) -> NetSpec:
    """A random :class:`NetSpec` with at least one layer whose input or weight is FP8-quantized."""
    channels = draw(st.integers(2, 5))
    size = draw(st.sampled_from([4, 6, 8]))
    act, weight = _quantizers(ACT_DIALECTS, False), _quantizers(WEIGHT_DIALECTS, True)
    shapes: list[tuple[int, ...]] = [(channels, size, size)]  # shapes of the tensors made so far
    current = 0
    ops: list[Op] = []
    count = draw(st.integers(1, max_ops))
    flat = False
    for _ in range(count):
        shape = shapes[current]
        kinds = ["relu", "clip", "add", "concat"]
        kinds += ["matmul", "gemm"] if flat else ["conv", "conv", "nhwc_matmul", "pool", "flatten"]
        kind = draw(st.sampled_from(kinds))
        op: Op | None = None
        if kind in ("conv", "nhwc_matmul", "matmul", "gemm"):
            quantize = draw(st.sampled_from(["both", "both", "both", "activation", "weight"]))
            op = Op(
                kind,
                channels=draw(st.integers(2, 6) if not flat else st.integers(3, 12)),
                kernel=draw(st.sampled_from([1, 3])) if kind == "conv" else 1,
                bias=draw(st.booleans()) if kind in ("conv", "gemm") else False,
                trans_b=draw(st.booleans()) if kind == "gemm" else False,
                act=draw(act) if quantize != "weight" else None,
                weight=draw(weight) if quantize != "activation" else None,
            )
            new = (op.channels, *shape[1:]) if not flat else (op.channels,)
        elif kind in ("add", "concat"):
            fits = [
                i
                for i, other in enumerate(shapes)
                if (other == shape if kind == "add" else len(other) == len(shape) and other[1:] == shape[1:])
            ]
            other = draw(st.sampled_from(fits))
            op = Op(kind, other=other)
            new = shape if kind == "add" else (shape[0] + shapes[other][0], *shape[1:])
        elif kind == "pool":
            halve = shape[1] % 2 == 0 and shape[1] >= 4 and draw(st.booleans())
            op = Op(draw(st.sampled_from(["maxpool", "avgpool"])), kernel=2 if halve else 3)
            new = (shape[0], shape[1] // 2, shape[2] // 2) if halve else shape
        elif kind == "flatten":
            op = Op("flatten")
            new = (int(np.prod(shape)),)
            flat = True
        else:
            op = Op(kind)
            new = shape
        ops.append(op)
        shapes.append(new)
        current = len(shapes) - 1
    if not any(o.act or o.weight for o in ops):  # at least one FP8 layer
        layer = "matmul" if flat else "conv"
        ops.append(Op(layer, channels=3, act=draw(act), weight=draw(weight)))
    names = draw(st.sampled_from(["unique", "empty", "duplicate", "mixed"]))
    return NetSpec(channels, size, tuple(ops), names, draw(st.integers(0, 2**16)))


# --- building ------------------------------------------------------------------------------------------


class _Net:
    """Builds the model of a spec; with ``amax`` None the quantizers are left out (the float network)."""

    def __init__(self, spec: NetSpec, amax: dict[str, float] | None) -> None:
        self.spec = spec
        self.amax = amax
        self.rng = np.random.default_rng(spec.seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self.opsets = {"": 19}
        self.quantized: dict[str, str] = {}  # float tensor → its dequantized tensor
        self.points: list[tuple[str, str]] = []  # (tensor, format) of each activation quantizer
        self.weights: dict[str, np.ndarray] = {}
        self._count = 0

    def _name(self, op: str) -> str:
        self._count += 1
        mode = self.spec.names if self.amax is not None else "empty"  # onnxruntime refuses duplicate names
        if mode == "empty" or (mode == "mixed" and self._count % 3 == 0):
            return ""
        if mode == "duplicate" or (mode == "mixed" and self._count % 3 == 1):
            return f"{op}_node"
        return f"n{self._count}_{op}"

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def fp8_const(self, stem: str, values: np.ndarray, fmt: str) -> str:
        name = self.fresh(stem)
        codes = fp8.encode(np.asarray(values, np.float32), fmt)
        self.initializers.append(helper.make_tensor(name, _FP8_TYPES[fmt], codes.shape, codes.tobytes(), raw=True))
        return name

    def add(self, op: str, inputs: list[str], domain: str = "", output: str | None = None, **attrs: object) -> str:
        """Add a node; ``output`` names the network's own tensors (the same in the float build)."""
        output = output or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=self._name(op), domain=domain, **attrs))
        return output

    # -- quantizers

    def _fake_quantize(self, tensor: str, scale: np.ndarray, q: Quantizer, axis: int | None) -> str:
        """The dialect's Q→DQ (or equivalent) of ``tensor`` with ``scale``; returns the dequantized name."""
        fmt = q.fmt
        s = self.const("scale", scale.astype(np.float32))
        extra = {"axis": axis} if axis is not None and scale.ndim == 1 and scale.size > 1 else {}
        if q.dialect in ("qdq", "qdq_zp1", "qdq_trt_domain"):
            domain = "trt" if q.dialect == "qdq_trt_domain" else ""
            if domain:
                self.opsets["trt"] = 1
            zp_shape = (1,) if q.dialect == "qdq_zp1" and scale.ndim == 0 else scale.shape
            zp = self.fp8_const("zero_point", np.zeros(zp_shape, np.float32), fmt)
            quantized = self.add("QuantizeLinear", [tensor, s, zp], domain=domain, **extra)
            return self.add("DequantizeLinear", [quantized, s, zp], domain=domain, **extra)
        if q.dialect == "trt":
            self.opsets["trt"] = 1
            quantized = self.add("TRT_FP8QuantizeLinear", [tensor, s], domain="trt")
            self.value_info.append(helper.make_tensor_value_info(quantized, TensorProto.UINT8, None))
            return self.add("TRT_FP8DequantizeLinear", [quantized, s], domain="trt")
        if q.dialect == "floatquant":
            domain = "qonnx.custom_op.general"
            self.opsets[domain] = 2
            parameters = [self.const(n, np.float32(v)) for n, v in (("eb", 4), ("mb", 3), ("bias", 7), ("max", 448))]
            return self.add(
                "FloatQuant",
                [tensor, s, *parameters],
                domain=domain,
                has_inf=0,
                has_nan=1,
                has_subnormal=1,
                saturation=1,
                rounding_mode="ROUND",
            )
        # cast / cast_clip: Div → [Clip] → Cast(FP8) → Cast(float) → Mul
        data = self.add("Div", [tensor, s])
        if q.dialect == "cast_clip":
            limit = fp8.FORMATS[fmt].max_value
            data = self.add(
                "Clip", [data, self.const("low", np.float32(-limit)), self.const("high", np.float32(limit))]
            )
        data = self.add("Cast", [data], to=_FP8_TYPES[fmt])
        data = self.add("Cast", [data], to=TensorProto.FLOAT)
        return self.add("Mul", [data, s])

    def activation(self, tensor: str, q: Quantizer | None) -> str:
        """``tensor`` behind the quantizer ``q`` (one quantizer per tensor: later readers share it)."""
        if q is None:
            return tensor
        if tensor in self.quantized:
            return self.quantized[tensor]
        fmt = q.fmt if q.dialect in ("qdq", "cast", "cast_clip") else "e4m3fn"
        self.points.append((tensor, fmt))
        if self.amax is None:
            self.quantized[tensor] = tensor
            return tensor
        amax = max(self.amax[tensor], 1e-3)
        scale = np.float32(q.margin * amax / fp8.FORMATS[fmt].max_value)
        self.quantized[tensor] = self._fake_quantize(tensor, np.asarray(scale), dataclasses.replace(q, fmt=fmt), None)
        return self.quantized[tensor]

    def weight(self, w: np.ndarray, q: Quantizer | None, channel_axis: int) -> str:
        """The weight ``w`` (float, or FP8 behind the quantizer ``q``); returns the name the layer reads."""
        if q is None or self.amax is None:
            name = self.const("weight", w)
            self.weights[name] = w
            return name
        fmt = "e4m3fn" if q.dialect in ("trt_codes", "floatquant") else q.fmt
        fmt_max = fp8.FORMATS[fmt].max_value
        reduce_axes = tuple(a for a in range(w.ndim) if a != channel_axis)
        if q.per_channel:
            amax = np.abs(w).max(axis=reduce_axes)
            scale = (np.maximum(amax, 1e-6) / fmt_max).astype(np.float32)
            broadcast = [1] * w.ndim
            broadcast[channel_axis] = -1
            # Q/DQ take 1-D scales with ``axis``; the float ops of the other dialects broadcast.
            scale_for = scale if q.dialect in ("qdq", "fp8_dq") else scale.reshape(broadcast)
            scale_b = scale.reshape(broadcast)
        else:
            scale_for = scale_b = np.float32(max(np.abs(w).max(), 1e-6) / fmt_max)
        codes_of = np.asarray(w / scale_b, np.float32)
        effective = fp8.decode(fp8.encode(codes_of, fmt), fmt) * scale_b
        if q.dialect == "fp8_dq":
            codes = self.fp8_const("weight_fp8", codes_of, fmt)
            s = self.const("weight_scale", np.asarray(scale_for))
            zp = self.fp8_const("weight_zp", np.zeros(np.shape(scale_for), np.float32), fmt)
            extra = {"axis": channel_axis} if np.ndim(scale_for) == 1 else {}
            out = self.add("DequantizeLinear", [codes, s, zp], **extra)
        elif q.dialect == "trt_codes":
            self.opsets["trt"] = 1
            codes = self.const("weight_codes", fp8.encode(codes_of, fmt))
            out = self.add(
                "TRT_FP8DequantizeLinear", [codes, self.const("weight_scale", np.asarray(scale_for))], domain="trt"
            )
        else:
            out = self._fake_quantize(self.const("weight", w), np.asarray(scale_for), q, channel_axis)
        self.weights[out] = effective.astype(np.float32)
        return out

    # -- layers

    def _normal(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def layer(self, op: Op, x: str, shape: tuple[int, ...], out: str) -> str:
        a = self.activation(x, op.act) if op.kind != "nhwc_matmul" else x
        if op.kind == "conv":
            w = self._normal((op.channels, shape[0], op.kernel, op.kernel), shape[0] * op.kernel**2)
            inputs = [a, self.weight(w, op.weight, 0)]
            if op.bias:
                inputs.append(self.const("bias", (self.rng.standard_normal(op.channels) * 0.1).astype(np.float32)))
            pad = op.kernel // 2
            return self.add("Conv", inputs, output=out, pads=[pad] * 4, kernel_shape=[op.kernel] * 2)
        if op.kind == "nhwc_matmul":
            nhwc = self.add("Transpose", [x], output=f"{out}_nhwc", perm=[0, 2, 3, 1])
            a = self.activation(nhwc, op.act)
            w = self._normal((shape[0], op.channels), shape[0])
            y = self.add("MatMul", [a, self.weight(w, op.weight, 1)], output=f"{out}_matmul")
            return self.add("Transpose", [y], output=out, perm=[0, 3, 1, 2])
        if op.kind == "matmul":
            w = self._normal((shape[0], op.channels), shape[0])
            return self.add("MatMul", [a, self.weight(w, op.weight, 1)], output=out)
        # gemm
        w = self._normal((op.channels, shape[0]) if op.trans_b else (shape[0], op.channels), shape[0])
        inputs = [a, self.weight(w, op.weight, 0 if op.trans_b else 1)]
        if op.bias:
            inputs.append(self.const("bias", (self.rng.standard_normal(op.channels) * 0.1).astype(np.float32)))
        return self.add("Gemm", inputs, output=out, transB=int(op.trans_b))

    def build(self) -> tuple[onnx.ModelProto, list[str]]:
        spec = self.spec
        tensors = ["input"]
        shapes: list[tuple[int, ...]] = [(spec.channels, spec.size, spec.size)]
        for index, op in enumerate(spec.ops):
            x, shape, out = tensors[-1], shapes[-1], f"t{index}_{op.kind}"
            if op.kind in ("conv", "nhwc_matmul", "matmul", "gemm"):
                y = self.layer(op, x, shape, out)
                new = (op.channels, *shape[1:]) if len(shape) == 3 else (op.channels,)
            elif op.kind == "relu":
                y, new = self.add("Relu", [x], output=out), shape
            elif op.kind == "clip":
                y = self.add(
                    "Clip",
                    [x, self.const("clip_min", np.float32(-1.0)), self.const("clip_max", np.float32(1.5))],
                    output=out,
                )
                new = shape
            elif op.kind == "add":
                y, new = self.add("Add", [x, tensors[op.other]], output=out), shape
            elif op.kind == "concat":
                y = self.add("Concat", [x, tensors[op.other]], output=out, axis=1)
                new = (shape[0] + shapes[op.other][0], *shape[1:])
            elif op.kind in ("maxpool", "avgpool"):
                pool = "MaxPool" if op.kind == "maxpool" else "AveragePool"
                if op.kernel == 2:
                    y = self.add(pool, [x], output=out, kernel_shape=[2, 2], strides=[2, 2])
                    new = (shape[0], shape[1] // 2, shape[2] // 2)
                else:
                    extra = {"count_include_pad": 0} if pool == "AveragePool" else {}
                    y = self.add(pool, [x], output=out, kernel_shape=[3, 3], pads=[1, 1, 1, 1], **extra)
                    new = shape
            else:  # flatten
                new = (int(np.prod(shape)),)
                y = self.add("Reshape", [x, self.const("shape", np.array([1, new[0]], np.int64))], output=out)
            tensors.append(y)
            shapes.append(new)
        output = self.add("Identity", [tensors[-1]], output="output")
        extra_outputs = [] if self.amax is not None else [t for t, _ in self.points if t != "input"]
        graph = helper.make_graph(
            self.nodes,
            "random_fp8",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, spec.channels, spec.size, spec.size])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, *shapes[-1]])]
            + [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in extra_outputs],
            self.initializers,
            value_info=self.value_info,
        )
        opsets = [helper.make_opsetid(domain, version) for domain, version in self.opsets.items()]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="fp8conv-random")
        model.ir_version = 10
        return model, extra_outputs


def build(spec: NetSpec) -> BuiltNet:
    """The FP8 model of ``spec``, its samples (``[SAMPLES, C, H, W]``) and the data of its error bound."""
    samples = (
        np.random.default_rng(spec.seed + 1)
        .standard_normal((SAMPLES, spec.channels, spec.size, spec.size))
        .astype(np.float32)
    )
    float_model, captured = _Net(spec, None).build()
    session = ort.InferenceSession(float_model.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(None, {"input": sample[None]}) for sample in samples]
    values = {name: np.stack([run[1 + i] for run in runs]) for i, name in enumerate(captured)}
    values["input"] = samples[:, None]
    net = _Net(spec, {name: float(np.abs(v).max()) for name, v in values.items()})
    model, _ = net.build()
    points = [ActivationPoint(tensor, fmt, values[tensor]) for tensor, fmt in net.points]
    return BuiltNet(onnx.shape_inference.infer_shapes(model), samples, points, net.weights)
