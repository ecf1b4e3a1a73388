"""fp8conv: FP8 fake-quantized ONNX models to INT8/INT4 models for onnxruntime's integer kernels.

Public API: :func:`convert` / :func:`convert_file` turn an FP8 model into an integer QDQ model;
:func:`load` and :func:`inspect` read a model in any FP8 dialect into canonical form; the
FP8 emulator is :mod:`fp8conv.fp8`; :func:`verify` compares a converted model with its FP8 reference and
checks accuracy gates (:mod:`fp8conv.report`), :func:`write_reports` writes its report files;
:func:`convert_and_verify` converts, writes and verifies in one go, reading the source and serializing the
converted model once (what ``fp8conv MODEL --to int8`` runs).

The names are imported on first use (PEP 562 ``__getattr__``): ``import fp8conv`` and ``fp8conv --version``
load neither onnx, onnx_ir, onnxruntime nor NumPy; ``from fp8conv import convert`` and ``fp8conv.convert``
import the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fp8conv._version import __version__

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and readers
    from fp8conv import fp8
    from fp8conv.converter.inspection import Inspection, inspect
    from fp8conv.converter.loading import LoadedModel, load
    from fp8conv.converter.pipeline import ConversionResult, convert, convert_file
    from fp8conv.errors import Fp8ConvError, InternalError
    from fp8conv.report import Gates, VerificationResult, verify, write_reports
    from fp8conv.verification.convert_and_verify import VerifiedConversion, convert_and_verify

_LAZY: dict[str, str] = {
    "ConversionResult": "fp8conv.converter.pipeline",
    "Fp8ConvError": "fp8conv.errors",
    "Gates": "fp8conv.report",
    "Inspection": "fp8conv.converter.inspection",
    "InternalError": "fp8conv.errors",
    "LoadedModel": "fp8conv.converter.loading",
    "VerificationResult": "fp8conv.report",
    "VerifiedConversion": "fp8conv.verification.convert_and_verify",
    "convert": "fp8conv.converter.pipeline",
    "convert_and_verify": "fp8conv.verification.convert_and_verify",
    "convert_file": "fp8conv.converter.pipeline",
    "inspect": "fp8conv.converter.inspection",
    "load": "fp8conv.converter.loading",
    "verify": "fp8conv.report",
    "write_reports": "fp8conv.report",
}
"""Public name → the module it is imported from on first use (``fp8`` is the submodule itself)."""

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


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it as a module attribute."""
    if name == "fp8":
        value: Any = importlib.import_module("fp8conv.fp8")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'fp8conv' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes and every public name, imported or not."""
    return sorted(set(globals()) | set(__all__))
