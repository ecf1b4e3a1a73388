"""Emission pass 2: FP8 quantizers of constants that are no layer's weight become exact float initializers.

Biases and other constants stored as FP8 (AMD Quark quantizes biases to FP8 too) compute
``decode(codes)·s`` exactly in float32, so the initializer holds the very values the FP8 model used;
biases of integer layers are then requantized to int32 like any float bias (:mod:`~fp8conv.passes.emit_biases`).
The quantizers, left without readers, go at the cleanup.
"""

from __future__ import annotations

import onnx_ir as ir

from fp8conv.passes.dequantize_fp8 import exact_weights
from fp8conv.passes.emission import EmissionPass, is_fp8_quantizer, reads_integer_weight

__all__ = ["FoldFp8ConstantsPass"]


class FoldFp8ConstantsPass(EmissionPass):
    """Replace the readers' view of every remaining FP8 quantizer of a constant by its exact float initializer.

    Quantizers producing a planned activation tensor or a graph output are left alone.

    ``requires``: the plan is the model's, and every integer weight is emitted (else this pass would fold
    an integer layer's FP8 weight to float). ``ensures``: no FP8 quantizer of a constant (other than those
    left alone) has a reader.
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: An integer layer still reads its weight in float or FP8.
        """
        super().requires(model)
        for layer in self.context.plan.layers:
            weight = self.context.weights.get(layer.graph_node)
            if weight is not None and not reads_integer_weight(layer.graph_node, weight):
                raise ir.passes.PreconditionError(f"layer {layer.node}: its integer weight is not emitted yet")

    def rewrite(self, graph: ir.Graph) -> bool:
        """Fold the constant FP8 quantizers of the main graph in place."""
        modified = False
        for node in list(graph):
            if not self._folds(node):
                continue
            output = node.outputs[0]
            values = exact_weights(node)
            if values is None:
                continue
            base = node.inputs[0].name if node.inputs[0] is not None else output.name
            exact = self.context.initializer(graph, f"{base}_fp8_exact", ir.tensor(values))
            output.replace_all_uses_with(exact)
            modified = True
        return modified

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: A constant FP8 quantizer is still read.
        """
        for node in model.graph:
            if self._folds(node) and node.outputs[0].uses() and exact_weights(node) is not None:
                raise ir.passes.PostconditionError(f"FP8 quantizer {node.name} of a constant is still read")

    def _folds(self, node: ir.Node) -> bool:
        """Whether ``node`` is an FP8 quantizer this pass folds (when its input is a constant)."""
        if not is_fp8_quantizer(node):
            return False
        output = node.outputs[0]
        return output.name not in self.context.plan.points and not output.is_graph_output()
