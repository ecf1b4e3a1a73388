"""The ``fp8`` range method: data-free, from the FP8 quantizer's format and scale alone.

The range is :func:`~fp8conv.converter.calibration.methods.mse.mse` on the FP8 grid itself: a histogram
that counts every finite value ``decode(code) * scale`` once (only the non-negative ones for a tensor known
to be ``>= 0``), so it minimizes ``sum_code (v_code - Q(v_code))^2`` with no data.
"""

from __future__ import annotations

import numpy as np

from fp8conv.converter.calibration.methods.mse import mse
from fp8conv.converter.calibration.scales import QType, int_type
from fp8conv.converter.calibration.statistics import CodeHistogram
from fp8conv.runtime.formats import FloatFormat

__all__ = ["fp8", "fp8_range"]


def fp8_range(
    fmt: str | FloatFormat, scale: float, qtype: QType | str = "uint8", *, non_negative: bool = False
) -> tuple[float, float]:
    """Data-free range for the output of an FP8 fake-quantizer, from its format and scale alone.

    The integer grid minimizing the squared error over the FP8 grid itself: :func:`mse` on a histogram that
    counts every finite representable value ``decode(code) * scale`` once (only the non-negative ones when
    ``non_negative``, e.g. after a Relu). Why this and not simply ``±max_value * scale``: with a free scale
    the INT8 grid reproduces the large-magnitude part of the FP8 grid exactly when its step is a power-of-two
    multiple of the FP8 spacing there, which puts its end slightly *above* ``max_value * scale`` (e4m3fn into
    int8: step ``4 * scale``, end ``508 * scale`` vs 448); the max grid misaligns every large value (paper
    §6). Uniform weights (each representable value once) need no data; the squared error is dominated by
    the large values, so the small values near zero (which no 8-bit INT grid of that range can resolve) do
    not drag the range down. With calibration data, :func:`mse` on a :class:`CodeHistogram` weighs the
    values by how often they occur instead.

    Args:
        fmt: The fake-quantizer's format (at most 8 bits).
        scale: Its per-tensor scale.
        qtype: Integer type.
        non_negative: Whether the tensor is known to be ``>= 0``.

    Returns:
        The covered range (contains 0; symmetric for int8/int16).

    Raises:
        ValueError: For a bad format, scale or type.
    """
    t = int_type(qtype)
    grid = CodeHistogram(fmt, scale)
    values = grid.values()
    keep = np.isfinite(values) & ((values >= 0) if non_negative else True)
    grid.update(values[keep])
    return mse(grid, t.name)


def fp8(stats: CodeHistogram, qtype: QType | str = "uint8") -> tuple[float, float]:
    """:func:`fp8_range` for the format and scale of a :class:`CodeHistogram` (its counts are not used).

    The tensor is taken as non-negative when the histogram has seen data and all of it was ``>= 0``;
    otherwise (including an empty histogram: fully data-free) as signed.

    Raises:
        ValueError: If ``stats`` is not a :class:`CodeHistogram` (a StreamingHistogram has no FP8 grid).
    """
    if not isinstance(stats, CodeHistogram):
        raise ValueError(
            "the fp8 range method needs the FP8 quantizer's format and scale: pass a CodeHistogram, or call "
            f"fp8_range(fmt, scale, qtype, non_negative=...); got {type(stats).__name__}"
        )
    non_negative = stats.count > 0 and stats.min >= 0
    return fp8_range(stats.fmt, stats.scale, qtype, non_negative=non_negative)
