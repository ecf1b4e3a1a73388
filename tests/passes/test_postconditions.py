"""Postconditions on the written model: no FP8 left, converted layers hold integer weights, honest counts.

A conversion whose output does not show what it claims is a bug (InternalError, exit 3), and a model with
nothing to convert is bad input (exit 2), never a green ``layers 0/7 converted``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from fp8_models import _Graph, mlp, residual_cnn
from onnx import TensorProto, helper, numpy_helper
from paths import REPO_ROOT

from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert, convert_file
from fp8conv.converter.postconditions import check_written, written_model
from fp8conv.converter.summary import conversion_summary
from fp8conv.errors import Fp8ConvError, InternalError
from fp8conv.passes.emit_weights import EmitWeightsPass
from fp8conv.passes.fold_fp8_constants import FoldFp8ConstantsPass

DIGITS = REPO_ROOT / "models" / "digits_cnn"


def _save(tmp_path: Path, model: onnx.ModelProto, name: str = "model") -> Path:
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _calibration(tmp_path: Path, model: onnx.ModelProto) -> Path:
    graph_input = model.graph.input[0]
    shape = [dim.dim_value or 1 for dim in graph_input.type.tensor_type.shape.dim]
    data = tmp_path / "calib.npz"
    np.savez(data, **{graph_input.name: np.random.default_rng(2).standard_normal([8, *shape[1:]]).astype(np.float32)})
    return data


# -- the emission is held to the plan ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skip", "named"),
    [("float", "layer conv2_node: planned int8 but its weight is written as FLOAT"), ("fp8", "tensor conv2.weight")],
    ids=["weight-left-float", "weight-left-fp8"],
)
def test_a_layer_the_emission_skips_is_an_internal_error_naming_it(tmp_path, monkeypatch, skip, named):
    """Force the emission to leave conv2 unconverted: float weight (layer named) or its FP8 DQ (tensor named).

    The passes' own contracts would stop this first (next test); here they are off, so the check of the
    written model is what catches it.
    """
    _skip_conv2_weight(monkeypatch, skip)
    monkeypatch.setattr(EmitWeightsPass, "ensures", lambda self, model: None)
    monkeypatch.setattr(FoldFp8ConstantsPass, "requires", lambda self, model: None)
    monkeypatch.setattr(FoldFp8ConstantsPass, "ensures", lambda self, model: None)
    if skip == "fp8":  # the leftover FP8 weight DQ stays as it is (no exact-float fold either)
        monkeypatch.setattr(FoldFp8ConstantsPass, "call", lambda self, model: ir.passes.PassResult(model, False))
    source = _save(tmp_path, residual_cnn())
    with pytest.raises(InternalError, match=named):
        convert_file(source, data=_calibration(tmp_path, residual_cnn()))
    assert not (tmp_path / "model.int8.onnx").exists()

    outcome = CliRunner().invoke(cli, [str(source), "--to", "int8", "--no-verify"])
    assert outcome.exit_code == 3, outcome.output
    assert outcome.output.count("\n") == 1
    assert outcome.output.startswith("fp8conv: internal error: ")
    assert named in outcome.output
    assert not (tmp_path / "model.int8.onnx").exists()


@pytest.mark.parametrize("skip", ["float", "fp8"])
def test_an_emission_pass_that_breaks_its_postcondition_is_an_internal_error_naming_pass_and_layer(
    tmp_path, monkeypatch, skip
):
    _skip_conv2_weight(monkeypatch, skip)
    source = _save(tmp_path, residual_cnn())
    named = (
        "emission pass EmitWeightsPass: postcondition violated: layer conv2_node: planned int8 but its weight is "
        "not read from a DequantizeLinear of an INT8 initializer"
    )
    with pytest.raises(InternalError, match=named):
        convert_file(source, data=_calibration(tmp_path, residual_cnn()))
    outcome = CliRunner().invoke(cli, [str(source), "--to", "int8", "--no-verify"])
    assert outcome.exit_code == 3, outcome.output
    assert named in outcome.output
    assert not (tmp_path / "model.int8.onnx").exists()


def _skip_conv2_weight(monkeypatch, skip: str) -> None:
    """Make the weight pass leave conv2's weight float (``float``) or as it is (``fp8``)."""
    original = EmitWeightsPass._emit_weight

    def emit_all_but_conv2(self, graph, node, layer, weight):
        if node.name != "conv2_node":
            return original(self, graph, node, layer, weight)
        if skip == "float":
            self._materialize_float_weight(graph, node, layer)
        return None

    monkeypatch.setattr(EmitWeightsPass, "_emit_weight", emit_all_but_conv2)


def test_a_planned_layer_missing_from_the_written_model_is_an_internal_error():
    model = convert(residual_cnn()).model
    plan_layers = [layer for layer in _plan(residual_cnn()) if layer.node == "conv3_node"]
    for node in list(model.graph):
        if node.name == "conv3_node":
            node.name = "renamed"
    with pytest.raises(InternalError, match="layer conv3_node: planned int8, not in the written model"):
        check_written(model, plan_layers)


def test_a_converted_int8_layer_with_float_activations_is_an_internal_error():
    model = convert(residual_cnn()).model
    plan_layers = [layer for layer in _plan(residual_cnn()) if layer.node == "conv1_node"]
    conv = next(node for node in model.graph if node.name == "conv1_node")
    dequantize = conv.inputs[0].producer()
    assert dequantize.op_type == "DequantizeLinear"
    quantize = dequantize.inputs[0].producer()
    conv.replace_input_with(0, quantize.inputs[0])
    with pytest.raises(InternalError, match="layer conv1_node: planned 8-bit activations but its input is written as"):
        check_written(model, plan_layers)


def _plan(model: onnx.ModelProto):
    from fp8conv import load
    from fp8conv.config import ConversionConfig
    from fp8conv.passes.plan import plan_conversion

    return plan_conversion(load(model).model, ConversionConfig()).layers


# -- no FP8 left -----------------------------------------------------------------------------------------------


def _fp8_weight_model(leftover: str) -> onnx.ModelProto:
    """``x → Conv(W) → y`` with W an FP8 initializer behind DequantizeLinear, plus one FP8 leftover."""
    codes = np.full((2, 1, 1, 1), 0x38, np.uint8).tobytes()  # 1.0 in e4m3fn
    nodes = [
        helper.make_node("DequantizeLinear", ["w8", "w_scale"], ["w"], name="w_dq"),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
    ]
    initializers = [
        helper.make_tensor("w8", TensorProto.FLOAT8E4M3FN, [2, 1, 1, 1], codes, raw=True),
        numpy_helper.from_array(np.float32(0.5), "w_scale"),
    ]
    output = "c"
    if leftover == "cast":
        nodes += [
            helper.make_node("Cast", ["c"], ["c8"], name="to_fp8", to=TensorProto.FLOAT8E5M2),
            helper.make_node("Cast", ["c8"], ["y"], name="from_fp8", to=TensorProto.FLOAT),
        ]
        output = "y"
    elif leftover == "constant":
        value = helper.make_tensor("k", TensorProto.FLOAT8E4M3FN, [], [1.0])
        nodes += [
            helper.make_node("Constant", [], ["k8"], name="fp8_constant", value=value),
            helper.make_node("Cast", ["k8"], ["k"], name="k_float", to=TensorProto.FLOAT),
            helper.make_node("Add", ["c", "k"], ["y"], name="add"),
        ]
        output = "y"
    elif leftover == "quantize":
        nodes += [
            helper.make_node(
                "QuantizeLinear", ["c", "w_scale"], ["cq"], name="q8", output_dtype=TensorProto.FLOAT8E4M3FN
            ),
            helper.make_node("DequantizeLinear", ["cq", "w_scale"], ["y"], name="dq8"),
        ]
        output = "y"
    elif leftover == "canonical":
        nodes.append(helper.make_node("FakeQuantize", ["c", "w_scale"], ["y"], name="fq", domain="ai.fp8conv"))
        output = "y"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        initializers,
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("ai.fp8conv", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


@pytest.mark.parametrize(
    ("leftover", "named"),
    [
        ("weight", "tensor w8: FLOAT8E4M3FN is left"),
        ("cast", "to_fp8 (Cast): to=FLOAT8E5M2"),
        ("constant", "fp8_constant (Constant): attribute value holds a FLOAT8E4M3FN tensor"),
        ("quantize", "q8 (QuantizeLinear): output_dtype=FLOAT8E4M3FN"),
        ("canonical", "fq (FakeQuantize): fp8conv's internal domain ai.fp8conv"),
    ],
)
def test_fp8_left_anywhere_in_the_written_model_is_an_internal_error(leftover, named):
    model = ir.from_proto(_fp8_weight_model(leftover))
    with pytest.raises(InternalError, match=named.replace("(", r"\(").replace(")", r"\)")):
        check_written(model, [], kept_float=["conv"] if leftover != "weight" else ())


def test_a_layer_kept_float_may_keep_its_fp8_weight():
    model = ir.from_proto(_fp8_weight_model("none"))
    with pytest.raises(InternalError, match="tensor w8"):
        check_written(model, [])
    written = check_written(model, [], kept_float=["conv"])
    assert [(layer.node, layer.weight_type, layer.precision) for layer in written.layers] == [
        ("conv", "FLOAT8E4M3FN", "float")
    ]


# -- what the summary says comes from the written model --------------------------------------------------------


def test_the_summary_counts_what_the_written_model_holds_not_what_the_plan_says(tmp_path):
    source = _save(tmp_path, residual_cnn())
    result = convert_file(source, data=_calibration(tmp_path, residual_cnn()))
    for record in result.layers:  # the plan's records claim nothing was converted
        record.precision = "float"
    assert "layers       4/4 converted (int8)" in conversion_summary(result)
    assert result.to_json()["written"]["converted"] == 4


@pytest.mark.parametrize(("target", "precision"), [("int8", "int8"), ("int4", "int4"), ("w4a16", "int4")])
def test_the_written_precision_is_the_width_of_the_stored_weights(target, precision):
    result = convert(mlp(), target)
    written = written_model(result.model)
    assert written.precisions == (precision,)
    expected_bits = 4 if precision == "int4" else 8
    assert {layer.weight_bits for layer in written.converted} == {expected_bits}
    assert written == result.written.__class__(tuple(_unplanned(layer) for layer in result.written.layers))


def _unplanned(layer):
    import dataclasses

    return dataclasses.replace(layer, planned_integer_kernel=False)


# -- nothing to convert ----------------------------------------------------------------------------------------


def test_a_float_model_is_refused_saying_what_it_holds(tmp_path):
    output = tmp_path / "out.onnx"
    outcome = CliRunner().invoke(
        cli, [str(DIGITS / "model.fp32.onnx"), "--data", str(DIGITS / "calib.npz"), "-o", str(output)]
    )
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1
    assert "no FP8 quantization points" in outcome.output
    assert "found 6 Conv, 1 MatMul, all float" in outcome.output
    assert not output.exists()


def test_an_integer_quantized_model_is_refused_as_already_integer_quantized(tmp_path):
    converted = convert_file(DIGITS / "model.onnx", tmp_path / "int8.onnx", audit=False).output_path
    with pytest.raises(Fp8ConvError, match=r"found 6 Conv, 1 MatMul and \d+ integer .*already integer-quantized"):
        convert_file(converted, tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


def test_a_target_that_converts_none_of_the_layers_is_refused(tmp_path):
    """w4a16 is weight-only INT4 for MatMul/Gemm: on a model of Convs only it would convert nothing."""
    g = _Graph()
    x = g.fp8_activation("input", 4.0)
    w = g.fp8_weight("conv.weight", np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), 0)
    g.node("Conv", [x, w], "y", pads=[1, 1, 1, 1])
    model = g.model(
        "convs",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
    )
    source = _save(tmp_path, model)
    with pytest.raises(Fp8ConvError, match=r"--to w4a16 converts none of its layers \(1 x Conv: w4a16 is weight-only"):
        convert_file(source, to="w4a16")
    assert convert_file(source, to="w4a16", keep_float=["y"], audit=False).written.converted == ()
