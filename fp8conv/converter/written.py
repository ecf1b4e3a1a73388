"""What a converted model holds, read from its graph (not from the plan that produced it)."""

from __future__ import annotations

import logging

import onnx_ir as ir

__all__ = ["LAYER_OPS", "layer_weight_types"]

logger = logging.getLogger(__name__)

LAYER_OPS = frozenset({"Conv", "MatMul", "Gemm"})
"""The op types that are layers."""

_INTEGER_TYPES = frozenset(
    {ir.DataType.INT4, ir.DataType.UINT4, ir.DataType.INT8, ir.DataType.UINT8, ir.DataType.INT16, ir.DataType.UINT16}
)


def layer_weight_types(model: ir.Model) -> list[tuple[ir.Node, str | None]]:
    """Every Conv / MatMul / Gemm of the main graph and the type its weight is stored in.

    The type is the lower-case ONNX element type name (``int4``, ``int8``, …) of the integer constant a
    ``DequantizeLinear`` turns into the layer's weight input, ``float`` for any other constant weight
    (float, float16, FP8 behind a DequantizeLinear, …), and None when the input is computed (an activation).
    """
    result: list[tuple[ir.Node, str | None]] = []
    for node in model.graph:
        if node.domain not in ("", "ai.onnx") or node.op_type not in LAYER_OPS:
            continue
        weight = node.inputs[1] if len(node.inputs) > 1 else None
        result.append((node, _stored_type(weight)))
    return result


def _stored_type(value: ir.Value | None) -> str | None:
    if value is None:
        return None
    if value.const_value is not None:
        return "float"
    producer = value.producer()
    if producer is None:
        return None
    if producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        return "float"
    if producer.op_type != "DequantizeLinear" or not producer.inputs or producer.inputs[0] is None:
        return None
    stored = producer.inputs[0]
    if stored.const_value is None:
        return None
    dtype = stored.const_value.dtype
    return dtype.name.lower() if dtype in _INTEGER_TYPES else "float"
