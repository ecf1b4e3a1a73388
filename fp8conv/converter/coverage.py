"""Which planned layers onnxruntime's CPU execution provider has an integer kernel for.

The default of the ``min_integer_kernels`` gate: every layer the plan converts where onnxruntime CPU has
an integer kernel for the result, by onnxruntime's fusion rules
(:func:`fp8conv.runtime.fusion_rules.expected_kernel`, which the kernel audit applies to the written graph):

==========================================  ========================================================
planned layer                               kernel
==========================================  ========================================================
8-bit weights, 8-bit activations            QLinearConv, QLinearMatMul, MatMulIntegerToFloat, QGemm
activation x activation MatMul, 8-bit       QLinearMatMul, MatMulIntegerToFloat
4-bit weights, float activations            MatMulNBits (MatMul, or Gemm without transposes; no Relu after)
==========================================  ========================================================

No CPU kernel takes 16-bit activations (w8a16, ``--int16``), 4-bit weights with quantized activations
(``int4``) or a 4-bit Conv weight: those layers run in float between their DequantizeLinear and
QuantizeLinear, as planned, and the gate does not count them. (onnxruntime fuses some of them into an
8-bit-weight MatMulNBits opportunistically; a layer it does so for is a bonus, not a promise.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fp8conv.config import LayerPrecision
from fp8conv.runtime.fusion_rules import expected_kernel

if TYPE_CHECKING:
    from fp8conv.passes.plan import Layer

__all__ = ["expects_integer_kernel", "planned_kernel"]

logger = logging.getLogger(__name__)


def planned_kernel(layer: Layer, output_bits: int | None = None, activation_after: str | None = None) -> str | None:
    """The integer kernel onnxruntime CPU runs the planned layer on (see the module docstring); None: float.

    Args:
        layer: The planned layer.
        output_bits: Width of the integer ``QuantizeLinear`` the written layer's output feeds (through a
            Relu/Clip onnxruntime folds), None without one. An 8-bit layer whose output is quantized to 16
            bits for its reader (an ``--int16`` or auto-INT16 consumer) has no kernel: onnxruntime's
            selectors take an 8-bit output quantizer or none.
        activation_after: The op reading the written layer's output, after its bias Add (see
            :func:`~fp8conv.runtime.fusion_rules.expected_kernel`), when it is no graph output.
    """
    if not layer.is_integer:
        return None
    weight_bits = 4 if layer.precision is LayerPrecision.INT4 else 8  # an activation x activation MatMul: 8
    if layer.activation_bits is None and not layer.has_weight:
        return None
    return expected_kernel(
        layer.op_type,
        activation_bits=layer.activation_bits,
        weight_bits=weight_bits,
        output_bits=output_bits,
        transposed=layer.op_type == "Gemm" and layer.weight_axis == 0,  # transB: the weight is [N, K]
        activation_after=activation_after,
    )


def expects_integer_kernel(layer: Layer, output_bits: int | None = None, activation_after: str | None = None) -> bool:
    """Whether onnxruntime CPU runs the planned layer on an integer kernel (:func:`planned_kernel` is one)."""
    return planned_kernel(layer, output_bits, activation_after) is not None
