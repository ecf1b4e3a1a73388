"""Emission pass 6: drop the ``ai.fp8conv`` import; raise ai.onnx to 21 when the emitted Q/DQ need it.

INT16 activations, INT4 and blocked weights need ``QuantizeLinear``/``DequantizeLinear`` of opset 21.
Raising the import alone would leave ops whose signature changed on the way invalid (``ReduceMean``'s
``axes`` attribute became an input at 18, ``Split``'s and ``Squeeze``'s at 13), so the model goes
through the ONNX version converter (onnxscript's, falling back to onnx's own adapters).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript import version_converter

from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import CANONICAL_DOMAIN
from fp8conv.passes.emission import EmissionPass

__all__ = ["SetOpsetsPass"]

_QDQ_OPSET = 21
_DEFAULT_OPSET = 13


class SetOpsetsPass(EmissionPass):
    """Set the opset imports of the emitted model (see the module docstring).

    ``requires``: no node of the ``ai.fp8conv`` domain is left in the main graph (its import goes).
    ``ensures``: ``ai.fp8conv`` is not imported, and ai.onnx is at least 21 where the context's
    quantizations need it.

    Raises:
        Fp8ConvError: From ``call``, when an op of the model has no adapter to opset 21.
    """

    def requires(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PreconditionError: A node of the canonical domain is left.
        """
        for node in model.graph:
            if node.domain == CANONICAL_DOMAIN:
                raise ir.passes.PreconditionError(f"node {node.name} of domain {CANONICAL_DOMAIN} is left")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Set the opsets of ``model`` in place."""
        modified = model.opset_imports.pop(CANONICAL_DOMAIN, None) is not None
        modified |= model.graph.opset_imports.pop(CANONICAL_DOMAIN, None) is not None
        current = model.opset_imports.get("", _DEFAULT_OPSET)
        if not self.context.needs_opset_21 or current >= _QDQ_OPSET:
            return ir.passes.PassResult(model, modified=modified)
        try:
            version_converter.convert_version(model, _QDQ_OPSET, fallback=True)
        except Exception as exc:  # the converters raise several unrelated types
            raise Fp8ConvError(
                f"the target needs opset 21 (INT4/INT16/blocked Q/DQ) and the model (opset {current}) cannot be "
                f"converted to it: {exc}"
            ) from exc
        return ir.passes.PassResult(model, modified=True)

    def ensures(self, model: ir.Model) -> None:
        """See the class docstring.

        Raises:
            ir.passes.PostconditionError: The canonical domain is still imported, or ai.onnx is below 21.
        """
        if CANONICAL_DOMAIN in model.opset_imports or CANONICAL_DOMAIN in model.graph.opset_imports:
            raise ir.passes.PostconditionError(f"{CANONICAL_DOMAIN} is still imported")
        version = model.opset_imports.get("", _DEFAULT_OPSET)
        if self.context.needs_opset_21 and version < _QDQ_OPSET:
            raise ir.passes.PostconditionError(f"the Q/DQ need ai.onnx {_QDQ_OPSET}, the model imports {version}")
