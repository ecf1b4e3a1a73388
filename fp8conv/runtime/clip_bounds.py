"""The bounds of a ``Clip``: the one reader (normalization, the plan, the kernel audit), for every opset's spelling.

``Clip`` gives its bounds as the attributes ``min``/``max`` up to opset 10 (Clip-6) and as the optional
inputs 1 and 2 from opset 11; a missing bound is no bound (±Inf). A bound input must be a constant scalar
to be known: constant operands spelled as expressions over constants (``CastLike(Constant, x)``, ``Cast``,
``Identity``) are folded into initializers before any reader runs
(:class:`~fp8conv.passes.fold_constant_casts.FoldConstantCastsPass`), so :func:`constant_array` sees them.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from fp8conv.runtime.ir_constants import constant_array

__all__ = ["clip_bounds"]


def clip_bounds(clip: ir.Node) -> tuple[float | None, float | None]:
    """``(min, max)`` of a Clip: a missing bound is ``-inf``/``inf``, one that is not a constant scalar None.

    Args:
        clip: A ``Clip`` node (Clip-6 with attributes, or Clip-11+ with inputs).
    """
    low = _bound(clip, 1, "min", -math.inf)
    high = _bound(clip, 2, "max", math.inf)
    return low, high


def _bound(clip: ir.Node, index: int, attribute: str, missing: float) -> float | None:
    value = clip.inputs[index] if len(clip.inputs) > index else None
    if value is None:
        return clip.attributes.get_float(attribute, missing)
    array = constant_array(value)
    return None if array is None or array.size != 1 else float(array.reshape(()))
