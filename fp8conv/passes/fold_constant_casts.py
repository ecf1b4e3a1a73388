"""Fold constant operands written as casts of constants into initializers, before any reader runs.

Exporters often spell a constant operand as an expression over a constant: PyTorch's dynamo exporter
without optimization bounds a clamp by ``CastLike(Cast(Constant), x)``, onnxruntime's ``quantize_static``
feeds biases through ``Cast(initializer, to=FLOAT)``, TorchScript exports put ``Identity`` on shared
weights. Such an operand is a constant: a ``CastLike`` reads only the element type of its second input,
never its values. Folding them once, here, lets every later pass see a constant where there is one,
and a tensor such as ``x`` is no longer "read" by the ``CastLike`` that only borrowed its type.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from fp8conv.passes.canonical import constant_tensor
from fp8conv.passes.normalization import ONNX_DOMAINS, constant_dtype, remove_unused_constants
from fp8conv.passes.values import take_over

__all__ = ["FoldConstantCastsPass"]

logger = logging.getLogger(__name__)

_FLOAT_TARGETS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE)
"""Cast targets NumPy computes as ONNX does (round to nearest even) from any float or integer source."""

_NUMERIC_SOURCES = frozenset(
    {
        ir.DataType.FLOAT,
        ir.DataType.FLOAT16,
        ir.DataType.DOUBLE,
        ir.DataType.INT8,
        ir.DataType.UINT8,
        ir.DataType.INT16,
        ir.DataType.UINT16,
        ir.DataType.INT32,
        ir.DataType.UINT32,
        ir.DataType.INT64,
        ir.DataType.UINT64,
    }
)


def _target_type(node: ir.Node) -> ir.DataType | None:
    """The element type ``node`` produces, for the ops this pass folds; None for any other node."""
    if node.domain not in ONNX_DOMAINS or not node.inputs or node.inputs[0] is None:
        return None
    if node.op_type == "Identity":
        return constant_dtype(node.inputs[0])
    if node.op_type == "Cast":
        target = node.attributes.get_int("to", 0)
        return ir.DataType(target) if target else None
    if node.op_type == "CastLike" and len(node.inputs) == 2:
        return constant_dtype(node.inputs[1])
    return None


def _folded(node: ir.Node, target: ir.DataType) -> ir.TensorProtocol | None:
    """The constant ``node`` computes, or None when its input is not constant or the cast is not exact in NumPy."""
    source = node.inputs[0]
    tensor = constant_tensor(source)
    if tensor is None or (source is not None and source.is_graph_input()):
        return None
    if tensor.dtype == target:
        return tensor  # shared, not copied: external data stays lazy
    if target in _FLOAT_TARGETS and tensor.dtype in _NUMERIC_SOURCES:
        return ir.tensor(tensor.numpy().astype(target.numpy()), dtype=target)
    return None


class FoldConstantCastsPass(ir.passes.InPlacePass):
    """Replace ``Cast``, ``CastLike`` and ``Identity`` of a constant by the initializer they compute.

    ``Identity(c)`` is ``c``; ``Cast(c, to=T)`` and ``CastLike(c, x)`` (``T`` = the element type of ``x``)
    are ``c`` converted to ``T``, folded when the conversion is the identity (any type, FP8 included) or
    when ``T`` is float32, float16 or float64 and ``c`` is a float or integer tensor of another type
    (NumPy converts with round to nearest even, as ONNX's Cast does; casts to FP8, bfloat16, integers or
    strings are not folded). The constant ``c`` is an initializer that is not a graph input or a
    ``Constant`` output; nodes are folded in graph order, so chains such as ``CastLike(Cast(Constant), x)``
    fold completely.

    The initializer takes the node's output (name, readers, declared type and shape); a folded
    constant nothing else reads is removed. Graph outputs and nodes whose output has no name are left
    alone, and so is a ``CastLike`` whose type source has no declared type.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold every such node of the model's graph and subgraphs."""
        folded = 0
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if node.graph is not None and self._fold(node):
                folded += 1
        if folded:
            logger.debug("folded %d casts of constants into initializers", folded)
        return ir.passes.PassResult(model, modified=bool(folded))

    @staticmethod
    def _fold(node: ir.Node) -> bool:
        target = _target_type(node)
        if target is None or len(node.outputs) != 1:
            return False
        output = node.outputs[0]
        if not output.name or output.is_graph_output():
            return False
        tensor = _folded(node, target)
        if tensor is None:
            return False
        graph = node.graph
        assert graph is not None
        source = node.inputs[0]
        value = ir.Value(shape=ir.Shape(tensor.shape), type=ir.TensorType(target), const_value=tensor)
        take_over(output, value)
        graph.remove(node, safe=True)
        graph.register_initializer(value)
        remove_unused_constants([source])
        return True
