"""fp8conv: FP8 fake-quantized ONNX models to INT8/INT4 models for onnxruntime's integer kernels.

The FP8 emulator is :mod:`fp8conv.fp8`.
"""

from fp8conv import fp8
from fp8conv.errors import Fp8ConvError

__version__ = "0.1.0"

__all__ = ["Fp8ConvError", "__version__", "fp8"]
