"""Activation calibration: streaming statistics, and the range methods that turn them into integer grids.

A statistic of a tensor's values (:mod:`.statistics`) goes through a range method (:mod:`.methods`, by name
in :mod:`.registry`) to a covered range ``(lo, hi)``, which :func:`quantization_params` (:mod:`.scales`)
makes the scale and zero point of an ONNX ``QuantizeLinear``/``DequantizeLinear`` pair::

    stats = CodeHistogram(fmt, scale).update(x)            # or StreamingHistogram().update(x)
    lo, hi = compute_range(stats, "mse", "uint8")          # lo <= 0 <= hi
    scale, zero_point = quantization_params(lo, hi, "uint8")
    Q(x) = (saturate(round_half_even(x / scale) + zero_point) - zero_point) * scale

Modules:

* :mod:`.statistics`: :class:`CodeHistogram` (exact, one counter per FP8 code) and
  :class:`StreamingHistogram` (power-of-two bins over a growing range); both merge exactly.
* :mod:`.scales`: the integer types and the scale/zero-point math.
* :mod:`.methods`: one module per range method (``mse``, ``minmax``, ``percentile``, ``entropy``, ``fp8``).
* :mod:`.registry`: the methods by name, the statistic each needs, their options; :func:`compute_range`.
* :mod:`.sqnr`: :func:`int8_sqnr_db`, the SQNR of the MSE-optimal 8-bit grid (what auto-INT16 measures).
* Layer-input statistics of the weight methods (not range methods; imported from their modules):
  :mod:`.hessian` (``H = 2XᵀX/n``, GPTQ), :mod:`.channel_mean` (``E[x]``, bias correction), both summed by
  :mod:`.sample_sums` (the same bits for any batching, threads or merge order).

The names below are re-exported so that ``calibration.X`` works for every public ``X`` of the package.
"""

from __future__ import annotations

from fp8conv.converter.calibration.methods.entropy import entropy
from fp8conv.converter.calibration.methods.fp8 import fp8, fp8_range
from fp8conv.converter.calibration.methods.minmax import minmax
from fp8conv.converter.calibration.methods.mse import mse, range_error
from fp8conv.converter.calibration.methods.percentile import percentile
from fp8conv.converter.calibration.registry import (
    RANGE_METHODS,
    RangeMethod,
    RangeMethodSpec,
    StatisticKind,
    compute_range,
    range_method,
)
from fp8conv.converter.calibration.scales import INT_TYPES, QType, int_type, quantization_params
from fp8conv.converter.calibration.sqnr import int8_sqnr_db
from fp8conv.converter.calibration.statistics import CodeHistogram, Statistics, StreamingHistogram

__all__ = [
    "INT_TYPES",
    "RANGE_METHODS",
    "CodeHistogram",
    "QType",
    "RangeMethod",
    "RangeMethodSpec",
    "StatisticKind",
    "Statistics",
    "StreamingHistogram",
    "compute_range",
    "entropy",
    "fp8",
    "fp8_range",
    "int8_sqnr_db",
    "int_type",
    "minmax",
    "mse",
    "percentile",
    "quantization_params",
    "range_error",
    "range_method",
]
