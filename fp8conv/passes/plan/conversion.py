"""plan_conversion: the plan of a canonical model, its steps in order.

1. The FP8 quantization points of the model (:func:`~fp8conv.passes.canonical.collect_quant_points`).
2. Every layer's precision, weight and inputs (:mod:`~fp8conv.passes.plan.layer_decisions`), with the
   ``keep_float``/``int16``/``int4`` overrides that select it (:mod:`fp8conv.passes.overrides`).
3. The activation points (:mod:`~fp8conv.passes.plan.placement`).
4. Their shared-scale groups (:mod:`~fp8conv.passes.plan.scale_groups`).
5. The FP8 activation quantizers no point replaces (they become float), and the integer readers.
6. One width per tensor (:mod:`~fp8conv.passes.plan.activation_widths`).
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from fp8conv.config import ConversionConfig
from fp8conv.passes.canonical import collect_quant_points
from fp8conv.passes.overrides import layer_names, select_overrides
from fp8conv.passes.plan.activation_widths import unify_activation_bits
from fp8conv.passes.plan.graph_queries import layer_nodes
from fp8conv.passes.plan.layer_decisions import plan_layer
from fp8conv.passes.plan.placement import is_integer_op, place_activation_points
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
    points = place_activation_points(graph, layers, by_output, config.target.activation_bits)
    group_shared_scales(graph, points)
    used = {point.fp8.output for point in points.values() if point.fp8 is not None}
    dropped = [p for p in fp8_points if p.role == "activation" and p.output not in used]
    for point in dropped:
        logger.info("FP8 quantizer %s on %s has no integer consumer; it becomes float", point.node, point.tensor)
    integer_layers = {layer.graph_node for layer in layers if layer.activation_bits is not None}
    readers = frozenset(node for node in graph if node in integer_layers or is_integer_op(node, points))
    return unify_activation_bits(QuantizationPlan(layers, points, fp8_points, dropped, readers))
