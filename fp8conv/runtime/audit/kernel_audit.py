"""The integer-kernel audit: which Conv / MatMul / Gemm of an emitted QDQ model onnxruntime runs on integers.

:func:`audit_integer_kernels` asks onnxruntime for the graph it will run (:mod:`.session`), maps every
emitted Conv / MatMul / Gemm to the optimized node it became (:mod:`.matching`) and records, per node, the
kernel, the kernel the fusion rules predict, and why a float node was not fused (:mod:`.diagnosis`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import onnx
import onnx_ir as ir

from fp8conv.runtime.audit.diagnosis import expected_kernel_of, integer_warning, why_not
from fp8conv.runtime.audit.ir_queries import dequantizer, label
from fp8conv.runtime.audit.matching import match_nodes
from fp8conv.runtime.audit.records import KernelAudit, KernelRecord
from fp8conv.runtime.audit.session import optimized_graph, prepare_model
from fp8conv.runtime.fusion_rules import INTEGER_KERNELS, LAYER_OPS
from fp8conv.runtime.ir_constants import constant_tensor
from fp8conv.runtime.ort_backend import optimization_level as optimization_level_key

__all__ = ["audit_integer_kernels"]

logger = logging.getLogger(__name__)


def audit_integer_kernels(
    model: str | os.PathLike | onnx.ModelProto | ir.Model,
    *,
    optimization_level: str = "all",
    session_options_config: Mapping[str, str] | None = None,
    serialized: bytes | None = None,
) -> KernelAudit:
    """Report, for every Conv / MatMul / Gemm of a QDQ model, whether onnxruntime CPU runs it on integers.

    Args:
        model: The emitted model: a path to an ``.onnx`` file (its external data, if any, next to it as
            the file references it; read lazily: only small scales and zero points are ever loaded), an
            ``onnx.ModelProto`` with its data loaded, or an ``onnx_ir.Model`` (read, not modified; e.g. the
            conversion's model, which then is not parsed back).
        optimization_level: ``"all"`` (default, ``ORT_ENABLE_ALL``), ``"layout"``, ``"extended"``,
            ``"basic"`` or ``"disable"``; onnxruntime's names (``"ORT_ENABLE_EXTENDED"``) are accepted too.
        session_options_config: Extra session config entries (``SessionOptions.add_session_config_entry``),
            e.g. ``{"session.x64quantprecision": "1"}``. The entries controlling how the optimized model
            is saved are set by this function.
        serialized: The bytes of ``model`` (a ``ModelProto`` or an onnx_ir model), when the caller has them
            already: onnxruntime loads them, so the model is not serialized again. Ignored for a path.

    Returns:
        The audit, one record per node in graph order.

    Raises:
        Fp8ConvError: Unknown optimization level.
        ModelLoadError: The file cannot be read, or onnxruntime cannot create a session for the model.
    """
    level = optimization_level_key(optimization_level)
    config = dict(session_options_config or {})
    with tempfile.TemporaryDirectory(prefix="fp8conv-audit-") as tmp:
        tmp_dir = Path(tmp)
        emitted, ort_source = prepare_model(model, tmp_dir, serialized)
        optimized = optimized_graph(ort_source, level, config, tmp_dir)
    records = _audit(emitted.graph, optimized.graph, level, config)
    audit = KernelAudit(records=tuple(records), optimization_level=level)
    logger.info(
        "integer-kernel audit (%s): %d of %d Conv/MatMul/Gemm nodes run as integer kernels",
        level,
        audit.integer_count,
        len(audit.records),
    )
    return audit


def _audit(emitted: ir.Graph, optimized: ir.Graph, level: str, config: Mapping[str, str]) -> list[KernelRecord]:
    targets = [n for n in emitted if n.op_type in LAYER_OPS and n.domain in ("", "ai.onnx")]
    matches = match_nodes(targets, optimized)
    records = []
    for target, found in zip(targets, matches, strict=True):
        name = label(target)
        expected = expected_kernel_of(target)
        if found is None:
            constant = all(v is None or constant_tensor(v) is not None for v in target.inputs)
            reason = (
                "not found in the optimized graph: onnxruntime constant-folded it (all inputs are constant)"
                if constant
                else "not found in the optimized graph: onnxruntime removed it or merged it into another node"
            )
            # A float layer that onnxruntime fused (FusedConv, NCHWc) is expected; a quantized one is news.
            quantized = any(dequantizer(v) is not None for v in target.inputs)
            logger.log(
                logging.WARNING if quantized else logging.DEBUG, "kernel audit: %s %s %s", target.op_type, name, reason
            )
            records.append(KernelRecord(name, target.op_type, "", False, reason, expected_kernel=expected))
            continue
        kernel = found.op_type
        integer = kernel in INTEGER_KERNELS
        if integer:
            reason = integer_warning(target, kernel)
        else:
            issues = list(why_not(target, level, config))
            if not issues and "MatMulAddFusion" in (found.name or ""):
                issues.append(
                    "onnxruntime first fused it with the following Add into a float Gemm (MatMulAddFusion), "
                    "which then had no quantized pattern"
                )
            if not issues and expected is not None:
                issues.append(f"unknown: the fusion rules expect {expected}, onnxruntime left it as {kernel}")
            reason = "; ".join(issues) if issues else f"unknown: onnxruntime left it as {kernel}"
        if reason is not None:
            logger.debug("kernel audit: %s %s → %s: %s", target.op_type, name, kernel, reason)
        records.append(
            KernelRecord(name, target.op_type, kernel, integer, reason, found.domain, found.name or "", expected)
        )
    return records
