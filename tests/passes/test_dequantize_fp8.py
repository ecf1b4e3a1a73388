"""DequantizeFp8Pass: the float model an FP8 network is without its quantizers."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from fp8_models import residual_cnn
from onnx import TensorProto, helper

from fp8conv import fp8, load
from fp8conv.passes.dequantize_fp8 import DequantizeFp8Pass
from fp8conv.passes.reference_runner import ReferenceRunner


def test_weights_are_exact_fp8_values_and_no_quantizer_is_left():
    source = residual_cnn()
    model = load(source).model
    result = DequantizeFp8Pass()(model)
    assert result.modified
    ops = {node.op_type for node in model.graph}
    assert not ops & {"QuantizeLinear", "DequantizeLinear", "FakeQuantize"}
    weight = model.graph.initializers["conv1.weight_fp8"].const_value.numpy()
    codes = next(t for t in source.graph.initializer if t.name == "conv1.weight")
    scale = next(t for t in source.graph.initializer if t.name == "conv1.weight_scale")
    expected = fp8.decode(np.frombuffer(codes.raw_data, np.uint8).reshape(codes.dims), "e4m3fn") * np.frombuffer(
        scale.raw_data, np.float32
    ).reshape(-1, 1, 1, 1)
    np.testing.assert_array_equal(weight, expected.astype(np.float32))


def test_dequantized_model_runs_and_stays_close_to_the_fp8_model():
    canonical = load(residual_cnn()).model
    reference = ReferenceRunner(canonical)
    model = ir.from_proto(ir.to_proto(canonical))
    DequantizeFp8Pass()(model)
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    (logits,) = session.run(None, {"input": x})
    assert logits.shape == (1, 10)
    expected = reference.run({"input": x})["logits"]
    sqnr = 10 * np.log10(np.sum(expected**2) / np.sum((expected - logits) ** 2))
    assert 20.0 < sqnr < 200.0  # only the FP8 activation rounding is gone
    assert [output.name for output in model.graph.outputs] == ["logits"]


def test_a_quantized_graph_output_keeps_its_name_type_and_shape():
    model = residual_cnn()
    model.graph.output.append(helper.make_tensor_value_info("input_fp8", TensorProto.FLOAT, [1, 3, 12, 12]))
    canonical = load(model).model
    DequantizeFp8Pass()(canonical)
    proto = ir.to_proto(canonical)
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.name, o.type) for o in proto.graph.output] == [(o.name, o.type) for o in model.graph.output]
