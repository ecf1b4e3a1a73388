"""SetOpsetsPass: ai.fp8conv dropped, ai.onnx raised to 21 (through the version converter) when the Q/DQ need it."""

from __future__ import annotations

import onnx_ir as ir
import pytest
from emission_helpers import planned, run_before
from fp8_models import mlp

from fp8conv.passes.canonical import CANONICAL_DOMAIN
from fp8conv.passes.set_opsets import SetOpsetsPass


def _opsets_pass(model, target: str = "int8") -> tuple[ir.Model, SetOpsetsPass]:
    canonical, passes = planned(model, target)
    return canonical, run_before(canonical, passes, SetOpsetsPass)


def test_int8_keeps_the_source_opset_and_drops_the_canonical_domain():
    model, opsets = _opsets_pass(mlp())
    assert CANONICAL_DOMAIN in model.opset_imports
    assert opsets(model).modified
    assert CANONICAL_DOMAIN not in model.opset_imports
    assert model.opset_imports[""] == 19


@pytest.mark.parametrize("target", ["int4", "w8a16", "w4a16"])
def test_int4_and_int16_raise_ai_onnx_to_21(target):
    model, opsets = _opsets_pass(mlp(), target)
    assert opsets.context.needs_opset_21
    assert opsets(model).modified
    assert model.opset_imports[""] == 21


def test_nothing_to_set_is_not_modified():
    model, opsets = _opsets_pass(mlp(), "int4")
    opsets(model)
    assert not opsets(model).modified


def test_requires_no_canonical_node_left():
    model, passes = planned(mlp())
    opsets = next(p for p in passes.passes if isinstance(p, SetOpsetsPass))
    with pytest.raises(ir.passes.PreconditionError, match=f"of domain {CANONICAL_DOMAIN} is left"):
        opsets(model)


def test_ensures_the_canonical_domain_is_gone_and_the_opset_high_enough():
    model, opsets = _opsets_pass(mlp(), "int4")
    with pytest.raises(ir.passes.PostconditionError, match=f"{CANONICAL_DOMAIN} is still imported"):
        opsets.ensures(model)
    model.opset_imports.pop(CANONICAL_DOMAIN)
    with pytest.raises(ir.passes.PostconditionError, match=r"the Q/DQ need ai\.onnx 21, the model imports 19"):
        opsets.ensures(model)
