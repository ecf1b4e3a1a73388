"""CorrectBiasesPass and bias_site: where a layer adds its bias, and the corrected values put there."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from fp8_models import mlp, modelopt_transformer, residual_cnn

from fp8conv import load
from fp8conv.config import ConversionConfig
from fp8conv.passes.correct_biases import CorrectBiasesPass, bias_site
from fp8conv.passes.emission import EmissionContext
from fp8conv.passes.plan import plan_conversion


def _planned(model, target: str = "int8"):
    canonical = load(model).model
    plan = plan_conversion(canonical, ConversionConfig(target=target))
    return canonical, plan, {layer.node: layer for layer in plan.layers}


def test_bias_sites_of_matmul_add_gemm_and_conv() -> None:
    _, _, layers = _planned(mlp())
    site = bias_site(layers["fc1_node"])
    assert site is not None
    assert site.node.op_type == "Add"
    assert site.index == 1
    np.testing.assert_array_equal(site.values, np.full(64, 0.05, np.float32))
    assert bias_site(layers["fc2_node"]) is None  # its Add adds the residual, not a constant
    _, _, layers = _planned(modelopt_transformer(), "w4a16")
    site = bias_site(layers["fc1_node"])
    assert site is not None
    assert site.node is layers["fc1_node"].graph_node
    assert site.index == 2
    assert (site.alpha, site.beta) == (1.0, 1.0)
    _, _, layers = _planned(residual_cnn())
    convs = [layer for layer in layers.values() if layer.op_type == "Conv"]
    with_bias = [layer for layer in convs if bias_site(layer) is not None]
    assert with_bias
    assert all(bias_site(layer).index == 2 for layer in with_bias)


def test_the_corrected_bias_is_a_new_initializer_read_by_that_node_only() -> None:
    canonical, plan, layers = _planned(mlp())
    fc1 = layers["fc1_node"]
    corrected = np.arange(64, dtype=np.float32)
    result = CorrectBiasesPass(EmissionContext(plan, {}, {}, {fc1.graph_node: corrected}))(canonical)
    assert result.modified
    value = fc1.bias_add.inputs[1]
    assert value.name == "fc1.bias_corrected"
    assert value.is_initializer()
    np.testing.assert_array_equal(value.const_value.numpy(), corrected)
    np.testing.assert_array_equal(
        canonical.graph.initializers["fc1.bias"].const_value.numpy(), np.full(64, 0.05, np.float32)
    )


def test_a_correction_without_a_bias_or_of_another_size_breaks_the_contract() -> None:
    canonical, plan, layers = _planned(mlp())
    no_bias = EmissionContext(plan, {}, {}, {layers["fc2_node"].graph_node: np.zeros(32, np.float32)})
    with pytest.raises(ir.passes.PreconditionError, match="fc2_node: corrected, but no constant bias"):
        CorrectBiasesPass(no_bias)(canonical)
    wrong = EmissionContext(plan, {}, {}, {layers["fc1_node"].graph_node: np.zeros(3, np.float32)})
    with pytest.raises(ir.passes.PreconditionError, match="fc1_node: the corrected bias has another size"):
        CorrectBiasesPass(wrong)(canonical)
