"""Why a Conv / MatMul / Gemm runs as it does: the fusion rules' prediction, the conditions it breaks, hazards.

For every audited node the emitted graph's pattern around it (the integer types of its ``DequantizeLinear``
inputs, its output ``QuantizeLinear``) gives the kernel the fusion rules predict
(:func:`expected_kernel_of`, :func:`fp8conv.runtime.fusion_rules.expected_kernel`): what the plan expected.
For a node that does not run as an integer kernel, :func:`why_not` checks the emitted graph around it
against the fusion conditions (:mod:`fp8conv.runtime.fusion_rules`): optimization level below EXTENDED, no
``DequantizeLinear`` on an input, FP8 / 16-bit / 4-bit types, int8 activations with uint8 weights, weight
scale axis, missing or unusable output ``QuantizeLinear``, bias not int32, a Conv bias whose scale is not
input scale × weight scale or whose zero point is not 0, Gemm ``beta``, the weight-only ``MatMulNBits``
conditions; every violated condition goes into the reason. For an integer kernel :func:`integer_warning`
names the hazards the emitted graph shows: QGemm with a bias scale or zero point that QGemm silently ignores
(measured: outputs shifted), a Conv weight scale on axis ≠ 0, a weight-only MatMulNBits whose activation
DequantizeLinear still runs in float.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx
from onnx import TensorProto

from fp8conv.runtime import fusion_rules as rules
from fp8conv.runtime.audit.graph_index import MAX_PARAM_TENSOR, GraphIndex, attribute, label, type_name
from fp8conv.runtime.formats import FORMATS
from fp8conv.runtime.integer_types import INTEGER_TYPES, integer_type_of
from fp8conv.runtime.ort_backend import OPTIMIZATION_LEVELS

__all__ = ["expected_kernel_of", "integer_warning", "why_not"]

logger = logging.getLogger(__name__)

_INTEGER_TYPES = tuple(INTEGER_TYPES.values())
_FP8_TYPES = frozenset(fmt.onnx_type for fmt in FORMATS.values() if fmt.onnx_type is not None and fmt.bits == 8)
_16BIT_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits == 16)
_SUBBYTE_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits < 8) | frozenset(
    fmt.onnx_type for fmt in FORMATS.values() if fmt.onnx_type is not None and fmt.bits < 8
)
_KERNEL_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits == rules.KERNEL_BITS)
_WEIGHT_ONLY_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits in rules.WEIGHT_ONLY_WEIGHT_BITS)


def expected_kernel_of(node: onnx.NodeProto, g: GraphIndex) -> str | None:
    """The kernel the fusion rules predict for a Conv / MatMul / Gemm of the emitted graph (None: float).

    Read from the pattern around it: the integer width of the ``DequantizeLinear`` on its data input and on
    its weight (or second input), and of the ``QuantizeLinear`` its output reaches through a Relu/Clip and
    data movement (:data:`~fp8conv.runtime.fusion_rules.OUTPUT_PROPAGATION_OPS`).
    """
    inputs = [*node.input, "", ""]
    act_dq = g.producer_op(inputs[0], "DequantizeLinear") if inputs[0] else None
    w_dq = g.producer_op(inputs[1], "DequantizeLinear") if inputs[1] else None
    return rules.expected_kernel(
        node.op_type,
        activation_bits=_bits(g.dq_input_type(act_dq)) if act_dq is not None else None,
        weight_bits=_bits(g.dq_input_type(w_dq)) if w_dq is not None else None,
        output_bits=_output_bits(node, g),
        transposed=node.op_type == "Gemm" and bool(int(attribute(node, "transB", 0))),
        activation_after=_activation_after(node, g),
    )


def _activation_after(node: onnx.NodeProto, g: GraphIndex) -> str | None:
    """The op of the only node reading the layer's output, after its constant bias Add if any (no graph output)."""
    value = node.output[0] if node.output else ""
    readers = g.consumers.get(value, [])
    if (
        len(readers) == 1
        and readers[0].op_type == "Add"
        and value not in g.graph_outputs
        and len(readers[0].input) == 2
    ):
        other = readers[0].input[1] if readers[0].input[0] == value else readers[0].input[0]
        if g.constant(other) is not None:
            value = readers[0].output[0]
            readers = g.consumers.get(value, [])
    if len(readers) != 1 or value in g.graph_outputs or readers[0].output[0] in g.graph_outputs:
        return None
    return readers[0].op_type


def _bits(elem_type: int | None) -> int | None:
    fmt = integer_type_of(elem_type)
    return fmt.bits if fmt is not None else None


def _output_bits(node: onnx.NodeProto, g: GraphIndex) -> int | None:
    """Width of the widest integer QuantizeLinear the node's output reaches (one Relu/Clip, data movement)."""
    readers = list(g.consumers.get(node.output[0], [])) if node.output else []
    if len(readers) == 1 and readers[0].op_type in rules.FUSABLE_ACTIVATIONS:
        readers = list(g.consumers.get(readers[0].output[0], []))
    widths = []
    while readers:
        reader = readers.pop()
        if reader.op_type in rules.OUTPUT_PROPAGATION_OPS and reader.domain in ("", "ai.onnx"):
            readers.extend(g.consumers.get(reader.output[0], []))
        elif reader.op_type == "QuantizeLinear":
            width = _bits(g.elem_type(reader.output[0]))
            if width is not None:
                widths.append(width)
    return max(widths, default=None)


def integer_warning(node: onnx.NodeProto, g: GraphIndex, kernel: str) -> str | None:
    """A hazard of a fused node that the emitted graph shows, as ``"warning: …"`` (``None``: none seen)."""
    warnings: list[str] = []
    act_dq = g.producer_op(node.input[0], "DequantizeLinear")
    if kernel == "QGemm" and len(node.input) > 2 and node.input[2] and act_dq is not None:
        w_dq = g.producer_op(node.input[1], "DequantizeLinear")
        bias_dq = g.producer_op(node.input[2], "DequantizeLinear")
        if w_dq is not None and bias_dq is not None:
            deviation, nonzero_zp = _bias_consistency(act_dq, w_dq, bias_dq, g)
            if deviation is not None and deviation > 1e-5:
                warnings.append(
                    f"bias scale differs from input scale x weight scale by up to {deviation:.3g} (relative) and "
                    "QGemm ignores the bias scale: results differ from the QDQ graph"
                )
            if nonzero_zp:
                warnings.append("bias zero point is nonzero and QGemm ignores it: results are shifted")
    if kernel == "MatMulNBits" and act_dq is not None:
        warnings.append(
            f"weight-only fusion: the activation DequantizeLinear ({type_name(g.dq_input_type(act_dq))}) "
            "still runs in float before MatMulNBits"
        )
    if len(node.input) > 1 and node.input[1] and g.producer_op(node.input[1], "DequantizeLinear") is None:
        warnings.append(
            "onnxruntime quantized this layer's float weight itself (its QDQ weight/bias quantization: per "
            "tensor, asymmetric, full int8 range) as its input is dequantized and its output quantized: it does not "
            "run in float; to keep it float, keep float the layers around it too"
        )
    if node.op_type == "Conv" and kernel == "QLinearConv":
        dq = g.producer_op(node.input[1], "DequantizeLinear")
        if dq is not None:
            axis = _per_axis(dq, g)
            if axis is not None and axis != rules.channel_axis("Conv"):
                warnings.append(
                    f"weight scale on axis {axis}; QLinearConv expects axis 0 and fails at run time "
                    "('filter scale shape invalid')"
                )
    if not warnings:
        return None
    message = "warning: " + "; ".join(warnings)
    logger.info("kernel audit: %s %s → %s: %s", node.op_type, label(node), kernel, message)
    return message


def _bias_consistency(
    act_dq: onnx.NodeProto, w_dq: onnx.NodeProto, bias_dq: onnx.NodeProto, g: GraphIndex
) -> tuple[float | None, bool]:
    """Largest relative deviation of the bias scale from x_scale·w_scale (``None``: unknown), nonzero bias zp."""
    zero_point = g.values(bias_dq.input[2], MAX_PARAM_TENSOR) if len(bias_dq.input) > 2 else None
    nonzero_zp = zero_point is not None and bool(np.any(zero_point != 0))
    x_scale = g.values(act_dq.input[1], 1)
    w_scale = g.values(w_dq.input[1], MAX_PARAM_TENSOR)
    b_scale = g.values(bias_dq.input[1], MAX_PARAM_TENSOR)
    if x_scale is None or w_scale is None or b_scale is None:
        return None, nonzero_zp
    expected = float(x_scale.reshape(-1)[0]) * w_scale.astype(np.float64).reshape(-1)
    actual = b_scale.astype(np.float64).reshape(-1)
    if actual.size not in (1, expected.size) and expected.size != 1:
        return None, nonzero_zp
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(actual - expected) / np.abs(expected)
    return float(np.nanmax(deviation)) if deviation.size else None, nonzero_zp


def _per_axis(dq: onnx.NodeProto, g: GraphIndex) -> int | None:
    """The normalized axis of a per-axis DequantizeLinear (``None``: per-tensor, blocked or unknown)."""
    if attribute(dq, "block_size", 0):
        return None
    scale_shape = g.shape(dq.input[1])
    if scale_shape is None or len(scale_shape) == 0 or all(d == 1 for d in scale_shape):
        return None
    axis = int(attribute(dq, "axis", 1))
    x_shape = g.shape(dq.input[0])
    if axis < 0 and x_shape is not None:
        axis += len(x_shape)
    return axis


def why_not(node: onnx.NodeProto, g: GraphIndex, level: str, config: Mapping[str, str]) -> Iterable[str]:
    """Every fusion condition of onnxruntime's QDQ selectors that the emitted node violates."""
    op = node.op_type
    if not rules.fuses_at(level):
        yield f"optimization level '{level}': fusion happens at {OPTIMIZATION_LEVELS[rules.FUSION_LEVEL]} and above"
        return
    if str(config.get(rules.DISABLE_QDQ_ENTRY, "0")) == "1":
        yield f"{rules.DISABLE_QDQ_ENTRY}=1 turns QDQ fusion off"
        return
    inputs = list(node.input) + [""] * (3 - len(node.input))
    act_dq = g.producer_op(inputs[0], "DequantizeLinear") if inputs[0] else None
    w_dq = g.producer_op(inputs[1], "DequantizeLinear") if inputs[1] else None
    if act_dq is None and w_dq is None:
        yield f"no DequantizeLinear on any input: a float {op} in the emitted model"
        return
    if act_dq is None:
        if op == "Conv":
            yield "no DequantizeLinear on the activation input: QLinearConv needs a quantized input"
        else:
            problems = list(_matmulnbits_issues(node, w_dq, g))
            detail = "; ".join(problems) if problems else "its conditions look met"
            yield (
                "no DequantizeLinear on the activation input (float activations): only the weight-only "
                f"MatMulNBits fusion applies, and {detail}"
            )
        return
    if w_dq is None:
        kind = "a float initializer" if g.constant(inputs[1]) is not None else "a float tensor"
        yield f"no DequantizeLinear on the weight input (it is {kind})"
        return
    yield from _type_issues(op, g.dq_input_type(act_dq), g.dq_input_type(w_dq))
    yield from _scale_issues(node, w_dq, g)
    if op in ("Conv", "Gemm"):
        yield from _bias_issues(node, act_dq, w_dq, inputs[2], g)
    if op == "Gemm":
        beta = float(attribute(node, "beta", 1.0))
        if inputs[2] and beta != 1.0:
            yield f"Gemm beta={beta:g} with a bias: QGemm needs beta 1"
    yield from _output_issues(node, g, g.dq_input_type(act_dq))


def _type_issues(op: str, act: int | None, weight: int | None) -> Iterator[str]:
    kernel = rules.QUANTIZED_OUTPUT_KERNELS[op]
    for role, dtype in (("activations", act), ("weights", weight)):
        if dtype in _FP8_TYPES:
            yield f"FP8 {role} ({type_name(dtype)}): no FP8 integer kernels on CPU"
        elif dtype in _16BIT_TYPES:
            yield f"16-bit {role} ({type_name(dtype)}): no 16-bit integer kernels on CPU"
        elif dtype in _SUBBYTE_TYPES:
            if role == "weights" and op == "Conv":
                yield f"4-bit weight on Conv ({type_name(dtype)}): no 4-bit Conv kernel, QLinearConv needs 8-bit"
            elif role == "weights":
                yield (
                    f"4-bit weights ({type_name(dtype)}) with quantized activations: {kernel} needs 8-bit "
                    "weights, and MatMulNBits needs float activations (no DequantizeLinear on input A)"
                )
            else:
                yield f"sub-byte {role} ({type_name(dtype)}): no integer kernel takes them on CPU"
        elif dtype is not None and dtype not in _KERNEL_TYPES:
            yield f"{role} type {type_name(dtype)} is not 8-bit"
    if act == TensorProto.INT8 and weight == TensorProto.UINT8:
        yield "int8 activations with uint8 weights: int8 activations require int8 weights"


def _scale_issues(node: onnx.NodeProto, w_dq: onnx.NodeProto, g: GraphIndex) -> Iterator[str]:
    op = node.op_type
    scale_type = g.elem_type(w_dq.input[1])
    if scale_type is not None and scale_type != TensorProto.FLOAT:
        yield f"weight scale is {type_name(scale_type)}: the integer kernels take FLOAT scales"
    if int(attribute(w_dq, "block_size", 0)):
        yield (
            "blocked weight quantization (block_size): the 8-bit kernels need per-tensor or per-channel "
            "scales (blocks only fuse into MatMulNBits, with float activations)"
        )
        return
    axis = _per_axis(w_dq, g)
    if axis is None:
        return
    w_shape = g.shape(w_dq.input[0])
    rank = len(w_shape) if w_shape is not None else None
    if op == "Conv" and axis != rules.channel_axis("Conv"):
        yield f"weight scale on axis {axis}: QLinearConv needs per-tensor or axis-0 (output channel) scales"
    elif op == "MatMul" and rank is not None and axis != rank - 1:
        where = "per-row (axis 0 of [K, N])" if rank == 2 and axis == 0 else f"on axis {axis}"
        yield (
            f"weight scale {where}: QLinearMatMul/MatMulIntegerToFloat need per-tensor or per-column "
            f"(axis {rank - 1}) scales; onnxruntime leaves it unfused"
        )
    elif op == "Gemm" and rank == 2 and axis != rules.channel_axis("Gemm", trans_b=bool(attribute(node, "transB", 0))):
        yield f"weight scale on axis {axis}, the K axis of B: QGemm needs per-tensor or per-N-channel scales"


def _bias_issues(
    node: onnx.NodeProto, act_dq: onnx.NodeProto, w_dq: onnx.NodeProto, bias: str, g: GraphIndex
) -> Iterator[str]:
    if not bias:
        return
    bias_dq = g.producer_op(bias, "DequantizeLinear")
    if bias_dq is not None:
        dtype = g.dq_input_type(bias_dq)
        if dtype is not None and dtype != TensorProto.INT32:
            yield f"bias DequantizeLinear is {type_name(dtype)}, not INT32"
        if node.op_type == "Conv":  # QGemm fuses regardless (see integer_warning)
            deviation, nonzero_zp = _bias_consistency(act_dq, w_dq, bias_dq, g)
            if deviation is not None and deviation > rules.BIAS_SCALE_RTOL:
                yield (
                    f"bias scale differs from input scale x weight scale by up to {deviation:.3g} (relative): "
                    "QLinearConv reads the int32 bias at input scale x weight scale, so onnxruntime fuses only "
                    "when they agree (within about 1 %)"
                )
            if nonzero_zp:
                yield "bias zero point is nonzero: QLinearConv takes an int32 bias with zero point 0"
    elif g.constant(bias) is None:
        yield "bias is a computed float tensor: every input needs a DequantizeLinear (bias an int32 one)"
    # A float bias initializer is quantized to int32 by onnxruntime (WeightBiasQuantization): no issue.


def _output_issues(node: onnx.NodeProto, g: GraphIndex, act_type: int | None) -> Iterator[str]:
    op = node.op_type
    out = node.output[0]
    consumers = g.consumers.get(out, [])
    quantizers = [c for c in consumers if c.op_type == "QuantizeLinear"]
    clip = None
    if len(consumers) == 1 and consumers[0].op_type in rules.FUSABLE_ACTIVATIONS and out not in g.graph_outputs:
        clip = consumers[0]
        after = g.consumers.get(clip.output[0], [])
        quantizers = [c for c in after if c.op_type == "QuantizeLinear"]
        if quantizers and (len(after) != 1 or clip.output[0] in g.graph_outputs):
            yield f"the {clip.op_type} output feeds other nodes besides QuantizeLinear"
        elif quantizers:
            problem = _clip_not_redundant(clip, quantizers[0], g)
            if problem:
                yield problem
    if not quantizers:
        if op == "Conv":
            where = f" (after the {clip.op_type})" if clip is not None else ""
            yield f"no QuantizeLinear after the Conv{where}: QLinearConv needs a quantized output"
        return
    if clip is None and (len(quantizers) != len(consumers) or out in g.graph_outputs):
        yield f"the {op} output also feeds other nodes or a graph output, not only QuantizeLinear"
    out_type = g.elem_type(quantizers[0].output[0])
    if act_type is not None and out_type is not None and out_type != act_type:
        yield (
            f"output QuantizeLinear type {type_name(out_type)} differs from the activation type {type_name(act_type)}"
        )


def _clip_not_redundant(clip: onnx.NodeProto, q: onnx.NodeProto, g: GraphIndex) -> str | None:
    """Why a Relu/Clip before QuantizeLinear cannot be folded (``None``: foldable or unknown)."""
    q_type = integer_type_of(g.elem_type(q.output[0]))
    zero_point = g.values(q.input[2]) if len(q.input) > 2 and q.input[2] else 0
    scale = g.values(q.input[1])
    if q_type is None or q_type.bits != rules.KERNEL_BITS or zero_point is None or scale is None:
        return None
    if np.size(zero_point) != 1 or np.size(scale) != 1:
        return None
    zero_point, scale = int(np.asarray(zero_point).reshape(-1)[0]), float(np.asarray(scale).reshape(-1)[0])
    q_min, q_max = q_type.qmin, q_type.qmax
    low, high = (q_min - zero_point) * scale, (q_max - zero_point) * scale
    if clip.op_type == "Relu":
        if not rules.relu_folds(zero_point, q_min):
            return (
                f"the Relu before QuantizeLinear cannot be folded (zero point {zero_point} is not the "
                f"{type_name(q_type.data_type)} minimum {q_min}): the fused kernel needs QuantizeLinear right "
                "after the op"
            )
        return None
    clip_min = g.values(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
    clip_max = g.values(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
    if clip_min is None and len(clip.input) > 1 and clip.input[1]:
        return None  # computed bounds: unknown
    if clip_max is None and len(clip.input) > 2 and clip.input[2]:
        return None
    lo = float(np.asarray(clip_min).reshape(-1)[0]) if clip_min is not None else float(attribute(clip, "min", -np.inf))
    hi = float(np.asarray(clip_max).reshape(-1)[0]) if clip_max is not None else float(attribute(clip, "max", np.inf))
    if not rules.clip_folds((lo, hi), (low, high), scale):
        return (
            f"the Clip [{lo:g}, {hi:g}] before QuantizeLinear cannot be folded (the quantized range is "
            f"[{low:g}, {high:g}]): the fused kernel needs QuantizeLinear right after the op"
        )
    return None


def _matmulnbits_issues(node: onnx.NodeProto, w_dq: onnx.NodeProto | None, g: GraphIndex) -> Iterator[str]:
    """Conditions of onnxruntime's weight-only ``DQ → MatMul/Gemm ⇒ MatMulNBits`` fusion that fail."""
    if w_dq is None:
        yield "the weight has no DequantizeLinear either"
        return
    if node.op_type == "Gemm":
        if abs(float(attribute(node, "alpha", 1.0)) - 1.0) > 1e-6:
            yield "Gemm alpha is not 1"
        if int(attribute(node, "transA", 0)):
            yield "Gemm transA=1"
        if int(attribute(node, "transB", 0)):
            yield "Gemm transB=1"
        if len(node.input) > 2 and node.input[2] and abs(float(attribute(node, "beta", 1.0)) - 1.0) > 1e-6:
            yield "Gemm beta is not 1"
    weight = g.constant(w_dq.input[0])
    if weight is None:
        yield "the weight is not a constant initializer"
        return
    if weight.data_type not in _WEIGHT_ONLY_TYPES:
        yield f"weight type {type_name(weight.data_type)} is not a 2/4/8-bit integer"
    if len(weight.dims) != 2:
        yield f"the weight is {len(weight.dims)}-D, not 2-D"
        return
    scale_type = g.elem_type(w_dq.input[1])
    if scale_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        yield f"weight scale is {type_name(scale_type)}, not FLOAT/FLOAT16"
    if g.constant(w_dq.input[1]) is None:
        yield "the weight scale is not constant"
    scale_shape = g.shape(w_dq.input[1]) or ()
    block_size = int(attribute(w_dq, "block_size", 0))
    axis = int(attribute(w_dq, "axis", 1))
    if block_size:
        if axis not in (0, -2):
            yield f"blocked along axis {axis}, not 0"
        if not rules.weight_only_block_size_ok(block_size):
            yield f"block_size {block_size} is not a power of two >= 16"
    elif len(scale_shape) == 1 and scale_shape[0] != 1 and axis not in (1, -1):
        yield f"per-channel scale on axis {axis}: MatMulNBits takes per-N-channel (axis 1) scales"
    elif len(scale_shape) > 1:
        yield "weight scale of rank > 1 without block_size"
    after = _activation_after(node, g)
    if after in rules.WEIGHT_ONLY_BLOCKING_ACTIVATIONS:
        yield (
            f"a {after} reads its output (after the bias Add): onnxruntime fuses Gemm + {after} into a float "
            "FusedGemm first"
        )
