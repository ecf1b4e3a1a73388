"""The canonical form of FP8 fake quantization, shared by every pass.

Every FP8 fake-quant that a normalization pass recognises becomes one of two things in the graph:

1. ``ai.fp8conv::FakeQuantize(x, scale) -> y`` — a single node computing

       y = fake_quantize(x, scale, format, axis=axis, block_size=block_size, saturate=saturate)

   exactly as :func:`fp8conv.fp8.fake_quantize` defines it (``x / scale`` in float32, round half to even
   on the format's grid, saturate or not, ``· scale`` in float32). ``scale`` is a constant (initializer or
   ``Constant``) of any float type. Attributes:

   * ``format`` (string): a named format (``e4m3fn`` …) or ``minifloat``; for ``minifloat`` also
     ``exponent_bits``, ``mantissa_bits``, ``bias`` (ints), ``max_value`` (float), ``has_inf``,
     ``has_nan``, ``has_subnormal`` (ints 0/1);
   * ``saturate`` (int 0/1), ``axis`` (int, present for per-axis and blocked scales), ``block_size``
     (int, present and > 0 for blocked scales);
   * ``source`` (string): the dialect it was read from, for reports.

   The node keeps the source tensor names: its input is the tensor that was quantized and its output
   the tensor the source model's dequantizer produced.

2. A standard ``DequantizeLinear(w, scale)`` whose ``w`` is an FP8 initializer (weights stored as FP8
   codes), without zero point (it must be 0), with ``axis``/``block_size`` as needed.

:func:`collect_quant_points` reads both into :class:`QuantPoint` records, which later passes and the
reports consume. The canonical form is a fixed point of normalization (normalizing it again changes
nothing).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Literal

import numpy as np
import onnx_ir as ir

from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.runtime.emulator import check_scale
from fp8conv.runtime.formats import FORMATS, FloatFormat, minifloat
from fp8conv.runtime.ir_constants import FP8_DATA_TYPES, constant_array, constant_tensor

__all__ = [
    "CANONICAL_DOMAIN",
    "CANONICAL_OPSET",
    "FAKE_QUANTIZE",
    "FP8_DATA_TYPES",
    "QuantPoint",
    "QuantSpec",
    "collect_quant_points",
    "constant_array",
    "constant_tensor",
    "format_attributes",
    "format_from_attributes",
    "is_fake_quantize",
    "is_fp8_weight_dequantize",
    "make_fake_quantize",
    "read_fake_quantize",
    "read_scale",
]

logger = logging.getLogger(__name__)

CANONICAL_DOMAIN = "ai.fp8conv"
CANONICAL_OPSET = 1
FAKE_QUANTIZE = "FakeQuantize"


Role = Literal["weight", "activation"]


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How a tensor is fake-quantized: format, granularity and saturation.

    Attributes:
        format: The number format.
        axis: Axis of per-axis or blocked scales; None for a per-tensor scale.
        block_size: Block length along ``axis`` for blocked scales; None otherwise.
        saturate: ONNX ``saturate`` semantics (True: overflow and ±Inf clip to ±max).
    """

    format: FloatFormat
    axis: int | None = None
    block_size: int | None = None
    saturate: bool = True

    @property
    def granularity(self) -> str:
        """``per-tensor``, ``per-axis`` or ``blocked``."""
        if self.block_size:
            return "blocked"
        return "per-tensor" if self.axis is None else "per-axis"


@dataclasses.dataclass(frozen=True)
class QuantPoint:
    """One FP8 quantization point of a model in canonical form.

    Attributes:
        tensor: Name of the tensor that is quantized (the FakeQuantize input, or the FP8 initializer).
        output: Name of the dequantized tensor the rest of the graph reads.
        role: ``weight`` when the quantized tensor is a constant, else ``activation``.
        spec: Format, granularity and saturation.
        scale: The scale(s), float32, shaped as in the graph.
        node: Name of the canonical node (FakeQuantize or DequantizeLinear).
        consumers: Op types of the nodes that read ``output``.
        dialect: The dialect the point was read from (``qdq``, ``dq-weight``, ``trt``, ``qonnx``,
            ``cast``, or whatever the ``source`` attribute says).
        stored: True when the weight is stored as FP8 codes (DequantizeLinear form).
    """

    tensor: str
    output: str
    role: Role
    spec: QuantSpec
    scale: np.ndarray = dataclasses.field(compare=False, repr=False)
    node: str
    consumers: tuple[str, ...]
    dialect: str
    stored: bool = False

    @property
    def scale_range(self) -> tuple[float, float]:
        """Smallest and largest scale."""
        return float(self.scale.min()), float(self.scale.max())

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable description (the ``quant_points`` entries of ``fp8conv inspect --json``)."""
        low, high = self.scale_range
        return {
            "tensor": self.tensor,
            "output": self.output,
            "role": self.role,
            "format": self.spec.format.name,
            "axis": self.spec.axis,
            "block_size": self.spec.block_size,
            "granularity": self.spec.granularity,
            "saturate": self.spec.saturate,
            "scale_min": low,
            "scale_max": high,
            "node": self.node,
            "consumers": list(self.consumers),
            "dialect": self.dialect,
            "stored": self.stored,
        }


def format_attributes(fmt: FloatFormat) -> dict[str, object]:
    """The FakeQuantize attributes that describe ``fmt``."""
    if FORMATS.get(fmt.name) == fmt:
        return {"format": fmt.name}
    return {
        "format": "minifloat",
        "exponent_bits": fmt.exponent_bits,
        "mantissa_bits": fmt.mantissa_bits,
        "bias": fmt.bias,
        "max_value": float(fmt.max_value),
        "has_inf": int(fmt.has_inf),
        "has_nan": int(fmt.has_nan),
        "has_subnormal": int(fmt.has_subnormal),
    }


def format_from_attributes(node: ir.Node) -> FloatFormat:
    """The format a FakeQuantize node's attributes describe.

    Raises:
        Fp8ConvError: For an unknown format name or missing minifloat attributes.
    """
    name = node.attributes.get_string("format")
    if name is None:
        raise Fp8ConvError(f"node {node.name!r}: {FAKE_QUANTIZE} has no 'format' attribute")
    if name != "minifloat":
        try:
            return FORMATS[name]
        except KeyError:
            raise Fp8ConvError(f"node {node.name!r}: unknown format {name!r}") from None
    attrs = node.attributes
    try:
        return minifloat(
            attrs.get_int("exponent_bits"),
            attrs.get_int("mantissa_bits"),
            bias=attrs.get_int("bias"),
            max_value=attrs.get_float("max_value"),
            has_inf=bool(attrs.get_int("has_inf", 0)),
            has_nan=bool(attrs.get_int("has_nan", 0)),
            has_subnormal=bool(attrs.get_int("has_subnormal", 1)),
        )
    except (TypeError, ValueError) as error:
        raise Fp8ConvError(f"node {node.name!r}: bad minifloat attributes: {error}") from error


def make_fake_quantize(
    x: ir.Value,
    scale: ir.Value,
    spec: QuantSpec,
    *,
    source: str,
    name: str | None = None,
    output: ir.Value | None = None,
) -> ir.Node:
    """Build a canonical FakeQuantize node (not yet inserted in a graph).

    Args:
        x: The tensor to quantize.
        scale: The constant scale value.
        spec: Format, granularity, saturation.
        source: Dialect name recorded in the ``source`` attribute.
        name: Node name (keep the source node's name so reports can point at it).
        output: An existing value to produce (to keep the source model's tensor name); its previous
            producer must be removed from the graph first. A fresh value otherwise.
    """
    attributes: dict[str, object] = {**format_attributes(spec.format), "saturate": int(spec.saturate)}
    if spec.axis is not None:
        attributes["axis"] = spec.axis
    if spec.block_size:
        attributes["block_size"] = spec.block_size
    attributes["source"] = source
    return ir.node(
        FAKE_QUANTIZE,
        inputs=[x, scale],
        attributes=attributes,
        domain=CANONICAL_DOMAIN,
        name=name,
        outputs=[output] if output is not None else None,
    )


def is_fake_quantize(node: ir.Node) -> bool:
    """Whether ``node`` is a canonical FakeQuantize."""
    return node.domain == CANONICAL_DOMAIN and node.op_type == FAKE_QUANTIZE


def read_fake_quantize(node: ir.Node) -> QuantSpec:
    """The :class:`QuantSpec` of a canonical FakeQuantize node."""
    attrs = node.attributes
    block_size = attrs.get_int("block_size", 0) or None
    axis = attrs.get_int("axis")
    return QuantSpec(
        format=format_from_attributes(node),
        axis=axis,
        block_size=block_size,
        saturate=bool(attrs.get_int("saturate", 1)),
    )


def is_fp8_weight_dequantize(node: ir.Node) -> bool:
    """Whether ``node`` is a ``DequantizeLinear`` over a constant FP8 tensor (canonical stored weight)."""
    if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx") or not node.inputs:
        return False
    data = node.inputs[0]
    return data is not None and data.dtype in FP8_DATA_TYPES and constant_array(data) is not None


def read_scale(node: ir.Node, value: ir.Value | None) -> np.ndarray:
    """Read a quantizer's scale: a constant whose entries are all positive and finite.

    The one reader of FP8 scales (normalization, the quantization points, the lowering); what a valid scale
    is, :func:`~fp8conv.runtime.emulator.check_scale` says.

    Args:
        node: The quantizer (named in error messages).
        value: Its scale input.

    Returns:
        The scale as float32, shaped as in the graph.

    Raises:
        UnsupportedModelError: When the scale is not a constant.
        Fp8ConvError: When it is empty or an entry is <= 0, NaN or Inf.
    """
    name = value.name if value is not None else None
    array = constant_array(value)
    if array is None:
        raise UnsupportedModelError(
            f"node {node.name!r}: the scale {name!r} is not a constant; fp8conv needs constant FP8 scales"
        )
    try:
        return check_scale(array, f"scale {name!r}")
    except ValueError as error:
        raise Fp8ConvError(f"node {node.name!r}: {error}") from None


def _consumers(value: ir.Value) -> tuple[str, ...]:
    ops = [consumer.op_type for consumer in value.consumers()]
    if value.is_graph_output():
        ops.append("<graph output>")
    return tuple(ops)


def _iter_nodes(graph: ir.Graph) -> Iterator[ir.Node]:
    yield from ir.traversal.RecursiveGraphIterator(graph)


def _check_weight_scales(
    node: ir.Node,
    name: str | None,
    shape: tuple[int | ir.SymbolicDim, ...],
    scale: np.ndarray,
    axis: int | None,
    block_size: int | None,
) -> None:
    """Refuse per-axis scales of a constant weight that are not one per element along the axis.

    Raises:
        Fp8ConvError: Naming the node, the weight and both lengths.
    """
    if scale.size <= 1 or block_size or axis is None or not all(isinstance(dim, int) for dim in shape):
        return
    if not -len(shape) <= axis < len(shape) or shape[axis] != scale.size:
        raise Fp8ConvError(
            f"node {node.name!r}: {scale.size} scales along axis {axis} of the weight {name!r} of shape "
            f"{list(shape)}: one per element along the axis is needed"
        )


def collect_quant_points(model: ir.Model) -> list[QuantPoint]:
    """Every quantization point of a model in canonical form, in graph order.

    Raises:
        Fp8ConvError: When a scale is not constant.
    """
    points: list[QuantPoint] = []
    for node in _iter_nodes(model.graph):
        if is_fake_quantize(node):
            x, scale = node.inputs[0], node.inputs[1]
            assert x is not None
            weight = constant_array(x)
            spec = read_fake_quantize(node)
            scales = read_scale(node, scale)
            if weight is not None:
                _check_weight_scales(node, x.name, weight.shape, scales, spec.axis, spec.block_size)
            points.append(
                QuantPoint(
                    tensor=x.name or "",
                    output=node.outputs[0].name or "",
                    role="weight" if weight is not None else "activation",
                    spec=spec,
                    scale=scales,
                    node=node.name or "",
                    consumers=_consumers(node.outputs[0]),
                    dialect=node.attributes.get_string("source", "canonical"),
                )
            )
        elif is_fp8_weight_dequantize(node):
            data = node.inputs[0]
            assert data is not None
            block_size = node.attributes.get_int("block_size", 0) or None
            scale = read_scale(node, node.inputs[1])
            axis = node.attributes.get_int("axis", 1) if (scale.size > 1 or block_size) else None
            _check_weight_scales(node, data.name, tuple(data.shape or ()), scale, axis, block_size)
            points.append(
                QuantPoint(
                    tensor=data.name or "",
                    output=node.outputs[0].name or "",
                    role="weight",
                    spec=QuantSpec(FORMATS[FP8_DATA_TYPES[data.dtype]], axis=axis, block_size=block_size),
                    scale=scale,
                    node=node.name or "",
                    consumers=_consumers(node.outputs[0]),
                    dialect=node.metadata_props.get("fp8conv.source", "dq-weight"),
                    stored=True,
                )
            )
    return points
