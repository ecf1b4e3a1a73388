"""Lookups over one ``onnx.GraphProto`` for the kernel audit: producers, consumers, constants, element types.

The audit reads the emitted and the optimized graph as protobuf (onnxruntime writes the optimized graph
as a file; it is parsed without its external data, so no weight is read into Python). Only small
parameter tensors (scales, zero points, Clip bounds) are ever read as values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from fp8conv.runtime.integer_types import quantize_output_type

__all__ = ["MAX_PARAM_TENSOR", "MAX_SMALL_TENSOR", "GraphIndex", "attribute", "label", "type_name"]

MAX_SMALL_TENSOR = 16
"""Elements: Q/Clip parameters read as values."""

MAX_PARAM_TENSOR = 1 << 20
"""Elements: scales and zero points read as values; weights never are."""


class GraphIndex:
    """Name lookups over one ``GraphProto``; only small parameter tensors (scales, zero points) are read."""

    def __init__(self, graph: onnx.GraphProto, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir
        self.nodes = list(graph.node)
        self.initializers: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self.declared_types: dict[str, int] = {}
        for info in (*graph.input, *graph.value_info, *graph.output):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                self.declared_types[info.name] = info.type.tensor_type.elem_type

    def constant(self, name: str) -> TensorProto | None:
        """The initializer or ``Constant`` tensor called ``name`` (data possibly external, not loaded)."""
        if name in self.initializers:
            return self.initializers[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    return attr.t
        return None

    def values(self, name: str, limit: int = MAX_SMALL_TENSOR) -> np.ndarray | None:
        """The value of a constant with at most ``limit`` elements, else ``None`` (also when unreadable)."""
        tensor = self.constant(name) if name else None
        if tensor is None:
            return None
        size = 1
        for dim in tensor.dims:
            size *= dim
        if size > limit:
            return None
        external = tensor.data_location == TensorProto.EXTERNAL
        if external and self.base_dir is None:
            return None
        try:
            return numpy_helper.to_array(tensor, base_dir=str(self.base_dir) if external else "")
        except Exception:  # an unusual encoding or a missing file: treated as unknown
            return None

    def elem_type(self, name: str) -> int | None:
        """Element type of a tensor, from initializers, declarations or the producing Q/DQ, else ``None``."""
        tensor = self.constant(name)
        if tensor is not None:
            return tensor.data_type
        if name in self.declared_types:
            return self.declared_types[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "QuantizeLinear":
            has_zero_point = len(node.input) > 2 and bool(node.input[2])
            return quantize_output_type(
                has_zero_point=has_zero_point,
                zero_point_type=self.elem_type(node.input[2]) if has_zero_point else None,
                output_dtype=int(attribute(node, "output_dtype", 0)),
            )
        if node is not None and node.op_type == "DequantizeLinear":
            return TensorProto.FLOAT
        return None

    def dq_input_type(self, dq: onnx.NodeProto) -> int | None:
        """Element type of a DequantizeLinear's quantized input (its zero point's type if unknown)."""
        found = self.elem_type(dq.input[0])
        if found is None and len(dq.input) > 2 and dq.input[2]:
            found = self.elem_type(dq.input[2])
        return found

    def producer_op(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The node producing ``name`` if it has op type ``op_type``."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def shape(self, name: str) -> tuple[int, ...] | None:
        """Static shape of a constant, else ``None``."""
        tensor = self.constant(name)
        return tuple(tensor.dims) if tensor is not None else None


def attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """The value of the node's attribute ``name``, else ``default``."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def type_name(elem_type: int | None) -> str:
    """The ``TensorProto`` name of an element type (``INT8``), for messages."""
    if elem_type is None:
        return "unknown type"
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"


def label(node: onnx.NodeProto) -> str:
    """The node's name, or ``<op>(<first output>)`` when it has none: how the audit names a node."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"
