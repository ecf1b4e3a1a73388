"""Data-movement ops between a quantizer and the layer that reads it: trace them, replay them on arrays.

Exporters put pure data movement between a weight's quantizer and its layer: torch's ``Linear`` on a
3-D input is ``MatMul(x, Transpose(DQ(W)))``, packed or unsqueezed weights pass a ``Reshape``, and the
raw ModelOpt export quantizes attention's K before its ``Transpose``. These ops only rearrange
elements, so for a weight

    layer input = ops(DQ(codes, s)) = DQ(ops(codes), s')

exactly: a per-tensor scale is unchanged (``decode`` works element by element), and a per-axis scale
follows its axis wherever the ops put it (:func:`moved_axis`), when they keep it one axis. The ops
covered, with the ONNX semantics replayed by :meth:`Movement.apply`:

* ``Transpose(perm)`` (no ``perm``: reversed axes), ``Identity``;
* ``Reshape(shape)`` with a constant ``shape`` (``0`` copies the input dimension unless
  ``allowzero=1``; one ``-1`` is inferred), ``Flatten(axis)``;
* ``Squeeze`` / ``Unsqueeze`` with constant axes (input from opset 13, attribute before).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import constant_array
from fp8conv.runtime.integer_quantization import WeightCodes

__all__ = ["MOVEMENT_OPS", "Movement", "moved_axis", "trace_movement"]

logger = logging.getLogger(__name__)

MOVEMENT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
"""Op types that only rearrange the elements of their first input."""


@dataclasses.dataclass(frozen=True)
class Movement:
    """A chain of data-movement ops from ``source`` to the value a layer reads.

    Attributes:
        source: The value the chain starts from (a quantizer's output, a constant, …).
        ops: The data-movement nodes, in execution order (the first reads ``source``); empty when the
            layer reads ``source`` directly.
    """

    source: ir.Value
    ops: tuple[ir.Node, ...] = ()

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``array`` (standing for ``source``) through every op of the chain, as onnxruntime computes it."""
        for node in self.ops:
            array = _replay(node, array)
        return array

    def apply_codes(self, codes: WeightCodes) -> WeightCodes | None:
        """The codes of the moved weight (``decode`` commutes with data movement), or None.

        None when a per-axis scale does not stay on one axis (the caller then moves the decoded weight).
        """
        if not self.ops:
            return codes
        axis = codes.axis
        if axis is not None:
            axis = moved_axis(self, axis, codes.codes.shape)
            if axis is None:
                return None
        moved = np.ascontiguousarray(self.apply(codes.codes))
        return dataclasses.replace(codes, codes=moved, axis=axis)


def trace_movement(value: ir.Value, *, constant: bool) -> Movement:
    """Walk from ``value`` up through data-movement ops (main graph, first input) as far as they go.

    Args:
        value: The value a layer reads.
        constant: Only take ops whose parameters (Reshape's shape, Squeeze's axes) are constants, so
            that :meth:`Movement.apply` can replay them (for weights). Activations take any.

    Returns:
        The chain; ``source`` is ``value`` itself when its producer is no data-movement op.
    """
    ops: list[ir.Node] = []
    current = value
    while True:
        producer = current.producer()
        if producer is None or not _is_movement(producer) or producer.inputs[0] is None:
            break
        if constant and _parameters(producer) is None:
            break
        ops.append(producer)
        current = producer.inputs[0]
    return Movement(current, tuple(reversed(ops)))


def moved_axis(movement: Movement, axis: int, shape: tuple[int, ...]) -> int | None:
    """Where axis ``axis`` of a ``shape`` tensor ends up through the chain, or None if it does not stay one axis.

    A Transpose moves it to ``perm.index(axis)``. A reshape (Reshape, Flatten, Squeeze, Unsqueeze) keeps
    it as axis ``j`` of the new shape ``n`` when ``prod(n[:j]) == prod(shape[:axis])`` and
    ``n[j] == shape[axis]``: element ``(outer, c, inner)`` then keeps its channel ``c`` on axis ``j``.
    """
    current = np.empty(shape, dtype=np.uint8)
    for node in movement.ops:
        moved = _replay(node, current)
        if node.op_type == "Transpose":
            axis = _perm(node, current.ndim).index(axis)
        elif node.op_type != "Identity":
            outer = int(np.prod(current.shape[:axis]))
            matches = [
                j
                for j in range(moved.ndim)
                if int(np.prod(moved.shape[:j])) == outer and moved.shape[j] == current.shape[axis]
            ]
            if not matches:
                return None
            axis = matches[0]
        current = moved
    return axis


def _is_movement(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in MOVEMENT_OPS and bool(node.inputs)


def _parameters(node: ir.Node) -> tuple[int, ...] | None:
    """The constant shape or axes a Reshape/Squeeze/Unsqueeze reads (``()`` for the other ops), else None."""
    op = node.op_type
    if op not in ("Reshape", "Squeeze", "Unsqueeze"):
        return ()
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        array = constant_array(node.inputs[1])
        return tuple(int(v) for v in np.asarray(array).reshape(-1)) if array is not None else None
    axes = node.attributes.get_ints("axes") if op != "Reshape" else None
    if axes is not None:
        return tuple(int(a) for a in axes)
    return () if op == "Squeeze" else None


def _perm(node: ir.Node, rank: int) -> list[int]:
    perm = node.attributes.get_ints("perm")
    return [int(p) % rank for p in perm] if perm is not None else list(reversed(range(rank)))


def _replay(node: ir.Node, array: np.ndarray) -> np.ndarray:
    """One data-movement op on a NumPy array (ONNX semantics)."""
    op = node.op_type
    if op == "Identity":
        return array
    if op == "Transpose":
        return np.transpose(array, _perm(node, array.ndim))
    if op == "Flatten":
        axis = node.attributes.get_int("axis", 1) % (array.ndim + 1)
        return array.reshape(int(np.prod(array.shape[:axis])), -1)
    parameters = _parameters(node)
    assert parameters is not None
    if op == "Reshape":
        allow_zero = node.attributes.get_int("allowzero", 0)
        shape = [array.shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(parameters)]
        return array.reshape(shape)
    if op == "Squeeze":
        axes = parameters or tuple(i for i, d in enumerate(array.shape) if d == 1)
        return np.squeeze(array, axis=tuple(a % array.ndim for a in axes))
    rank = array.ndim + len(parameters)
    return np.expand_dims(array, axis=tuple(a % rank for a in parameters))
