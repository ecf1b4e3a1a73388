"""What the normalization passes share (fp8conv/passes/normalization.py): rewrites and opset bookkeeping."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from fp8conv.passes.canonical import CANONICAL_DOMAIN, QuantSpec
from fp8conv.passes.normalization import NodeRewritePass, replace_with_fake_quantize, rewrite_chain
from fp8conv.runtime.formats import FORMATS


def _model(*, dialect_node: bool = False) -> ir.Model:
    """``z = Mul(Div(x, only), shared)``, ``w = Add(x, shared)`` (and an ``acme::Op`` reading ``x``)."""
    nodes = [
        helper.make_node("Div", ["x", "only"], ["y"], name="div"),
        helper.make_node("Mul", ["y", "shared"], ["z"], name="mul"),
        helper.make_node("Add", ["x", "shared"], ["w"], name="add"),
    ]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4]) for name in ("z", "w")]
    if dialect_node:
        nodes.append(helper.make_node("Op", ["x"], ["v"], name="custom", domain="acme"))
        outputs.append(helper.make_tensor_value_info("v", TensorProto.FLOAT, [4]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        outputs,
        [numpy_helper.from_array(np.float32(2.0), name) for name in ("only", "shared")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("acme", 1)])
    return ir.serde.deserialize_model(proto)


def test_a_rewrite_removes_the_constants_only_the_chain_read():
    model = _model()
    div, mul = (node for node in model.graph if node.name in ("div", "mul"))
    x = div.inputs[0]
    spec = QuantSpec(FORMATS["e4m3fn"])
    scale = model.graph.initializers["shared"]
    fake_quantize = replace_with_fake_quantize([div, mul], x, scale, spec, source="test", name="fq")
    assert [node.op_type for node in model.graph] == ["FakeQuantize", "Add"]
    assert fake_quantize.outputs[0].name == "z"  # the chain's result keeps its name
    assert sorted(model.graph.initializers) == ["shared"]  # "only" went with the Div; the Add reads "shared"


def test_rewrite_chain_keeps_a_constant_another_node_reads():
    model = _model()
    mul = next(node for node in model.graph if node.name == "mul")
    y, shared = mul.inputs
    rewrite_chain([mul], lambda output: ir.node("Identity", [y], outputs=[output]))
    assert sorted(model.graph.initializers) == ["only", "shared"]
    assert shared.uses()  # the Add


class _DropAcme(NodeRewritePass):
    """Rewrites ``acme::Op`` to Identity (standing in for a dialect's rewrite)."""

    def _dialect_domain(self, domain: str) -> bool:
        return domain == "acme"

    def _rewrite(self, node: ir.Node) -> bool:
        if node.domain != "acme":
            return False
        rewrite_chain([node], lambda output: ir.node("Identity", list(node.inputs), outputs=[output]))
        return True


def test_after_the_rewrites_the_canonical_domain_comes_in_and_the_dialects_unused_one_goes():
    model = _model(dialect_node=True)
    assert _DropAcme()(model).modified
    assert CANONICAL_DOMAIN in model.opset_imports
    assert "acme" not in model.opset_imports
    untouched = _model()  # nothing to rewrite: the opset imports stay as they are
    assert not _DropAcme()(untouched).modified
    assert set(untouched.opset_imports) == {"", "acme"}
