"""GPTQ and bias correction through the conversion: same graph as RTN, lower layer error, zero mean shift.

Oracles, independent of the code under test: each layer's input captured from the exact FP8 reference over
the calibration data (:class:`ReferenceRunner`), the layer's exact FP8 weight from the plan, and the integer
weights and biases read back from the written model (``DequantizeLinear`` initializers, NumPy broadcast).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from fp8_models import mlp, modelopt_transformer, residual_cnn
from helpers import write_model_and_data
from onnx import numpy_helper

from fp8conv import load
from fp8conv.config import ConversionConfig
from fp8conv.converter.pipeline import convert, convert_file
from fp8conv.converter.summary import conversion_summary
from fp8conv.passes.plan import plan_conversion
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.report.schema import validate_report


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    """The ModelOpt-style transformer block and its calibration data (LayerNorm outputs: correlated inputs)."""
    return write_model_and_data(tmp_path_factory.mktemp("transformer"), modelopt_transformer())


def _proto(result) -> onnx.ModelProto:
    return ir.to_proto(result.model)


def _structure(model: onnx.ModelProto) -> tuple:
    """Everything but the initializers' values: nodes (op, name, inputs, outputs, attributes) and initializers."""
    nodes = tuple(
        (
            n.op_type,
            n.domain,
            n.name,
            tuple(n.input),
            tuple(n.output),
            tuple(a.SerializeToString() for a in n.attribute),
        )
        for n in model.graph.node
    )
    initializers = tuple((t.name, t.data_type, tuple(t.dims)) for t in model.graph.initializer)
    return nodes, initializers, tuple(sorted(model.metadata_props and ()))


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _integer_weight(model: onnx.ModelProto, layer: str) -> tuple[np.ndarray, bool]:
    """The dequantized integer weight a layer node reads, and whether that node is a ``Gemm(transB=1)``."""
    values = _initializers(model)
    nodes = {n.name: n for n in model.graph.node}
    producers = {output: n for n in model.graph.node for output in n.output}
    node = nodes[layer]
    dq = producers[node.input[1]]
    assert dq.op_type == "DequantizeLinear"
    q = values[dq.input[0]].astype(np.float32)
    scale = values[dq.input[1]].astype(np.float32)
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in dq.attribute}
    if scale.ndim == 0 or scale.size == 1:
        w = q * scale.reshape(())
    elif "block_size" in attributes:
        axis, size = attributes["axis"], attributes["block_size"]
        expanded = np.repeat(scale, size, axis=axis)
        w = q * np.take(expanded, np.arange(q.shape[axis]), axis=axis)
    else:
        shape = [1] * q.ndim
        shape[attributes.get("axis", 1)] = -1
        w = q * scale.reshape(shape)
    trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    return w, trans_b


def _layers(source, target: str):
    """The plan's integer MatMul/Gemm layers of ``source`` for ``target`` (exact FP8 weights, in their layout)."""
    canonical = load(source).model
    plan = plan_conversion(canonical, ConversionConfig(target=target))
    return canonical, [
        layer for layer in plan.layers if layer.is_integer and layer.has_weight and layer.op_type in ("MatMul", "Gemm")
    ]


def _inputs(source, data, tensors: list[str]) -> dict[str, np.ndarray]:
    """Each tensor over the calibration samples, rows ``[n, K]`` (float64), from the exact FP8 reference."""
    runner = ReferenceRunner(load(source).model, capture=tensors)
    x = np.load(data)[runner.input_names[0]]
    batch = runner.static_batch_size or 4
    captured: dict[str, list[np.ndarray]] = {tensor: [] for tensor in tensors}
    for start in range(0, len(x), batch):
        outputs = runner.run({runner.input_names[0]: x[start : start + batch]})
        for tensor in tensors:
            captured[tensor].append(outputs[tensor].reshape(-1, outputs[tensor].shape[-1]).astype(np.float64))
    return {tensor: np.concatenate(parts) for tensor, parts in captured.items()}


def _kn(w: np.ndarray, k_axis: int) -> np.ndarray:
    return (w if k_axis == 0 else w.T).astype(np.float64)


@pytest.mark.parametrize("target", ["w4a16", "int4"])
def test_gptq_emits_the_rtn_graph_with_other_integers(transformer, target):
    source, data = transformer
    rtn = _proto(convert(source, target, data))
    gptq = _proto(convert(source, target, data, weight_rounding="gptq"))
    assert _structure(gptq) == _structure(rtn)
    rtn_values, gptq_values = _initializers(rtn), _initializers(gptq)
    changed = sorted(name for name in rtn_values if not np.array_equal(rtn_values[name], gptq_values[name]))
    assert changed, "GPTQ changed no integer"
    assert all(name.endswith("_quantized") for name in changed), changed
    assert rtn.metadata_props != gptq.metadata_props  # the options are recorded
    recorded = json.loads(next(p.value for p in gptq.metadata_props if p.key == "fp8conv.config"))
    assert recorded["weight_rounding"] == "gptq"


@pytest.mark.parametrize("target", ["w4a16", "int4", "int8"])
def test_gptq_lowers_each_layer_output_error_on_the_calibration_data(transformer, target):
    source, data = transformer
    rtn = _proto(convert(source, target, data))
    result = convert(source, target, data, weight_rounding="gptq")
    gptq = _proto(result)
    _, layers = _layers(source, target)
    tensors = {layer.node: layer.graph_node.inputs[0].name for layer in layers}
    x = _inputs(source, data, sorted(set(tensors.values())))
    total = {"rtn": 0.0, "gptq": 0.0}
    for layer in layers:
        w = _kn(layer.weight_values, layer.block_axis)
        errors = {}
        for name, model in (("rtn", rtn), ("gptq", gptq)):
            w_q, trans_b = _integer_weight(model, layer.node)
            w_q = (w_q.T if trans_b else w_q).astype(np.float64)
            errors[name] = float(np.mean(np.sum((x[tensors[layer.node]] @ (w_q - w)) ** 2, axis=1)))
            total[name] += errors[name]
        if target != "int8":  # 7-bit weights: RTN's error is tiny already, GPTQ wins on the sum
            assert errors["gptq"] < errors["rtn"], (layer.node, errors)
    assert total["gptq"] < total["rtn"], total
    # The record's numbers are these errors summed over output channels (H from the same inputs).
    recorded = {entry["layer"]: entry for entry in result.weight_methods["gptq"]["layers"]}
    assert set(recorded) == {layer.node for layer in layers}


def test_bias_correction_zeroes_each_layers_mean_output_error(transformer):
    source, data = transformer
    before = _proto(convert(source, "w4a16", data))
    result = convert(source, "w4a16", data, bias_correction=True)
    after = _proto(result)
    canonical, layers = _layers(source, "w4a16")
    tensors = {layer.node: layer.graph_node.inputs[0].name for layer in layers}
    x = _inputs(source, data, sorted(set(tensors.values())))
    corrected = {entry["layer"] for entry in result.weight_methods["bias_correction"]["layers"]}
    assert corrected == {layer.node for layer in layers}  # every layer of this block has a bias
    for layer in layers:
        w = _kn(layer.weight_values, layer.block_axis)
        inputs = x[tensors[layer.node]]
        shifts = {}
        for name, model in (("before", before), ("after", after)):
            w_q, trans_b = _integer_weight(model, layer.node)
            w_q = (w_q.T if trans_b else w_q).astype(np.float64)
            bias_source, bias_out = _biases(canonical, model, layer)
            mean_error = np.mean(inputs @ w_q + bias_out - (inputs @ w + bias_source), axis=0)
            shifts[name] = float(np.abs(mean_error).max())
        # Zero but for the float32 rounding of the stored bias (and of the means' float64 sums).
        tolerance = 1e-6 * (1.0 + float(np.abs(bias_source).max()))
        assert shifts["after"] < tolerance, (layer.node, shifts)
        assert shifts["before"] > 10 * shifts["after"], (layer.node, shifts)


def _biases(canonical: ir.Model, model: onnx.ModelProto, layer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's bias in the FP8 model (exact float) and in the written model (what it adds)."""
    from fp8conv.passes.correct_biases import bias_site

    site = bias_site(layer)
    assert site is not None
    values = _initializers(model)
    nodes = {n.name: n for n in model.graph.node}
    written = nodes[site.node.name]
    return site.values.astype(np.float64), values[written.input[site.index]].astype(np.float64).reshape(-1)


def test_layers_without_a_bias_and_conv_layers_are_reported(tmp_path):
    source, data = write_model_and_data(tmp_path, mlp())
    result = convert(source, "int4", data, weight_rounding="gptq", bias_correction=True)
    methods = result.weight_methods
    assert [entry["layer"] for entry in methods["gptq"]["layers"]] == ["fc1_node", "fc2_node"]
    assert [entry["layer"] for entry in methods["bias_correction"]["layers"]] == ["fc1_node"]
    assert methods["bias_correction"]["skipped"] == [
        {"layer": "fc2_node", "reason": "no bias to fold the correction into"}
    ]
    summary = "\n".join([*result.notes, conversion_summary(result)])
    assert "GPTQ on 2 layers" in summary
    assert "bias correction on 1 layer" in summary
    assert "not corrected: layer fc2_node: no bias to fold the correction into" in summary

    source, data = write_model_and_data(tmp_path, residual_cnn(), name="cnn")
    result = convert(source, "int4", data, weight_rounding="gptq", bias_correction=True)
    skipped = {entry["layer"]: entry["reason"] for entry in result.weight_methods["gptq"]["skipped"]}
    convs = [layer.node for layer in result.layers if layer.op_type == "Conv"]
    assert sorted(skipped) == sorted(convs)
    assert all(reason.startswith("Conv: GPTQ covers MatMul/Gemm") for reason in skipped.values())
    corrected = {entry["layer"] for entry in result.weight_methods["bias_correction"]["layers"]}
    assert set(convs) <= corrected | {e["layer"] for e in result.weight_methods["bias_correction"]["skipped"]}
    assert corrected & set(convs), "bias correction corrects Conv biases too"


def test_same_input_and_options_give_the_same_bytes_for_any_batching(tmp_path, transformer):
    source, data = transformer
    options = {"to": "w4a16", "data": data, "weight_rounding": "gptq", "bias_correction": True, "audit": False}
    digests = set()
    for index, scheduling in enumerate(
        [{}, {}, {"calibration_batch_size": 3, "calibration_workers": 1}, {"calibration_batch_size": 1}]
    ):
        out = tmp_path / f"model_{index}.onnx"
        convert_file(source, out, **options, **scheduling)
        digests.add(out.read_bytes())
    assert len(digests) == 1


def test_the_defaults_write_what_they_wrote_before(tmp_path, transformer):
    source, data = transformer
    plain, explicit = tmp_path / "plain.onnx", tmp_path / "explicit.onnx"
    result = convert_file(source, plain, to="w4a16", data=data, audit=False)
    convert_file(source, explicit, to="w4a16", data=data, audit=False, weight_rounding="rtn", bias_correction=False)
    assert plain.read_bytes() == explicit.read_bytes()
    recorded = json.loads(next(p.value for p in onnx.load(str(plain)).metadata_props if p.key == "fp8conv.config"))
    assert not {"weight_rounding", "gptq_damp", "gptq_act_order", "bias_correction"} & set(recorded)
    assert result.weight_methods is None
    assert "weight_methods" not in result.to_json()
    assert not any(line.startswith("weights ") for line in conversion_summary(result).splitlines())


def test_act_order_and_damp_are_applied_and_recorded(transformer):
    source, data = transformer
    plain = convert(source, "w4a16", data, weight_rounding="gptq")
    ordered = convert(source, "w4a16", data, weight_rounding="gptq", gptq_act_order=True, gptq_damp=0.1)
    record = ordered.weight_methods["gptq"]
    assert record["act_order"] is True
    assert record["damp"] == 0.1
    assert record["grid"].startswith("the round-to-nearest scales")
    a, b = _initializers(_proto(plain)), _initializers(_proto(ordered))
    assert any(not np.array_equal(a[name], b[name]) for name in a if name.endswith("_quantized"))
    by_layer = {entry["layer"]: entry for entry in plain.weight_methods["gptq"]["layers"]}
    for entry in record["layers"]:
        assert entry["damp"] > by_layer[entry["layer"]]["damp"]  # 10 % of mean(diag H) instead of 1 %


def test_report_json_holds_the_weight_methods_and_validates(tmp_path, transformer):
    from fp8conv.verification.convert_and_verify import convert_and_verify

    source, data = transformer
    done = convert_and_verify(
        source, "w4a16", data, output=tmp_path / "out.onnx", weight_rounding="gptq", bias_correction=True
    )
    document = json.loads(json.dumps(done.verification.to_json(), allow_nan=False))
    validate_report(document)
    methods = document["conversion"]["weight_methods"]
    assert methods["rounding"] == "gptq"
    assert methods["gptq"]["layers"]
    assert methods["bias_correction"]["layers"]
    assert document["conversion"]["config"]["weight_rounding"] == "gptq"
