"""One reader of Clip bounds (issue 12): attributes (Clip-6) and inputs (Clip-11+), for normalization and the plan."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
import pytest

from fp8conv.config import ConversionConfig
from fp8conv.passes.canonical import CANONICAL_DOMAIN, CANONICAL_OPSET, QuantSpec, make_fake_quantize
from fp8conv.passes.plan import plan_conversion
from fp8conv.runtime.clip_bounds import clip_bounds
from fp8conv.runtime.formats import FORMATS


def _constant(name: str, array: np.ndarray) -> ir.Value:
    return ir.Value(name=name, const_value=ir.tensor(np.asarray(array), name=name))


def _clip(inputs: list[ir.Value | None], **attributes: float) -> ir.Node:
    return ir.node("Clip", inputs, attributes=attributes or None)


def test_clip_bounds_of_each_spelling():
    x = ir.Value(name="x")
    low, high = _constant("low", np.float32(-1.5)), _constant("high", np.array([6.0], np.float32))
    computed = ir.node("Relu", [x]).outputs[0]
    assert clip_bounds(_clip([x, low, high])) == (-1.5, 6.0)
    assert clip_bounds(_clip([x, None, high])) == (-math.inf, 6.0)
    assert clip_bounds(_clip([x, low])) == (-1.5, math.inf)
    assert clip_bounds(_clip([x])) == (-math.inf, math.inf)
    assert clip_bounds(_clip([x], min=0.0, max=6.0)) == (0.0, 6.0)  # Clip-6
    assert clip_bounds(_clip([x], max=6.0)) == (-math.inf, 6.0)
    assert clip_bounds(_clip([x, computed, high])) == (None, 6.0)
    assert clip_bounds(_clip([x, low, _constant("pair", np.ones(2, np.float32))])) == (-1.5, None)


def _relu6_between_convs(clip_attributes: bool) -> ir.Model:
    """``FakeQuantize → Conv → Clip(0, 6) → FakeQuantize → Conv`` in canonical form (ai.onnx 10 for Clip-6)."""
    rng = np.random.default_rng(0)
    spec = QuantSpec(FORMATS["e4m3fn"])
    x = ir.Value(name="x", shape=ir.Shape([1, 3, 6, 6]), type=ir.TensorType(ir.DataType.FLOAT))
    nodes: list[ir.Node] = []
    initializers: list[ir.Value] = []

    def constant(name: str, array: np.ndarray) -> ir.Value:
        initializers.append(_constant(name, np.asarray(array, np.float32)))
        return initializers[-1]

    def fake_quantize(value: ir.Value, name: str, scale: float) -> ir.Value:
        nodes.append(
            make_fake_quantize(value, constant(f"{name}_scale", np.float32(scale)), spec, source="qdq", name=name)
        )
        nodes[-1].outputs[0].name = f"{name}_out"
        return nodes[-1].outputs[0]

    def conv(value: ir.Value, name: str, channels: int) -> ir.Value:
        weight = constant(f"{name}_w", rng.normal(size=(channels, value_channels[value.name], 3, 3)))
        nodes.append(ir.node("Conv", [value, fake_quantize(weight, f"{name}_w_fq", 0.01)], name=name))
        nodes[-1].outputs[0].name = f"{name}_out"
        value_channels[nodes[-1].outputs[0].name] = channels
        return nodes[-1].outputs[0]

    value_channels = {"x": 3, "x_fq_out": 3}
    hidden = conv(fake_quantize(x, "x_fq", 0.02), "conv1", 4)
    if clip_attributes:
        nodes.append(ir.node("Clip", [hidden], attributes={"min": 0.0, "max": 6.0}, name="relu6"))
    else:
        nodes.append(
            ir.node("Clip", [hidden, constant("lo", np.float32(0)), constant("hi", np.float32(6))], name="relu6")
        )
    nodes[-1].outputs[0].name = "relu6_out"
    value_channels["relu6_out"] = value_channels["relu6_out_fq_out"] = 4
    output = conv(fake_quantize(nodes[-1].outputs[0], "relu6_out_fq", 6 / 448), "conv2", 2)
    opsets = {"": 10 if clip_attributes else 13, CANONICAL_DOMAIN: CANONICAL_OPSET}
    graph = ir.Graph([x], [output], nodes=nodes, initializers=initializers, opset_imports=opsets, name="relu6")
    return ir.Model(graph, ir_version=10)


@pytest.mark.parametrize("clip_attributes", [True, False])
def test_plan_sees_the_bounds_of_a_clip6_after_an_fp8_quantized_conv(clip_attributes):
    plan = plan_conversion(_relu6_between_convs(clip_attributes), ConversionConfig())
    assert [layer.precision.value for layer in plan.layers] == ["int8", "int8"]
    point = plan.points["relu6_out"]  # conv1's output (after the Clip it folds) and conv2's input
    assert point.clip == (0.0, 6.0)  # Clip-6 attributes were read as no bounds: (-inf, inf)
    assert point.non_negative
