"""The ``minmax`` range method: the observed range.

``(lo, hi) = (min(x_min, 0), max(x_max, 0))``, and ``(-m, m)`` with ``m = max(-lo, hi)`` for the
symmetric types: the smallest covered range that clips nothing.
"""

from __future__ import annotations

from fp8conv.converter.calibration.scales import QType, covered_range, int_type
from fp8conv.converter.calibration.statistics import Statistics, require_data

__all__ = ["minmax"]


def minmax(stats: Statistics, qtype: QType | str = "uint8") -> tuple[float, float]:
    """The observed range ``[min, max]`` (widened to contain 0; symmetric for int8/int16).

    Raises:
        ValueError: For empty statistics or an unknown type.
    """
    t = int_type(qtype)
    require_data(stats)
    return covered_range(stats.min, stats.max, t)
