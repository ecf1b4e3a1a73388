"""Which planned layers onnxruntime's CPU execution provider has an integer kernel for.

The default of the ``min_integer_kernels`` gate: every layer the plan converts where onnxruntime CPU has
an integer kernel for the result (``shared/reference/fp8-onnx-dialects.md`` §6.4-6.6, onnxruntime 1.32):

==========================================  ========================================================
planned layer                               kernel
==========================================  ========================================================
8-bit weights, 8-bit activations            QLinearConv, QLinearMatMul, MatMulIntegerToFloat, QGemm
activation x activation MatMul, 8-bit       QLinearMatMul, MatMulIntegerToFloat
4-bit weights, float activations            MatMulNBits (MatMul, or Gemm without transposes)
==========================================  ========================================================

No CPU kernel takes 16-bit activations (w8a16, ``--int16``), 4-bit weights with quantized activations
(``int4``) or a 4-bit Conv weight: those layers run in float between their DequantizeLinear and
QuantizeLinear, as planned, and the gate does not count them. (onnxruntime fuses some of them into an
8-bit-weight MatMulNBits opportunistically; a layer it does so for is a bonus, not a promise.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fp8conv.passes.plan import Layer

__all__ = ["expects_integer_kernel"]

logger = logging.getLogger(__name__)


def expects_integer_kernel(layer: Layer, output_bits: int | None = None) -> bool:
    """Whether onnxruntime CPU runs the planned layer on an integer kernel (see the module docstring).

    Args:
        layer: The planned layer.
        output_bits: Width of the integer ``QuantizeLinear`` the written layer's output feeds (through a
            Relu/Clip onnxruntime folds), None without one. An 8-bit layer whose output is quantized to 16
            bits for its reader (an ``--int16`` or auto-INT16 consumer) has no kernel: onnxruntime's
            selectors take an 8-bit output quantizer or none.
    """
    if not layer.is_integer:
        return False
    if output_bits is not None and output_bits > 8:
        return False
    if layer.activation_bits == 8:
        return layer.precision == "int8"
    if layer.activation_bits is None and layer.precision == "int4" and layer.has_weight:
        transposed = layer.op_type == "Gemm" and layer.weight_axis == 0  # transB: the weight is [N, K]
        return layer.op_type in ("MatMul", "Gemm") and not transposed
    return False
