"""Emission pass 5: the FP8 activation quantizers no integer reader took over go; the value flows through.

A saturating per-tensor quantizer on a graph output keeps its saturation: ``y = clip(x, -m·s, m·s)``
(``m`` the format's max), since an FP8 model's outputs stop at ``±m·s`` (tools calibrate output scales on
data, and logits past the FP8 range were clipped in the model the user trained or validated); only the
rounding to the FP8 grid is dropped.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import constant_array, is_fake_quantize, read_fake_quantize
from fp8conv.passes.dequantize_fp8 import remove_fake_quantize
from fp8conv.passes.emission import EmissionPass
from fp8conv.passes.plan import values_by_name
from fp8conv.passes.values import take_over

__all__ = ["RemoveFp8Pass"]


class RemoveFp8Pass(EmissionPass):
    """Remove every FakeQuantize left in the main graph (an output one becomes a Clip at its FP8 range).

    ``requires``: the plan is the model's, and no FakeQuantize reads a planned activation tensor (the
    activation pass replaced those; removing them would leave the tensor float). ``ensures``: no FakeQuantize
    is left in the main graph.
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: A planned tensor is still read by a FakeQuantize.
        """
        super().requires(model)
        values = values_by_name(model.graph)
        for name in self.context.plan.points:
            value = values.get(name)
            if value is not None and any(is_fake_quantize(consumer) for consumer in value.consumers()):
                raise ir.passes.PreconditionError(f"activation {name}: its FP8 quantizer is not replaced yet")

    def rewrite(self, graph: ir.Graph) -> bool:
        """Remove the remaining FakeQuantize nodes of the main graph in place."""
        modified = False
        for node in list(graph):
            if not is_fake_quantize(node):
                continue
            modified = True
            if node.outputs[0].is_graph_output() and self._clip_output_at_fp8_range(graph, node):
                continue
            remove_fake_quantize(node)
        return modified

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: A FakeQuantize is left.
        """
        for node in model.graph:
            if is_fake_quantize(node):
                raise ir.passes.PostconditionError(f"FP8 quantizer {node.name} is left in the graph")

    def _clip_output_at_fp8_range(self, graph: ir.Graph, node: ir.Node) -> bool:
        """Replace an output FakeQuantize by a Clip at its FP8 range; False where that is not its function."""
        spec = read_fake_quantize(node)
        scale = constant_array(node.inputs[1])
        if not spec.saturate or scale is None or scale.size != 1:
            return False
        bound = np.asarray(spec.format.max_value * scale.reshape(()), dtype=scale.dtype)
        base = node.outputs[0].name or node.name or "output"
        low = self.context.initializer(graph, f"{base}_fp8_min", ir.tensor(-bound))
        high = self.context.initializer(graph, f"{base}_fp8_max", ir.tensor(bound))
        name = self.context.names(graph).new(f"{base}_fp8_saturation")
        clip = ir.node("Clip", [node.inputs[0], low, high], name=name)
        graph.insert_before(node, clip)
        take_over(node.outputs[0], clip.outputs[0])
        graph.remove(node, safe=True)
        return True
