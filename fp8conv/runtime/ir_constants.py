"""Constant tensors of an onnx_ir graph: initializers and ``Constant`` outputs, read as NumPy.

The one reader of constants for every layer that reads graphs: the passes (normalization, the plan,
emission) and the kernel audit. A value is constant when it is an initializer (``value.const_value``) or
the output of an ai.onnx ``Constant`` with a ``value`` tensor; other spellings of a constant
(``CastLike(Constant, x)``, ``Identity``) are folded into initializers before the passes read them
(:class:`~fp8conv.passes.fold_constant_casts.FoldConstantCastsPass`). FP8 tensors are read as their uint8
codes (NumPy has no FP8 type; ``ml_dtypes`` arrays are not passed around).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["FP8_DATA_TYPES", "constant_array", "constant_tensor"]

FP8_DATA_TYPES: dict[ir.DataType, str] = {
    ir.DataType.FLOAT8E4M3FN: "e4m3fn",
    ir.DataType.FLOAT8E4M3FNUZ: "e4m3fnuz",
    ir.DataType.FLOAT8E5M2: "e5m2",
    ir.DataType.FLOAT8E5M2FNUZ: "e5m2fnuz",
}
"""The ONNX float8 element types and the emulator format each one is."""


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents as NumPy (initializer or ``Constant`` output), else None.

    FP8 tensors come back as ``ml_dtypes``-free ``uint8`` codes (see :func:`_tensor_numpy`).
    """
    tensor = constant_tensor(value)
    return None if tensor is None else _tensor_numpy(tensor)


def constant_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The value's constant tensor (initializer or ``Constant`` output with a ``value``), else None.

    Nothing is read: an external tensor stays unloaded until its contents are asked for.
    """
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value
    producer = value.producer()
    if producer is None or producer.op_type != "Constant" or producer.domain not in ("", "ai.onnx"):
        return None
    attribute = producer.attributes.get("value")
    if attribute is None or attribute.type != ir.AttributeType.TENSOR:
        return None
    return attribute.as_tensor()


def _tensor_numpy(tensor: ir.TensorProtocol) -> np.ndarray:
    """A tensor's contents; FP8 tensors as their uint8 codes."""
    if tensor.dtype in FP8_DATA_TYPES:
        return np.frombuffer(tensor.tobytes(), dtype=np.uint8).reshape(tensor.shape.numpy())
    return tensor.numpy()
