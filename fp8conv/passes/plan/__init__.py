"""Decide, for a model in canonical FP8 form, what becomes integer and where the quantizers go.

The plan is pure analysis (the graph is not changed). It answers, for onnxruntime's CPU fusion rules
(:mod:`fp8conv.runtime.fusion_rules`):

1. **Layers.** Every Conv / MatMul / Gemm is a layer. A layer is converted when the FP8 source quantized
   it (its weight or its input went through an FP8 quantizer, possibly followed by data movement such
   as ``Transpose``/``Reshape``) and no override keeps it float. Its weight is read exactly as the FP8
   model used it (``decode(codes)·scale`` or ``fake_quantize(w)``) and as the layer reads it: data
   movement between the weight's quantizer and the layer is replayed on the stored weight
   (:mod:`fp8conv.passes.data_movement`), so the integer weight is stored in the layer's layout.
   For ``w4a16`` a ``Gemm(transB=1)`` also gets its weight stored transposed (``[K, N]``) and
   ``transB=0``: ``A·Bᵀ = A·(Bᵀ)``, the layout onnxruntime's MatMulNBits fusion needs.
2. **Activation points** (tensors that get ``QuantizeLinear → DequantizeLinear``):

   a. the data inputs of converted layers (for FP8 activation quantizers: the tensor the FP8 quantizer
      read, so the INT8 quantizer replaces it in place, keeping both tensor names);
   b. the output of a converted Conv (QLinearConv needs a quantized output) — after a following
      Relu/Clip, which onnxruntime folds into the quantizer's zero point; MatMul/Gemm outputs are
      quantized only when (a) or (c) asks for it (otherwise they run as MatMulIntegerToFloat/QGemm
      with a float output, adding no error the FP8 model did not have);
   c. forward propagation through ops with integer kernels (Add, Mul, pools, Concat, data movement):
      when every float input of such an op is quantized and its output (after Relu/Clip) feeds only
      quantized consumers, the output is quantized too (QLinearAdd, integer MaxPool, …).

   Placement is for the target, not the source: the FP8 model's quantizers say where values were FP8, an
   integer Q/DQ goes only where an integer kernel reads it. An FP8 activation quantizer read only by float ops
   (LayerNorm, Softmax, Gelu, a residual Add feeding LayerNorm) is dropped: its value flows in float, and the
   plan records why (``QuantizationPlan.quantizer_decisions``). ``placement=source`` instead puts an integer
   Q/DQ on every tensor the FP8 model quantized (for comparison).
3. **Shared scales.** Data-movement ops (MaxPool, Reshape, Flatten, Transpose, …) and Concat need the
   same scale and zero point on both sides; their tensors are grouped and calibrated together.

Modules, one job each (:func:`plan_conversion` and the records are re-exported here):

* :mod:`.conversion`: :func:`plan_conversion`, the steps in order.
* :mod:`.records`: :class:`Layer`, :class:`ActivationPoint`, :class:`QuantizationPlan`, :class:`Decision`.
* :mod:`.layer_decisions`: each layer's precision and the rule that decided it (1).
* :mod:`.layer_weights`: each layer's weight, exact, as codes or values, in the layer's layout (1).
* :mod:`.placement`: the activation points (2).
* :mod:`.scale_groups`: the shared-scale groups, which of their tensors are copies and which are counted (3).
* :mod:`.quantizer_fate`: what becomes of each FP8 activation quantizer: replaced, dropped (only float ops read
  it) or kept for its integer readers only.
* :mod:`.activation_widths`: one integer width per tensor (:func:`unify_activation_bits`).
* :mod:`.graph_queries`: the layers and values of a graph, and the FP8 quantizers around a tensor.
"""

from __future__ import annotations

from fp8conv.passes.plan.activation_widths import unify_activation_bits
from fp8conv.passes.plan.conversion import plan_conversion
from fp8conv.passes.plan.graph_queries import layer_nodes, values_by_name
from fp8conv.passes.plan.placement import is_integer_op
from fp8conv.passes.plan.records import (
    ActivationPoint,
    Decision,
    DecisionCode,
    Layer,
    QuantizationPlan,
    QuantizerDecision,
)

__all__ = [
    "ActivationPoint",
    "Decision",
    "DecisionCode",
    "Layer",
    "QuantizationPlan",
    "QuantizerDecision",
    "is_integer_op",
    "layer_nodes",
    "plan_conversion",
    "unify_activation_bits",
    "values_by_name",
]
