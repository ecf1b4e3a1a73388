"""Normalize standard FP8 ``QuantizeLinear`` → ``DequantizeLinear`` pairs into the canonical form.

The helpers every normalization pass shares are in :mod:`fp8conv.passes.normalization`.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import FP8_DATA_TYPES, QuantSpec, read_scale
from fp8conv.passes.normalization import (
    QDQ_DOMAINS,
    NodeRewritePass,
    check_zero_point,
    constant_dtype,
    replace_quantize_dequantize,
    same_constant,
    scale_spec,
    static_shape,
)
from fp8conv.runtime.formats import FORMATS
from fp8conv.runtime.integer_types import quantize_output_type

__all__ = ["NormalizeQdqPass"]

logger = logging.getLogger(__name__)


def _is_trt_or_qonnx(domain: str) -> bool:
    return domain == "trt" or domain.startswith("qonnx")


def _quantized_type(node: ir.Node) -> int | None:
    """The element type a ``QuantizeLinear`` produces (:func:`~fp8conv.runtime.integer_types.quantize_output_type`).

    Raises:
        Fp8ConvError: ``output_dtype`` and the zero point's type differ.
    """
    zero_point = node.inputs[2] if len(node.inputs) > 2 else None
    output_dtype = node.attributes.get_int("output_dtype", 0)
    dtype = constant_dtype(zero_point)
    if output_dtype and dtype is not None and dtype != output_dtype:
        raise Fp8ConvError(
            f"node {node.name!r}: output_dtype {ir.DataType(output_dtype).name} differs from the zero point's "
            f"type {dtype.name}"
        )
    return quantize_output_type(has_zero_point=zero_point is not None, zero_point_type=dtype, output_dtype=output_dtype)


class NormalizeQdqPass(NodeRewritePass):
    """Rewrite FP8 ``QuantizeLinear`` → ``DequantizeLinear`` pairs as canonical FakeQuantize nodes.

    ``DequantizeLinear(QuantizeLinear(x, s, zp), s', zp')`` with an FP8 quantized type becomes
    ``ai.fp8conv::FakeQuantize(x, s)``. The FP8 type is the zero point's element type, or Q's
    ``output_dtype`` when there is no zero point. The rewrite is exact: with a zero point of 0
    (checked) the pair computes ``decode(encode(x / s)) · s`` with Q's ``saturate`` (default 1),
    which is FakeQuantize's definition; the granularity is read from the scale's shape and
    ``axis``/``block_size`` exactly as ONNX does (a one-element scale is per-tensor, a zero point of
    shape ``[1]`` beside a scalar scale is accepted). Scales may be float32, float16 or bfloat16.

    Q and DQ may be in the ONNX domain, ``com.microsoft`` or ``trt`` (ModelOpt's deploy export): the
    same definition in each, and the canonical form replaces them. The quantized type is read from the
    zero point (or ``output_dtype``), never from the Q output's declared type, which exporters leave
    stale (ModelOpt declares ``uint8`` for FP8 codes); that value disappears with the pair. A Q read by
    several DQs gives one FakeQuantize per DQ, each producing that DQ's output; the FakeQuantize is
    named after Q when Q has one DQ and after its DQ otherwise. A scale read by other nodes stays
    shared (the pass never modifies a scale).

    Left alone (logged): Q whose output is read by anything but DQs or is a graph output; a DQ
    whose scale is not the same constant as Q's (a re-scaling, not a fake quantization), or whose
    ``axis``/``block_size`` differs for a non-scalar scale; a pair whose DQ produces another type
    than Q's input; a Q with a ``precision`` attribute other than float32; integer Q/DQ.

    Raises (through the pass manager): :class:`Fp8ConvError` for a non-zero FP8 zero point, a scale
    that is <= 0, NaN or Inf, or a scale shape that does not fit ``axis``/``block_size``;
    :class:`UnsupportedModelError` for a non-constant scale.
    """

    def _dialect_domain(self, domain: str) -> bool:
        return _is_trt_or_qonnx(domain)

    def _rewrite(self, quantize: ir.Node) -> bool:
        if quantize.op_type != "QuantizeLinear" or quantize.domain not in QDQ_DOMAINS:
            return False
        dtype = _quantized_type(quantize)
        if dtype not in FP8_DATA_TYPES:
            return False
        x, scale_value = quantize.inputs[0], quantize.inputs[1]
        zero_point = quantize.inputs[2] if len(quantize.inputs) > 2 else None
        if x is None:
            return False
        dequantizers = self._dequantizers(quantize)
        if dequantizers is None:
            return False
        precision = quantize.attributes.get_int("precision", 0)
        if precision not in (0, ir.DataType.FLOAT):
            logger.warning(
                "node %r: QuantizeLinear divides in %s, FakeQuantize in float32; left as is",
                quantize.name,
                ir.DataType(precision).name,
            )
            return False
        check_zero_point(quantize, zero_point)
        scale = read_scale(quantize, scale_value)
        spec = scale_spec(
            quantize,
            FORMATS[FP8_DATA_TYPES[dtype]],
            scale,
            static_shape(x),
            saturate=bool(quantize.attributes.get_int("saturate", 1)),
        )
        for dequantize in dequantizers:
            if not self._dequantize_matches(quantize, dequantize, spec):
                return False
        replace_quantize_dequantize(quantize, dequantizers, x, scale_value, spec, source="qdq")
        logger.debug("node %r: FP8 Q/DQ -> FakeQuantize (%s)", quantize.name, spec)
        return True

    @staticmethod
    def _dequantizers(quantize: ir.Node) -> list[ir.Node] | None:
        """The DQs reading Q's output, or None (logged) when anything else reads it."""
        output = quantize.outputs[0]
        consumers = list(output.consumers())
        if not consumers:
            return None
        dequantizers = [
            node
            for node in consumers
            if node.op_type == "DequantizeLinear"
            and node.domain in QDQ_DOMAINS
            and node.inputs[0] is output
            and output not in node.inputs[1:]
        ]
        if output.is_graph_output() or len(dequantizers) != len(consumers):
            logger.warning(
                "node %r: FP8 QuantizeLinear output %r is also read outside a DequantizeLinear; left as is",
                quantize.name,
                output.name,
            )
            return None
        return dequantizers

    @staticmethod
    def _dequantize_matches(quantize: ir.Node, dequantize: ir.Node, spec: QuantSpec) -> bool:
        """Whether the DQ undoes Q with the same scale and granularity (logged when not)."""
        scale_value = dequantize.inputs[1] if len(dequantize.inputs) > 1 else None
        if not same_constant(quantize.inputs[1], scale_value):
            logger.warning(
                "node %r: DequantizeLinear %r uses another scale than its QuantizeLinear; left as is",
                quantize.name,
                dequantize.name,
            )
            return False
        check_zero_point(dequantize, dequantize.inputs[2] if len(dequantize.inputs) > 2 else None)
        if spec.granularity != "per-tensor":
            axis = dequantize.attributes.get_int("axis", 1)
            shape = static_shape(quantize.inputs[0])
            if shape:
                axis %= len(shape)
            block_size = dequantize.attributes.get_int("block_size", 0)
            if (axis, block_size) != (spec.axis, spec.block_size or 0):
                logger.warning(
                    "node %r: DequantizeLinear %r has axis=%d, block_size=%d; QuantizeLinear axis=%s, block_size=%s; "
                    "left as is",
                    quantize.name,
                    dequantize.name,
                    axis,
                    block_size,
                    spec.axis,
                    spec.block_size or 0,
                )
                return False
        x_type, y_type = quantize.inputs[0].dtype, dequantize.outputs[0].dtype
        if x_type is not None and y_type is not None and x_type != y_type:
            logger.warning(
                "node %r: DequantizeLinear %r returns %s for a %s input; left as is",
                quantize.name,
                dequantize.name,
                y_type.name,
                x_type.name,
            )
            return False
        return True
