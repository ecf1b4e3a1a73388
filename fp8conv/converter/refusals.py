"""The conversions fp8conv refuses before emitting anything, each with a one-line message naming what it found.

* a model without FP8 quantization points (a float or an already integer-quantized model);
* FP8 that no reader took (a tensor, cast or zero point outside the canonical FakeQuantize / FP8-weight
  DequantizeLinear forms): no integer model can be written for it;
* a target that converts none of the model's layers although the user kept none float.
"""

from __future__ import annotations

import onnx_ir as ir

from fp8conv.config import ConversionConfig
from fp8conv.converter.loading import LoadedModel
from fp8conv.converter.postconditions import LAYER_OPS, is_low_precision_float
from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.passes.canonical import is_fake_quantize, is_fp8_weight_dequantize
from fp8conv.passes.plan import DecisionCode, QuantizationPlan

__all__ = ["nothing_to_convert", "refuse_unread_fp8", "require_work"]


def nothing_to_convert(loaded: LoadedModel) -> str:
    """Why a model without FP8 quantization points is refused: what it holds instead."""
    counts: dict[str, int] = {}
    for node in loaded.model.graph:
        if node.domain in ("", "ai.onnx") and node.op_type in LAYER_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    layers = ", ".join(f"{count} {op}" for op, count in sorted(counts.items())) or "no Conv/MatMul/Gemm"
    found = f"{layers}"
    if loaded.integer_qdq:
        found += (
            f" and {len(loaded.integer_qdq)} integer QuantizeLinear/DequantizeLinear nodes: already integer-quantized"
        )
    else:
        found += ", all float: a float model (fp8conv converts FP8 fake-quantized models)"
    label = loaded.source.path or "model"
    return f"{label}: no FP8 quantization points, nothing to convert; found {found}"


def refuse_unread_fp8(model: ir.Model, loaded: LoadedModel) -> None:
    """Refuse FP8 that the readers left as it was (each logged why): no integer model can be written for it.

    In canonical form FP8 is only in FakeQuantize nodes and in the FP8 weights behind a DequantizeLinear;
    an FP8 tensor, cast or zero point anywhere else is a quantizer fp8conv does not read (scales that
    differ on both sides of a Q/DQ pair, a DequantizeLinear of a non-constant tensor, ...).

    Raises:
        UnsupportedModelError: Naming the first such node.
    """
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if is_fake_quantize(node) or is_fp8_weight_dequantize(node):
            continue
        values = [value for value in (*node.inputs, *node.outputs) if value is not None]
        fp8 = [value for value in values if is_low_precision_float(value.dtype)]
        types = [
            attribute.as_int()
            for name in ("to", "output_dtype")
            if isinstance(attribute := node.attributes.get(name), ir.Attr) and attribute.type == ir.AttributeType.INT
        ]
        fp8_type = next((t for t in types if t in _DATA_TYPES and is_low_precision_float(ir.DataType(t))), None)
        if fp8 or fp8_type is not None:
            what = (
                f"tensor {fp8[0].name!r} is {fp8[0].dtype.name}" if fp8 else f"it casts to {ir.DataType(fp8_type).name}"
            )
            raise UnsupportedModelError(
                f"{loaded.source.path or 'model'}: node {node.name!r} ({node.op_type}): {what}, not part of a "
                "quantizer fp8conv reads (warnings, or -v, say why a reader left it)"
            )


_DATA_TYPES = frozenset(member.value for member in ir.DataType)


def require_work(plan: QuantizationPlan, loaded: LoadedModel, config: ConversionConfig) -> None:
    """Refuse a conversion that would convert no layer although the user kept none float (nothing to do)."""
    if any(layer.is_integer or layer.decision.code is DecisionCode.KEPT_FLOAT for layer in plan.layers):
        return
    reasons: dict[str, int] = {}
    for layer in plan.layers:
        key = f"{layer.op_type}: {layer.reason}"
        reasons[key] = reasons.get(key, 0) + 1
    detail = "; ".join(f"{count} x {reason}" for reason, count in reasons.items()) or "it has no Conv/MatMul/Gemm"
    label = loaded.source.path or "model"
    raise Fp8ConvError(f"{label}: --to {config.target.value} converts none of its layers ({detail})")
