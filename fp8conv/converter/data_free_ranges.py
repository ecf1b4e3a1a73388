"""Activation ranges without calibration data, from the FP8 quantizers' formats and scales (the ``fp8`` method).

An FP8 quantizer with format ``F`` and scale ``s`` passes values in ``[−max(F)·s, max(F)·s]``
(:func:`~fp8conv.converter.calibration.fp8_range`; ``[0, max(F)·s]`` for a tensor known to be ``>= 0``): the
group's range is the union of its own quantizers' ranges. A group no FP8 quantizer reads borrows, made
symmetric, the range of the nearest activation point downstream (at most four nodes away) that has one.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from fp8conv.config import IntegerType
from fp8conv.converter import calibration
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.plan import ActivationPoint, QuantizationPlan, values_by_name

__all__ = ["data_free_range"]


def data_free_range(
    model: ir.Model, plan: QuantizationPlan, points: list[ActivationPoint], qtype: IntegerType
) -> tuple[float, float, str]:
    """Range from FP8 quantizers alone: the group's own, else the nearest one downstream (symmetric)."""
    ranges = [
        calibration.fp8_range(p.fp8.spec.format, float(np.max(p.fp8.scale)), qtype.value, non_negative=p.non_negative)
        for p in points
        if p.fp8 is not None and p.fp8.spec.format.fits_code
    ]
    if ranges:
        return min(r[0] for r in ranges), max(r[1] for r in ranges), "own"
    borrowed = _downstream_fp8_range(model, plan, points[0].tensor, qtype)
    if borrowed is None:
        raise Fp8ConvError(
            f"activation {points[0].tensor}: no FP8 quantizer to derive a data-free range from; "
            "pass calibration data (--data)"
        )
    high = max(abs(borrowed[0]), abs(borrowed[1]))
    return (-high if qtype is not IntegerType.UINT8 or not points[0].non_negative else 0.0), high, "borrowed"


def _downstream_fp8_range(
    model: ir.Model, plan: QuantizationPlan, tensor: str, qtype: IntegerType, depth: int = 4
) -> tuple[float, float] | None:
    frontier = [values_by_name(model.graph).get(tensor)]
    for _ in range(depth):
        next_frontier = []
        for value in frontier:
            if value is None:
                continue
            for consumer in value.consumers():
                for output in consumer.outputs:
                    point = plan.points.get(output.name or "")
                    if point is not None and point.fp8 is not None:
                        return calibration.fp8_range(
                            point.fp8.spec.format, float(np.max(point.fp8.scale)), qtype.value, non_negative=False
                        )
                    next_frontier.append(output)
        frontier = next_frontier
    return None
