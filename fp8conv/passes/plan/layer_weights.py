"""A layer's weight, read exactly as the FP8 model used it and in the layout the layer reads it.

The FP8 model computes with ``w = decode(codes) · scale`` (a stored FP8 weight behind a DequantizeLinear) or
``w = fake_quantize(w_float)`` (a FakeQuantize of a float constant). Both are read exactly:

* as **codes** (:class:`~fp8conv.runtime.integer_quantization.WeightCodes`, ``w = values[codes] · scale`` in
  float32) when the scale is per tensor or per axis (and stays on one axis through the data movement): the
  integer weight search then counts codes instead of sorting values, and the float32 weight is decoded only
  when asked for;
* else as the decoded **float32 array** (blocked scales, a float constant, a Cast of an f16/bf16 quantizer).

Data movement with constant parameters between the quantizer and the layer (Transpose, Reshape, …;
:mod:`fp8conv.passes.data_movement`) is replayed on the codes or values, so the weight is given in the
layer's layout. For ``w4a16`` a ``Gemm(transB=1)`` gets its weight transposed (:func:`fold_trans_b`):
``A·Bᵀ = A·(Bᵀ)`` with ``Bᵀ`` stored ``[K, N]`` and ``transB=0``, the layout MatMulNBits needs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import (
    FP8_DATA_TYPES,
    QuantPoint,
    constant_array,
    is_fake_quantize,
    is_fp8_weight_dequantize,
    read_fake_quantize,
)
from fp8conv.passes.data_movement import trace_movement
from fp8conv.passes.dequantize_fp8 import exact_weights
from fp8conv.passes.plan.graph_queries import cast_to_float_input, fp8_point_behind_cast
from fp8conv.passes.plan.records import Layer
from fp8conv.runtime.emulator import decode, encode
from fp8conv.runtime.formats import resolve_format
from fp8conv.runtime.fusion_rules import channel_axis, reduction_axis
from fp8conv.runtime.integer_quantization import WeightCodes

__all__ = ["exact_weight", "fold_trans_b", "layer_weight", "weight_axes"]


def weight_axes(node: ir.Node) -> tuple[int, int | None]:
    """(output-channel axis, K axis for INT4 blocks) of the layer's weight (the fusion rules' axes)."""
    trans_b = node.op_type == "Gemm" and bool(node.attributes.get_int("transB", 0))
    return channel_axis(node.op_type, trans_b=trans_b), reduction_axis(node.op_type, trans_b=trans_b)


def _weight_codes(node: ir.Node) -> WeightCodes | None:
    """The FP8 codes behind a stored FP8 weight or a FakeQuantize of a constant (per-tensor or per-axis scale).

    ``exact_weights(node) == values[codes] * scale`` (float32), as both decode the same codes.
    """
    if is_fp8_weight_dequantize(node):
        data = node.inputs[0]
        assert data is not None
        if node.attributes.get_int("block_size", 0):
            return None
        codes, scale = constant_array(data), constant_array(node.inputs[1])
        fmt = resolve_format(FP8_DATA_TYPES[data.dtype])
        axis_attribute = node.attributes.get_int("axis", 1)
    elif is_fake_quantize(node):
        spec = read_fake_quantize(node)
        x, scale = constant_array(node.inputs[0]), constant_array(node.inputs[1])
        if spec.block_size or x is None or not spec.format.fits_code:
            return None
        fmt, axis_attribute = spec.format, spec.axis
        codes = None
    else:
        return None
    if scale is None:
        return None
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    shape = (x if codes is None else codes).shape
    axis = None
    if scale.size > 1:
        if axis_attribute is None or not shape:
            return None
        axis = axis_attribute % len(shape)
    if codes is None:
        assert x is not None
        view = [1] * len(shape)
        if axis is not None:
            view[axis] = -1
        with np.errstate(over="ignore", invalid="ignore"):
            codes = encode(x.astype(np.float32) / scale.reshape(view), fmt, saturate=spec.saturate)
    with np.errstate(over="ignore", invalid="ignore"):
        values = decode(np.arange(1 << fmt.bits, dtype=np.uint8), fmt)
    return WeightCodes(
        codes=np.asarray(codes).view(np.uint8),
        values=values,
        scale=scale if axis is not None else scale.reshape(()),
        axis=axis,
        sign_bit=1 << (fmt.bits - 1) if fmt.has_sign else None,
    )


def exact_weight(value: ir.Value | None) -> tuple[np.ndarray | None, str | None, QuantPoint | None]:
    """(float32 weight exactly as the FP8 model used it, stored tensor name, FP8 point) or Nones."""
    if value is None:
        return None, None, None
    inner = cast_to_float_input(value)
    if inner is not None:
        exact, source, point = exact_weight(inner)
        return (exact.astype(np.float32) if exact is not None else None), source, point
    producer = value.producer()
    if producer is not None and (is_fake_quantize(producer) or is_fp8_weight_dequantize(producer)):
        exact = exact_weights(producer)
        if exact is None:
            return None, None, None
        return exact, producer.inputs[0].name, None
    array = constant_array(value)
    if array is not None and np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32), value.name, None
    return None, None, None


def layer_weight(
    weight_value: ir.Value | None, by_output: dict[str, QuantPoint]
) -> tuple[np.ndarray | None, WeightCodes | None, str | None, QuantPoint | None]:
    """(weight array, weight codes, stored tensor name, FP8 point) of the constant a layer reads as its weight.

    The weight is found behind any data movement with constant parameters (Transpose, Reshape, …) and
    given as the layer reads it (the movement replayed on it); as codes when the source holds codes and a
    per-axis scale stays on one axis, else as the decoded float32 array. All None for an activation.
    """
    none = None, None, None, None
    if weight_value is None:
        return none
    movement = trace_movement(weight_value, constant=True)
    source = movement.source
    fp8_weight = by_output.get(source.name or "") or fp8_point_behind_cast(source, by_output)
    producer = source.producer()
    codes = _weight_codes(producer) if producer is not None else None
    if codes is not None:  # decoded only when needed (weights are the largest arrays a plan holds)
        assert producer is not None
        moved = movement.apply_codes(codes)
        if moved is not None:
            return None, moved, producer.inputs[0].name, fp8_weight
        return np.ascontiguousarray(movement.apply(codes.decode())), None, producer.inputs[0].name, fp8_weight
    weight, weight_source, _ = exact_weight(source)
    if weight is None:
        return none
    return np.ascontiguousarray(movement.apply(weight)), None, weight_source, fp8_weight


def fold_trans_b(layer: Layer) -> Layer:
    """``layer`` with its weight as ``Bᵀ`` (``[K, N]``) for a ``Gemm(transB=1)``, to be emitted with ``transB=0``."""
    codes = layer.weight_codes
    if codes is not None:
        axis = None if codes.axis is None else 1 - codes.axis
        codes = dataclasses.replace(codes, codes=np.ascontiguousarray(codes.codes.T), axis=axis)
    array = np.ascontiguousarray(layer.weight_array.T) if layer.weight_array is not None else None
    return dataclasses.replace(
        layer,
        weight_codes=codes,
        weight_array=array,
        weight_axis=1,
        block_axis=0,
        folds_trans_b=True,
        decision=layer.decision.noted("transB folded into the stored weight ([K, N], transB=0)"),
    )
