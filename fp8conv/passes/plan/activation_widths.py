"""One integer width per tensor: a tensor is quantized once, whoever reads it.

The width of a tensor is the widest any of its readers asks for; the fixed point (:func:`unify_activation_bits`)
of two rules, ``bits(group) = max bits(point in group)`` and ``bits(layer) = max(bits(layer),
bits(its inputs))`` with a widened layer's other inputs widened too, reached by repeating both until
nothing changes. Widening is the safe direction: 16-bit activations can only be more accurate.
"""

from __future__ import annotations

import dataclasses
import logging

from fp8conv.passes.plan.records import QuantizationPlan

__all__ = ["unify_activation_bits"]

logger = logging.getLogger(__name__)


def unify_activation_bits(plan: QuantizationPlan) -> QuantizationPlan:
    """The plan with one integer width per tensor: a tensor is quantized once, whoever reads it.

    A tensor read by an 8-bit and a 16-bit layer (``--int16`` selecting the key projection but not the
    query and value that share its input; an attention MatMul whose other input auto-INT16 promoted), or
    a shared-scale group (Concat, data movement) with points of both widths, gets the widest width, and so
    does every layer reading it, noted in the layer's decision; repeated until nothing changes (a widened
    layer widens its other inputs). Widening is the safe direction: 16-bit activations can only be more
    accurate, at the cost of the integer kernel (onnxruntime CPU has none for 16 bits).

    Args:
        plan: The plan (not changed).

    Returns:
        ``plan`` itself when every tensor already has one width, else the widened plan.
    """
    points, layers = dict(plan.points), list(plan.layers)
    widened = False
    while True:
        changed = False
        widths: dict[str, int] = {}
        for point in points.values():
            widths[point.group] = max(widths.get(point.group, 0), point.bits)
        for name, point in points.items():
            if point.bits != widths[point.group]:
                points[name] = dataclasses.replace(point, bits=widths[point.group])
                changed = True
        for index, layer in enumerate(layers):
            if layer.activation_bits is None:
                continue
            inputs = [t for t in layer.inputs if t in points]
            bits = max([layer.activation_bits, *(points[t].bits for t in inputs)])
            if bits > layer.activation_bits:
                wider = next(t for t in inputs if points[t].bits == bits)
                note = f"INT{bits} activations: its input {wider} is also read by a {bits}-bit layer"
                layers[index] = dataclasses.replace(layer, activation_bits=bits, decision=layer.decision.noted(note))
                logger.info("layer %s: %s", layer.node, note)
                changed = True
            for tensor in inputs:
                if points[tensor].bits < bits:  # the other inputs of a widened layer
                    points[tensor] = dataclasses.replace(points[tensor], bits=bits)
                    changed = True
        if not changed:
            break
        widened = True
    return dataclasses.replace(plan, layers=tuple(layers), points=points) if widened else plan
