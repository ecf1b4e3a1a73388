"""Normalize TensorRT's ``trt::TRT_FP8QuantizeLinear`` / ``TRT_FP8DequantizeLinear`` into the canonical form."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from fp8conv.errors import UnsupportedModelError
from fp8conv.passes.canonical import QuantSpec, constant_array, read_scale
from fp8conv.passes.names import names_for, shared_names
from fp8conv.passes.normalization import (
    add_canonical_opset,
    constant_dtype,
    drop_unused_opsets,
    replace_quantize_dequantize,
    rewrite_chain,
    same_constant,
)
from fp8conv.runtime.formats import FORMATS

__all__ = ["TRT_DOMAIN", "TRT_OPSET_VERSIONS", "NormalizeTrtFp8Pass"]

logger = logging.getLogger(__name__)

TRT_DOMAIN = "trt"
TRT_OPSET_VERSIONS = (1, 100)
"""``trt`` opset versions the ops are read for: 1 (TorchScript export, ModelOpt) and 100 (TransformerEngine)."""

_QUANTIZE = "TRT_FP8QuantizeLinear"
_DEQUANTIZE = "TRT_FP8DequantizeLinear"
_STORED_TYPES = (ir.DataType.UINT8, ir.DataType.FLOAT8E4M3FN)


def _is_trt(node: ir.Node, op_type: str) -> bool:
    return node.domain == TRT_DOMAIN and node.op_type == op_type


def _per_tensor_scale(node: ir.Node, value: ir.Value | None) -> np.ndarray:
    scale = read_scale(node, value)
    if scale.size != 1:
        raise UnsupportedModelError(
            f"node {node.name!r}: {node.op_type} takes a per-tensor scale, "
            f"but {value.name if value else None!r} has shape {scale.shape}"
        )
    return scale


class NormalizeTrtFp8Pass(ir.passes.InPlacePass):
    """Rewrite TensorRT FP8 quantizers as canonical FakeQuantize and stored-weight DequantizeLinear nodes.

    1. ``trt::TRT_FP8DequantizeLinear(trt::TRT_FP8QuantizeLinear(x, s), s)`` becomes
       ``ai.fp8conv::FakeQuantize(x, s)`` with format ``e4m3fn``, per-tensor, ``saturate=1``. The TRT ops
       (ModelOpt's TorchScript symbolics, TransformerEngine's onnxscript ops) have two inputs, no
       attributes, carry raw E4M3 codes in a ``uint8`` tensor and compute ``fp8(x / s)`` and
       ``fp8 · s`` with TensorRT's saturating conversion, which is FakeQuantize's definition. A Q read
       by several DQs gives one FakeQuantize per DQ (named after Q when there is one DQ, else after
       the DQ).
    2. ``trt::TRT_FP8DequantizeLinear(w, s)`` over a constant ``uint8`` tensor of E4M3 codes becomes
       the standard ``DequantizeLinear(w_e4m3fn, s)`` over a FLOAT8E4M3FN initializer holding the
       same bytes (``decode(w) · s`` both ways). The node keeps its name and output and records
       ``fp8conv.source = trt`` in its metadata. The new initializer keeps the weight's name when
       nothing else reads the weight, else it is named ``<name>_e4m3fn``. If the model's ONNX opset
       is below 19 the result needs opset 19 for FP8 tensors (logged, not changed).

    The ``trt`` opset import is removed once no ``trt`` node is left. Left alone (logged): pairs
    whose DQ has another scale than Q, a Q read by anything but TRT DQs or whose output is a graph
    output, a Q output typed other than ``uint8``, and models importing ``trt`` in a version other
    than 1 or 100.

    Raises (through the pass manager): :class:`~fp8conv.errors.Fp8ConvError` for a scale that is
    <= 0, NaN or Inf; :class:`~fp8conv.errors.UnsupportedModelError` for a non-constant or
    non-scalar scale.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite every TRT FP8 quantizer of the model's graph and subgraphs."""
        nodes = [
            node
            for node in ir.traversal.RecursiveGraphIterator(model.graph)
            if _is_trt(node, _QUANTIZE) or _is_trt(node, _DEQUANTIZE)
        ]
        if not nodes:
            return ir.passes.PassResult(model, modified=False)
        version = model.opset_imports.get(TRT_DOMAIN)
        if version not in TRT_OPSET_VERSIONS:
            logger.warning(
                "the model imports the trt domain in version %s; TRT FP8 ops are read for versions %s only; left as is",
                version,
                TRT_OPSET_VERSIONS,
            )
            return ir.passes.PassResult(model, modified=False)
        fake_quantized = stored = False
        with shared_names():
            for node in nodes:
                if node.graph is not None and node.op_type == _QUANTIZE and self._rewrite_pair(node):
                    fake_quantized = True
            for node in nodes:
                if node.graph is not None and node.op_type == _DEQUANTIZE and self._rewrite_stored_weight(model, node):
                    stored = True
        if fake_quantized:
            add_canonical_opset(model)
        modified = fake_quantized or stored
        if modified:
            drop_unused_opsets(model, lambda domain: domain == TRT_DOMAIN)
        return ir.passes.PassResult(model, modified=modified)

    @staticmethod
    def _rewrite_pair(quantize: ir.Node) -> bool:
        if len(quantize.inputs) != 2 or quantize.inputs[0] is None:
            return False
        x, scale_value = quantize.inputs
        output = quantize.outputs[0]
        if output.dtype not in (None, ir.DataType.UINT8):
            logger.warning("node %r: %s output is %s, not uint8; left as is", quantize.name, _QUANTIZE, output.dtype)
            return False
        consumers = list(output.consumers())
        dequantizers = [
            node
            for node in consumers
            if _is_trt(node, _DEQUANTIZE) and len(node.inputs) == 2 and node.inputs[0] is output
        ]
        if not consumers or output.is_graph_output() or len(dequantizers) != len(consumers):
            logger.warning(
                "node %r: %s output %r is read outside a %s; left as is",
                quantize.name,
                _QUANTIZE,
                output.name,
                _DEQUANTIZE,
            )
            return False
        _per_tensor_scale(quantize, scale_value)
        for dequantize in dequantizers:
            if not same_constant(scale_value, dequantize.inputs[1]):
                logger.warning(
                    "node %r: %s %r uses another scale; left as is", quantize.name, _DEQUANTIZE, dequantize.name
                )
                return False
        spec = QuantSpec(FORMATS["e4m3fn"], saturate=True)
        replace_quantize_dequantize(quantize, dequantizers, x, scale_value, spec, source="trt")
        logger.debug("node %r: TRT FP8 Q/DQ -> FakeQuantize", quantize.name)
        return True

    @staticmethod
    def _rewrite_stored_weight(model: ir.Model, dequantize: ir.Node) -> bool:
        if len(dequantize.inputs) != 2:
            return False
        data, scale_value = dequantize.inputs
        codes = constant_array(data)
        if data is None or codes is None or constant_dtype(data) not in _STORED_TYPES:
            return False
        _per_tensor_scale(dequantize, scale_value)
        tensor = ir.Tensor(np.ascontiguousarray(codes, dtype=np.uint8), dtype=ir.DataType.FLOAT8E4M3FN)
        weight = ir.Value(shape=ir.Shape(codes.shape), type=ir.TensorType(ir.DataType.FLOAT8E4M3FN), const_value=tensor)
        node = rewrite_chain(
            [dequantize],
            lambda output: ir.node(
                "DequantizeLinear",
                [weight, scale_value],
                name=dequantize.name or None,
                outputs=[output],
                metadata_props={"fp8conv.source": "trt"},
            ),
        )
        graph = node.graph
        assert graph is not None
        name = data.name or f"{node.name}_weight"
        names = names_for(graph)
        if name in names:
            name = names.new(f"{name}_e4m3fn")
        names.take(name)
        weight.name = name
        graph.register_initializer(weight)
        if model.opset_imports.get("", 0) < 19:
            # Only the canonical form is affected: the reference lowering and the converter both replace
            # these DQs (exact float weights / integer weights), so this is not the user's concern.
            logger.info(
                "node %r: FP8 weight DequantizeLinear needs ONNX opset 19, the model imports opset %s",
                node.name,
                model.opset_imports.get(""),
            )
        logger.debug("node %r: TRT FP8 weight DQ -> DequantizeLinear over FLOAT8E4M3FN %r", node.name, name)
        return True
