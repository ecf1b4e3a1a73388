"""Exceptions that fp8conv raises for bad input.

The CLI turns every :class:`Fp8ConvError` into a one-line message and exit code 2; library users catch
them like any ``ValueError``.
"""

from __future__ import annotations

__all__ = ["Fp8ConvError", "ModelLoadError", "UnsupportedModelError"]


class Fp8ConvError(ValueError):
    """Bad input: a file, model, node, tensor or option that fp8conv cannot accept."""


class ModelLoadError(Fp8ConvError):
    """A model file that cannot be read: not ONNX, truncated, missing or unsafe external data."""


class UnsupportedModelError(Fp8ConvError):
    """A valid model that uses something fp8conv does not support (an opset, MX/NVFP4 block formats)."""
