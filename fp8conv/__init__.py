"""fp8conv: FP8 fake-quantized ONNX models to INT8/INT4 models for onnxruntime's integer kernels.

Public API: :func:`convert` / :func:`convert_file` turn an FP8 model into an integer QDQ model;
:func:`load` and :func:`inspect` read a model in any FP8 dialect into canonical form; the
FP8 emulator is :mod:`fp8conv.fp8`; :func:`verify` compares a converted model with its FP8 reference and
checks accuracy gates (:mod:`fp8conv.report`), :func:`write_reports` writes its report files;
:func:`convert_and_verify` converts, writes and verifies in one go, reading the source and serializing the
converted model once (what ``fp8conv MODEL --to int8`` runs).
"""

from fp8conv import fp8
from fp8conv._version import __version__
from fp8conv.converter.inspection import Inspection, inspect
from fp8conv.converter.loading import LoadedModel, load
from fp8conv.converter.pipeline import ConversionResult, convert, convert_file
from fp8conv.errors import Fp8ConvError, InternalError
from fp8conv.report import Gates, VerificationResult, verify, write_reports
from fp8conv.verification.convert_and_verify import VerifiedConversion, convert_and_verify

__all__ = [
    "ConversionResult",
    "Fp8ConvError",
    "Gates",
    "Inspection",
    "InternalError",
    "LoadedModel",
    "VerificationResult",
    "VerifiedConversion",
    "__version__",
    "convert",
    "convert_and_verify",
    "convert_file",
    "fp8",
    "inspect",
    "load",
    "verify",
    "write_reports",
]
