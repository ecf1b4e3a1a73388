"""Remove FP8 quantization from a canonical model: the float model the FP8 network "is" without FP8.

Algebra:

* weight quantizers ``FakeQuantize(W, s)`` and stored weights ``DequantizeLinear(codes, s)`` become
  float32 initializers holding exactly what the FP8 model used: ``fake_quantize(W, s)`` and
  ``decode(codes)·s`` (computed by :mod:`fp8conv.fp8`);
* activation quantizers ``y = FakeQuantize(x, s)`` are removed (``y := x``); a quantizer whose output is a
  graph output becomes ``Identity`` so the output keeps its name.

This is the starting point of the path users take without fp8conv (dequantize, then a generic INT8
quantizer such as onnxruntime's ``quantize_static``), used as the baseline in the benchmarks.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as ir_common

from fp8conv.passes.canonical import (
    CANONICAL_DOMAIN,
    FP8_DATA_TYPES,
    constant_array,
    is_fake_quantize,
    is_fp8_weight_dequantize,
    read_fake_quantize,
)
from fp8conv.passes.values import take_over
from fp8conv.runtime.emulator import decode, fake_quantize

__all__ = ["DequantizeFp8Pass", "exact_weights", "remove_fake_quantize"]

logger = logging.getLogger(__name__)


class DequantizeFp8Pass(ir.passes.InPlacePass):
    """Replace every canonical FP8 quantization point by its exact float equivalent (see module docstring)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite ``model`` in place."""
        graph = model.graph
        modified = False
        for node in list(graph):
            weights = exact_weights(node)
            if weights is not None:
                output = node.outputs[0]
                tensor = ir.tensor(weights)
                value = ir.Value(const_value=tensor, shape=tensor.shape, type=ir.TensorType(tensor.dtype))
                take_over(output, value)
                graph.remove(node, safe=True)
                graph.register_initializer(value)
                modified = True
            elif is_fake_quantize(node):
                remove_fake_quantize(node)
                modified = True
        model.opset_imports.pop(CANONICAL_DOMAIN, None)
        ir_common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified=modified)


def remove_fake_quantize(node: ir.Node) -> None:
    """Remove an activation FakeQuantize: ``y := x``.

    Readers of ``y`` read ``x``; when ``y`` is a graph output an ``Identity`` takes the FakeQuantize's place
    so the output keeps its name, type and shape.
    """
    graph = node.graph
    source, output = node.inputs[0], node.outputs[0]
    assert graph is not None
    assert source is not None
    if output.is_graph_output():
        identity = ir.node("Identity", [source], name=node.name)
        graph.insert_before(node, identity)
        take_over(output, identity.outputs[0])
        graph.remove(node, safe=True)
    else:
        output.replace_all_uses_with(source)
        graph.remove(node, safe=True)


def exact_weights(node: ir.Node) -> np.ndarray | None:
    """The float32 weights a weight quantizer or stored-weight DQ produces, or None for other nodes."""
    if is_fake_quantize(node):
        array = constant_array(node.inputs[0])
        scale = constant_array(node.inputs[1])
        if array is None or scale is None:
            return None
        spec = read_fake_quantize(node)
        return fake_quantize(
            array, scale, spec.format, axis=spec.axis, block_size=spec.block_size, saturate=spec.saturate
        )
    if is_fp8_weight_dequantize(node):
        data = node.inputs[0]
        assert data is not None
        codes = constant_array(data)
        scale = constant_array(node.inputs[1])
        assert codes is not None
        assert scale is not None
        values = decode(codes, FP8_DATA_TYPES[data.dtype])
        scale = np.asarray(scale, dtype=np.float32)
        block_size = node.attributes.get_int("block_size", 0)
        axis = node.attributes.get_int("axis", 1) % max(values.ndim, 1)
        if block_size:
            scale = np.repeat(scale, block_size, axis=axis)[tuple(slice(0, n) for n in values.shape)]
        elif scale.size > 1:
            shape = [1] * values.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
        return np.multiply(values, scale, dtype=np.float32)
    return None
