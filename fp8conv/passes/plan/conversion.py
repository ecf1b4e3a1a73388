"""plan_conversion: the plan of a canonical model, its steps in order.

1. The FP8 quantization points of the model (:func:`~fp8conv.passes.canonical.collect_quant_points`).
2. Every layer's precision, weight and inputs (:mod:`~fp8conv.passes.plan.layer_decisions`), with the
   ``keep_float``/``int16``/``int4`` overrides that select it (:mod:`fp8conv.passes.overrides`).
3. The activation points (:mod:`~fp8conv.passes.plan.placement`).
4. Their shared-scale groups (:mod:`~fp8conv.passes.plan.scale_groups`).
5. The integer readers, and what becomes of each FP8 activation quantizer
   (:mod:`~fp8conv.passes.plan.quantizer_fate`): replaced, dropped (no integer kernel reads it: it becomes float)
   or kept for its integer readers only.
6. One width per tensor (:mod:`~fp8conv.passes.plan.activation_widths`).
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from fp8conv.config import ConversionConfig, Placement
from fp8conv.passes.canonical import collect_quant_points
from fp8conv.passes.overrides import layer_names, select_overrides
from fp8conv.passes.plan.activation_widths import unify_activation_bits
from fp8conv.passes.plan.graph_queries import layer_nodes
from fp8conv.passes.plan.layer_decisions import plan_layer
from fp8conv.passes.plan.placement import is_integer_op, place_activation_points
from fp8conv.passes.plan.quantizer_fate import decide_fp8_quantizers, dropped_points
from fp8conv.passes.plan.records import QuantizationPlan
from fp8conv.passes.plan.scale_groups import group_shared_scales

__all__ = ["plan_conversion"]

logger = logging.getLogger(__name__)


def plan_conversion(model: ir.Model, config: ConversionConfig) -> QuantizationPlan:
    """Analyse a canonical model and decide the conversion (see :mod:`fp8conv.passes.plan`).

    Args:
        model: Model in canonical FP8 form (from :func:`fp8conv.load`).
        config: The conversion options.

    Returns:
        The plan.
    """
    fp8_points = collect_quant_points(model)
    by_output = {point.output: point for point in fp8_points}
    graph = model.graph
    nodes = layer_nodes(graph)
    overrides = select_overrides([layer_names(node) for node in nodes], config)
    layers = [plan_layer(node, by_output, config, override) for node, override in zip(nodes, overrides, strict=True)]
    source = config.placement is Placement.SOURCE
    points = place_activation_points(graph, layers, by_output, config.target.activation_bits, source=source)
    group_shared_scales(graph, points)
    dropped = dropped_points(fp8_points, points)
    integer_layers = {layer.graph_node for layer in layers if layer.activation_bits is not None}
    readers = frozenset(node for node in graph if node in integer_layers or is_integer_op(node, points))
    decisions, float_reads = decide_fp8_quantizers(
        graph, fp8_points, points, layers, readers, config.target, bypass_float_readers=not source
    )
    for decision in decisions:
        logger.info("FP8 quantizer %s on %s: %s", decision.point.node, decision.point.tensor, decision.decision.message)
    plan = QuantizationPlan(layers, points, fp8_points, dropped, readers, decisions, float_reads)
    return unify_activation_bits(plan)
