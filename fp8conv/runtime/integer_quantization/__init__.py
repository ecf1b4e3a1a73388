"""Requantization of weights to symmetric INT8 / 7-bit / INT4, per tensor, per channel or blocked; int32 biases.

Math (zero point 0 everywhere)::

    q = clip(round_half_even(w / s), qmin, qmax)        # w / s in float32
    dequantize(q) = q * s                               # float32: exactly ONNX DequantizeLinear

per *group* of weights sharing one scale ``s``: the whole tensor (``axis=None``), one slice along ``axis``
(per channel, ONNX's 1-D per-axis scale), or a block of ``block_size`` consecutive elements along
``axis`` (ONNX opset-21 blocked scale of ``w``'s rank with ``ceil(D / block_size)`` on ``axis``; the last
block may be shorter). The scale is ``s = r * max|w_group| / qmax`` with clipping ratio ``r``: ``r = 1``
for ``method="max"`` (no clipping); ``method="mse"`` picks, per group, the ``r`` minimizing
``sum (w - q s)^2``, never worse than ``max``. Biases become int32 on the grid ``s_x * s_w``.

Modules, one job each (the public names are re-exported here):

* :mod:`.weights`: :func:`quantize_weights`, :class:`QuantizedWeights`, :func:`dequantize`.
* :mod:`.integer_ranges`: ``(qmin, qmax)`` per precision and why (:func:`weight_range`), the storage type.
* :mod:`.groups`: weights as ``[G, K]`` groups and back to ONNX's scale layouts.
* :mod:`.grid`: a group's scale from its ratio, its integers, its squared error.
* :mod:`.mse_search`: the clipping-ratio search.
* :mod:`.distinct_values`: the search on a group's distinct values weighed by their counts.
* :mod:`.codes`: weights given as FP8 codes (:class:`WeightCodes`), counted per group.
* :mod:`.bias`: :func:`quantize_bias`, the one bias quantizer.
"""

from __future__ import annotations

from fp8conv.runtime.integer_quantization.bias import quantize_bias
from fp8conv.runtime.integer_quantization.codes import WeightCodes
from fp8conv.runtime.integer_quantization.integer_ranges import weight_range, weight_storage_type
from fp8conv.runtime.integer_quantization.weights import QuantizedWeights, WeightMethod, dequantize, quantize_weights

__all__ = [
    "QuantizedWeights",
    "WeightCodes",
    "WeightMethod",
    "dequantize",
    "quantize_bias",
    "quantize_weights",
    "weight_range",
    "weight_storage_type",
]
