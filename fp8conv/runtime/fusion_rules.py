"""onnxruntime's QDQ fusion rules on the CPU execution provider: which quantized patterns become integer kernels.

fp8conv writes QDQ graphs and onnxruntime decides, pattern by pattern, which ``DequantizeLinear → op →
QuantizeLinear`` groups run as one integer kernel. The rules below were measured with onnxruntime 1.32 (its
QDQ selectors, ``qdq_selectors.cc``; ``shared/reference/fp8-onnx-dialects.md`` §6.4–6.6). They are read by
everything that depends on them, so they are stated once:

* the plan (:mod:`fp8conv.passes.plan`) places quantizers where a kernel takes them: a Conv's output, the
  ops with integer kernels, the shared scales of data movement, the weight's channel axis;
* calibration keeps a range inside a preceding Clip so the Clip folds (:func:`range_inside_clip`);
* the expectation (:func:`expected_kernel`, :mod:`fp8conv.converter.coverage`) says which planned layers
  get an integer kernel, the ``min_integer_kernels`` gate's default;
* the kernel audit (:mod:`fp8conv.runtime.audit`) compares what onnxruntime did with what the rules predict
  for the written graph, and names the rule a float layer breaks.

Layers (``Conv``, ``MatMul``, ``Gemm``) with 8-bit activations and 8-bit weights behind ``DequantizeLinear``:

==========  ================================  ============================  ==============================
op          output QuantizeLinear (8-bit)     no output QuantizeLinear      weight scale
==========  ================================  ============================  ==============================
Conv        QLinearConv                       none (float Conv)             per tensor or axis 0
MatMul      QLinearMatMul                     MatMulIntegerToFloat          per tensor or the last axis (N)
Gemm        QGemm                             QGemm (float output)          per tensor or the N axis
==========  ================================  ============================  ==============================

* A ``Relu`` or ``Clip`` between the op and its output ``QuantizeLinear`` folds into the quantizer when it
  changes nothing the quantizer does not: a Relu when the zero point is the type's minimum
  (ReluQuantFusion), a Clip whose bounds contain the quantized range (ClipQuantFusion).
* Activations and weights must be 8-bit integers (uint8 or int8); int8 activations need int8 weights. No CPU
  kernel takes FP8, 16-bit or sub-byte activations, 4-bit weights with quantized activations, or a 4-bit
  Conv weight.
* A bias must be an int32 ``DequantizeLinear`` (a float bias initializer onnxruntime quantizes itself). QLinearConv
  reads it at input scale × weight scale and fuses only when the bias scale agrees within about 1 %
  (:data:`BIAS_SCALE_RTOL`) and its zero point is 0; QGemm fuses regardless and ignores the bias scale and
  zero point. A Gemm with a bias needs ``beta = 1``; ``transA = 1`` has no integer kernel.
* ``MatMul → Add(constant bias)`` is first fused into a float Gemm (MatMulAddFusion), which becomes QGemm only
  when the bias is an int32 ``DequantizeLinear``; a MatMul whose only reader is a residual Add would become a
  float Gemm unless an exact zero bias is added.
* **Weight-only** (float activations): ``DequantizeLinear(2/4/8-bit integer 2-D weight) → MatMul`` (or Gemm
  with alpha 1, beta 1, no transposes) becomes ``MatMulNBits``: blocked along K (axis 0) with a power-of-two
  ``block_size`` of at least 16, or per-N-channel scales (axis 1); FLOAT or FLOAT16 constant scales. Not when
  a Relu reads the layer's output (after its bias Add) and is no graph output
  (:data:`WEIGHT_ONLY_BLOCKING_ACTIVATIONS`): onnxruntime fuses Gemm + Relu into a float FusedGemm first (a
  MatMul without bias stays a float MatMul). Sigmoid, Tanh, LeakyRelu, HardSigmoid and Gelu do not block it.
* Fusion happens at ``ORT_ENABLE_EXTENDED`` and above, and not with ``session.disable_quant_qdq=1``.
* Ops with integer kernels when all their float inputs are quantized (:data:`INTEGER_OPS`): Add, Mul,
  AveragePool, GlobalAveragePool (QLinear* kernels) and data movement, which needs the same scale and zero
  point on both sides (:data:`SHARED_SCALE_OPS`).

**x86 AVX2 saturation.** On x86 CPUs without VNNI onnxruntime's u8×s8 kernels add pairs of products in int16
with saturation: full-range int8 weights ([-127, 127]) against uint8 activations overflow (measured: 24-29
output LSB wrong). Weights within 7 bits ([-63, 63], :data:`AVX2_SAFE_WEIGHT_BITS`) cannot; VNNI and ARM
CPUs, and sessions with ``session.x64quantprecision=1`` (which rewrites int8 weights as ``<w>_s8_2_u8``), take
full-range weights.
"""

from __future__ import annotations

from collections.abc import Iterable

from fp8conv.runtime.ort_backend import OPTIMIZATION_LEVELS

__all__ = [
    "AVX2_SAFE_WEIGHT_BITS",
    "BIAS_SCALE_RTOL",
    "DISABLE_QDQ_ENTRY",
    "FLOAT_OUTPUT_KERNELS",
    "FUSABLE_ACTIVATIONS",
    "FUSION_LEVEL",
    "INTEGER_KERNELS",
    "INTEGER_OPS",
    "KERNEL_BITS",
    "LAYER_OPS",
    "OUTPUT_PROPAGATION_OPS",
    "QUANTIZED_OUTPUT_KERNELS",
    "SHARED_SCALE_OPS",
    "WEIGHT_ONLY_BLOCKING_ACTIVATIONS",
    "WEIGHT_ONLY_KERNEL",
    "WEIGHT_ONLY_WEIGHT_BITS",
    "X64_QUANT_PRECISION_ENTRY",
    "channel_axis",
    "clip_folds",
    "expected_kernel",
    "fuses_at",
    "range_inside_clip",
    "reduction_axis",
    "relu_folds",
    "weight_only_block_size_ok",
]

LAYER_OPS: frozenset[str] = frozenset({"Conv", "MatMul", "Gemm"})
"""The ops whose QDQ groups become integer kernels (fp8conv's layers)."""

QUANTIZED_OUTPUT_KERNELS: dict[str, str] = {"Conv": "QLinearConv", "MatMul": "QLinearMatMul", "Gemm": "QGemm"}
"""The integer kernel of each layer op with 8-bit inputs and an 8-bit output ``QuantizeLinear``."""

FLOAT_OUTPUT_KERNELS: dict[str, str] = {"MatMul": "MatMulIntegerToFloat", "Gemm": "QGemm"}
"""The integer kernel of a layer op with 8-bit inputs and a float output (Conv has none: it needs a quantized one)."""

WEIGHT_ONLY_KERNEL = "MatMulNBits"
"""The kernel of integer weights with float activations (MatMul, or Gemm without transposes)."""

WEIGHT_ONLY_WEIGHT_BITS: frozenset[int] = frozenset({2, 4, 8})
"""Widths of the integer weights MatMulNBits takes."""

WEIGHT_ONLY_BLOCKING_ACTIVATIONS: frozenset[str] = frozenset({"Relu"})
"""Ops that, reading a weight-only layer's output (after its bias Add), no graph output, keep it off MatMulNBits."""

INTEGER_KERNELS: frozenset[str] = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "MatMulNBits",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "QAttention",
    }
)
"""Optimized-graph op types that compute on integers (any domain)."""

KERNEL_BITS = 8
"""Width of the activations and weights the QDQ integer kernels take (uint8 or int8)."""

AVX2_SAFE_WEIGHT_BITS = 7
"""Weights within this many bits ([-63, 63]) cannot saturate the u8×s8 int16 pair sums of x86 AVX2 without VNNI."""

X64_QUANT_PRECISION_ENTRY = "session.x64quantprecision"
"""Session config entry (``"1"``) that makes the x86 u8×s8 kernels exact for full-range weights."""

DISABLE_QDQ_ENTRY = "session.disable_quant_qdq"
"""Session config entry (``"1"``) that turns QDQ fusion off."""

FUSION_LEVEL = "extended"
"""The lowest optimization level (a key of :data:`~fp8conv.runtime.ort_backend.OPTIMIZATION_LEVELS`) that fuses QDQ."""

BIAS_SCALE_RTOL = 1e-2
"""QLinearConv fusion accepted a bias scale 1.1 % from input scale × weight scale and rejected 1.3 %."""

FUSABLE_ACTIVATIONS: frozenset[str] = frozenset({"Relu", "Clip"})
"""Ops between a layer and its output ``QuantizeLinear`` that fold into the quantizer (see :func:`relu_folds`)."""

SHARED_SCALE_OPS: frozenset[str] = frozenset(
    {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat", "Resize", "Slice"}
)
"""Data movement (and Concat) with integer kernels: the same scale and zero point on every input and the output."""

INTEGER_OPS: frozenset[str] = SHARED_SCALE_OPS | {"Add", "Mul", "AveragePool", "GlobalAveragePool"}
"""Ops onnxruntime runs on integers when every float input and the output are quantized."""

OUTPUT_PROPAGATION_OPS: frozenset[str] = frozenset(
    {"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
)
"""Data movement between a layer and its output ``QuantizeLinear`` (a Transpose/Reshape merging attention heads)
that onnxruntime propagates the Q/DQ across: the quantizer there is the one its selector sees."""


def fuses_at(level: str) -> bool:
    """Whether QDQ groups fuse at ``level`` (a key of :data:`~fp8conv.runtime.ort_backend.OPTIMIZATION_LEVELS`)."""
    levels = list(OPTIMIZATION_LEVELS)
    return levels.index(level) >= levels.index(FUSION_LEVEL)


def channel_axis(op_type: str, *, trans_b: bool = False) -> int:
    """The output-channel axis of a layer's 2-D (Conv: 4-D) weight: where per-channel scales fuse.

    Conv ``[M, C, kH, kW]``: 0. MatMul ``[K, N]``: 1. Gemm: 0 with ``transB`` (``[N, K]``), else 1.
    """
    if op_type == "Conv" or (op_type == "Gemm" and trans_b):
        return 0
    return 1


def reduction_axis(op_type: str, *, trans_b: bool = False) -> int:
    """The K axis of a layer's weight (the one the sum runs over, and INT4 blocks run along): the other axis."""
    return 1 if channel_axis(op_type, trans_b=trans_b) == 0 else 0


def relu_folds(zero_point: int, qmin: int) -> bool:
    """Whether a Relu before a ``QuantizeLinear`` folds into it (ReluQuantFusion): the zero point is the minimum."""
    return zero_point == qmin


def clip_folds(clip: tuple[float, float], grid: tuple[float, float], scale: float) -> bool:
    """Whether a Clip before a ``QuantizeLinear`` folds into it (ClipQuantFusion).

    It does when its bounds contain the quantizer's range ``grid = ((qmin - zp)·s, (qmax - zp)·s)`` (within
    ``1e-6·s``): the quantizer then saturates whatever the Clip would have clipped.
    """
    tolerance = 1e-6 * abs(scale)
    return clip[0] <= grid[0] + tolerance and clip[1] >= grid[1] - tolerance


def range_inside_clip(low: float, high: float, clips: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """A calibrated range kept inside the bounds of the Clips producing the tensors (ReLU6), so they fold.

    Values beyond the bounds never occur; a quantizer whose range lies inside them lets onnxruntime drop the
    Clip (:func:`clip_folds`), so the layer before it fuses. The range keeps 0 (a grid holds 0 exactly).
    """
    bounds = list(clips)
    if not bounds:
        return low, high
    clip_low = max(bound[0] for bound in bounds)
    clip_high = min(bound[1] for bound in bounds)
    return max(low, min(clip_low, 0.0)), min(high, clip_high) if clip_high > 0 else high


def weight_only_block_size_ok(block_size: int) -> bool:
    """Whether MatMulNBits takes blocks of ``block_size``: a power of two of at least 16."""
    return block_size >= 16 and not block_size & (block_size - 1)


def expected_kernel(
    op_type: str,
    *,
    activation_bits: int | None,
    weight_bits: int | None,
    output_bits: int | None = None,
    transposed: bool = False,
    activation_after: str | None = None,
) -> str | None:
    """The integer kernel onnxruntime CPU runs a layer of this QDQ pattern on, by the rules above; None: float.

    Only the patterns fp8conv promises are predicted: 8-bit QDQ layers and 4-bit weight-only MatMul/Gemm.
    (onnxruntime sometimes fuses more, e.g. 8-bit weight-only MatMulNBits: a bonus, not a promise.)

    Args:
        op_type: Conv, MatMul or Gemm.
        activation_bits: Width of the integer ``DequantizeLinear`` on the data input; None for float.
        weight_bits: Width of the integer weight behind ``DequantizeLinear`` (for an activation × activation
            MatMul, of the second input); None for a float weight.
        output_bits: Width of the ``QuantizeLinear`` the output feeds (through a Relu/Clip that folds); None
            without one.
        transposed: A Gemm with ``transB = 1`` (MatMulNBits needs the weight as ``[K, N]``).
        activation_after: The op of the only node reading the output (after the bias Add of a constant, if
            that is the only reader), when its output is no graph output: :data:`WEIGHT_ONLY_BLOCKING_ACTIVATIONS`.
    """
    if op_type not in LAYER_OPS:
        return None
    if activation_bits is None:
        weight_only = weight_bits == 4 and op_type in ("MatMul", "Gemm") and not transposed
        blocked = activation_after in WEIGHT_ONLY_BLOCKING_ACTIVATIONS
        return WEIGHT_ONLY_KERNEL if weight_only and not blocked else None
    if activation_bits != KERNEL_BITS or weight_bits != KERNEL_BITS:
        return None
    if output_bits is None:
        return FLOAT_OUTPUT_KERNELS.get(op_type)
    return QUANTIZED_OUTPUT_KERNELS[op_type] if output_bits == KERNEL_BITS else None
