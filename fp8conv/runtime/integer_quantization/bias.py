"""quantize_bias: a bias as int32 on the grid ``s_x · s_w`` of the layer's input and weight scales.

``s_b = s_x · s_w`` (a float32 product, as onnxruntime computes it) and ``q = round_half_even(b / s_b)``, the
quotient of the two float32 values computed in float64 so the rounding is that of the exact quotient,
saturated to ``[-2^31, 2^31 - 1]``. This is what QLinearConv/QGemm need: their int32 accumulator adds ``q``
to ``Σ q_x q_w`` on the same grid.
"""

from __future__ import annotations

import logging

import numpy as np

from fp8conv.runtime.emulator import check_scale
from fp8conv.runtime.integer_types import INTEGER_TYPES

__all__ = ["quantize_bias"]

logger = logging.getLogger(__name__)

_INT32 = INTEGER_TYPES["int32"]
_INT32_MIN, _INT32_MAX = _INT32.qmin, _INT32.qmax


def quantize_bias(
    bias: np.typing.ArrayLike, input_scale: float, weight_scale: np.typing.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a bias to int32 with scale ``input_scale * weight_scale`` (what QLinearConv/QGemm need).

    The one bias quantizer: the emission's int32 biases are its results (``fp8conv.passes.emit_biases``).
    ``s_b = s_x * s_w`` is a float32 product (as onnxruntime computes it). ``q = round_half_even(b / s_b)``
    with the quotient of the two float32 values computed in float64, so the rounding decision is that of
    the exact quotient; the result saturates to ``[-2^31, 2^31 - 1]`` (a warning is logged when it does:
    the weight scale is then too small for this bias).

    Args:
        bias: 1-D float bias of length N.
        input_scale: Per-tensor activation scale ``s_x`` (positive, finite).
        weight_scale: Scalar, ``[1]`` (one for all channels) or ``[N]`` weight scales ``s_w`` (positive, finite).

    Returns:
        ``(q int32 [N], s_b float32 [N])``.

    Raises:
        ValueError: For a bias that is not 1-D or not finite, non-positive scales, a weight scale of another
            length, or a product that underflows to 0 in float32.
    """
    b = np.asarray(bias, dtype=np.float32)
    if b.ndim != 1 or not np.isfinite(b).all():
        raise ValueError(f"bias must be a finite 1-D array, got shape {b.shape}")
    s_x = np.float32(check_scale(np.float32(input_scale), "input_scale"))
    s_w = np.asarray(weight_scale, dtype=np.float32)
    if s_w.ndim > 1 or (s_w.ndim == 1 and s_w.shape[0] not in (1, b.shape[0])):
        raise ValueError(
            f"weight_scale must be a scalar or 1-D with {b.shape[0]} entries (per channel) or 1, got shape {s_w.shape}"
        )
    check_scale(s_w, "weight_scale")
    scale = np.broadcast_to(s_x * s_w, b.shape).astype(np.float32)
    if (scale == 0).any():
        raise ValueError("input_scale * weight_scale underflows to 0 in float32; the bias cannot be quantized")
    quotient = np.rint(b.astype(np.float64) / scale.astype(np.float64))
    saturated = (quotient < _INT32_MIN) | (quotient > _INT32_MAX)
    if saturated.any():
        logger.warning(
            "%d of %d bias values saturate int32 (scale %g too small for bias %g)",
            int(saturated.sum()),
            b.size,
            float(scale[saturated][0]),
            float(b[saturated][0]),
        )
    return np.clip(quotient, _INT32_MIN, _INT32_MAX).astype(np.int32), scale
