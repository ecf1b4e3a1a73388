"""Bring every FP8 fake-quant dialect of a model into the canonical form, in one call.

Usage::

    import onnx_ir as ir
    from fp8conv.passes.normalize import normalize_fp8

    result = normalize_fp8(ir.load("model.onnx"))
    result.dialects      # ('dq-weight', 'qdq')
    result.integer_qdq   # names of integer Q/DQ nodes, kept as they are
"""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir
import onnx_ir.passes.common as ir_common

from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import collect_quant_points
from fp8conv.passes.detect_unsupported import check_supported, find_integer_qdq
from fp8conv.passes.fold_constant_casts import FoldConstantCastsPass
from fp8conv.passes.normalize_cast import NormalizeCastPairPass
from fp8conv.passes.normalize_dq_weights import NormalizeFp8WeightDequantizePass
from fp8conv.passes.normalize_floatquant import NormalizeFloatQuantPass
from fp8conv.passes.normalize_qdq import NormalizeQdqPass
from fp8conv.passes.normalize_trt import NormalizeTrtFp8Pass

__all__ = ["NormalizationResult", "normalization_passes", "normalize_fp8"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NormalizationResult:
    """What :func:`normalize_fp8` did.

    Attributes:
        model: The model, now in canonical form (the same object that was passed in).
        dialects: Sorted names of the dialects its FP8 quantization points were read from
            (``cast``, ``dq-weight``, ``qdq``, ``qonnx``, ``trt``); the same on a second run.
        integer_qdq: Names of the integer Q/DQ nodes, which normalization keeps untouched.
        modified: Whether this call changed the model.
    """

    model: ir.Model
    dialects: tuple[str, ...]
    integer_qdq: tuple[str, ...]
    modified: bool


def normalization_passes() -> ir.passes.Sequential:
    """The normalization passes in their fixed order.

    ``Constant`` nodes become initializers first (an FP8 weight stored in a ``Constant`` is then the same
    stored weight as an FP8 initializer), casts of constants are folded (every reader then sees a
    constant operand as one), then
    TRT (it turns stored TRT weights into standard DequantizeLinear nodes, which the weight pass then
    checks), standard Q/DQ, stored FP8 weights, QONNX FloatQuant and Cast pairs.
    """
    return ir.passes.Sequential(
        ir_common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        FoldConstantCastsPass(),
        NormalizeTrtFp8Pass(),
        NormalizeQdqPass(),
        NormalizeFp8WeightDequantizePass(),
        NormalizeFloatQuantPass(),
        NormalizeCastPairPass(),
    )


def normalize_fp8(model: ir.Model) -> NormalizationResult:
    """Normalize a model in place: every FP8 fake quantization becomes the canonical form.

    Runs :func:`~fp8conv.passes.detect_unsupported.check_supported`, then
    :func:`normalization_passes`. Normalizing a canonical model changes nothing.

    Args:
        model: The model; modified in place.

    Returns:
        The model with the dialects found, the integer Q/DQ kept and whether anything changed.

    Raises:
        UnsupportedModelError: For MX/NVFP4 block formats and FP8 quantizers fp8conv cannot express.
        Fp8ConvError: For invalid FP8 quantizers (non-zero zero point, bad scale, …); the message
            names the node.
    """
    check_supported(model)
    try:
        result = normalization_passes()(model)
    except ir.passes.PassError as error:
        cause = _user_error(error)
        if cause is None:
            raise
        raise cause from cause.__cause__
    dialects = sorted({point.dialect for point in collect_quant_points(result.model)})
    integer_qdq = tuple(entry.node for entry in find_integer_qdq(result.model))
    logger.info("normalized FP8 dialects %s; %d integer Q/DQ kept", dialects, len(integer_qdq))
    return NormalizationResult(result.model, tuple(dialects), integer_qdq, result.modified)


def _user_error(error: BaseException) -> Fp8ConvError | None:
    """The :class:`Fp8ConvError` that a pass raised, unwrapped from the pass manager's PassError."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, Fp8ConvError):
        cause = cause.__cause__
    return cause
