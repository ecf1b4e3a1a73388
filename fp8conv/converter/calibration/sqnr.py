"""The SQNR of the MSE-optimal 8-bit quantizer on a tensor's calibration statistics.

``SQNR = 10·log10(Σ count·E[x²] / Σ count·E[(x − Q(x))²])`` (dB), ``Q`` the integer grid the ``mse`` range
method chooses (:mod:`.methods.mse`); each histogram interval ``[a, b]`` is taken as uniform mass, so
``E[x²] = (a² + ab + b²)/3`` (exact for FP8-code histograms, whose intervals are points). Auto-INT16
(:mod:`fp8conv.converter.auto_int16`) promotes the groups whose SQNR is below a threshold.
"""

from __future__ import annotations

import numpy as np

from fp8conv.converter.calibration.methods.mse import mse, range_error
from fp8conv.converter.calibration.statistics import Statistics

__all__ = ["int8_sqnr_db"]


def int8_sqnr_db(stats: Statistics, qtype: str) -> float:
    """SQNR (dB) of the MSE-optimal 8-bit quantizer on the calibration statistics.

    ``10·log10(Σ count·E[x²] / Σ count·E[(x − Q(x))²])`` with each histogram interval ``[a, b]`` taken as
    uniform mass (``E[x²] = (a² + ab + b²)/3``; exact for FP8-code histograms, whose intervals are points).
    """
    low, high = mse(stats, qtype)
    error = range_error(stats, low, high, qtype)
    a, b, counts = stats.mass()
    power = float(np.sum(counts * (a * a + a * b + b * b) / 3.0))
    if error <= 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(power, 1e-300) / error))
