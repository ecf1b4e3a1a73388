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
import onnx_ir as ir
from onnx import TensorProto

from fp8conv.runtime import fusion_rules as rules
from fp8conv.runtime.audit.ir_queries import (
    MAX_PARAM_TENSOR,
    constant_shape,
    dequantizer,
    dq_input_type,
    elem_type,
    label,
    readers,
    small_values,
    type_name,
)
from fp8conv.runtime.clip_bounds import clip_bounds
from fp8conv.runtime.formats import FORMATS
from fp8conv.runtime.integer_types import INTEGER_TYPES, integer_type_of
from fp8conv.runtime.ir_constants import constant_tensor
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


def expected_kernel_of(node: ir.Node) -> str | None:
    """The kernel the fusion rules predict for a Conv / MatMul / Gemm of the emitted graph (None: float).

    Read from the pattern around it: the integer width of the ``DequantizeLinear`` on its data input and on
    its weight (or second input), and of the ``QuantizeLinear`` its output reaches through a Relu/Clip and
    data movement (:data:`~fp8conv.runtime.fusion_rules.OUTPUT_PROPAGATION_OPS`).
    """
    act_dq, w_dq = dequantizer(_input(node, 0)), dequantizer(_input(node, 1))
    return rules.expected_kernel(
        node.op_type,
        activation_bits=_bits(dq_input_type(act_dq)) if act_dq is not None else None,
        weight_bits=_bits(dq_input_type(w_dq)) if w_dq is not None else None,
        output_bits=_output_bits(node),
        transposed=node.op_type == "Gemm" and bool(node.attributes.get_int("transB", 0)),
        activation_after=_activation_after(node),
    )


def _input(node: ir.Node, index: int) -> ir.Value | None:
    """The node's input ``index`` (``None``: absent or omitted)."""
    return node.inputs[index] if len(node.inputs) > index else None


def _activation_after(node: ir.Node) -> str | None:
    """The op of the only node reading the layer's output, after its constant bias Add if any (no graph output)."""
    value = node.outputs[0] if node.outputs else None
    found = readers(value)
    if len(found) == 1 and found[0].op_type == "Add" and not value.is_graph_output() and len(found[0].inputs) == 2:
        add = found[0]
        other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
        if constant_tensor(other) is not None:
            value = add.outputs[0]
            found = readers(value)
    if len(found) != 1 or value.is_graph_output() or found[0].outputs[0].is_graph_output():
        return None
    return found[0].op_type


def _bits(dtype: int | None) -> int | None:
    fmt = integer_type_of(dtype)
    return fmt.bits if fmt is not None else None


def _output_bits(node: ir.Node) -> int | None:
    """Width of the widest integer QuantizeLinear the node's output reaches (one Relu/Clip, data movement)."""
    pending = readers(node.outputs[0]) if node.outputs else []
    if len(pending) == 1 and pending[0].op_type in rules.FUSABLE_ACTIVATIONS:
        pending = readers(pending[0].outputs[0])
    widths = []
    while pending:
        reader = pending.pop()
        if reader.op_type in rules.OUTPUT_PROPAGATION_OPS and reader.domain in ("", "ai.onnx"):
            pending.extend(readers(reader.outputs[0]))
        elif reader.op_type == "QuantizeLinear":
            width = _bits(elem_type(reader.outputs[0]))
            if width is not None:
                widths.append(width)
    return max(widths, default=None)


def integer_warning(node: ir.Node, kernel: str) -> str | None:
    """A hazard of a fused node that the emitted graph shows, as ``"warning: …"`` (``None``: none seen)."""
    warnings: list[str] = []
    act_dq, w_dq = dequantizer(_input(node, 0)), dequantizer(_input(node, 1))
    if kernel == "QGemm" and _input(node, 2) is not None and act_dq is not None:
        bias_dq = dequantizer(_input(node, 2))
        if w_dq is not None and bias_dq is not None:
            deviation, nonzero_zp = _bias_consistency(act_dq, w_dq, bias_dq)
            if deviation is not None and deviation > 1e-5:
                warnings.append(
                    f"bias scale differs from input scale x weight scale by up to {deviation:.3g} (relative) and "
                    "QGemm ignores the bias scale: results differ from the QDQ graph"
                )
            if nonzero_zp:
                warnings.append("bias zero point is nonzero and QGemm ignores it: results are shifted")
    if kernel == "MatMulNBits" and act_dq is not None:
        warnings.append(
            f"weight-only fusion: the activation DequantizeLinear ({type_name(dq_input_type(act_dq))}) "
            "still runs in float before MatMulNBits"
        )
    if _input(node, 1) is not None and w_dq is None:
        warnings.append(
            "onnxruntime quantized this layer's float weight itself (its QDQ weight/bias quantization: per "
            "tensor, asymmetric, full int8 range) as its input is dequantized and its output quantized: it does not "
            "run in float; to keep it float, keep float the layers around it too"
        )
    if node.op_type == "Conv" and kernel == "QLinearConv" and w_dq is not None:
        axis = _per_axis(w_dq)
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


def _bias_consistency(act_dq: ir.Node, w_dq: ir.Node, bias_dq: ir.Node) -> tuple[float | None, bool]:
    """Largest relative deviation of the bias scale from x_scale·w_scale (``None``: unknown), nonzero bias zp."""
    zero_point = small_values(_input(bias_dq, 2), MAX_PARAM_TENSOR)
    nonzero_zp = zero_point is not None and bool(np.any(zero_point != 0))
    x_scale = small_values(_input(act_dq, 1), 1)
    w_scale = small_values(_input(w_dq, 1), MAX_PARAM_TENSOR)
    b_scale = small_values(_input(bias_dq, 1), MAX_PARAM_TENSOR)
    if x_scale is None or w_scale is None or b_scale is None:
        return None, nonzero_zp
    expected = float(x_scale.reshape(-1)[0]) * w_scale.astype(np.float64).reshape(-1)
    actual = b_scale.astype(np.float64).reshape(-1)
    if actual.size not in (1, expected.size) and expected.size != 1:
        return None, nonzero_zp
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(actual - expected) / np.abs(expected)
    return float(np.nanmax(deviation)) if deviation.size else None, nonzero_zp


def _per_axis(dq: ir.Node) -> int | None:
    """The normalized axis of a per-axis DequantizeLinear (``None``: per-tensor, blocked or unknown)."""
    if dq.attributes.get_int("block_size", 0):
        return None
    scale_shape = constant_shape(_input(dq, 1))
    if scale_shape is None or len(scale_shape) == 0 or all(d == 1 for d in scale_shape):
        return None
    axis = dq.attributes.get_int("axis", 1)
    x_shape = constant_shape(_input(dq, 0))
    if axis < 0 and x_shape is not None:
        axis += len(x_shape)
    return axis


def why_not(node: ir.Node, level: str, config: Mapping[str, str]) -> Iterable[str]:
    """Every fusion condition of onnxruntime's QDQ selectors that the emitted node violates."""
    op = node.op_type
    if not rules.fuses_at(level):
        yield f"optimization level '{level}': fusion happens at {OPTIMIZATION_LEVELS[rules.FUSION_LEVEL]} and above"
        return
    if str(config.get(rules.DISABLE_QDQ_ENTRY, "0")) == "1":
        yield f"{rules.DISABLE_QDQ_ENTRY}=1 turns QDQ fusion off"
        return
    act_dq, w_dq = dequantizer(_input(node, 0)), dequantizer(_input(node, 1))
    if act_dq is None and w_dq is None:
        yield f"no DequantizeLinear on any input: a float {op} in the emitted model"
        return
    if act_dq is None:
        if op == "Conv":
            yield "no DequantizeLinear on the activation input: QLinearConv needs a quantized input"
        else:
            problems = list(_matmulnbits_issues(node, w_dq))
            detail = "; ".join(problems) if problems else "its conditions look met"
            yield (
                "no DequantizeLinear on the activation input (float activations): only the weight-only "
                f"MatMulNBits fusion applies, and {detail}"
            )
        return
    if w_dq is None:
        kind = "a float initializer" if constant_tensor(_input(node, 1)) is not None else "a float tensor"
        yield f"no DequantizeLinear on the weight input (it is {kind})"
        return
    yield from _type_issues(op, dq_input_type(act_dq), dq_input_type(w_dq))
    yield from _scale_issues(node, w_dq)
    if op in ("Conv", "Gemm"):
        yield from _bias_issues(node, act_dq, w_dq, _input(node, 2))
    if op == "Gemm":
        beta = node.attributes.get_float("beta", 1.0)
        if _input(node, 2) is not None and beta != 1.0:
            yield f"Gemm beta={beta:g} with a bias: QGemm needs beta 1"
    yield from _output_issues(node, dq_input_type(act_dq))


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


def _scale_issues(node: ir.Node, w_dq: ir.Node) -> Iterator[str]:
    op = node.op_type
    scale_type = elem_type(_input(w_dq, 1))
    if scale_type is not None and scale_type != TensorProto.FLOAT:
        yield f"weight scale is {type_name(scale_type)}: the integer kernels take FLOAT scales"
    if w_dq.attributes.get_int("block_size", 0):
        yield (
            "blocked weight quantization (block_size): the 8-bit kernels need per-tensor or per-channel "
            "scales (blocks only fuse into MatMulNBits, with float activations)"
        )
        return
    axis = _per_axis(w_dq)
    if axis is None:
        return
    w_shape = constant_shape(_input(w_dq, 0))
    rank = len(w_shape) if w_shape is not None else None
    trans_b = bool(node.attributes.get_int("transB", 0))
    if op == "Conv" and axis != rules.channel_axis("Conv"):
        yield f"weight scale on axis {axis}: QLinearConv needs per-tensor or axis-0 (output channel) scales"
    elif op == "MatMul" and rank is not None and axis != rank - 1:
        where = "per-row (axis 0 of [K, N])" if rank == 2 and axis == 0 else f"on axis {axis}"
        yield (
            f"weight scale {where}: QLinearMatMul/MatMulIntegerToFloat need per-tensor or per-column "
            f"(axis {rank - 1}) scales; onnxruntime leaves it unfused"
        )
    elif op == "Gemm" and rank == 2 and axis != rules.channel_axis("Gemm", trans_b=trans_b):
        yield f"weight scale on axis {axis}, the K axis of B: QGemm needs per-tensor or per-N-channel scales"


def _bias_issues(node: ir.Node, act_dq: ir.Node, w_dq: ir.Node, bias: ir.Value | None) -> Iterator[str]:
    if bias is None:
        return
    bias_dq = dequantizer(bias)
    if bias_dq is not None:
        dtype = dq_input_type(bias_dq)
        if dtype is not None and dtype != TensorProto.INT32:
            yield f"bias DequantizeLinear is {type_name(dtype)}, not INT32"
        if node.op_type == "Conv":  # QGemm fuses regardless (see integer_warning)
            deviation, nonzero_zp = _bias_consistency(act_dq, w_dq, bias_dq)
            if deviation is not None and deviation > rules.BIAS_SCALE_RTOL:
                yield (
                    f"bias scale differs from input scale x weight scale by up to {deviation:.3g} (relative): "
                    "QLinearConv reads the int32 bias at input scale x weight scale, so onnxruntime fuses only "
                    "when they agree (within about 1 %)"
                )
            if nonzero_zp:
                yield "bias zero point is nonzero: QLinearConv takes an int32 bias with zero point 0"
    elif constant_tensor(bias) is None:
        yield "bias is a computed float tensor: every input needs a DequantizeLinear (bias an int32 one)"
    # A float bias initializer is quantized to int32 by onnxruntime (WeightBiasQuantization): no issue.


def _output_issues(node: ir.Node, act_type: int | None) -> Iterator[str]:
    op = node.op_type
    out = node.outputs[0]
    consumers = readers(out)
    quantizers = [c for c in consumers if c.op_type == "QuantizeLinear"]
    clip = None
    if len(consumers) == 1 and consumers[0].op_type in rules.FUSABLE_ACTIVATIONS and not out.is_graph_output():
        clip = consumers[0]
        after = readers(clip.outputs[0])
        quantizers = [c for c in after if c.op_type == "QuantizeLinear"]
        if quantizers and (len(after) != 1 or clip.outputs[0].is_graph_output()):
            yield f"the {clip.op_type} output feeds other nodes besides QuantizeLinear"
        elif quantizers:
            problem = _clip_not_redundant(clip, quantizers[0])
            if problem:
                yield problem
    if not quantizers:
        if op == "Conv":
            where = f" (after the {clip.op_type})" if clip is not None else ""
            yield f"no QuantizeLinear after the Conv{where}: QLinearConv needs a quantized output"
        return
    if clip is None and (len(quantizers) != len(consumers) or out.is_graph_output()):
        yield f"the {op} output also feeds other nodes or a graph output, not only QuantizeLinear"
    out_type = elem_type(quantizers[0].outputs[0])
    if act_type is not None and out_type is not None and out_type != act_type:
        yield (
            f"output QuantizeLinear type {type_name(out_type)} differs from the activation type {type_name(act_type)}"
        )


def _clip_not_redundant(clip: ir.Node, q: ir.Node) -> str | None:
    """Why a Relu/Clip before QuantizeLinear cannot be folded (``None``: foldable or unknown)."""
    q_type = integer_type_of(elem_type(q.outputs[0]))
    zero_point = small_values(_input(q, 2)) if _input(q, 2) is not None else 0
    scale = small_values(_input(q, 1))
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
    lo, hi = clip_bounds(clip)
    if lo is None or hi is None:
        return None  # computed bounds: unknown
    if not rules.clip_folds((lo, hi), (low, high), scale):
        return (
            f"the Clip [{lo:g}, {hi:g}] before QuantizeLinear cannot be folded (the quantized range is "
            f"[{low:g}, {high:g}]): the fused kernel needs QuantizeLinear right after the op"
        )
    return None


def _matmulnbits_issues(node: ir.Node, w_dq: ir.Node | None) -> Iterator[str]:
    """Conditions of onnxruntime's weight-only ``DQ → MatMul/Gemm ⇒ MatMulNBits`` fusion that fail."""
    if w_dq is None:
        yield "the weight has no DequantizeLinear either"
        return
    if node.op_type == "Gemm":
        attributes = node.attributes
        if abs(attributes.get_float("alpha", 1.0) - 1.0) > 1e-6:
            yield "Gemm alpha is not 1"
        if attributes.get_int("transA", 0):
            yield "Gemm transA=1"
        if attributes.get_int("transB", 0):
            yield "Gemm transB=1"
        if _input(node, 2) is not None and abs(attributes.get_float("beta", 1.0) - 1.0) > 1e-6:
            yield "Gemm beta is not 1"
    weight = constant_tensor(_input(w_dq, 0))
    if weight is None:
        yield "the weight is not a constant initializer"
        return
    if weight.dtype not in _WEIGHT_ONLY_TYPES:
        yield f"weight type {type_name(weight.dtype)} is not a 2/4/8-bit integer"
    if len(weight.shape) != 2:
        yield f"the weight is {len(weight.shape)}-D, not 2-D"
        return
    scale_type = elem_type(_input(w_dq, 1))
    if scale_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        yield f"weight scale is {type_name(scale_type)}, not FLOAT/FLOAT16"
    if constant_tensor(_input(w_dq, 1)) is None:
        yield "the weight scale is not constant"
    scale_shape = constant_shape(_input(w_dq, 1)) or ()
    block_size = w_dq.attributes.get_int("block_size", 0)
    axis = w_dq.attributes.get_int("axis", 1)
    if block_size:
        if axis not in (0, -2):
            yield f"blocked along axis {axis}, not 0"
        if not rules.weight_only_block_size_ok(block_size):
            yield f"block_size {block_size} is not a power of two >= 16"
    elif len(scale_shape) == 1 and scale_shape[0] != 1 and axis not in (1, -1):
        yield f"per-channel scale on axis {axis}: MatMulNBits takes per-N-channel (axis 1) scales"
    elif len(scale_shape) > 1:
        yield "weight scale of rank > 1 without block_size"
    after = _activation_after(node)
    if after in rules.WEIGHT_ONLY_BLOCKING_ACTIVATIONS:
        yield (
            f"a {after} reads its output (after the bias Add): onnxruntime fuses Gemm + {after} into a float "
            "FusedGemm first"
        )
