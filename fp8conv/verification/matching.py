"""Which intermediate tensors of two graphs can be compared layer by layer: those with the same name.

fp8conv keeps the source's tensor names (a QuantizeLinear reads the source's pre-quantization tensor, the
DequantizeLinear output takes the FP8 quantizer's output name), so a tensor named ``t`` in the FP8
reference and in the converted model holds the same quantity. A tensor qualifies when, in both graphs, it
is produced by a node of the main graph, is computed from the graph inputs (tensors computed from
constants only, such as dequantized weights, are left out: they are not activations), is not a graph
input, initializer or graph output (outputs are reported separately), and has a floating-point type (or
an unknown one, checked when the values arrive).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import onnx_ir as ir

__all__ = ["TensorSite", "matched_tensors"]

_FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE})


@dataclasses.dataclass(frozen=True)
class TensorSite:
    """An intermediate tensor present in both graphs.

    Attributes:
        name: Tensor name.
        node: The candidate node that produces it.
        op_type: That node's op type.
        quantizes: When the candidate produces the tensor by ``QuantizeLinear → DequantizeLinear``, the
            name of the tensor the QuantizeLinear reads (the activation the converter quantized).
    """

    name: str
    node: str
    op_type: str
    quantizes: str | None = None


def _dynamic_values(graph: ir.Graph) -> Iterator[tuple[ir.Node, ir.Value]]:
    """Node outputs computed from graph inputs, in graph order."""
    dynamic = {id(value) for value in graph.inputs if not value.is_initializer()}
    for node in graph:
        if any(value is not None and id(value) in dynamic for value in node.inputs):
            for value in node.outputs:
                dynamic.add(id(value))
                yield node, value


def _candidates(graph: ir.Graph) -> dict[str, tuple[ir.Node, ir.Value]]:
    excluded = {value.name for value in graph.inputs} | {value.name for value in graph.outputs}
    excluded |= set(graph.initializers)
    found: dict[str, tuple[ir.Node, ir.Value]] = {}
    for node, value in _dynamic_values(graph):
        if not value.name or value.name in excluded:
            continue
        if value.dtype is not None and value.dtype not in _FLOAT_TYPES:
            continue
        found[value.name] = (node, value)
    return found


def _quantized_source(node: ir.Node) -> str | None:
    if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx") or node.inputs[0] is None:
        return None
    producer = node.inputs[0].producer()
    if producer is None or producer.op_type != "QuantizeLinear" or producer.inputs[0] is None:
        return None
    return producer.inputs[0].name


def matched_tensors(reference: ir.Model, candidate: ir.Model) -> list[TensorSite]:
    """The tensors to compare layer by layer, in the candidate's graph order.

    Args:
        reference: The reference model (canonical form).
        candidate: The candidate model.

    Returns:
        One site per qualifying tensor name present in both main graphs.
    """
    in_reference = _candidates(reference.graph)
    sites = []
    for name, (node, _) in _candidates(candidate.graph).items():
        if name in in_reference:
            sites.append(
                TensorSite(name, node.name or f"{node.op_type}({name})", node.op_type, _quantized_source(node))
            )
    return sites
