"""Normalization of models written by real exporters, produced inside the tests (nothing is committed).

* PyTorch's dynamo exporter on an FP8 fake-quant module → the ``cast`` dialect, with and without the
  exporter's optimization (``Clip`` bounds, or ``Min``/``Max`` by ``CastLike(Constant, ·)`` bounds).
* onnxruntime's ``quantize_static`` with FLOAT8E4M3FN activations and weights → ``qdq`` + ``dq-weight``,
  also on a TorchScript export of a CNN with shape-inferred ``value_info`` for every intermediate,
  converted to a file that onnx.checker accepts.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from fp8conv import fp8, load
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert_file
from fp8conv.passes.canonical import collect_quant_points, is_fake_quantize
from fp8conv.passes.normalize import normalize_fp8


class _Fp8Net(torch.nn.Module):
    """Conv → Relu → Linear with ``(x/s).clamp(-448, 448).to(float8_e4m3fn).to(float32) * s`` on both inputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.linear = torch.nn.Linear(4 * 6 * 6, 5)
        self.register_buffer("s_in", torch.tensor(0.0125))
        self.register_buffer("s_hidden", torch.tensor(0.03))

    @staticmethod
    def fake_quantize(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return (x / s).clamp(-448, 448).to(torch.float8_e4m3fn).to(torch.float32) * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(self.fake_quantize(x, self.s_in)))
        return self.linear(self.fake_quantize(y, self.s_hidden).flatten(1))


def _assert_cast_dialect_of_fp8_net(source: onnx.ModelProto, module: _Fp8Net) -> None:
    """The export normalizes to the two activation FakeQuantizes of ``_Fp8Net``, equal to torch's eager result."""
    result = normalize_fp8(ir.from_proto(source))
    points = collect_quant_points(result.model)
    assert result.dialects == ("cast",)
    assert [(p.role, p.spec.format.name, p.spec.granularity, p.spec.saturate) for p in points] == [
        ("activation", "e4m3fn", "per-tensor", True),
        ("activation", "e4m3fn", "per-tensor", True),
    ]
    assert [float(p.scale) for p in points] == [np.float32(0.0125), np.float32(0.03)]
    assert points[0].tensor == source.graph.input[0].name
    assert {"Cast", "CastLike", "Clip", "Max", "Min", "Div"}.isdisjoint(node.op_type for node in result.model.graph)
    assert not normalize_fp8(result.model).modified

    # The canonical FakeQuantize is what torch computed in eager mode.
    x = torch.randn(64, 3, 8, 8) * 10.0 ** torch.empty(64, 3, 8, 8).uniform_(-4, 1)
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    eager = _Fp8Net.fake_quantize(x, module.s_in).numpy()
    canonical = fp8.fake_quantize(x.numpy(), points[0].scale, points[0].spec.format)
    np.testing.assert_array_equal(canonical, eager)


def test_pytorch_dynamo_export_of_fp8_casts_is_the_cast_dialect():
    module = _Fp8Net().eval()
    program = torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), dynamo=True, verbose=False)
    source = program.model_proto
    exported_ops = [node.op_type for node in source.graph.node]
    assert exported_ops.count("Cast") == 4  # Div → Clip → Cast(to=17) → Cast(to=1) → Mul, twice
    assert exported_ops.count("Clip") == 2
    _assert_cast_dialect_of_fp8_net(source, module)


def test_pytorch_dynamo_export_without_optimization_is_the_cast_dialect(tmp_path):
    module = _Fp8Net().eval()
    program = torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), dynamo=True, optimize=False, verbose=False)
    source = program.model_proto
    exported_ops = [node.op_type for node in source.graph.node]
    # clamp is Min(Max(div, CastLike(Cast(Constant), div)), CastLike(…, div)): div is read by the CastLikes too.
    assert (exported_ops.count("CastLike"), exported_ops.count("Max"), exported_ops.count("Min")) == (4, 2, 2)
    assert "Clip" not in exported_ops
    _assert_cast_dialect_of_fp8_net(source, module)

    path = tmp_path / "dynamo.onnx"
    onnx.save(source, path)
    outcome = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert outcome.exit_code == 0, outcome.output
    listed = json.loads(outcome.output)["quant_points"]
    assert [(p["tensor"], p["role"], p["dialect"]) for p in listed] == [
        ("x", "activation", "cast"),
        ("relu", "activation", "cast"),
    ]
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(4).standard_normal((8, 3, 8, 8)).astype(np.float32))
    result = convert_file(path, tmp_path / "out.onnx", data=data)
    # The Conv reads the first FakeQuantize; the Gemm (float weight) reads the second one through a Reshape.
    assert (result.layers[0].op_type, result.layers[0].precision) == ("Conv", "int8")
    assert result.audit is not None
    assert (result.audit.records[0].op_type, result.audit.records[0].integer) == ("Conv", True)


class _Reader(CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._batches = iter([{"input": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _float_conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    initializers = [
        numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "W1"),
        numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "B1"),
        numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32), "W2"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "W2"], ["output"], name="conv2", pads=[1, 1, 1, 1]),
        ],
        "float_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _quantize_static_fp8(float_path, quantized_path) -> None:
    """onnxruntime ``quantize_static``, FLOAT8E4M3FN activations and weights, histogram calibration."""
    quantize_static(
        float_path,
        quantized_path,
        _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QFLOAT8E4M3FN,
        weight_type=QuantType.QFLOAT8E4M3FN,
        calibrate_method=CalibrationMethod.Distribution,
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_quantize_static_fp8_is_qdq_and_dq_weight(tmp_path):
    float_path, quantized_path = tmp_path / "float.onnx", tmp_path / "fp8.onnx"
    onnx.save(_float_conv_model(), float_path)
    _quantize_static_fp8(float_path, quantized_path)
    source = onnx.load(quantized_path)
    assert {o.domain: o.version for o in source.opset_import}[""] == 19  # quantize_static bumps 17 → 19

    result = normalize_fp8(ir.from_proto(source))
    points = collect_quant_points(result.model)
    assert result.dialects == ("dq-weight", "qdq")
    assert result.integer_qdq == ()
    assert sorted((p.role, p.dialect, p.stored) for p in points) == [
        ("activation", "qdq", False),
        ("activation", "qdq", False),
        ("activation", "qdq", False),  # input, the Conv output (Relu was folded away) and the model output
        ("weight", "dq-weight", True),
        ("weight", "dq-weight", True),
    ]
    assert {p.spec.format.name for p in points} == {"e4m3fn"}
    assert all(p.spec.granularity == "per-tensor" and p.scale_range[0] > 0 for p in points)
    canonical = ir.to_proto(result.model)
    assert [o.name for o in canonical.graph.output] == ["output"]
    last = canonical.graph.node[-1]
    assert (last.op_type, list(last.output)) == ("FakeQuantize", ["output"])
    assert not any(n.op_type == "QuantizeLinear" for n in canonical.graph.node)
    assert not normalize_fp8(result.model).modified

    # The input's FakeQuantize is what onnxruntime computes for the source Q→DQ.
    point = next(p for p in points if p.tensor == "input")
    sub = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(source)).extract_model(["input"], [point.output])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(2).standard_normal((1, 3, 8, 8)) * 5).astype(np.float32)
    np.testing.assert_array_equal(
        fp8.fake_quantize(x, point.scale, point.spec.format), session.run(None, {"input": x})[0]
    )
    assert sum(is_fake_quantize(node) for node in result.model.graph) == 3


class _FloatCnn(torch.nn.Module):
    """Conv → Relu → MaxPool → Conv → Relu, a residual Add, Flatten → Linear (Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        y = y + torch.relu(self.conv2(y))
        return self.fc(y.flatten(1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_quantize_static_fp8_of_a_shape_inferred_torch_cnn_converts_to_a_valid_model(tmp_path):
    exported, float_path, quantized_path = tmp_path / "export.onnx", tmp_path / "float.onnx", tmp_path / "fp8.onnx"
    torch.onnx.export(
        _FloatCnn().eval(),
        (torch.randn(1, 3, 8, 8),),
        str(exported),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
    )
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(exported)), float_path)
    _quantize_static_fp8(float_path, quantized_path)
    source = onnx.load(quantized_path)
    assert {"Conv", "MaxPool", "Add", "Gemm", "Cast"} <= {node.op_type for node in source.graph.node}  # Cast: biases
    assert source.graph.value_info
    data = tmp_path / "calib.npz"
    np.savez(data, input=np.random.default_rng(3).standard_normal((8, 3, 8, 8)).astype(np.float32))

    result = convert_file(quantized_path, tmp_path / "out.onnx", data=data)

    written = onnx.load(tmp_path / "out.onnx")
    onnx.checker.check_model(written, full_check=True)
    declared = [*written.graph.value_info, *written.graph.output]
    assert all(entry.type.tensor_type.elem_type for entry in declared)
    # No declared type contradicts what the ops compute (strict inference raises on a conflict).
    onnx.shape_inference.infer_shapes(written, check_type=True, strict_mode=True)
    assert written.graph.output[0].type == source.graph.output[0].type
    assert load(tmp_path / "out.onnx").source.opset >= 19
    assert result.audit is not None
    assert [(r.op_type, r.integer) for r in result.audit.records] == [("Conv", True), ("Conv", True), ("Gemm", True)]
