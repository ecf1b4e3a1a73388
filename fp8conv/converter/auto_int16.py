"""Auto-INT16: the plan with 16-bit activations where 8 bits lose too much (a plan → plan function).

An activation group whose INT8 SQNR on the calibration statistics
(:func:`~fp8conv.converter.calibration.int8_sqnr_db`) is below ``config.auto_int16_below_db`` (one of
:func:`int16_outliers`) gets 16-bit points (:func:`promote_outliers_to_int16`), and every layer reading one
of its tensors 16-bit activations; then one width per tensor again
(:func:`~fp8conv.passes.plan.unify_activation_bits`). On onnxruntime CPU a 16-bit layer runs in float
between DQ and Q: accuracy bought with speed, noted in each layer's decision.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from fp8conv.config import ConversionConfig
from fp8conv.converter import calibration
from fp8conv.passes.plan import QuantizationPlan, unify_activation_bits

__all__ = ["int16_outliers", "promote_outliers_to_int16"]

logger = logging.getLogger(__name__)


def int16_outliers(
    plan: QuantizationPlan, statistics: Mapping[str, calibration.Statistics], config: ConversionConfig
) -> list[tuple[tuple[str, ...], float]]:
    """The 8-bit activation groups whose INT8 SQNR is below ``config.auto_int16_below_db``, in plan order.

    Returns:
        ``[(tensors of the group, INT8 SQNR in dB on the calibration statistics)]``.
    """
    threshold = config.auto_int16_below_db
    assert threshold is not None
    outliers = []
    for group, tensors in plan.groups().items():
        points = [plan.points[t] for t in tensors]
        if any(point.bits != 8 for point in points) or group not in statistics or statistics[group].count == 0:
            continue
        sqnr = calibration.int8_sqnr_db(statistics[group], config.activation_type.value)
        if sqnr < threshold:
            outliers.append((tuple(tensors), sqnr))
    return outliers


def promote_outliers_to_int16(
    plan: QuantizationPlan,
    statistics: Mapping[str, calibration.Statistics],
    config: ConversionConfig,
    outliers: list[tuple[tuple[str, ...], float]] | None = None,
) -> QuantizationPlan:
    """The plan with INT16 for the activation groups whose INT8 SQNR is below ``config.auto_int16_below_db``.

    The layers reading a promoted tensor get 16-bit activations (they then run in float between DQ and
    Q on onnxruntime CPU: accuracy bought with speed, noted in each layer's decision message).

    Args:
        plan: The plan (not changed).
        statistics: Calibration statistics per activation group.
        config: The options (``auto_int16_below_db`` set; ``activation_type`` is the INT8 type measured).
        outliers: :func:`int16_outliers` of these arguments, when the caller has it already.

    Returns:
        The new plan (``plan`` itself when the threshold promotes nothing).
    """
    threshold = config.auto_int16_below_db
    assert threshold is not None
    if outliers is None:
        outliers = int16_outliers(plan, statistics, config)
    promoted = {tensor: sqnr for tensors, sqnr in outliers for tensor in tensors}
    layers = []
    for layer in plan.layers:
        hits = [promoted[tensor] for tensor in layer.inputs if tensor in promoted]
        if hits and layer.activation_bits == 8:
            note = f"INT16 activations: INT8 SQNR {min(hits):.1f} dB < {threshold:g} dB (auto)"
            layers.append(dataclasses.replace(layer, activation_bits=16, decision=layer.decision.noted(note)))
        else:
            layers.append(layer)
    logger.info("auto INT16: %d activation tensors promoted", len(promoted))
    if not promoted:
        return plan
    points = {
        name: dataclasses.replace(point, bits=16) if name in promoted else point for name, point in plan.points.items()
    }
    return unify_activation_bits(dataclasses.replace(plan, layers=tuple(layers), points=points))
