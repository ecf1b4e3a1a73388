"""What becomes of each FP8 activation quantizer of the source: replaced, dropped, or kept for integer readers only.

The FP8 model's quantizers say where values were FP8; where integer Q/DQ goes is decided by the target's integer
kernels (:mod:`~fp8conv.passes.plan.placement`). Each FP8 activation quantizer ``x → FakeQuantize → x_q`` then
falls in one of these cases (a :class:`~fp8conv.passes.plan.records.QuantizerDecision` records all but the first):

* an activation point replaces it (an integer reader takes ``x``) and every reader of ``x_q`` is an integer
  reader: the integer Q/DQ takes its place, nothing to say;
* no activation point is on ``x`` (``FLOAT_CONSUMERS``: only float kernels read ``x_q``, e.g. LayerNormalization,
  Softmax, Gelu, a residual Add, a layer kept float; ``WEIGHT_ONLY_TARGET``: the target has float activations):
  the quantizer is dropped, ``x`` flows in float (``x_q = x``);
* an 8-bit point replaces it but some readers of ``x_q`` are float ops (``FLOAT_READERS_BYPASS``,
  ``placement=target``): the integer readers read the dequantized tensor, the float ones the float ``x`` — unless
  ``x``'s producer is an integer kernel that needs its output quantized (QLinearConv, QLinearMatMul, QLinearAdd:
  onnxruntime fuses a node only when quantizers are all its output feeds), where every reader keeps the
  dequantized tensor. An INT16 point (``w8a16``, ``--int16``) keeps every reader on it: onnxruntime CPU has no
  16-bit kernel, so INT16 models a 16-bit integer target, whose Add, pools and data movement run on int16;
* ``placement=source`` put a point on ``x`` that no integer kernel reads (``SOURCE_PLACEMENT``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import onnx_ir as ir

from fp8conv.config import Target
from fp8conv.passes.canonical import QuantPoint
from fp8conv.passes.plan.graph_queries import values_by_name
from fp8conv.passes.plan.placement import SOURCE_QUANTIZER
from fp8conv.passes.plan.records import ActivationPoint, Decision, DecisionCode, Layer, QuantizerDecision
from fp8conv.runtime.fusion_rules import FUSABLE_ACTIVATIONS, KERNEL_BITS

__all__ = ["decide_fp8_quantizers", "dropped_points"]


def dropped_points(fp8_points: Iterable[QuantPoint], points: Mapping[str, ActivationPoint]) -> list[QuantPoint]:
    """The FP8 activation quantizers no activation point replaces (on the tensor they read, or through a Cast)."""
    used = {point.fp8.output for point in points.values() if point.fp8 is not None}
    return [p for p in fp8_points if p.role == "activation" and p.output not in used and p.tensor not in points]


def decide_fp8_quantizers(
    graph: ir.Graph,
    fp8_points: Sequence[QuantPoint],
    points: Mapping[str, ActivationPoint],
    layers: Sequence[Layer],
    integer_readers: frozenset[ir.Node],
    target: Target,
    *,
    bypass_float_readers: bool,
) -> tuple[list[QuantizerDecision], frozenset[str]]:
    """The decisions about the FP8 activation quantizers, and the points whose float readers read float.

    See the module docstring for the cases.

    Args:
        graph: The canonical model's main graph.
        fp8_points: Its FP8 quantization points.
        points: The activation points, grouped.
        layers: The planned layers.
        integer_readers: The nodes that read dequantized tensors (integer layers and integer ops).
        target: The conversion target (weight-only targets drop every activation quantizer).
        bypass_float_readers: ``placement=target``: float readers of a replaced quantizer read the float tensor.

    Returns:
        ``(decisions, float_reads)``: one decision per quantizer that is dropped, partly kept or placed for the
        source only, in the source's order; the tensors of the points whose float readers read the float tensor.
    """
    values = values_by_name(graph)
    float_layers = {layer.graph_node for layer in layers if layer.graph_node not in integer_readers}
    dropped = {p.output for p in dropped_points(fp8_points, points)}
    decisions: list[QuantizerDecision] = []
    float_reads: set[str] = set()
    for fp8 in fp8_points:
        if fp8.role != "activation":
            continue
        output = values.get(fp8.output)
        readers = list(output.consumers()) if output is not None else []
        labels = _labels(readers, float_layers, output is not None and output.is_graph_output())
        if fp8.output in dropped:
            decisions.append(QuantizerDecision(fp8, _dropped(target, labels), labels))
            continue
        point = points.get(fp8.tensor)
        if point is None:  # an f16/bf16 quantizer behind a Cast: the point is the Cast's output
            continue
        float_readers = [reader for reader in readers if reader not in integer_readers]
        if point.why == SOURCE_QUANTIZER and not any(reader in integer_readers for reader in readers):
            message = f"placement=source: integer Q/DQ where the FP8 model quantized, read only by {_ops(labels)}"
            decisions.append(QuantizerDecision(fp8, Decision(DecisionCode.SOURCE_PLACEMENT, message), labels))
        elif (
            float_readers
            and bypass_float_readers
            and point.bits == KERNEL_BITS
            and not _feeds_integer_kernel_output(values[fp8.tensor], integer_readers)
        ):
            float_reads.add(fp8.tensor)
            shown = _labels(float_readers, float_layers, False)
            message = f"integer Q/DQ for its integer readers; {_ops(shown)} read the float tensor"
            decisions.append(QuantizerDecision(fp8, Decision(DecisionCode.FLOAT_READERS_BYPASS, message), labels))
    return decisions, frozenset(float_reads)


def _dropped(target: Target, labels: tuple[str, ...]) -> Decision:
    if target.activation_bits is None:
        return Decision(DecisionCode.WEIGHT_ONLY_TARGET, f"the target {target.value} keeps activations float")
    if not labels:
        return Decision(DecisionCode.FLOAT_CONSUMERS, "nothing reads it")
    return Decision(
        DecisionCode.FLOAT_CONSUMERS,
        f"read only by {_ops(labels)}, which onnxruntime CPU runs in float: INT8 there would add error, no speed",
    )


def _labels(readers: Iterable[ir.Node], float_layers: set[ir.Node], graph_output: bool) -> tuple[str, ...]:
    """Sorted distinct op types of ``readers`` (``MatMul (float)`` for a layer the plan keeps float)."""
    names = {f"{node.op_type} (float)" if node in float_layers else node.op_type for node in readers}
    if graph_output:
        names.add("the graph output")
    return tuple(sorted(names))


def _ops(labels: Sequence[str]) -> str:
    return ", ".join(labels) if labels else "nothing"


def _feeds_integer_kernel_output(value: ir.Value, integer_readers: frozenset[ir.Node]) -> bool:
    """Whether ``value`` is an integer kernel's output (through a Relu/Clip onnxruntime folds) it needs quantized.

    onnxruntime fuses such a node only when quantizers are all that read its output.
    """
    producer = value.producer()
    if producer is not None and producer.op_type in FUSABLE_ACTIVATIONS and producer.inputs:
        inner = producer.inputs[0]
        producer = inner.producer() if inner is not None else None
    return producer is not None and producer in integer_readers
