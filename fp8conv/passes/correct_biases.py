"""Emission pass: bias correction folded into each corrected layer's bias (``b' = b − α·shift/β``).

The corrected values come from the converter (:mod:`fp8conv.converter.weight_methods`, the math in
:mod:`fp8conv.runtime.integer_quantization.bias_correction`); this pass puts them where the layer's output
adds its bias (:func:`bias_site`): a Conv's bias, a Gemm's ``C``, or the constant of the ``Add`` that is a
MatMul's only reader. The corrected bias is a new initializer read by that node only (a bias initializer
another node shares keeps its values there). It runs after
:class:`~fp8conv.passes.fold_fp8_constants.FoldFp8ConstantsPass` (an FP8-stored bias is an exact float
initializer by then) and before :class:`~fp8conv.passes.emit_biases.EmitBiasesPass`, which quantizes the
corrected bias of an 8-bit layer to int32 as any float bias. A layer without a bias gets none: adding an
``Add`` would change the graph onnxruntime fuses, and the converter reports the layer as not corrected.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from fp8conv.passes.emission import EmissionPass
from fp8conv.passes.plan import Layer
from fp8conv.passes.plan.layer_weights import exact_weight

__all__ = ["BiasSite", "CorrectBiasesPass", "bias_site"]


@dataclasses.dataclass(frozen=True)
class BiasSite:
    """Where a layer's output adds its constant bias.

    Attributes:
        node: The node reading the bias: the layer (Conv, Gemm) or its bias ``Add``.
        index: The bias's input index in ``node``.
        values: The bias exactly as the FP8 model adds it (float32).
        alpha: Gemm's ``alpha`` (1 otherwise): the output is ``α·A·B + β·C``.
        beta: Gemm's ``beta`` (1 otherwise).
    """

    node: ir.Node
    index: int
    values: np.ndarray
    alpha: float = 1.0
    beta: float = 1.0


def bias_site(layer: Layer) -> BiasSite | None:
    """The constant bias ``layer``'s output adds (one value per output channel, or one for all), if any."""
    node = layer.graph_node
    if layer.op_type in ("Conv", "Gemm"):
        value = node.inputs[2] if len(node.inputs) > 2 else None
        values = exact_weight(value)[0] if value is not None else None
        if values is None:
            return None
        if layer.op_type == "Conv":
            return BiasSite(node, 2, values)
        alpha = node.attributes.get_float("alpha", 1.0)
        beta = node.attributes.get_float("beta", 1.0)
        return BiasSite(node, 2, values, alpha, beta) if beta != 0 else None
    add = layer.bias_add
    if add is None:
        return None
    index = 1 if add.inputs[0] is node.outputs[0] else 0
    value = add.inputs[index]
    values = exact_weight(value)[0] if value is not None else None
    return None if values is None else BiasSite(add, index, values)


class CorrectBiasesPass(EmissionPass):
    """Replace the bias of every layer in ``context.bias_corrections`` by its corrected values.

    ``requires``: every corrected layer has a constant bias of the corrected values' size, no longer behind
    an FP8 quantizer. ``ensures``: each such bias input holds exactly the corrected values.
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: A corrected layer without a float constant bias of that size.
        """
        super().requires(model)
        for layer in self._corrected():
            site = bias_site(layer)
            value = site.node.inputs[site.index] if site is not None else None
            if site is None or value is None or value.const_value is None:
                raise ir.passes.PreconditionError(f"layer {layer.node}: corrected, but no constant bias to fold into")
            if site.values.size != self.context.bias_corrections[layer.graph_node].size:
                raise ir.passes.PreconditionError(f"layer {layer.node}: the corrected bias has another size")

    def rewrite(self, graph: ir.Graph) -> bool:
        """Fold the corrected biases into the main graph."""
        modified = False
        for layer in self._corrected():
            site = bias_site(layer)
            assert site is not None
            value = site.node.inputs[site.index]
            assert value is not None
            corrected = np.asarray(self.context.bias_corrections[layer.graph_node], dtype=np.float32)
            base = value.name or f"{layer.node}_bias"
            new = self.context.initializer(graph, f"{base}_corrected", ir.tensor(corrected.reshape(site.values.shape)))
            site.node.replace_input_with(site.index, new)
            modified = True
        return modified

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: A bias without the corrected values.
        """
        for layer in self._corrected():
            site = bias_site(layer)
            value = site.node.inputs[site.index] if site is not None else None
            expected = np.asarray(self.context.bias_corrections[layer.graph_node], dtype=np.float32).reshape(-1)
            held = (
                value.const_value.numpy().reshape(-1) if value is not None and value.const_value is not None else None
            )
            if held is None or not np.array_equal(held, expected):
                raise ir.passes.PostconditionError(f"layer {layer.node}: its bias does not hold the corrected values")

    def _corrected(self) -> list[Layer]:
        corrections = self.context.bias_corrections
        return [layer for layer in self.context.plan.layers if layer.graph_node in corrections]
