"""Fold the FP8 quantization of constant weights into lazy float initializers, for the reference.

A canonical weight reaches its layer as ``FakeQuantize(W, s)`` over a float initializer, or as
``DequantizeLinear(codes, s)`` over a stored FP8 one. Lowered as they are, onnxruntime constant-folds them
when it creates the reference session, holding the weight, every intermediate of the lowering's float ops
and the result in its own memory at once: about twelve times the float weights at the peak (a 100 MB model
took 1.3 GB, a 2.6 GB one was killed above 8 GB). This pass replaces each by an initializer of the same
name that computes its value when it is read, one weight at a time, and holds nothing until then (an
``onnx_ir.LazyTensor``):

* ``FakeQuantize(W, s)``: :func:`fp8conv.fp8.fake_quantize` of ``W`` (float32; float16 weights are cast to
  float32 and back, as the lowering does), which the lowering computes bit for bit; NaN becomes +0.0 in
  formats without NaN, the lowering's rule;
* ``DequantizeLinear(codes, s)``: ``decode(codes) · s`` rounded to the scale's type (what the kernel
  computes; :func:`~fp8conv.passes.lower_fake_quantize.stored_weight_values`).

Only nodes of the main graph whose input is one of its initializers are folded, and not the FakeQuantize
outputs named in ``keep`` (calibration reads grid values of those). The reference session writes the
folded model's large tensors to a temporary external data file that onnxruntime maps
(:class:`~fp8conv.runtime.reference.ReferenceSession`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import (
    QuantSpec,
    is_fake_quantize,
    is_fp8_weight_dequantize,
    read_fake_quantize,
    read_scale,
)
from fp8conv.passes.lower_fake_quantize import stored_weight_values
from fp8conv.runtime.emulator import fake_quantize

__all__ = ["FoldWeightQuantizationPass"]

logger = logging.getLogger(__name__)

_FOLDED_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16)


class FoldWeightQuantizationPass(ir.passes.InPlacePass):
    """Replace the quantizers of constant weights by lazy initializers of their values (see the module).

    Args:
        keep: FakeQuantize output names to leave as they are.
        retain: Initializer names to keep when no node reads them any more (tensors a caller captures).
    """

    def __init__(self, keep: Collection[str] = (), retain: Collection[str] = ()) -> None:
        super().__init__()
        self.keep = frozenset(keep)
        self.retain = frozenset(retain)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold the weight quantizers of ``model``'s main graph in place."""
        graph = model.graph
        folded = 0
        for node in list(graph):
            output = node.outputs[0] if node.outputs else None
            if output is None or output.name in self.keep:
                continue
            if is_fake_quantize(node):
                values = _fake_quantized_weight(node)
                dtype = node.inputs[0].dtype if node.inputs[0] is not None else None
            elif is_fp8_weight_dequantize(node) and _is_initializer_of(node.inputs[0], graph):
                values = stored_weight_values(node)
                dtype = node.inputs[1].dtype if node.inputs[1] is not None else None
            else:
                continue
            if values is None or dtype is None:
                continue
            _replace(graph, node, values, dtype, self.retain)
            folded += 1
        logger.info("folded the quantization of %d constant weights (computed when read)", folded)
        return ir.passes.PassResult(model, modified=bool(folded))


def _is_initializer_of(value: ir.Value | None, graph: ir.Graph) -> bool:
    return value is not None and value.const_value is not None and graph.initializers.get(value.name or "") is value


def _fake_quantized_weight(node: ir.Node) -> Callable[[], np.ndarray] | None:
    """The lazy value of a FakeQuantize over a float initializer of its graph, else None."""
    x, scale_value = node.inputs[0], node.inputs[1]
    assert node.graph is not None
    if not _is_initializer_of(x, node.graph) or x.dtype not in _FOLDED_TYPES or x.const_value is None:
        return None
    spec: QuantSpec = read_fake_quantize(node)
    scale = read_scale(node, scale_value)
    tensor = x.const_value
    dtype = tensor.dtype.numpy()

    def values() -> np.ndarray:
        w = tensor.numpy()
        y = fake_quantize(w, scale, spec.format, axis=spec.axis, block_size=spec.block_size, saturate=spec.saturate)
        if not spec.format.has_nan:
            y[np.isnan(w)] = 0.0
        return y.astype(dtype, copy=False)

    return values


def _replace(
    graph: ir.Graph, node: ir.Node, values: Callable[[], np.ndarray], dtype: ir.DataType, retain: frozenset[str]
) -> None:
    """Replace ``node`` by an initializer of its output's name, of ``dtype``, its input's shape, computed by ``values``.

    The node's initializer inputs that nothing reads then are removed, unless ``retain`` names them.
    """
    output = node.outputs[0]
    name = output.name
    assert name is not None
    shape = node.inputs[0].shape if node.inputs[0] is not None else None
    assert shape is not None
    tensor = ir.LazyTensor(lambda: ir.tensor(values(), name=name), dtype, ir.Shape(shape), name=name)
    folded = ir.Value(name=f"{name}/folded", type=ir.TensorType(dtype), shape=ir.Shape(shape))
    folded.const_value = tensor
    graph.register_initializer(folded)
    output.replace_all_uses_with(folded, replace_graph_outputs=True)
    inputs = [value for value in node.inputs if value is not None]
    graph.remove(node, safe=True)
    for value in inputs:
        unused = not value.uses() and value.is_initializer() and not value.is_graph_output()
        if unused and value.name and value.name not in retain:
            graph.initializers.pop(value.name, None)
    folded.name = name
