"""fp8conv convert: integer kernels, accuracy against the FP8 reference, targets, overrides, files, CLI."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from fp8_models import concat_cnn, mlp, residual_cnn
from golden_models import GOLDEN
from helpers import residual_cnn_files
from helpers import sqnr_against_reference as _sqnr_against_reference
from helpers import write_model_and_data as _write
from onnx import TensorProto, helper
from paths import REPO_ROOT

from fp8conv import fp8, load
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert, convert_file
from fp8conv.converter.reference_run import run_reference
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.verification.verify import verify


@pytest.mark.parametrize(("builder", "min_sqnr"), [(residual_cnn, 28.0), (mlp, 28.0)], ids=["cnn", "mlp"])
def test_int8_runs_every_layer_on_integer_kernels_and_tracks_the_fp8_model(tmp_path, builder, min_sqnr):
    source, data = _write(tmp_path, builder())
    result = convert_file(source, data=data)
    assert result.output_path == tmp_path / "model.int8.onnx"
    onnx.checker.check_model(onnx.load(str(result.output_path)), full_check=True)
    assert result.audit.float_count == 0, [r for r in result.audit.records if not r.integer]
    assert result.audit.integer_count == sum(layer.precision == "int8" for layer in result.layers)
    assert _sqnr_against_reference(source, result.output_path, data) > min_sqnr


def test_residual_cnn_fuses_into_the_expected_integer_ops(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    result = convert_file(source, data=data)
    kernels = {record.node: record.kernel for record in result.audit.records}
    assert kernels == {
        "conv1_node": "QLinearConv",
        "conv2_node": "QLinearConv",
        "conv3_node": "QLinearConv",
        "logits_node": "QGemm",
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_golden_dialect_converts(tmp_path, name):
    case = GOLDEN[name]
    model = case.build()
    if name == "mx_unsupported":
        source, data = _write(tmp_path, model)
        with pytest.raises(Fp8ConvError, match="MX"):
            convert_file(source, data=data)
        return
    source, data = _write(tmp_path, model)
    result = convert_file(source, data=data)
    converted = onnx.load(str(result.output_path))
    onnx.checker.check_model(converted, full_check=True)
    domains = {node.domain for node in converted.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    assert any(layer.precision == "int8" for layer in result.layers)


def test_source_tensor_names_are_kept(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    result = convert_file(source, data=data, audit=False)
    names = {output for node in onnx.load(str(result.output_path)).graph.node for output in node.output}
    # The pre-quantization tensors and the FP8 quantizers' output tensors both survive.
    assert {"relu1", "relu1_fp8", "pool", "pool_fp8", "flat", "flat_fp8", "conv1.weight_fp8"} <= names


def test_same_input_and_options_give_byte_identical_output_and_input_is_untouched(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    first = convert_file(source, tmp_path / "a.onnx", data=data, audit=False)
    second = convert_file(source, tmp_path / "b.onnx", data=data, audit=False)
    assert first.output_path.read_bytes() == second.output_path.read_bytes()
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "model.npz", "model.onnx"]


def test_the_audit_written_beside_the_file_is_the_audit_of_the_file(tmp_path):
    """With the audit, one serialization is written and audited at once: the same bytes as without the
    audit, the same records as auditing the written file, the usual file mode, no staging leftovers."""
    from fp8conv.runtime.audit import audit_integer_kernels

    source, data = _write(tmp_path, residual_cnn())
    audited = convert_file(source, tmp_path / "a.onnx", data=data, audit=True)
    plain = convert_file(source, tmp_path / "b.onnx", data=data, audit=False)
    assert audited.output_path.read_bytes() == plain.output_path.read_bytes()
    assert audited.output_size_bytes == plain.output_size_bytes == audited.output_path.stat().st_size
    assert audited.audit is not None
    assert audited.audit.records == audit_integer_kernels(audited.output_path).records
    umask = os.umask(0)
    os.umask(umask)
    for result in (audited, plain):  # as readable as a file written directly (a mkstemp file would be 0600)
        assert result.output_path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "model.npz", "model.onnx"]


def test_calibration_workers_do_not_change_the_output(tmp_path):
    """Batches counted on 1 or 3 threads, in any order, merge into the same statistics: the same file."""
    source, data = _write(tmp_path, residual_cnn(batch="N"))
    outputs = [
        convert_file(source, tmp_path / f"w{workers}.onnx", data=data, audit=False, calibration_workers=workers)
        for workers in (1, 3)
    ]
    assert outputs[0].output_path.read_bytes() == outputs[1].output_path.read_bytes()
    assert [a.to_json() for a in outputs[0].activations] == [a.to_json() for a in outputs[1].activations]


def test_calibration_batch_size_does_not_change_the_statistics_or_the_file(tmp_path):
    source, data = _write(tmp_path, residual_cnn(batch="N"))
    results = [
        convert_file(source, tmp_path / f"b{size}.onnx", data=data, audit=False, calibration_batch_size=size)
        for size in (1, 5, 32)
    ]
    records = [[a.to_json() for a in result.activations] for result in results]
    assert records[0] == records[1] == records[2]
    files = [result.output_path.read_bytes() for result in results]
    assert files[0] == files[1] == files[2]


def _captured(model_proto) -> tuple[dict, set[str]]:
    """The plan's points and the tensors calibration captures, for the default config."""
    from fp8conv.config import ConversionConfig
    from fp8conv.converter.collection import StatisticsCollector
    from fp8conv.passes.plan import plan_conversion

    model = load(model_proto).model
    config = ConversionConfig()
    plan = plan_conversion(model, config)
    return plan.points, set(StatisticsCollector(model, plan, config)._captures)


def test_a_tensor_read_only_by_a_maxpool_is_counted_as_the_maxpool_output():
    """relu2 feeds nothing but the MaxPool, so only the values MaxPool keeps reach an integer op: those are
    counted, as the FP8 grid values of the quantizer after the pool (and never twice)."""
    points, captured = _captured(residual_cnn())
    assert points["pool"].copied
    assert points["pool"].group == points["relu2"].group
    assert points["pool"].counted
    assert not points["relu2"].counted
    assert "pool_fp8" in captured
    assert not {"relu2", "pool"} & captured
    # GlobalAveragePool → Flatten: the same values, counted once, on the FP8 grid of the quantizer after Flatten
    assert points["flat"].counted
    assert not points["gap"].counted
    assert "flat_fp8" in captured
    assert "gap" not in captured


def _concat_group_statistics(tmp_path: Path, *, tap: bool = False) -> str:
    """Convert ``concat_cnn``; check its Concat group (all integer, close to the FP8 reference); its statistic."""
    source, data = _write(tmp_path, concat_cnn(batch="N", tap=tap))
    result = convert_file(source, tmp_path / "cat.onnx", data=data)
    (group,) = [a for a in result.activations if "relu_a" in a.tensors]
    assert set(group.tensors) == {"relu_a", "relu_b", "cat"}
    assert result.audit.float_count == 0
    assert _sqnr_against_reference(source, result.output_path, data) > 25
    return group.statistics


def test_a_concat_of_branches_read_only_by_it_counts_its_output_on_one_fp8_grid(tmp_path):
    """Branches quantized with different FP8 scales feed only the Concat, whose own FP8 quantizer puts every
    value on one grid: the Concat output is counted, as codes."""
    points, captured = _captured(concat_cnn())
    assert points["cat"].counted
    assert not points["relu_a"].counted
    assert not points["relu_b"].counted
    assert "cat_fp8" in captured
    assert not {"relu_a_fp8", "relu_b_fp8", "relu_a", "relu_b"} & captured
    assert _concat_group_statistics(tmp_path) == "CodeHistogram"


def test_a_group_of_several_fp8_scales_gets_a_float_histogram(tmp_path):
    """When a Concat input is also read elsewhere, the inputs are counted where they are (on two FP8 grids)
    and the Concat output, a copy, is not: the group is histogrammed as floats (counting codes would mix
    scales)."""
    points, captured = _captured(concat_cnn(tap=True))
    assert not points["cat"].counted
    assert points["relu_a"].counted
    assert points["relu_b"].counted
    assert {"relu_a", "relu_b"} <= captured
    assert "cat_fp8" not in captured
    assert _concat_group_statistics(tmp_path, tap=True) == "StreamingHistogram"


def test_a_failing_reference_run_on_a_worker_stops_the_conversion_with_its_error(tmp_path, monkeypatch):
    """An onnxruntime failure inside a calibration worker reaches the caller as the one-line Fp8ConvError,
    and nothing is written."""
    source, data = _write(tmp_path, residual_cnn(batch="N"))
    calls = []
    original = ReferenceRunner.run

    def failing_run(self, feeds):
        calls.append(len(calls))
        if len(calls) == 3:
            raise Fp8ConvError("onnxruntime run failed: simulated")
        return original(self, feeds)

    monkeypatch.setattr(ReferenceRunner, "run", failing_run)
    target = tmp_path / "out.onnx"
    with pytest.raises(Fp8ConvError, match="simulated"):
        convert_file(source, target, data=data, calibration_batch_size=4, calibration_workers=2)
    assert not target.exists()
    assert len(calls) <= 5  # of 8 batches: no more are submitted once one has failed


def test_stage_seconds_add_up_to_the_conversion_time(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    result = convert_file(source, data=data)
    stages = result.stage_seconds
    expected = {"load", "plan", "reference session", "calibration", "weights", "ranges", "emission", "save", "audit"}
    assert expected <= set(stages)
    conversion = sum(seconds for stage, seconds in stages.items() if stage not in ("save", "audit"))
    assert conversion == pytest.approx(result.seconds)
    assert result.to_json()["stage_seconds"] == stages


def test_metadata_records_version_target_and_methods(tmp_path):
    source, data = _write(tmp_path, mlp())
    result = convert_file(source, data=data, to="w8a16", audit=False, weights_range="max")
    metadata = {entry.key: entry.value for entry in onnx.load(str(result.output_path)).metadata_props}
    assert metadata["fp8conv.target"] == "w8a16"
    assert metadata["fp8conv.weights_range"] == "max"
    assert metadata["fp8conv.activations_range"] == "mse"
    assert metadata["fp8conv.version"]


def test_weights_are_7_bit_by_default_and_full_range_on_request(tmp_path):
    source, data = _write(tmp_path, residual_cnn())

    def weight_extremes(result) -> int:
        model = result.model
        quantized = [
            v.const_value.numpy() for name, v in model.graph.initializers.items() if "weight_quantized" in name
        ]
        return max(int(np.abs(q).max()) for q in quantized)

    assert weight_extremes(convert(source, data=data)) <= 63
    assert weight_extremes(convert(source, data=data, full_range_weights=True)) > 63


def test_int8_bias_is_int32_with_input_times_weight_scale(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    model = convert(source, data=data).model
    conv = next(node for node in model.graph if node.name == "conv1_node")
    x, weight, bias = (value.producer() for value in conv.inputs)
    assert bias.inputs[0].const_value.dtype.name == "INT32"
    input_scale = x.inputs[1].const_value.numpy()
    weight_scale = weight.inputs[1].const_value.numpy()
    np.testing.assert_array_equal(bias.inputs[1].const_value.numpy(), (input_scale * weight_scale).astype(np.float32))


def test_w8a16_uses_int16_activations_at_opset_21(tmp_path):
    source, data = _write(tmp_path, mlp())
    model = convert(source, data=data, to="w8a16").model
    assert model.opset_imports[""] >= 21
    zero_points = [
        v for name, v in model.graph.initializers.items() if name.endswith("_zero_point") and "weight" not in name
    ]
    assert zero_points
    assert {v.const_value.dtype.name for v in zero_points} == {"INT16"}


def test_int4_weights_are_int4_blocked_for_matmul(tmp_path):
    source, data = _write(tmp_path, mlp())
    result = convert(source, data=data, to="int4")
    weights = [v for name, v in result.model.graph.initializers.items() if name.endswith("weight_quantized")]
    assert {v.const_value.dtype.name for v in weights} == {"INT4"}
    assert {layer.weight_granularity for layer in result.layers} == {"blocked"}


def test_w4a16_runs_matmuls_as_matmulnbits(tmp_path):
    source, data = _write(tmp_path, mlp())
    result = convert_file(source, data=data, to="w4a16", int4_block_size=32)
    kernels = {record.node: record for record in result.audit.records}
    # fc2 (no bias, then a residual Add) gets an exact zero bias that steers onnxruntime to MatMulNBits.
    assert kernels["fc2_node"].kernel == "MatMulNBits"
    # fc1 (bias Add, then Relu): onnxruntime fuses MatMul+Add+Relu into a float FusedGemm before its
    # MatMulNBits fusion runs; the audit must say so rather than claim an integer kernel.
    assert kernels["fc1_node"].integer == (kernels["fc1_node"].kernel == "MatMulNBits")
    assert kernels["fc1_node"].integer or kernels["fc1_node"].reason


def test_keep_float_and_int16_patterns(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    result = convert(source, data=data, keep_float=[r"^conv2"], int16=[r"^logits"])
    precision = {layer.node: (layer.precision, layer.activation_bits) for layer in result.layers}
    assert precision["conv2_node"] == ("float", None)
    assert precision["logits_node"] == ("int8", 16)
    assert precision["conv1_node"] == ("int8", 8)


def test_data_free_conversion_warns_and_uses_fp8_ranges(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    result = convert_file(source, audit=False)
    assert any("no calibration data" in warning for warning in result.warnings)
    assert {record.method for record in result.activations} == {"fp8"}
    assert result.calibration_samples == 0
    assert _sqnr_against_reference(source, result.output_path, data) > 15.0


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_every_activation_range_method_gives_a_working_model(tmp_path, method):
    source, data = _write(tmp_path, residual_cnn())
    result = convert_file(source, data=data, activations_range=method, audit=False)
    assert {record.method for record in result.activations} == {method}
    assert _sqnr_against_reference(source, result.output_path, data) > 20.0


def test_external_data_output_loads_in_onnxruntime(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    result = convert_file(source, tmp_path / "out" / "model.onnx", data=data, external_data=True)
    assert (tmp_path / "out" / "model.onnx.data").is_file()
    assert result.audit.float_count == 0


def test_cli_converts_with_defaults_and_prints_a_summary(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    outcome = CliRunner().invoke(cli, [str(source), "--to", "int8", "--data", str(data)])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "model.int8.onnx").is_file()
    assert "4/4 converted" in outcome.output
    assert "4/4 Conv/MatMul/Gemm on integer kernels" in outcome.output


@pytest.mark.parametrize("suffix", ["yaml", "toml"])
def test_cli_reads_a_config_file(tmp_path, suffix):
    source, data = _write(tmp_path, residual_cnn())
    config = tmp_path / f"fp8conv.{suffix}"
    if suffix == "yaml":
        config.write_text("target: w8a16\nweights_range: max\nkeep_float:\n  - '^conv3'\n")
    else:
        config.write_text('target = "w8a16"\nweights_range = "max"\nkeep_float = ["^conv3"]\n')
    outcome = CliRunner().invoke(cli, [str(source), "--config", str(config), "--data", str(data), "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "model.w8a16.onnx").is_file()
    assert '"weights_range": "max"' in outcome.output
    assert '"precision": "float"' in outcome.output


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda tmp: ["--data", str(tmp / "missing.npz")], "no such data file"),
        (lambda tmp: ["--config", str(tmp / "bad.yaml")], "unknown option"),
        (lambda tmp: ["--keep-float", "("], "not a valid regex"),
    ],
    ids=["missing-data", "bad-config", "bad-regex"],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, make_bad, message):
    source, _ = _write(tmp_path, residual_cnn())
    (tmp_path / "bad.yaml").write_text("targett: int8\n")
    outcome = CliRunner().invoke(cli, [str(source), *make_bad(tmp_path)])
    assert outcome.exit_code == 2
    assert message in outcome.output
    assert outcome.output.count("\n") == 1
    assert not (tmp_path / "model.int8.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_data_missing_an_input_is_a_clear_error(tmp_path):
    source, _ = _write(tmp_path, residual_cnn())
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((4, 3, 12, 12), np.float32))
    with pytest.raises(Fp8ConvError, match="no data for model input"):
        convert_file(source, data=wrong)


def test_output_over_the_input_is_refused(tmp_path):
    source, data = _write(tmp_path, residual_cnn())
    with pytest.raises(Fp8ConvError, match="overwrite the input"):
        convert_file(source, source, data=data)


def test_int8_sqnr_of_uniform_data_matches_the_textbook_value():
    from fp8conv.converter.calibration import StreamingHistogram
    from fp8conv.converter.pipeline import int8_sqnr_db

    stats = StreamingHistogram().update(np.random.default_rng(0).uniform(0.0, 1.0, 200_000).astype(np.float32))
    # Uniform on [0, 1] with 255 steps: E[x²] / (Δ²/12) = (1/3) / ((1/255)² / 12) → 54.2 dB.
    assert int8_sqnr_db(stats, "uint8") == pytest.approx(10 * np.log10(4 * 255**2), abs=1.0)


def test_auto_int16_promotes_activations_below_the_sqnr_threshold(tmp_path):
    source, data = _write(tmp_path, mlp())
    none = convert_file(source, tmp_path / "none.onnx", data=data, auto_int16_below_db=0.0, audit=False)
    every = convert_file(source, tmp_path / "all.onnx", data=data, auto_int16_below_db=200.0, audit=False)
    assert {layer.node: layer.activation_bits for layer in none.layers} == {"fc1_node": 8, "fc2_node": 8}
    assert {layer.node: layer.activation_bits for layer in every.layers} == {"fc1_node": 16, "fc2_node": 16}
    assert {record.dtype for record in none.activations} == {"uint8"}
    assert {record.dtype for record in every.activations} == {"int16"}
    assert all("(auto)" in layer.reason for layer in every.layers)
    assert _sqnr_against_reference(source, every.output_path, data) > _sqnr_against_reference(
        source, none.output_path, data
    )


@pytest.mark.parametrize("to", ["int8", "w8a16"])
def test_an_fp8_quantizer_output_that_is_a_graph_output_keeps_its_declared_type_and_shape(tmp_path, to):
    model = residual_cnn()
    # The input's FP8 quantizer output is read by conv1 and is also a graph output.
    model.graph.output.append(helper.make_tensor_value_info("input_fp8", TensorProto.FLOAT, [1, 3, 12, 12]))
    source, data = _write(tmp_path, model)
    result = convert_file(source, tmp_path / "out.onnx", to=to, data=data)
    written = onnx.load(str(result.output_path))
    onnx.checker.check_model(written, full_check=True)
    assert [(o.name, o.type) for o in written.graph.output] == [(o.name, o.type) for o in model.graph.output]
    onnx.shape_inference.infer_shapes(written, check_type=True, strict_mode=True)


def _brevitas_style(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every initializer also listed as a graph input."""
    for tensor in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return model


def test_initializer_inputs_convert_to_plain_initializers_and_are_reported_once(tmp_path, caplog):
    source, data = _write(tmp_path, _brevitas_style(residual_cnn()))
    with caplog.at_level(logging.WARNING, logger="fp8conv"):
        outcome = CliRunner().invoke(cli, [str(source), "--data", str(data), "-o", str(tmp_path / "out.onnx")])
    assert outcome.exit_code == 0, outcome.output
    assert "4/4 Conv/MatMul/Gemm on integer kernels" in outcome.output
    said = [r.getMessage() for r in caplog.records if "also listed as graph inputs" in r.getMessage()]
    assert len(said) == 1  # convert and verification both load the source
    written = onnx.load(str(tmp_path / "out.onnx"))
    assert [value.name for value in written.graph.input] == ["input"]
    assert "conv1.weight" not in {tensor.name for tensor in written.graph.initializer}  # the int8 weight replaced it


def test_data_for_an_initializer_input_is_refused_with_exit_2_and_nothing_written(tmp_path):
    source, good = _write(tmp_path, _brevitas_style(residual_cnn()))
    data = tmp_path / "override.npz"
    x = np.random.default_rng(0).standard_normal((4, 3, 12, 12)).astype(np.float32)
    np.savez(data, input=x, **{"conv1.bias": np.zeros((4, 8), np.float32)})
    outcome = CliRunner().invoke(cli, [str(source), "--data", str(data)])
    assert outcome.exit_code == 2
    assert "array 'conv1.bias' would override the initializer 'conv1.bias'" in outcome.output
    assert not (tmp_path / "model.int8.onnx").exists()
    with pytest.raises(Fp8ConvError, match=r"would override the initializer 'conv1\.bias'"):
        run_reference(source, data, tmp_path / "outputs.npz")
    converted = convert_file(source, tmp_path / "out.onnx", data=good, audit=False).output_path
    with pytest.raises(Fp8ConvError, match=r"would override the initializer 'conv1\.bias'"):
        verify(source, converted, data)


def test_fp8_weight_in_a_constant_node_converts_like_an_initializer(tmp_path):
    """``DequantizeLinear(Constant(FLOAT8E4M3FN), Constant(scale))`` → Conv: the stored weight is found."""
    rng = np.random.default_rng(3)
    codes = fp8.encode(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "e4m3fn")
    weight = helper.make_tensor("w", TensorProto.FLOAT8E4M3FN, [2, 4, 1, 1], codes.tobytes(), raw=True)
    nodes = [
        helper.make_node("Constant", [], ["w_fp8"], value=weight),
        helper.make_node("Constant", [], ["w_scale"], value=helper.make_tensor("s", TensorProto.FLOAT, [], [0.05])),
        helper.make_node("DequantizeLinear", ["w_fp8", "w_scale"], ["w_dequantized"]),
        helper.make_node("Conv", ["input", "w_dequantized"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_weight",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 6, 6])],
    )
    source, data = _write(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    result = convert_file(source, tmp_path / "out.onnx", data=data)
    written = onnx.load(tmp_path / "out.onnx")
    stored = {t.name: t.data_type for t in written.graph.initializer}
    assert TensorProto.INT8 in stored.values()
    assert not {TensorProto.FLOAT8E4M3FN} & set(stored.values())
    assert [layer.precision for layer in result.layers] == ["int8"]


_SEQ = REPO_ROOT / "models" / "seq_transformer"


@pytest.mark.parametrize(
    ("options", "widened"),
    [
        # The key projection alone selected: query and value read the same LayerNorm output.
        ({"int16": ("layers.0.attention.key",)}, {"node_matmul_1", "node_matmul_3"}),
        # auto-INT16 promotes K's transposed output; Q·Kᵀ's other input must follow.
        ({"auto_int16_below_db": 45.0}, {"node_matmul_4"}),
    ],
)
def test_a_tensor_read_by_8_and_16_bit_layers_gets_one_width(options: dict, widened: set[str]) -> None:
    """Found by the emission refactor: mixed widths on one tensor were an internal error (exit 3)."""
    result = convert(_SEQ / "model.onnx", "int8", _SEQ / "calib.npz", **options)
    by_node = {layer.node: layer for layer in result.layers}
    written = {node.name: node for node in result.model.graph}
    sixteen = {ir.DataType.INT16, ir.DataType.UINT16}
    for name in widened:
        assert by_node[name].activation_bits == 16, by_node[name]
        activations = [v for v in written[name].inputs if v is not None and not v.producer().inputs[0].const_value]
        assert activations, name
        for value in activations:  # DequantizeLinear(Q(x)) of 16 bits on every activation input
            dequantize = value.producer()
            assert dequantize.op_type == "DequantizeLinear", (name, dequantize.op_type)
            zero_point = dequantize.inputs[2]
            assert zero_point is not None, (name, value.name)
            assert zero_point.dtype in sixteen, (name, value.name)
    assert any(layer.activation_bits == 8 for layer in result.layers)


def test_a_kept_float_layer_that_onnxruntime_quantizes_itself_is_a_warning(tmp_path: Path) -> None:
    """``--keep-float`` on a Conv between quantized neighbours: onnxruntime's QDQ weight/bias quantization
    turns its float weight into int8 and runs QLinearConv. The audit and summary say so, not "kept float"."""
    from fp8conv.converter.summary import conversion_summary

    sample = REPO_ROOT / "models" / "digits_mobilenet"
    result = convert_file(
        sample / "model.onnx", tmp_path / "out.onnx", to="int8", data=sample / "calib.npz", keep_float=["conv2d_1$"]
    )
    layer = next(layer for layer in result.layers if layer.node == "node_conv2d_1")
    assert layer.precision == "float"
    (record,) = [r for r in result.audit.records if r.node == "node_conv2d_1"]
    assert record.integer
    assert "quantized this layer's float weight itself" in (record.reason or "")
    summary = conversion_summary(result)
    assert "warning: layer node_conv2d_1 (Conv as QLinearConv) planned float" in summary


def test_convert_file_refuses_an_output_it_cannot_write_before_converting(tmp_path, monkeypatch):
    from fp8conv.converter import pipeline

    source, data = residual_cnn_files(tmp_path)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(pipeline, "convert", lambda *args, **kwargs: pytest.fail("converted first"))
    with pytest.raises(Fp8ConvError, match=r"cannot write the model: .*a_file is not a directory"):
        pipeline.convert_file(source, tmp_path / "a_file" / "out.onnx", data=data)
