"""``fp8conv.fp8``: bit-exact NumPy emulation of FP8 and the other minifloat formats.

Public API (a contract: other tools call these names)::

    from fp8conv import fp8
    codes = fp8.encode(x, "e4m3fn")               # uint8 codes, round half to even, saturating
    values = fp8.decode(codes, "e4m3fn")          # float32
    y = fp8.fake_quantize(x, 0.05, "e4m3fn")      # ONNX QuantizeLinear -> DequantizeLinear
    e3 = fp8.minifloat(3, 4)                      # the whitepaper's FP8-E3 format

Named formats share ``ml_dtypes``' names and semantics: ``e4m3fn``, ``e4m3fnuz``, ``e5m2``,
``e5m2fnuz``, ``e4m3``, ``e3m4``, ``e4m3b11fnuz``, ``e8m0fnu``, ``e2m3fn``, ``e3m2fn``, ``e2m1fn``.
The implementation lives in :mod:`fp8conv.runtime`.
"""

from fp8conv.runtime.emulator import decode, encode, fake_quantize, quantize_values
from fp8conv.runtime.formats import FORMATS, FloatFormat, minifloat, resolve_format

__all__ = [
    "FORMATS",
    "FloatFormat",
    "decode",
    "encode",
    "fake_quantize",
    "minifloat",
    "quantize_values",
    "resolve_format",
]
