"""Validate FP8 weights stored as codes behind a ``DequantizeLinear`` (already canonical)."""

from __future__ import annotations

import logging

import onnx_ir as ir

from fp8conv.passes.canonical import FP8_DATA_TYPES, constant_array, read_scale
from fp8conv.passes.names import shared_names
from fp8conv.passes.normalization import (
    QDQ_DOMAINS,
    check_zero_point,
    constant_dtype,
    drop_unused_opsets,
    remove_unused_constants,
    scale_spec,
    static_shape,
)
from fp8conv.runtime.formats import FORMATS

__all__ = ["NormalizeFp8WeightDequantizePass"]

logger = logging.getLogger(__name__)


class NormalizeFp8WeightDequantizePass(ir.passes.InPlacePass):
    """Check ``DequantizeLinear(w_fp8, s[, zp])`` over constant FP8 weights and drop the zero point.

    This form (weights stored as FP8 codes, as written by ModelOpt's ``compress_weights`` and by
    onnxruntime's ``quantize_static``) is already canonical: it computes ``decode(w) · s``. The pass
    only checks it and tidies it: the zero point must decode to 0 everywhere (then removing it
    changes nothing), the scale must be a positive, finite constant whose shape fits
    ``axis``/``block_size`` and the weight's shape, and a DQ in the ``com.microsoft`` or ``trt``
    domain moves to the ONNX domain (same definition). The result is ``DequantizeLinear(w, s)`` with
    its attributes; running the pass again changes nothing.

    Left alone: DQs over non-constant FP8 data (those are the second half of a Q→DQ pair, see
    :class:`~fp8conv.passes.normalize_qdq.NormalizeQdqPass`) and integer DQs.

    Raises (through the pass manager): :class:`~fp8conv.errors.Fp8ConvError` for a non-zero zero
    point, a scale that is <= 0, NaN or Inf, or a scale shape that does not fit;
    :class:`~fp8conv.errors.UnsupportedModelError` for a non-constant scale.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Check and tidy every FP8 weight DequantizeLinear of the model's graph and subgraphs."""
        modified = False
        with shared_names():
            for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
                if self._normalize(node):
                    modified = True
        if modified:
            drop_unused_opsets(model, lambda domain: domain == "trt")
        return ir.passes.PassResult(model, modified=modified)

    @staticmethod
    def _normalize(node: ir.Node) -> bool:
        if node.op_type != "DequantizeLinear" or node.domain not in QDQ_DOMAINS or not node.inputs:
            return False
        data = node.inputs[0]
        dtype = constant_dtype(data)
        if dtype not in FP8_DATA_TYPES or constant_array(data) is None:
            return False
        scale_value = node.inputs[1] if len(node.inputs) > 1 else None
        zero_point = node.inputs[2] if len(node.inputs) > 2 else None
        scale = read_scale(node, scale_value)
        scale_spec(node, FORMATS[FP8_DATA_TYPES[dtype]], scale, static_shape(data), saturate=True)
        check_zero_point(node, zero_point)
        modified = False
        if len(node.inputs) > 2:
            node.resize_inputs(2)
            remove_unused_constants([zero_point])
            modified = True
        if node.domain not in ("", "ai.onnx"):
            logger.debug("node %r: DequantizeLinear moved from domain %r to the ONNX domain", node.name, node.domain)
            node.domain = ""
            node.version = None
            modified = True
        return modified
