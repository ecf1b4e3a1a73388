"""Rewrite a canonical FP8 model into an integer QDQ model, following a conversion plan: a sequence of passes.

:func:`emission_pipeline` builds the sequence; each pass is an in-place ``onnx_ir`` pass with its own
``requires``/``ensures`` and an honest ``modified``, sharing one :class:`~fp8conv.passes.emission.EmissionContext`
(the frozen plan, the integer quantizations, one name allocator):

1. :class:`~fp8conv.passes.emit_weights.EmitWeightsPass`: converted layers read ``DequantizeLinear(q_W, s_W)``
   (``s_W·q_W``, in the layout the layer reads), float layers their exact float weights.
2. :class:`~fp8conv.passes.fold_fp8_constants.FoldFp8ConstantsPass`: other FP8-quantized constants (biases)
   become exact float initializers.
   Only with bias correction: :class:`~fp8conv.passes.correct_biases.CorrectBiasesPass` puts the corrected
   biases ``b − α·(W_q − W)·E[x]/β`` in place.
3. :class:`~fp8conv.passes.emit_activations.EmitActivationsPass`: ``DequantizeLinear(QuantizeLinear(x, s, z), s, z)``
   on every planned tensor, replacing the FP8 quantizer that read it (both source names kept).
4. :class:`~fp8conv.passes.emit_biases.EmitBiasesPass`: int32 biases ``round_half_even(b / (s_x·s_W))`` of
   8-bit Conv/Gemm/MatMul+Add (the one :func:`~fp8conv.runtime.integer_quantization.quantize_bias`), zero biases.
5. :class:`~fp8conv.passes.remove_fp8.RemoveFp8Pass`: FP8 activation quantizers with no integer reader go
   (the value flows through; a saturating one on a graph output keeps its Clip).
6. :class:`~fp8conv.passes.set_opsets.SetOpsetsPass`: ``ai.fp8conv`` gone; ai.onnx at ``max(source, 21)``
   when INT16, INT4 or blocked quantization appears, else at the source opset.
7. Cleanup: ``onnx_ir``'s ``TopologicalSortPass`` and ``RemoveUnusedNodesPass`` (the replaced quantizers,
   data movement left without readers, unused initializers).

:class:`EmissionPipeline` runs them like ``ir.passes.Sequential`` and records, per pass, its name, whether
it modified the model and its wall time (:class:`PassRecord`, in the :class:`EmissionResult`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as ir_common

from fp8conv.errors import InternalError
from fp8conv.passes.correct_biases import CorrectBiasesPass
from fp8conv.passes.emission import ActivationQuantization, EmissionContext, WeightQuantization
from fp8conv.passes.emit_activations import EmitActivationsPass
from fp8conv.passes.emit_biases import EmitBiasesPass
from fp8conv.passes.emit_weights import EmitWeightsPass
from fp8conv.passes.fold_fp8_constants import FoldFp8ConstantsPass
from fp8conv.passes.plan import QuantizationPlan
from fp8conv.passes.remove_fp8 import RemoveFp8Pass
from fp8conv.passes.set_opsets import SetOpsetsPass

__all__ = [
    "ActivationQuantization",
    "EmissionPipeline",
    "EmissionResult",
    "PassRecord",
    "WeightQuantization",
    "emission_pipeline",
]


@dataclasses.dataclass(frozen=True)
class PassRecord:
    """What one pass of a run did (for reports).

    Attributes:
        name: The pass's class name.
        modified: Whether it changed the model.
        seconds: Its wall time, ``requires`` and ``ensures`` included.
    """

    name: str
    modified: bool
    seconds: float

    def to_json(self) -> dict[str, object]:
        """JSON view."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EmissionResult(ir.passes.PassResult):
    """A :class:`~onnx_ir.passes.PassResult` with one :class:`PassRecord` per pass, in order.

    Attributes:
        passes: The records.
    """

    passes: tuple[PassRecord, ...] = ()


class EmissionPipeline(ir.passes.Sequential):
    """``ir.passes.Sequential`` that records each pass and lets the conversion's errors through unwrapped.

    ``Sequential`` wraps every error in a ``PassError``; here an :class:`~fp8conv.errors.Fp8ConvError` (bad
    input, such as a model the version converter cannot raise) reaches the caller as it is, and a violated
    ``requires``/``ensures`` becomes an :class:`~fp8conv.errors.InternalError` naming the pass (a bug: the
    emission broke its own contract).
    """

    def call(self, model: ir.Model) -> EmissionResult:
        """Run the passes in order on ``model``.

        Raises:
            InternalError: A pass's precondition or postcondition does not hold.
        """
        records: list[PassRecord] = []
        modified = False
        for pass_ in self.passes:
            name = type(pass_).__name__
            start = time.perf_counter()
            try:
                result = pass_(model)
            except ir.passes.InvariantError as error:
                kind = "precondition" if isinstance(error, ir.passes.PreconditionError) else "postcondition"
                raise InternalError(f"emission pass {name}: {kind} violated: {error}") from error
            records.append(PassRecord(name, result.modified, time.perf_counter() - start))
            model = result.model
            modified = modified or result.modified
        return EmissionResult(model, modified, tuple(records))


def emission_pipeline(
    plan: QuantizationPlan,
    weights: Mapping[ir.Node, WeightQuantization],
    activations: Mapping[str, ActivationQuantization],
    bias_corrections: Mapping[ir.Node, np.ndarray] | None = None,
) -> EmissionPipeline:
    """The passes that turn the planned canonical model into the integer QDQ model (see the module docstring).

    Args:
        plan: The conversion plan; its nodes are nodes of the model the pipeline is run on.
        weights: Integer weights per converted layer (by the layer's node).
        activations: Quantization per activation group (by group name).
        bias_corrections: Corrected float biases per layer (bias correction); None or empty: no such pass.

    Returns:
        The pipeline, to be run once on the planned model: ``emission_pipeline(...)(model)``.
    """
    context = EmissionContext(plan, weights, activations, dict(bias_corrections or {}))
    return EmissionPipeline(
        EmitWeightsPass(context),
        FoldFp8ConstantsPass(context),
        *([CorrectBiasesPass(context)] if bias_corrections else []),
        EmitActivationsPass(context),
        EmitBiasesPass(context),
        RemoveFp8Pass(context),
        SetOpsetsPass(context),
        ir_common.TopologicalSortPass(),
        ir_common.RemoveUnusedNodesPass(),
    )
