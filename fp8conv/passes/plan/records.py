"""The plan's records: what the conversion does with each layer and tensor, and why (frozen dataclasses).

* :class:`Layer`: one Conv / MatMul / Gemm, its precision and activation width, its weight exactly as the FP8
  model used it (codes and scales, or float32 values) and in the layout the layer reads it.
* :class:`Decision` / :class:`DecisionCode`: the rule that decided a layer's precision and the sentence that
  reports show.
* :class:`QuantizerDecision`: what became of one FP8 activation quantizer of the source (replaced by an integer
  Q/DQ, dropped, or kept for its integer readers only) and the rule that decided it.
* :class:`ActivationPoint`: a tensor that gets ``QuantizeLinear → DequantizeLinear``, its width and its
  shared-scale group.
* :class:`QuantizationPlan`: all of them, what the emission reads.

Nothing here looks at a graph: :mod:`fp8conv.passes.plan` makes the records, the emission reads them.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from fp8conv.config import LayerPrecision
from fp8conv.passes.canonical import QuantPoint
from fp8conv.runtime.integer_quantization import WeightCodes
from fp8conv.str_enum import StrEnum

__all__ = ["ActivationPoint", "Decision", "DecisionCode", "Layer", "QuantizationPlan", "QuantizerDecision"]


class DecisionCode(StrEnum):
    """Which rule decided a layer's precision, or an FP8 activation quantizer's fate.

    What code branches on; the message is for people.
    """

    KEPT_FLOAT = "kept_float"
    """A keep_float pattern selects the layer."""
    NOT_QUANTIZED = "not_quantized"
    """Neither its weight nor its input went through an FP8 quantizer."""
    TRANS_A = "trans_a"
    """``Gemm(transA=1)``: no integer kernel."""
    WEIGHT_NOT_CONSTANT = "weight_not_constant"
    """The second input is computed, and the layer is not an activation × activation MatMul."""
    WEIGHT_ONLY_ACTIVATION_MATMUL = "weight_only_activation_matmul"
    """``w4a16`` is weight-only: an activation × activation MatMul stays float."""
    WEIGHT_ONLY_CONV = "weight_only_conv"
    """``w4a16`` is weight-only INT4 for MatMul/Gemm: a Conv stays float."""
    ACTIVATION_MATMUL = "activation_matmul"
    """An activation × activation MatMul with FP8 inputs: integer inputs, no weight."""
    WEIGHT_ONLY_INT4 = "weight_only_int4"
    """``w4a16``: INT4 weights, float activations (MatMulNBits)."""
    FP8_WEIGHT = "fp8_weight"
    """The FP8 source quantized the layer's weight."""
    FP8_INPUT = "fp8_input"
    """The FP8 source quantized the layer's input (not its weight)."""
    CONSTANT_INPUT = "constant_input"
    """The layer's quantized input is a constant: nothing to calibrate, it stays float."""
    FLOAT_CONSUMERS = "float_consumers"
    """An FP8 activation quantizer dropped: no integer kernel of the target reads its tensor (LayerNorm, Softmax,
    Gelu, a residual Add, a layer kept float, a graph output), so the value flows in float."""
    WEIGHT_ONLY_TARGET = "weight_only_target"
    """An FP8 activation quantizer dropped: the target (``w4a16``) keeps every activation float."""
    FLOAT_READERS_BYPASS = "float_readers_bypass"
    """An FP8 activation quantizer replaced by an integer Q/DQ for its integer readers; its float readers read the
    float tensor (``placement=target``)."""
    SOURCE_PLACEMENT = "source_placement"
    """``placement=source``: an integer Q/DQ where the FP8 source quantized, though no integer kernel reads it."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """Why a layer has its precision: the rule (``code``) and the sentence reports show (``message``).

    Attributes:
        code: The rule that decided.
        message: What reports, logs and warnings say (notes such as a folded ``transB`` appended).
    """

    code: DecisionCode
    message: str

    def noted(self, note: str) -> Decision:
        """The same decision with ``; <note>`` appended to its message."""
        return Decision(self.code, f"{self.message}; {note}")


@dataclasses.dataclass(frozen=True)
class Layer:
    """A Conv / MatMul / Gemm and what the conversion does with it (frozen: change it with ``dataclasses.replace``).

    Attributes:
        node: Node name (for reports; :func:`fp8conv.load` gives every node a name of its own).
        op_type: Conv, MatMul or Gemm.
        precision: ``LayerPrecision.INT8``, ``INT4`` or ``FLOAT``.
        activation_bits: 8 or 16 for integer activations, None when activations stay float.
        decision: Why this precision (its code for code, its message for reports).
        graph_node: The node itself, in the planned model: what the emission rewrites (nodes are
            identified by object, never by name).
        weight: Name of the value the layer reads as its weight (None for activation × activation).
        weight_source: Name of the stored weight tensor (FP8 initializer or float initializer).
        weight_array: The weight exactly as the FP8 model used it (float32), when it is not given by
            ``weight_codes`` (see :attr:`weight_values`).
        weight_codes: The weight as FP8 codes and scales, when the model stores it so (or fake-quantizes a
            constant) with a per-tensor or per-axis scale: the weight search counts codes, and the float32
            weight is decoded only when asked for.
        weight_axis: Output-channel axis of the weight (Conv 0, MatMul 1, Gemm by transB).
        block_axis: The K axis along which INT4 blocks run.
        bias: Name of a constant bias input, if any.
        bias_add: For a MatMul whose only consumer is ``Add(MatMul, constant bias)``: that Add node.
            onnxruntime fuses MatMul + Add into Gemm, which only becomes QGemm when the bias is an
            int32 DequantizeLinear, so the emission quantizes that bias too.
        needs_zero_bias: A MatMul without bias whose only consumer is an Add of another activation
            (a residual): onnxruntime would fuse that Add into a float Gemm. The emission inserts an
            exact ``+ DequantizeLinear(int32 zeros)`` bias Add, which onnxruntime fuses into QGemm instead.
        inputs: The activation tensors the layer reads (after the FP8 quantizer is looked through).
        fp8_weight: The FP8 quantization point of the weight, if any.
        folds_trans_b: A ``Gemm(transB=1)`` whose weight is given (and emitted) transposed, ``[K, N]``; the
            emission sets ``transB=0``.
    """

    node: str
    op_type: str
    precision: LayerPrecision
    activation_bits: int | None
    decision: Decision
    graph_node: ir.Node = dataclasses.field(repr=False, compare=False)
    weight: str | None = None
    weight_source: str | None = None
    weight_array: np.ndarray | None = dataclasses.field(default=None, repr=False)
    weight_codes: WeightCodes | None = dataclasses.field(default=None, repr=False)
    weight_axis: int | None = None
    block_axis: int | None = None
    bias: str | None = None
    bias_add: ir.Node | None = dataclasses.field(default=None, repr=False, compare=False)
    needs_zero_bias: bool = False
    inputs: tuple[str, ...] = ()
    fp8_weight: QuantPoint | None = None
    folds_trans_b: bool = False

    @property
    def has_weight(self) -> bool:
        """Whether the layer's weight is a constant (given as an array or as codes)."""
        return self.weight_array is not None or self.weight_codes is not None

    @property
    def weight_values(self) -> np.ndarray | None:
        """The weight exactly as the FP8 model used it (float32); decoded anew on each call when given as codes."""
        if self.weight_array is not None:
            return self.weight_array
        return self.weight_codes.decode() if self.weight_codes is not None else None

    @property
    def is_integer(self) -> bool:
        """Whether the layer computes with integer weights."""
        return self.precision is not LayerPrecision.FLOAT

    @property
    def reason(self) -> str:
        """Why this precision, for people (``decision.message``)."""
        return self.decision.message


@dataclasses.dataclass(frozen=True)
class ActivationPoint:
    """A tensor that gets an integer ``QuantizeLinear → DequantizeLinear`` (frozen).

    Attributes:
        tensor: The float tensor quantized (kept under its source name).
        bits: 8 or 16.
        group: Tensors with the same group share scale and zero point.
        fp8: The FP8 quantization point this replaces, if any (its output name is kept for the DQ).
        non_negative: Whether the tensor is known to be >= 0 (after Relu, Softmax, …).
        clip: The constant bounds of a Clip producing the tensor (ReLU6), if any: the integer range is
            kept inside them so onnxruntime can fold the Clip into the quantizer.
        why: Which rule placed it (``layer input``, ``conv output``, ``integer op``).
        copied: The tensor is an output of a data-movement op (MaxPool, Reshape, Concat, …; not Resize)
            whose float inputs are all in the same group: its values are copies of values already on the
            group's grid, so its quantizer changes nothing.
        counted: Calibration counts this tensor's values. Each value the group's integer grid carries to a
            reader outside the group's data movement is counted once, where that reader reads it: a copied
            tensor is not counted, except where its group inputs exist only to feed it (a Relu output read
            by nothing but a MaxPool); there the copy is counted instead of its sources, since the values
            the MaxPool drops never reach an integer op (see
            :func:`~fp8conv.passes.plan.scale_groups.mark_counted`).
    """

    tensor: str
    bits: int
    group: str
    fp8: QuantPoint | None
    non_negative: bool
    why: str
    clip: tuple[float, float] | None = None
    copied: bool = False
    counted: bool = True


@dataclasses.dataclass(frozen=True)
class QuantizerDecision:
    """What became of one FP8 activation quantizer of the source, and why (frozen).

    Attributes:
        point: The FP8 quantization point.
        decision: The rule (``FLOAT_CONSUMERS``, ``WEIGHT_ONLY_TARGET``, ``FLOAT_READERS_BYPASS``,
            ``SOURCE_PLACEMENT``) and the sentence reports show.
        readers: Op types of the nodes that read its output, sorted (``Conv (float)`` for a layer kept float).
    """

    point: QuantPoint
    decision: Decision
    readers: tuple[str, ...] = ()

    @property
    def dropped(self) -> bool:
        """Whether the quantizer is gone: its tensor gets no integer Q/DQ at all."""
        return self.decision.code in (DecisionCode.FLOAT_CONSUMERS, DecisionCode.WEIGHT_ONLY_TARGET)


@dataclasses.dataclass(frozen=True)
class QuantizationPlan:
    """Everything the emission needs to know (frozen: a changed plan is a new one, ``dataclasses.replace``).

    Attributes:
        layers: Every Conv/MatMul/Gemm, converted or not.
        points: Activation points by tensor name (read-only).
        fp8_points: The source model's FP8 quantization points.
        dropped_fp8: FP8 activation quantizers that become float: no integer Q/DQ replaces them (their readers
            stay float).
        integer_readers: The nodes that read an activation point's dequantized tensor rather than the float
            one, decided on the graph as planned: the layers with integer activations and the integer-capable
            ops all of whose float inputs are points (:func:`~fp8conv.passes.plan.placement.is_integer_op`).
        quantizer_decisions: What became of each FP8 activation quantizer that an integer Q/DQ does not simply
            replace (:class:`QuantizerDecision`, in the source's order): the dropped ones and the partly kept ones.
        float_reads: Activation points (tensor names) that replace an FP8 quantizer whose readers include float
            ops: those readers read the float tensor, not the dequantized one (``placement=target``; the
            tensor's producer is no integer kernel needing its output quantized).
    """

    layers: tuple[Layer, ...]
    points: Mapping[str, ActivationPoint]
    fp8_points: tuple[QuantPoint, ...]
    dropped_fp8: tuple[QuantPoint, ...]
    integer_readers: frozenset[ir.Node] = frozenset()
    quantizer_decisions: tuple[QuantizerDecision, ...] = ()
    float_reads: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "points", types.MappingProxyType(dict(self.points)))
        object.__setattr__(self, "fp8_points", tuple(self.fp8_points))
        object.__setattr__(self, "dropped_fp8", tuple(self.dropped_fp8))
        object.__setattr__(self, "integer_readers", frozenset(self.integer_readers))
        object.__setattr__(self, "quantizer_decisions", tuple(self.quantizer_decisions))
        object.__setattr__(self, "float_reads", frozenset(self.float_reads))

    def groups(self) -> dict[str, list[str]]:
        """Tensors per shared-scale group, in a deterministic order."""
        grouped: dict[str, list[str]] = {}
        for point in self.points.values():
            grouped.setdefault(point.group, []).append(point.tensor)
        return grouped
