"""DequantizeFp8Pass: the float model an FP8 network is without its quantizers."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from fp8_models import residual_cnn

from fp8conv import fp8, load
from fp8conv.passes.dequantize_fp8 import DequantizeFp8Pass


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
    model = load(residual_cnn()).model
    DequantizeFp8Pass()(model)
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    (logits,) = session.run(None, {"input": x})
    assert logits.shape == (1, 10)
    assert np.isfinite(logits).all()
    assert [output.name for output in model.graph.outputs] == ["logits"]
