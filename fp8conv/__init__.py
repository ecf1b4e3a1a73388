"""fp8conv: FP8 fake-quantized ONNX models to INT8/INT4 models for onnxruntime's integer kernels.

Public API: :func:`load` and :func:`inspect` read a model in any FP8 dialect into canonical form; the
FP8 emulator is :mod:`fp8conv.fp8`.
"""

from fp8conv import fp8
from fp8conv.converter.inspection import Inspection, inspect
from fp8conv.converter.loading import LoadedModel, load
from fp8conv.errors import Fp8ConvError

__version__ = "0.1.0"

__all__ = ["Fp8ConvError", "Inspection", "LoadedModel", "__version__", "fp8", "inspect", "load"]
