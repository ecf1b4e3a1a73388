"""The range methods, one module each: ``method(stats, qtype="uint8", **options) -> (lo, hi)``.

The result is the range the integer grid covers (:func:`~fp8conv.converter.calibration.scales.covered_range`):
``lo <= 0 <= hi``, and ``lo == -hi`` for the symmetric types (int8, int16). For asymmetric types on
non-negative data ``lo == 0``, so the zero point is 0 and onnxruntime can fold a preceding Relu.

* :mod:`.minmax`: the observed ``[min, max]``.
* :mod:`.percentile`: clips a fraction ``1 - p`` of the mass, split equally between the two tails for
  signed data (onnxruntime's ``Percentile`` calibrator does the same).
* :mod:`.entropy`: TensorRT's KL-divergence threshold search on the histogram of ``|x|``.
* :mod:`.mse`: minimizes the expected squared error ``sum_v count(v) * (v - Q(v))^2``.
* :mod:`.fp8`: data-free, from the FP8 quantizer's format and scale alone.

:mod:`fp8conv.converter.calibration.registry` names them and records what each needs.

Degenerate statistics (every method, both kinds of statistics):

* **all values zero** (the range is one point, 0): ``(0.0, 0.0)`` from every method but ``fp8`` (which
  ignores the counts). :func:`~fp8conv.converter.calibration.scales.quantization_params` gives it scale 1
  and zero point 0, a grid on which the only value seen, 0, is exact.
* **one value** ``c != 0`` (a constant tensor, a single sample): the range of ``{0, c}``, ``(0, c)`` or
  ``(c, 0)`` (``(-|c|, |c|)`` for symmetric types) from ``minmax``, ``percentile`` and ``entropy``;
  ``mse`` returns a range whose grid reproduces ``c`` at least as well as that one. Both ends are finite.
* **no finite value** raises ``ValueError`` (there is no range to give).

This package does not re-export the functions: ``methods.mse`` is the module (``methods.mse.mse`` the
method), so ``import ...methods.mse`` always gives the module.
"""
