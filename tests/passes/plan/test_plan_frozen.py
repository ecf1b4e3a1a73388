"""The plan is frozen: layers, activation points and the plan itself change only by dataclasses.replace.

Decisions carry a code for code to branch on and the message reports show; auto-INT16 is a function from a
plan to a new plan.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fp8_models import mlp, residual_cnn

from fp8conv import load
from fp8conv.config import ConversionConfig, IntegerType, LayerPrecision
from fp8conv.converter.collection import StatisticsCollector
from fp8conv.converter.data import load_samples
from fp8conv.converter.pipeline import promote_outliers_to_int16
from fp8conv.passes.plan import Decision, DecisionCode, plan_conversion
from fp8conv.runtime.integer_types import integer_type


def _plan(model, **options):
    canonical = load(model).model
    config = ConversionConfig(**options)
    return canonical, config, plan_conversion(canonical, config)


def test_layers_points_and_the_plan_are_frozen():
    _, _, plan = _plan(residual_cnn())
    layer = plan.layers[0]
    point = next(iter(plan.points.values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.precision = LayerPrecision.FLOAT
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.bits = 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.layers = ()
    with pytest.raises(TypeError):
        plan.points["x"] = point
    assert isinstance(plan.layers, tuple)


def test_decisions_have_codes_and_the_messages_reports_show():
    _, _, plan = _plan(mlp(), keep_float=("fc2",))
    decisions = {layer.node: layer.decision for layer in plan.layers}
    assert decisions == {
        "fc1_node": Decision(DecisionCode.FP8_WEIGHT, "FP8 weight quantized in the source"),
        "fc2_node": Decision(DecisionCode.KEPT_FLOAT, "kept float by a keep_float pattern"),
    }
    assert [layer.reason for layer in plan.layers] == [d.message for d in decisions.values()]
    assert [layer.precision for layer in plan.layers] == [LayerPrecision.INT8, LayerPrecision.FLOAT]
    _, _, int16 = _plan(mlp(), int16=("fc1",))
    assert int16.layers[0].decision == Decision(
        DecisionCode.FP8_WEIGHT, "FP8 weight quantized in the source; INT16 activations by an int16 pattern"
    )


def test_enum_values_print_as_their_names_in_messages():
    assert f"planned {LayerPrecision.INT8}" == "planned int8"
    assert str(IntegerType.UINT8) == "uint8"
    assert integer_type(IntegerType.INT16).bits == 16
    assert integer_type(IntegerType.UINT8).bits == 8
    assert IntegerType.for_activations(16, ConversionConfig().activation_type) is IntegerType.INT16
    assert IntegerType.for_activations(8, ConversionConfig().activation_type) is IntegerType.UINT8


def test_auto_int16_returns_a_new_plan_and_leaves_the_old_one_alone(tmp_path):
    model = mlp()
    canonical, _, plan = _plan(model)
    config = ConversionConfig(auto_int16_below_db=200.0)  # every group is below 200 dB
    data = tmp_path / "calib.npz"
    np.savez(data, input=np.random.default_rng(3).standard_normal([8, 32]).astype(np.float32))
    samples = load_samples(data, ["input"])
    statistics = StatisticsCollector(canonical, plan, config).collect(samples)
    promoted = promote_outliers_to_int16(plan, statistics, config)
    assert promoted is not plan
    assert [layer.activation_bits for layer in plan.layers] == [8, 8]
    assert {point.bits for point in plan.points.values()} == {8}
    assert [layer.activation_bits for layer in promoted.layers] == [16, 16]
    assert {point.bits for point in promoted.points.values()} == {16}
    assert all(layer.reason.endswith("dB < 200 dB (auto)") for layer in promoted.layers)
    assert [layer.decision.code for layer in promoted.layers] == [layer.decision.code for layer in plan.layers]
    assert [layer.graph_node for layer in promoted.layers] == [layer.graph_node for layer in plan.layers]
    assert promoted.integer_readers == plan.integer_readers
    # A threshold nothing is below gives the plan itself.
    assert promote_outliers_to_int16(plan, statistics, config.replace(auto_int16_below_db=0.0)) is plan
