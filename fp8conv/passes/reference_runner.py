"""The exact FP8 reference of a canonical model: lower its FakeQuantize nodes, then run it on onnxruntime.

:class:`ReferenceRunner` lowers a copy of the model
(:class:`~fp8conv.passes.fold_weights.FoldWeightQuantizationPass` folds the quantizers of constant
weights, :class:`~fp8conv.passes.lower_fake_quantize.LowerFakeQuantizePass` the rest) and runs it as a
:class:`~fp8conv.runtime.reference.ReferenceSession`, whose module docstring gives the session settings and
the evidence that the result is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx_ir as ir

from fp8conv.passes.fold_weights import FoldWeightQuantizationPass
from fp8conv.passes.lower_fake_quantize import LowerFakeQuantizePass
from fp8conv.runtime.reference import ReferenceSession

__all__ = ["ReferenceRunner"]


class ReferenceRunner(ReferenceSession):
    """Runs a canonical model with exact FP8 numerics at every quantization point.

    Args:
        model: A model in canonical form (FakeQuantize nodes and FP8-weight DequantizeLinear). It is
            cloned; the caller's object is never modified.
        capture: As for :class:`~fp8conv.runtime.reference.ReferenceSession`.
        native_qdq: Lower ONNX float8 formats to QuantizeLinear/DequantizeLinear where that is exact
            instead of float ops (slower on onnxruntime 1.32; see :mod:`fp8conv.runtime.reference`).
        capture_grid: As for :class:`~fp8conv.runtime.reference.ReferenceSession`.
        intra_op_threads: As for :class:`~fp8conv.runtime.reference.ReferenceSession`.

    Raises:
        Fp8ConvError: A capture name that is not a tensor of the main graph, a FakeQuantize that cannot
            be lowered, or a model onnxruntime rejects.
    """

    def __init__(
        self,
        model: ir.Model,
        *,
        capture: Sequence[str] = (),
        native_qdq: bool = False,
        capture_grid: Sequence[str] = (),
        intra_op_threads: int = 0,
    ) -> None:
        self._native_qdq = native_qdq
        self._retain = tuple(capture)
        super().__init__(model, capture=capture, capture_grid=capture_grid, intra_op_threads=intra_op_threads)

    def _lower(self, model: ir.Model, grid: Sequence[str]) -> Mapping[str, str]:
        FoldWeightQuantizationPass(keep=grid, retain=self._retain)(model)
        lowering = LowerFakeQuantizePass(native=self._native_qdq, grid=grid)
        lowering(model)
        return lowering.grid_outputs
