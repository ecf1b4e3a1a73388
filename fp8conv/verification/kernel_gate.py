"""The ``min_integer_kernels`` gate: the deployed session runs the planned layers on integer kernels.

A conversion plans some layers on integer kernels (:mod:`fp8conv.converter.coverage`); whether onnxruntime
fuses them is known only from the session (the kernel audit, at the deployment optimization level). A
planned layer that runs in float fails this gate (exit code 1), like an accuracy gate.

* **Default** (``plan``): when the candidate was converted in the same run, every layer the plan put on an
  integer kernel must run on one: the value is the number of planned layers on integer kernels, the
  threshold the number of planned layers. Without a conversion record (``fp8conv verify``) the default
  checks nothing.
* **A number** ``N``: at least ``N`` of the planned layers (all Conv/MatMul/Gemm without a conversion
  record) run on integer kernels.
* ``off``: not checked.

The kernel audit names each node as the written model does (its name, or ``<op>(<first output>)``), and
so does the conversion's record of the written model, so the planned layers are found in the audit by
that label.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from fp8conv.verification.gates import KERNEL_GATE, KernelThreshold
from fp8conv.verification.result import GateResult

__all__ = ["evaluate_kernel_gate", "kernel_gate_setting"]

logger = logging.getLogger(__name__)

_METRIC = "integer_kernels"
_LISTED = 3  # float layers named in the note


def evaluate_kernel_gate(
    setting: KernelThreshold, kernels: Mapping[str, Any] | None, conversion: Mapping[str, Any] | None
) -> GateResult | None:
    """Check the gate on a kernel audit (``KernelAudit.to_json()``) and a conversion record.

    Args:
        setting: The gate's setting.
        kernels: The candidate's kernel audit at its deployment level (None: not audited).
        conversion: ``ConversionResult.to_json()`` when the candidate was converted in the same run.

    Returns:
        The gate's result; None when it is off, or left at its default with nothing to check (no plan, or
        no audit). An explicit threshold without an audit fails, saying so.
    """
    if not setting.enabled:
        return None
    planned = _planned(conversion)
    if setting.minimum is None and (planned is None or kernels is None):
        return None  # the default, with no plan or no audit to check it on

    def result(threshold: int, value: int | None, note: str) -> GateResult:
        passed = value is not None and value >= threshold
        value_ = float(value) if value is not None else None
        return GateResult(KERNEL_GATE, None, _METRIC, ">=", float(threshold), value_, passed, setting.source, note=note)

    if kernels is None:
        assert setting.minimum is not None
        return result(setting.minimum, None, "needs the integer-kernel audit (do not pass --no-audit)")
    records = kernels.get("records") or []
    if planned is None:
        assert setting.minimum is not None
        value = sum(1 for record in records if record["integer"])
        return result(setting.minimum, value, f"{value} of {len(records)} Conv/MatMul/Gemm on integer kernels")
    value, note = _planned_on_integer(planned, records)
    return result(sum(planned.values()) if setting.minimum is None else setting.minimum, value, note)


def kernel_gate_setting(result: GateResult | None) -> dict[str, Any]:
    """The ``gate_settings`` entry of report.json for the gate: the threshold used (None: not checked)."""
    return {KERNEL_GATE: {"global": result.threshold if result is not None else None, "outputs": {}}}


def _planned(conversion: Mapping[str, Any] | None) -> Counter[str] | None:
    """The labels of the layers the conversion planned on integer kernels (a multiset), if there is a record."""
    written = (conversion or {}).get("written")
    if not written:
        return None
    return Counter(layer["node"] for layer in written["layers"] if layer.get("planned_integer_kernel"))


def _planned_on_integer(planned: Counter[str], records: list[Mapping[str, Any]]) -> tuple[int, str]:
    """(planned layers on integer kernels, a note naming the planned layers that run in float)."""
    left = Counter(planned)
    value = 0
    floats = []
    for record in records:
        if left[record["node"]] <= 0:
            continue
        left[record["node"]] -= 1
        if record["integer"]:
            value += 1
        else:
            kernel = record.get("kernel") or "not found"
            floats.append(f"{record['node']} ({record['op_type']} as {kernel}): {record.get('reason')}")
    missing = sum(left.values())
    total = sum(planned.values())
    note = f"{value} of {total} layers planned on integer kernels run on them"
    if floats:
        note += (
            "; in float: "
            + "; ".join(floats[:_LISTED])
            + (f"; and {len(floats) - _LISTED} more" if len(floats) > _LISTED else "")
        )
    if missing:
        note += f"; {missing} not in the audit"
    return value, note
