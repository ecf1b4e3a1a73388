"""The ``percentile`` range method: clip a fraction ``1 - p`` of the mass (``p = percentile / 100``).

With ``F^-1`` the statistic's quantile function: ``(x_min, F^-1(p))`` for non-negative data,
``(F^-1(1 - p), x_max)`` for non-positive data, and ``(F^-1((1 - p) / 2), F^-1((1 + p) / 2))`` for signed
data (the clipped mass split equally between the tails, as onnxruntime's ``Percentile`` calibrator does);
then widened to contain 0 (and symmetric for int8/int16).
"""

from __future__ import annotations

from fp8conv.converter.calibration.scales import QType, covered_range, int_type
from fp8conv.converter.calibration.statistics import Statistics, require_data

__all__ = ["percentile"]


def percentile(stats: Statistics, qtype: QType | str = "uint8", *, percentile: float = 99.999) -> tuple[float, float]:
    """Clip the outer ``100 - percentile`` percent of the values.

    Non-negative data: ``(min, quantile(p))``; non-positive data: ``(quantile(1 - p), max)``; signed data:
    the clipped mass is split equally, ``(quantile((1 - p) / 2), quantile((1 + p) / 2))``, as onnxruntime's
    asymmetric ``Percentile`` calibrator does. Quantiles are exact on a :class:`CodeHistogram` and linearly
    interpolated inside a bin of a :class:`StreamingHistogram`.

    Args:
        stats: Calibration statistics.
        qtype: Integer type.
        percentile: Percentage of the mass kept, in ``(50, 100]``.

    Returns:
        The covered range (contains 0; symmetric for int8/int16).

    Raises:
        ValueError: For empty statistics, an unknown type, or a percentile outside ``(50, 100]``.
    """
    t = int_type(qtype)
    if not 50.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    require_data(stats)
    keep = float(percentile) / 100.0
    if stats.min >= 0:
        lo, hi = stats.min, stats.quantile(keep)
    elif stats.max <= 0:
        lo, hi = stats.quantile(1.0 - keep), stats.max
    else:
        tail = (1.0 - keep) / 2.0
        lo, hi = stats.quantile(tail), stats.quantile(1.0 - tail)
    return covered_range(lo, hi, t)
