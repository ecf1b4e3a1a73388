"""Placement for the target: integer Q/DQ only where an onnxruntime CPU integer kernel reads the tensor.

A transformer block built in code, every tensor the way a PTQ tool quantizes it (LayerNorm inputs too):
``input → FP8 → LayerNorm → ln1 → FP8 → MatMul(Wq) → q → FP8 → Softmax → probs → FP8 → MatMul(Wv) → o``,
``res = Add(o, FP8(ln1))`` (the residual reads the quantizer the MatMul reads) ``→ FP8 → LayerNorm → output``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fp8_models import _Graph
from helpers import write_model_and_data
from onnx import TensorProto, helper
from paths import CORPUS

from fp8conv import convert_file, load
from fp8conv.config import ActivationRange, ConversionConfig, Placement, Target
from fp8conv.passes.plan import DecisionCode, plan_conversion

D = 16


def transformer_block(seed: int = 0) -> onnx.ModelProto:
    """The block of the module docstring, ``input [4, 8, 16]`` → ``output [4, 8, 16]``."""
    rng = np.random.default_rng(seed)
    g = _Graph()

    def layer_norm(x: str, name: str) -> str:
        gamma = g.const(f"{name}.weight", (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32))
        beta = g.const(f"{name}.bias", (0.05 * rng.standard_normal(D)).astype(np.float32))
        return g.node("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-5)

    def weight(name: str) -> str:
        return g.fp8_weight(name, (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32), 1)

    ln1 = layer_norm(g.fp8_activation("input", 4.0), "ln1")
    ln1_fp8 = g.fp8_activation(ln1, 4.0)
    g.node("MatMul", [ln1_fp8, weight("wq")], "q")
    g.node("Softmax", [g.fp8_activation("q", 6.0)], "probs", axis=-1)
    g.node("MatMul", [g.fp8_activation("probs", 1.0), weight("wv")], "o")
    g.node("Add", ["o", ln1_fp8], "res")
    g.node("LayerNormalization", [g.fp8_activation("res", 6.0), "ln1.weight", "ln1.bias"], "output", axis=-1)
    return g.model(
        "transformer_block",
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, 8, D]),
        helper.make_tensor_value_info("output", TensorProto.FLOAT, [4, 8, D]),
    )


def _plan(target: str = "int8", placement: str = "target"):
    config = ConversionConfig(
        target=Target(target), activations_range=ActivationRange.FP8, placement=Placement(placement)
    )
    return plan_conversion(load(transformer_block()).model, config)


def _decisions(plan) -> dict[str, tuple[DecisionCode, tuple[str, ...]]]:
    return {d.point.tensor: (d.decision.code, d.readers) for d in plan.quantizer_decisions}


def test_for_the_target_only_the_matmul_inputs_get_integer_qdq():
    plan = _plan()
    assert set(plan.points) == {"ln1", "probs"}
    assert {p.tensor for p in plan.dropped_fp8} == {"input", "q", "res"}


def test_each_dropped_quantizer_says_which_float_ops_read_it():
    decisions = _decisions(_plan())
    assert decisions["input"] == (DecisionCode.FLOAT_CONSUMERS, ("LayerNormalization",))
    assert decisions["q"] == (DecisionCode.FLOAT_CONSUMERS, ("Softmax",))
    assert decisions["res"] == (DecisionCode.FLOAT_CONSUMERS, ("LayerNormalization",))
    assert "probs" not in decisions  # replaced by the integer Q/DQ of its MatMul: nothing to say
    message = next(d.decision.message for d in _plan().quantizer_decisions if d.point.tensor == "res")
    assert "LayerNormalization" in message
    assert "float" in message


def test_the_float_reader_of_a_shared_quantizer_reads_the_float_tensor():
    plan = _plan()
    assert _decisions(plan)["ln1"] == (DecisionCode.FLOAT_READERS_BYPASS, ("Add", "MatMul"))
    assert plan.float_reads == {"ln1"}


def test_source_placement_quantizes_where_the_fp8_model_did():
    plan = _plan(placement="source")
    assert set(plan.points) == {"input", "ln1", "q", "probs", "res"}
    assert not plan.dropped_fp8
    assert not plan.float_reads
    codes = _decisions(plan)
    assert {name for name, (code, _) in codes.items() if code is DecisionCode.SOURCE_PLACEMENT} == {"input", "q", "res"}


def test_a_weight_only_target_drops_every_activation_quantizer():
    plan = _plan("w4a16")
    assert not plan.points
    assert {code for code, _ in _decisions(plan).values()} == {DecisionCode.WEIGHT_ONLY_TARGET}
    assert len(plan.quantizer_decisions) == 5


def _dequantized_readers(model: onnx.ModelProto) -> dict[str, set[str]]:
    """For each QuantizeLinear input: the op types reading its DequantizeLinear outputs."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return {
        q.input[0]: {c.op_type for dq in consumers.get(q.output[0], []) for c in consumers.get(dq.output[0], [])}
        for q in model.graph.node
        if q.op_type == "QuantizeLinear"
    }


@pytest.mark.parametrize("placement", ["target", "source"])
def test_end_to_end_no_qdq_on_layernorm_inputs_and_every_matmul_integer(tmp_path, placement):
    source, data = write_model_and_data(tmp_path, transformer_block())
    result = convert_file(source, tmp_path / f"{placement}.onnx", data=data, placement=placement)
    written = onnx.load(str(tmp_path / f"{placement}.onnx"))
    readers = _dequantized_readers(written)
    on_layernorm = {tensor for tensor, ops in readers.items() if "LayerNormalization" in ops}
    assert on_layernorm == (set() if placement == "target" else {"input", "res"})
    assert result.audit.integer_count == 2
    assert result.audit.float_count == 0
    add = next(node for node in written.graph.node if node.output[0] == "res")
    if placement == "target":
        assert set(readers) == {"ln1", "probs"}
        assert "ln1" in add.input  # the residual reads the float LayerNorm output, not an INT8 copy
        dropped = [record for record in result.fp8_quantizers if record["dropped"]]
        assert {record["tensor"] for record in dropped} == {"input", "q", "res"}
        assert {record["code"] for record in dropped} == {"float_consumers"}
    else:
        assert "ln1" not in add.input


def test_the_summary_says_which_quantizers_were_dropped_and_why_in_one_line_per_reason(tmp_path):
    from fp8conv.converter.summary import conversion_summary

    source, data = write_model_and_data(tmp_path, transformer_block())
    text = conversion_summary(convert_file(source, tmp_path / "m.onnx", data=data))
    assert "placement    3 FP8 activation quantizers dropped" in text
    lines = text.splitlines()
    layernorm = [line for line in lines if "read only by LayerNormalization" in line]
    assert len(layernorm) == 1
    assert "2 tensors (input, res)" in layernorm[0]
    assert sum("read only by Softmax" in line for line in lines) == 1


def test_placement_target_is_not_recorded_so_default_files_keep_their_bytes(tmp_path):
    source, data = write_model_and_data(tmp_path, transformer_block())
    convert_file(source, tmp_path / "t.onnx", data=data)
    convert_file(source, tmp_path / "s.onnx", data=data, placement="source")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "t.onnx")).metadata_props}
    assert '"placement"' not in meta["fp8conv.config"]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "s.onnx")).metadata_props}
    assert '"placement": "source"' in meta["fp8conv.config"]


@pytest.mark.parametrize("name", ["transformer.modelopt_raw", "transformer.modelopt_onnx", "transformer.quark"])
def test_real_exports_with_quantized_layernorm_inputs_get_no_integer_qdq_there(tmp_path, name):

    corpus = CORPUS
    x = np.load(corpus / "transformer_calib.npz")["input"]
    result = convert_file(corpus / f"{name}.onnx", tmp_path / "m.onnx", data={"input": x})
    readers = _dequantized_readers(onnx.load(str(tmp_path / "m.onnx")))
    assert not any("LayerNormalization" in ops for ops in readers.values())
    assert any("LayerNormalization" in record["readers"] for record in result.fp8_quantizers if record["dropped"])
    converted = sum(layer.precision != "float" for layer in result.layers)
    assert converted > 0
    assert result.audit.integer_count == converted
