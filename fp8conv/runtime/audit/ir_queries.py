"""What the kernel audit asks of an onnx_ir value: its readers, its small constant value, its element type.

The audit reads the emitted and the optimized model as ``onnx_ir`` models loaded lazily (external data is
not read), and follows onnx_ir's own links: ``value.producer()``, ``value.uses()``, ``value.const_value``
(:func:`~fp8conv.runtime.ir_constants.constant_tensor`), ``node.attributes``. Only small parameter tensors
(scales, zero points) are ever read as values; a weight's contents never are.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from onnx import TensorProto

from fp8conv.runtime.integer_types import quantize_output_type
from fp8conv.runtime.ir_constants import constant_tensor

__all__ = [
    "MAX_PARAM_TENSOR",
    "MAX_SMALL_TENSOR",
    "constant_shape",
    "dequantizer",
    "dq_input_type",
    "elem_type",
    "label",
    "readers",
    "small_values",
    "type_name",
]

MAX_SMALL_TENSOR = 16
"""Elements: Q parameters read as values."""

MAX_PARAM_TENSOR = 1 << 20
"""Elements: scales and zero points read as values; weights never are."""


def readers(value: ir.Value | None) -> list[ir.Node]:
    """The nodes of the value's own graph that read it, once per input slot (``Add(x, x)`` twice).

    Nodes of subgraphs (``If``/``Loop`` bodies) that read it from the outer scope are not counted.
    """
    if value is None:
        return []
    return [use.node for use in value.uses() if use.node.graph is value.graph]


def dequantizer(value: ir.Value | None) -> ir.Node | None:
    """The ``DequantizeLinear`` producing ``value``, else ``None``."""
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def small_values(value: ir.Value | None, limit: int = MAX_SMALL_TENSOR) -> np.ndarray | None:
    """The contents of a constant with at most ``limit`` elements, else ``None`` (also when unreadable)."""
    tensor = constant_tensor(value)
    if tensor is None or math.prod(tensor.shape.numpy()) > limit:
        return None
    try:
        return tensor.numpy()
    except Exception:  # an unusual encoding or a missing external data file: treated as unknown
        return None


def constant_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """Static shape of a constant, else ``None``."""
    tensor = constant_tensor(value)
    return tuple(tensor.shape.numpy()) if tensor is not None else None


def elem_type(value: ir.Value | None) -> int | None:
    """Element type of a tensor: a constant's, the declared one, or by the producing Q/DQ; else ``None``.

    A ``QuantizeLinear`` produces the type ONNX's rule gives (:func:`quantize_output_type`), a
    ``DequantizeLinear`` FLOAT.
    """
    if value is None:
        return None
    tensor = constant_tensor(value)
    if tensor is not None:
        return int(tensor.dtype)
    if isinstance(value.type, ir.TensorType) and value.dtype:
        return int(value.dtype)
    node = value.producer()
    if node is not None and node.op_type == "QuantizeLinear":
        zero_point = node.inputs[2] if len(node.inputs) > 2 else None
        return quantize_output_type(
            has_zero_point=zero_point is not None,
            zero_point_type=elem_type(zero_point) if zero_point is not None else None,
            output_dtype=node.attributes.get_int("output_dtype", 0),
        )
    if node is not None and node.op_type == "DequantizeLinear":
        return TensorProto.FLOAT
    return None


def dq_input_type(dq: ir.Node) -> int | None:
    """Element type of a DequantizeLinear's quantized input (its zero point's type if unknown)."""
    found = elem_type(dq.inputs[0])
    if found is None and len(dq.inputs) > 2 and dq.inputs[2] is not None:
        found = elem_type(dq.inputs[2])
    return found


def type_name(dtype: int | None) -> str:
    """The ``TensorProto`` name of an element type (``INT8``), for messages."""
    if dtype is None:
        return "unknown type"
    try:
        return TensorProto.DataType.Name(int(dtype))
    except ValueError:
        return f"type {dtype}"


def label(node: ir.Node) -> str:
    """The node's name, or ``<op>(<first output>)`` when it has none: how the audit names a node."""
    first_output = node.outputs[0].name if node.outputs else None
    return node.name or f"{node.op_type}({first_output or ''})"
