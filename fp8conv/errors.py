"""Exceptions that fp8conv raises: bad input, and its own bugs.

The CLI turns every :class:`Fp8ConvError` into a one-line message and exit code 2; library users catch
them like any ``ValueError``. An :class:`InternalError` (a violated postcondition: the output does not
show what fp8conv set out to do) is exit code 3 with one line ``internal error: …``; so is any other
unexpected exception.
"""

from __future__ import annotations

__all__ = ["Fp8ConvError", "InternalError", "ModelLoadError", "UnsupportedModelError"]


class Fp8ConvError(ValueError):
    """Bad input: a file, model, node, tensor or option that fp8conv cannot accept."""


class ModelLoadError(Fp8ConvError):
    """A model file that cannot be read: not ONNX, truncated, missing or unsafe external data."""


class UnsupportedModelError(Fp8ConvError):
    """A valid model that uses something fp8conv does not support (an opset, MX/NVFP4 block formats)."""


class InternalError(RuntimeError):
    """A bug in fp8conv: a postcondition of its own output is violated (the message names the layer or tensor).

    Not bad input, so not an :class:`Fp8ConvError`: nothing the user changes in the input fixes it.
    """
