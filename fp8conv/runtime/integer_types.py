"""One table of facts about every integer type of ONNX quantization (the integer twin of ``formats.py``).

An :class:`IntegerFormat` is a two's-complement (signed) or plain binary (unsigned) integer of ``bits``
bits: its range ``[qmin, qmax]`` (what ``QuantizeLinear`` saturates to), the ONNX element type (an
``onnx_ir.DataType``, equal to the ``onnx.TensorProto`` enum value: it is an ``IntEnum``) and the NumPy dtype
that holds its values (4- and 2-bit values live in ``int8``/``uint8`` arrays, as onnx_ir takes them).

Every integer type fp8conv writes or reads in Q/DQ is here: the activation types (``uint8``, ``int8``,
``uint16``, ``int16``), the weight storage types (``int8``, ``int4``), the bias type (``int32``) and the
types other tools quantize to (``uint4``, ``int2``, ``uint2``). :func:`integer_type` finds one by name (or
by a ``str`` enum such as :class:`fp8conv.config.IntegerType`), :func:`integer_type_of` by ONNX element type.

:func:`quantize_output_type` is ONNX's rule for the type a ``QuantizeLinear`` produces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

__all__ = [
    "INTEGER_TYPES",
    "IntegerFormat",
    "integer_type",
    "integer_type_of",
    "quantize_output_type",
]


@dataclasses.dataclass(frozen=True)
class IntegerFormat:
    """Facts about one integer element type.

    Attributes:
        name: ``uint8``, ``int8``, ``int4``, … (NumPy's spelling; :class:`fp8conv.config.IntegerType` values).
        bits: Width in bits.
        signed: Two's complement (``int*``) or unsigned (``uint*``).
        data_type: The ONNX element type (``onnx_ir.DataType``; its value is the ``onnx.TensorProto`` enum).
    """

    name: str
    bits: int
    signed: bool
    data_type: ir.DataType

    @property
    def qmin(self) -> int:
        """Smallest value (``QuantizeLinear`` saturates to it): ``-2^(bits-1)`` or 0."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        """Largest value (``QuantizeLinear`` saturates to it): ``2^(bits-1) - 1`` or ``2^bits - 1``."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def symmetric(self) -> bool:
        """fp8conv's activation convention: signed types symmetric with zero point 0, unsigned ones affine."""
        return self.signed

    @property
    def numpy_dtype(self) -> np.dtype:
        """The NumPy dtype holding the values: the type itself, or ``int8``/``uint8`` below 8 bits."""
        bits = max(self.bits, 8)
        return np.dtype(f"{'int' if self.signed else 'uint'}{bits}")


INTEGER_TYPES: Mapping[str, IntegerFormat] = {
    t.name: t
    for t in (
        IntegerFormat("int2", 2, signed=True, data_type=ir.DataType.INT2),
        IntegerFormat("uint2", 2, signed=False, data_type=ir.DataType.UINT2),
        IntegerFormat("int4", 4, signed=True, data_type=ir.DataType.INT4),
        IntegerFormat("uint4", 4, signed=False, data_type=ir.DataType.UINT4),
        IntegerFormat("int8", 8, signed=True, data_type=ir.DataType.INT8),
        IntegerFormat("uint8", 8, signed=False, data_type=ir.DataType.UINT8),
        IntegerFormat("int16", 16, signed=True, data_type=ir.DataType.INT16),
        IntegerFormat("uint16", 16, signed=False, data_type=ir.DataType.UINT16),
        IntegerFormat("int32", 32, signed=True, data_type=ir.DataType.INT32),
    )
}
"""Every integer type of ONNX quantization by name: int2, uint2, int4, uint4, int8, uint8, int16, uint16, int32."""

_BY_DATA_TYPE: Mapping[int, IntegerFormat] = {int(t.data_type): t for t in INTEGER_TYPES.values()}


def integer_type(name: object, among: Mapping[str, IntegerFormat] = INTEGER_TYPES) -> IntegerFormat:
    """The :class:`IntegerFormat` called ``name`` (a string, or a ``str`` enum member such as ``IntegerType.INT8``).

    Args:
        name: The type's name.
        among: The types accepted (default: all), e.g. only the activation types.

    Raises:
        ValueError: For a name not in ``among``; the message lists the valid ones.
    """
    key = str(getattr(name, "value", name))
    try:
        return among[key]
    except KeyError:
        raise ValueError(f"unknown integer type {name!r}; valid types are: {', '.join(among)}") from None


def integer_type_of(data_type: int | None) -> IntegerFormat | None:
    """The :class:`IntegerFormat` of an ONNX element type (``onnx_ir.DataType`` or ``TensorProto`` int), else None."""
    return _BY_DATA_TYPE.get(int(data_type)) if data_type is not None else None


def quantize_output_type(*, has_zero_point: bool, zero_point_type: int | None, output_dtype: int = 0) -> int | None:
    """The element type a ``QuantizeLinear`` produces (ONNX's rule), as the graph states it.

    ``output_dtype`` when the attribute is set (opset 21; the zero point, if any, must have that type),
    else the zero point's type (None when the zero point is there but its type is unknown), else ``uint8``.

    Args:
        has_zero_point: Whether the node has a zero-point input.
        zero_point_type: That input's element type, when known.
        output_dtype: The ``output_dtype`` attribute (0: not set).

    Returns:
        The element type (an ``onnx_ir.DataType`` where it is one, else the raw enum value), or None.
    """
    if output_dtype:
        return _data_type(output_dtype)
    if has_zero_point:
        return _data_type(zero_point_type) if zero_point_type is not None else None
    return ir.DataType.UINT8


def _data_type(value: int) -> int:
    try:
        return ir.DataType(value)
    except ValueError:
        return value
