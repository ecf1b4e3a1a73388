"""Every target on weights behind data movement, as ModelOpt's raw ``trt::TRT_FP8*`` transformer export has them.

The model (:func:`fp8_models.modelopt_transformer`) has weights as initializers and ``Constant`` nodes,
``Transpose`` (and a ``Reshape``) between the weight's FP8 dequantizer and the MatMul, ``Gemm(transB=1)``
and attention MatMuls whose inputs are FP8-quantized behind a ``Transpose``. Each test counts what
onnxruntime runs (the kernel audit of the written file) and what the file holds, and bounds the accuracy
against the exact FP8 reference (32 random samples):

* ``int8`` / ``w8a16`` (8-bit or 16-bit activations, 7-bit weights): SQNR >= 25 dB (measured 28.2 / 28.6);
* ``int4`` / ``w4a16`` (INT4 weights in blocks of 32 along K): SQNR >= 17 dB (measured 20.3 / 20.3).

Both bounds are a cosine similarity above 0.99 (SQNR >= 17 dB gives cosine >= 0.99) with about 3 dB of
margin; a weight left at FP8 precision (not requantized) or a layer run on the wrong weight would pass
the accuracy bound, which is why each test also checks the file and the kernels.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fp8_models import linear, modelopt_transformer
from helpers import sqnr_against_reference, write_model_and_data
from onnx import TensorProto, helper, numpy_helper

from fp8conv.converter.pipeline import ConversionResult, convert, convert_file
from fp8conv.converter.summary import conversion_summary
from fp8conv.passes.data_movement import moved_axis, trace_movement

WEIGHT_LAYERS = frozenset({"q_matmul_node", "k_matmul_node", "v_matmul_node", "o_matmul_node", "fc1_node", "fc2_node"})
ATTENTION = frozenset({"scores_node", "context_heads_node"})
EIGHT_BIT_KERNELS = frozenset({"QLinearMatMul", "MatMulIntegerToFloat", "QGemm"})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_model_and_data(tmp_path_factory.mktemp("modelopt"), modelopt_transformer())


def _convert(source, tmp_path, to: str) -> ConversionResult:
    model, data = source
    result = convert_file(model, tmp_path / f"model.{to}.onnx", to=to, data=data)
    onnx.checker.check_model(onnx.load(str(result.output_path)), full_check=True)
    return result


def _stored_weights(path) -> dict[str, tuple[int, dict[str, int]]]:
    """Per Conv/MatMul/Gemm of the written file whose weight is ``DequantizeLinear(initializer)``: the
    initializer's ONNX data type and the DequantizeLinear's integer attributes."""
    model = onnx.load(str(path))
    types = {init.name: init.data_type for init in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    stored = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        dq = producers.get(node.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in types:
            stored[node.name] = (types[dq.input[0]], {a.name: a.i for a in dq.attribute})
    return stored


def _kernels(result: ConversionResult) -> dict[str, str]:
    kernels = {record.node: record.kernel for record in result.audit.records}
    assert set(kernels) == WEIGHT_LAYERS | ATTENTION
    return kernels


def test_int8_runs_every_matmul_and_gemm_on_integer_kernels(source, tmp_path):
    result = _convert(source, tmp_path, "int8")
    kernels = _kernels(result)
    assert {name: kernels[name] for name in kernels if kernels[name] not in EIGHT_BIT_KERNELS} == {}
    stored = _stored_weights(result.output_path)
    assert {name: stored[name][0] for name in WEIGHT_LAYERS} == dict.fromkeys(WEIGHT_LAYERS, TensorProto.INT8)
    assert sqnr_against_reference(source[0], result.output_path, source[1]) >= 25.0


def test_w8a16_writes_int8_weights_for_every_weight_layer(source, tmp_path):
    result = _convert(source, tmp_path, "w8a16")
    stored = _stored_weights(result.output_path)
    assert {name: stored.get(name, (None,))[0] for name in WEIGHT_LAYERS} == dict.fromkeys(
        WEIGHT_LAYERS, TensorProto.INT8
    )
    assert sqnr_against_reference(source[0], result.output_path, source[1]) >= 25.0


def test_w4a16_runs_every_weight_matmul_and_gemm_as_matmulnbits(source, tmp_path):
    result = _convert(source, tmp_path, "w4a16")
    kernels = _kernels(result)
    assert {name: kernels[name] for name in WEIGHT_LAYERS} == dict.fromkeys(WEIGHT_LAYERS, "MatMulNBits")
    stored = _stored_weights(result.output_path)
    for name in WEIGHT_LAYERS:
        dtype, attributes = stored[name]
        block = attributes["block_size"]
        assert (dtype, attributes.get("axis", 1)) == (TensorProto.INT4, 0), name
        assert block >= 16, name
        assert block & (block - 1) == 0, name
    assert sqnr_against_reference(source[0], result.output_path, source[1]) >= 17.0


def test_int4_writes_int4_weights_for_every_layer_int8_converts(source, tmp_path):
    int8_weights = set(_stored_weights(_convert(source, tmp_path, "int8").output_path))
    assert int8_weights == WEIGHT_LAYERS
    result = _convert(source, tmp_path, "int4")
    stored = _stored_weights(result.output_path)
    assert {name: stored.get(name, (None,))[0] for name in int8_weights} == dict.fromkeys(
        int8_weights, TensorProto.INT4
    )
    kernels = _kernels(result)
    assert {name: kernels[name] for name in ATTENTION if kernels[name] not in EIGHT_BIT_KERNELS} == {}
    assert sqnr_against_reference(source[0], result.output_path, source[1]) >= 17.0
    layers_line = next(line for line in conversion_summary(result).splitlines() if line.startswith("layers"))
    assert layers_line.endswith("8/8 converted (int4, int8)")  # 6 INT4 weight layers, 2 attention MatMuls


@pytest.mark.parametrize("to", ["int8", "int4", "w4a16"])
def test_a_weight_behind_transpose_converts_to_the_weight_stored_in_the_layers_layout(tmp_path, to):
    # The same FP8 weight, stored [K, N] (scale axis 1) or as Wᵀ [N, K] (scale axis 0) behind a Transpose.
    direct, transposed = (convert(linear(transposed=t), to=to).model for t in (False, True))
    assert [node.op_type for node in transposed.graph] == [node.op_type for node in direct.graph]

    def weight(model):
        dequantize = next(node for node in model.graph if node.op_type == "MatMul").inputs[1].producer()
        return [value.const_value.numpy() for value in dequantize.inputs], dict(dequantize.attributes.items())

    (direct_arrays, direct_attributes), (moved_arrays, moved_attributes) = weight(direct), weight(transposed)
    assert str(moved_attributes) == str(direct_attributes)
    for moved, expected in zip(moved_arrays, direct_arrays, strict=True):
        np.testing.assert_array_equal(moved, expected)


def _movement_model() -> onnx.ModelProto:
    """``w [2,3,4]`` → Reshape [0,-1] → Transpose → Unsqueeze 0 → Flatten 2 → Squeeze → ``output``."""
    nodes = [
        helper.make_node("Reshape", ["w", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
        helper.make_node("Unsqueeze", ["t", "axes"], ["u"]),
        helper.make_node("Flatten", ["u"], ["f"], axis=2),
        helper.make_node("Squeeze", ["f"], ["output"]),
    ]
    initializers = [
        numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(2, 3, 4), "w"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes, "movement", [], [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], initializers
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_data_movement_replays_as_onnxruntime_computes_it_and_tracks_a_channel_axis():
    import onnx_ir as ir

    proto = _movement_model()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, {}
    )[0]
    model = ir.from_proto(proto)
    movement = trace_movement(model.graph.outputs[0], constant=True)
    assert [node.op_type for node in movement.ops] == ["Reshape", "Transpose", "Unsqueeze", "Flatten", "Squeeze"]
    w = movement.source.const_value.numpy()
    np.testing.assert_array_equal(movement.apply(w), expected)
    # Axis 0 of [2,3,4] (values 0..11 | 12..23): Reshape [2,12] keeps it on 0, Transpose moves it to 1,
    # Unsqueeze to 2, Flatten(axis=2) [1·12, 2] back to 1, Squeeze keeps it on 1.
    axis = moved_axis(movement, 0, w.shape)
    assert axis == 1
    channels = movement.apply(w) // 12  # the channel each element came from
    for channel in range(2):
        assert (np.take(channels, channel, axis=axis) == channel).all()
    # Axis 1 (size 3) is merged with axis 2 by the Reshape: no longer one axis.
    assert moved_axis(movement, 1, w.shape) is None
