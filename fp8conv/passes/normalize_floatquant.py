"""Normalize QONNX ``FloatQuant`` (Brevitas' QONNX export of minifloat quantizers) into the canonical form."""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx_ir as ir

from fp8conv import fp8
from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.passes.canonical import QuantSpec, constant_array, read_scale
from fp8conv.passes.normalization import NodeRewritePass, per_axis_scale, replace_with_fake_quantize
from fp8conv.runtime.formats import FORMATS, FloatFormat

__all__ = ["QONNX_DOMAIN", "NormalizeFloatQuantPass", "floatquant_format"]

logger = logging.getLogger(__name__)

QONNX_DOMAIN = "qonnx.custom_op.general"

_NAMED = tuple(FORMATS[name] for name in ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz"))


def floatquant_format(
    node: ir.Node,
    exponent_bits: int,
    mantissa_bits: int,
    bias: int,
    max_val: float,
    *,
    has_inf: bool,
    has_nan: bool,
    saturation: bool,
) -> FloatFormat:
    """The format whose fake quantization equals QONNX ``FloatQuant`` with these parameters.

    QONNX clips to ``max = min(max_val, (2 - 2^-M) · 2^(2^E - 1 - bias))`` and, without saturation,
    turns values that round above ``max`` into ±Inf (``has_inf``) or NaN (``has_nan``). A named
    format is returned when it has the same E, M, bias and max and (without saturation) the same
    overflow value; else a :func:`~fp8conv.fp8.minifloat` with that max.

    Args:
        node: The FloatQuant node (named in error messages).
        exponent_bits: E.
        mantissa_bits: M.
        bias: Exponent bias.
        max_val: The ``max_val`` input.
        has_inf: The ``has_inf`` attribute.
        has_nan: The ``has_nan`` attribute.
        saturation: The ``saturation`` attribute.

    Returns:
        The format.

    Raises:
        Fp8ConvError: For ``saturation=0`` without ``has_inf`` or ``has_nan`` (QONNX rejects it too),
            or a ``max_val`` that is not positive.
        UnsupportedModelError: For parameters no :class:`FloatFormat` reproduces (widths out of
            range, a ``max_val`` between two grid values, an overflow value the format cannot have).
    """
    if not saturation and not (has_inf or has_nan):
        raise Fp8ConvError(f"node {node.name!r}: FloatQuant with saturation=0 needs has_inf or has_nan")
    if not max_val > 0:
        raise Fp8ConvError(f"node {node.name!r}: FloatQuant max_val must be positive, got {max_val!r}")
    try:
        grid = fp8.minifloat(exponent_bits, mantissa_bits, bias=bias)
    except ValueError as error:
        raise UnsupportedModelError(f"node {node.name!r}: FloatQuant format not supported: {error}") from error
    maximum = min(max_val, grid.max_value)
    if float(fp8.quantize_values(np.float32(maximum), grid)) != maximum:
        raise UnsupportedModelError(
            f"node {node.name!r}: FloatQuant max_val {max_val!r} is not a value of the "
            f"E{exponent_bits}M{mantissa_bits} bias-{bias} grid"
        )
    for fmt in _NAMED:
        same_grid = (fmt.exponent_bits, fmt.mantissa_bits, fmt.bias, fmt.max_value) == (
            exponent_bits,
            mantissa_bits,
            bias,
            maximum,
        )
        same_overflow = has_inf if fmt.has_inf else (has_nan and not has_inf)
        if same_grid and (saturation or same_overflow):
            return fmt
    candidates = [(has_inf, has_nan)] + ([(False, False)] if saturation else [])
    for inf, nan in candidates:
        try:
            fmt = fp8.minifloat(exponent_bits, mantissa_bits, bias=bias, max_value=maximum, has_inf=inf, has_nan=nan)
        except ValueError:
            continue
        if fmt.max_value == maximum:
            return fmt
    raise UnsupportedModelError(
        f"node {node.name!r}: FloatQuant E{exponent_bits}M{mantissa_bits} bias {bias} max {maximum:g} with "
        f"has_inf={int(has_inf)} has_nan={int(has_nan)} saturation=0 has no equivalent format"
    )


def _integer_input(node: ir.Node, index: int, what: str) -> int:
    value = _scalar_input(node, index, what)
    if not value.is_integer():
        raise UnsupportedModelError(f"node {node.name!r}: FloatQuant {what} must be an integer, got {value!r}")
    return int(value)


def _scalar_input(node: ir.Node, index: int, what: str) -> float:
    value = node.inputs[index]
    array = constant_array(value)
    if array is None:
        raise UnsupportedModelError(f"node {node.name!r}: FloatQuant {what} must be a constant")
    flat = np.unique(np.asarray(array, dtype=np.float64))
    if flat.size != 1 or not math.isfinite(flat[0]):
        raise UnsupportedModelError(
            f"node {node.name!r}: FloatQuant {what} must be one finite number, got {array.reshape(-1)[:4]!r}"
        )
    return float(flat[0])


class NormalizeFloatQuantPass(NodeRewritePass):
    """Rewrite QONNX ``FloatQuant`` nodes as canonical FakeQuantize nodes.

    ``qonnx.custom_op.general::FloatQuant(x, s, E, M, bias, max_val)`` becomes
    ``ai.fp8conv::FakeQuantize(x, s)``. QONNX's reference implementation computes
    ``q = 2^e · round_half_even(x/s / 2^e)`` with ``e = max(floor(log2 |x/s|), 1 - bias) - M``
    (subnormals always, whatever ``has_subnormal`` says), clips to
    ``±min(max_val, (2 - 2^-M) · 2^(2^E - 1 - bias))`` and returns ``q · s``; with ``saturation=0``
    values that round above the max become ±Inf (``has_inf``) or NaN (``has_nan``). That is
    FakeQuantize with the format :func:`floatquant_format` picks: ``e4m3fn`` (E4M3, bias 7, max 448),
    ``e5m2`` (E5M2, bias 15, max 57344), ``e4m3fnuz`` (E4M3, bias 8, max 240) or ``e5m2fnuz``
    (E5M2, bias 16, max 57344) when one has identical results, else a minifloat with
    ``has_subnormal=1`` (the source attribute is recorded in the node's metadata as
    ``fp8conv.qonnx.has_subnormal``). The rewrite is exact for finite inputs; ±Inf inputs, which QONNX
    turns into NaN, and NaN inputs for a minifloat without NaN, are the only values that differ.

    The scale may be a scalar or broadcastable per channel (``[C,1,1,1]``, ``[1,C,1,1]``); such a
    scale becomes a new 1-D initializer with ``axis`` (the original stays, possibly shared). The
    FakeQuantize keeps the FloatQuant's name and output. E, M, bias and max_val must be constants;
    the ``qonnx.custom_op.general`` opset import goes once no node of that domain is left.

    Raises (through the pass manager): :class:`~fp8conv.errors.UnsupportedModelError` for a rounding
    mode other than ``ROUND``, non-constant or non-integer parameters, a scale varying along several
    axes, or parameters no format reproduces; :class:`~fp8conv.errors.Fp8ConvError` for a scale that
    is <= 0, NaN or Inf or does not broadcast, and for ``saturation=0`` without ``has_inf``/``has_nan``.
    """

    def _dialect_domain(self, domain: str) -> bool:
        return domain.startswith("qonnx")

    def _rewrite(self, node: ir.Node) -> bool:
        if node.domain != QONNX_DOMAIN or node.op_type != "FloatQuant":
            return False
        if len(node.inputs) != 6 or any(value is None for value in node.inputs):
            given = sum(value is not None for value in node.inputs)
            raise UnsupportedModelError(f"node {node.name!r}: FloatQuant needs 6 inputs, got {given}")
        attributes = node.attributes
        rounding_mode = attributes.get_string("rounding_mode", "ROUND")
        if rounding_mode.upper() != "ROUND":
            raise UnsupportedModelError(
                f"node {node.name!r}: FloatQuant rounding_mode {rounding_mode!r} is not supported (only ROUND)"
            )
        x, scale_value = node.inputs[0], node.inputs[1]
        saturation = bool(attributes.get_int("saturation", 1))
        fmt = floatquant_format(
            node,
            _integer_input(node, 2, "exponent_bitwidth"),
            _integer_input(node, 3, "mantissa_bitwidth"),
            _integer_input(node, 4, "exponent_bias"),
            _scalar_input(node, 5, "max_val"),
            has_inf=bool(attributes.get_int("has_inf", 0)),
            has_nan=bool(attributes.get_int("has_nan", 0)),
            saturation=saturation,
        )
        scale = read_scale(node, scale_value)
        scale_value, axis = per_axis_scale(node, scale_value, scale, x)
        spec = QuantSpec(fmt, axis=axis, saturate=saturation)
        has_subnormal = attributes.get_int("has_subnormal", 0)
        fake_quantize = replace_with_fake_quantize([node], x, scale_value, spec, source="qonnx", name=node.name)
        fake_quantize.metadata_props["fp8conv.qonnx.has_subnormal"] = str(has_subnormal)
        logger.debug("node %r: FloatQuant -> FakeQuantize (%s)", node.name, spec)
        return True
