"""Find what normalization does not convert: MX/NVFP4 block formats (rejected) and integer Q/DQ (kept)."""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir

from fp8conv.errors import UnsupportedModelError
from fp8conv.passes.canonical import FP8_DATA_TYPES
from fp8conv.passes.normalization import QDQ_DOMAINS, constant_dtype
from fp8conv.runtime.integer_types import INTEGER_TYPES, quantize_output_type

__all__ = [
    "INTEGER_QUANTIZED_TYPES",
    "IntegerQdq",
    "check_supported",
    "find_block_format_nodes",
    "find_integer_qdq",
]

logger = logging.getLogger(__name__)

_BLOCK_FORMAT_OPS = frozenset(
    {
        "TRT_MXFP8DynamicQuantize",
        "TRT_MXFP8QuantizeLinear",
        "TRT_MXFP8DequantizeLinear",
        "TRT_FP4DynamicQuantize",
        "TRT_FP4QDQ",
        "MXQuantizeDequantize",
        "MXFixNeuron",
        "BFPQuantizeDequantize",
        "BFPFixNeuron",
    }
)
"""Custom ops of MX / NVFP4 / block-floating-point quantization (ModelOpt, TransformerEngine, AMD Quark)."""

# FLOAT6 types arrived in onnx-ir 1.1; an onnx-ir without them cannot load such tensors either.
_BLOCK_ELEMENT_TYPES = frozenset(
    getattr(ir.DataType, name) for name in ("FLOAT4E2M1", "FLOAT6E2M3", "FLOAT6E3M2") if hasattr(ir.DataType, name)
)
"""Element types that only occur in MX/NVFP4 block formats."""

_BLOCK_SCALE_TYPES = frozenset({ir.DataType.FLOAT8E8M0, *FP8_DATA_TYPES})
"""Scale types of block formats: E8M0 (MX) and FP8 (NVFP4's per-block scales)."""

INTEGER_QUANTIZED_TYPES = frozenset(fmt.data_type for fmt in INTEGER_TYPES.values())
"""Quantized types of integer Q/DQ (INT32 only occurs as a DequantizeLinear bias input)."""


@dataclasses.dataclass(frozen=True)
class IntegerQdq:
    """An integer ``QuantizeLinear``/``DequantizeLinear`` that normalization keeps as it is.

    Attributes:
        node: Node name.
        op_type: ``QuantizeLinear``, ``DequantizeLinear``, ``TRT_INT4QuantizeLinear`` …
        dtype: The quantized element type's name (``INT8``, ``UINT4`` …).
    """

    node: str
    op_type: str
    dtype: str


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if len(node.inputs) > index else None


def _quantized_type(node: ir.Node) -> ir.DataType | None:
    """The quantized element type of a Q (zero point, ``output_dtype``, default uint8) or DQ (its input)."""
    if node.op_type.startswith("TRT_INT4"):
        return ir.DataType.INT4
    if node.op_type.endswith("DequantizeLinear"):
        data = _input(node, 0)
        producer = data.producer() if data is not None else None
        if producer is not None and producer.op_type == "QuantizeLinear" and _is_qdq(producer):
            return _quantized_type(producer)  # not the declared type of its output, which may be stale
        return constant_dtype(data)
    zero_point = _input(node, 2)
    produced = quantize_output_type(
        has_zero_point=zero_point is not None,
        zero_point_type=constant_dtype(zero_point),
        output_dtype=node.attributes.get_int("output_dtype", 0),
    )
    return produced if isinstance(produced, ir.DataType) else None


def _is_qdq(node: ir.Node) -> bool:
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        return node.domain in QDQ_DOMAINS
    return node.domain == "trt" and node.op_type in ("TRT_INT4QuantizeLinear", "TRT_INT4DequantizeLinear")


def _uses_block_format(node: ir.Node) -> bool:
    if node.op_type in _BLOCK_FORMAT_OPS:
        return True
    if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or not _is_qdq(node):
        return False
    return _quantized_type(node) in _BLOCK_ELEMENT_TYPES or constant_dtype(_input(node, 1)) in _BLOCK_SCALE_TYPES


def find_block_format_nodes(model: ir.Model) -> list[ir.Node]:
    """Nodes of MX, NVFP4 and block-floating-point quantization, in graph order.

    These are ``TRT_MXFP8*``, ``TRT_FP4DynamicQuantize`` and ``TRT_FP4QDQ`` (ModelOpt,
    TransformerEngine), Quark's ``MXQuantizeDequantize``/``MXFixNeuron``/``BFP*``, and standard
    Q/DQ over FLOAT4E2M1 or FLOAT6 data or with a FLOAT8E8M0 or FP8 scale.
    """
    return [node for node in ir.traversal.RecursiveGraphIterator(model.graph) if _uses_block_format(node)]


def check_supported(model: ir.Model) -> None:
    """Reject models that use MX/NVFP4 block formats.

    Raises:
        UnsupportedModelError: Listing every such node by name and op type.
    """
    nodes = find_block_format_nodes(model)
    if nodes:
        listed = ", ".join(f"{node.name!r} ({node.op_type})" for node in nodes)
        raise UnsupportedModelError(
            f"the model uses MX/NVFP4 block formats, which fp8conv does not support: nodes {listed}"
        )


def find_integer_qdq(model: ir.Model) -> list[IntegerQdq]:
    """The integer Q/DQ nodes of a model (INT2…INT16, UINT2…UINT16, INT32 bias DQs), in graph order.

    Normalization keeps them untouched; callers report them.
    """
    found = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if not _is_qdq(node):
            continue
        dtype = _quantized_type(node)
        if dtype in INTEGER_QUANTIZED_TYPES:
            found.append(IntegerQdq(node.name or "", node.op_type, dtype.name))
    return found
