"""Shared scales: the tensors on both sides of data movement and Concat are calibrated as one group.

onnxruntime's integer data-movement ops (MaxPool, Reshape, Flatten, Transpose, Resize, …; the fusion rules'
``SHARED_SCALE_OPS``) and its QLinearConcat need the same scale and zero point on their inputs and output:
``Q(x; s, z)`` moved is ``Q(moved x; s, z)`` only then. :func:`group_shared_scales` joins their activation
points with union-find, the group named by its least member, and marks, within each group:

* ``copied``: the output of a data-movement op (not Resize) whose float inputs are all in its group; its
  values are copies of values already on the group's grid, so its quantizer changes nothing.
* ``counted``: the tensors calibration counts, each value the group's grid carries to a reader outside the
  group's data movement once (:func:`_mark_counted`).
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from fp8conv.passes.canonical import is_fake_quantize
from fp8conv.passes.plan.graph_queries import consumers_through_fake_quantize, float_inputs, look_through_fake_quantize
from fp8conv.passes.plan.records import ActivationPoint
from fp8conv.runtime.fusion_rules import SHARED_SCALE_OPS

__all__ = ["group_shared_scales"]


def group_shared_scales(graph: ir.Graph, points: dict[str, ActivationPoint]) -> None:
    """Union the groups of tensors on both sides of data-movement ops and Concat."""
    parent: dict[str, str] = {name: name for name in points}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in graph:
        if node.op_type not in SHARED_SCALE_OPS or node.domain not in ("", "ai.onnx"):
            continue
        names = [(look_through_fake_quantize(v).name or "") for v in float_inputs(node)]
        names.append(node.outputs[0].name or "")
        names = [name for name in names if name in points]
        if len(names) < 2:
            continue
        roots = sorted({find(name) for name in names})
        for root in roots[1:]:
            parent[root] = roots[0]
    for name, point in points.items():
        points[name] = dataclasses.replace(point, group=find(name))
    for node in graph:
        if node.op_type not in SHARED_SCALE_OPS - {"Resize"} or node.domain not in ("", "ai.onnx"):
            continue
        output = points.get(node.outputs[0].name or "")
        inputs = [points.get(look_through_fake_quantize(v).name or "") for v in float_inputs(node)]
        if output is not None and inputs and all(p is not None and p.group == output.group for p in inputs):
            points[output.tensor] = dataclasses.replace(output, copied=True)
    _mark_counted(graph, points)


def _mark_counted(graph: ir.Graph, points: dict[str, ActivationPoint]) -> None:
    """Set ``ActivationPoint.counted``: which tensors of a group calibration counts.

    First every tensor that is not ``copied``. Then, in graph order, a data-movement op whose group inputs
    are all counted and *_forwarded* (read by this op alone, through their FP8 quantizer if any, and not graph
    outputs) hands the counting to its output: the inputs' values reach the rest of the model only through
    it. For Reshape or Concat that counts the same multiset of values; for MaxPool or Slice it counts only
    the values that survive, the ones an integer consumer meets (and on the FP8 grid of the quantizer that
    follows, when the source quantized there). Chains hand on step by step (Relu → MaxPool → Reshape).
    """
    for name, point in points.items():
        points[name] = dataclasses.replace(point, counted=not point.copied)
    for node in graph:
        if node.op_type not in SHARED_SCALE_OPS - {"Resize"} or node.domain not in ("", "ai.onnx"):
            continue
        output = points.get(node.outputs[0].name or "")
        if output is None or not output.copied:
            continue
        sources = [v for v in map(look_through_fake_quantize, float_inputs(node)) if v is not None]
        members = [points[v.name or ""] for v in sources]  # all in the output's group: it is copied
        if all(p.counted for p in members) and all(_forwarded(v, node) for v in sources):
            for point in members:
                points[point.tensor] = dataclasses.replace(point, counted=False)
            points[output.tensor] = dataclasses.replace(output, counted=True)


def _forwarded(value: ir.Value, reader: ir.Node) -> bool:
    """Whether ``reader`` is the only node that reads ``value`` (through its FP8 quantizer, if any)."""
    quantizers = [node for node in value.consumers() if is_fake_quantize(node)]
    if value.is_graph_output() or any(q.outputs[0].is_graph_output() for q in quantizers):
        return False
    return {id(node) for node in consumers_through_fake_quantize(value)} == {id(reader)}
