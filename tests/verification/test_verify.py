"""Verification: metrics on known inputs, gates, layer matching by name, FP8 vs INT8, broken candidates.

Models are built in code: the golden Conv → Relu → Conv network (``tests/golden_models.py``) and a small
FP8 QDQ classifier (:func:`build_classifier`), converted with ``convert_file`` on random calibration data,
and an INT8 QDQ MatMul built to hit onnxruntime's u8×s8 saturation hazard (:func:`build_saturating_matmul`).
"""

from __future__ import annotations

import math
import platform
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from classifier_models import build_classifier, build_saturating_matmul, classifier_data, scale_initializer
from golden_models import GOLDEN

import fp8conv
from fp8conv.converter.pipeline import convert_file
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.verification.gates import Gates, evaluate_gates
from fp8conv.verification.matching import matched_tensors
from fp8conv.verification.metrics import ErrorStats, LabelAccuracy, TopKAgreement, is_classifier, wilson_lower_bound
from fp8conv.verification.result import OutputReport


@pytest.fixture(scope="module")
def conv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The golden FP8 conv net, calibration data, its INT8 conversion and a weights-×1.5 variant."""
    root = tmp_path_factory.mktemp("conv")
    onnx.save(GOLDEN["qdq_per_tensor"].build(), root / "conv.onnx")
    np.savez(root / "data.npz", input=np.random.default_rng(0).standard_normal((24, 3, 8, 8)).astype(np.float32))
    result = convert_file(root / "conv.onnx", root / "conv.int8.onnx", data=root / "data.npz")
    broken = scale_initializer(root / "conv.int8.onnx", root / "broken.onnx", "W1_scale_1", 1.5)
    return {"root": root, "fp8": root / "conv.onnx", "int8": root / "conv.int8.onnx", "data": root / "data.npz",
            "conversion": result, "broken": broken}  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The FP8 classifier, labelled data, and its INT8 conversion."""
    root = tmp_path_factory.mktemp("classifier")
    onnx.save(build_classifier(), root / "mlp.onnx")
    data = classifier_data(root / "data.npz", root / "mlp.onnx")
    result = convert_file(root / "mlp.onnx", root / "mlp.int8.onnx", data=data)
    return {"root": root, "fp8": root / "mlp.onnx", "int8": root / "mlp.int8.onnx", "data": data, "conversion": result}


# --- metrics on known inputs -------------------------------------------------------------------------


def test_sqnr_cosine_and_errors_of_a_known_noise_level():
    reference = np.ones(1000, np.float32)
    noise = np.where(np.arange(1000) % 2 == 0, 0.1, -0.1).astype(np.float32)
    stats = ErrorStats()
    stats.update(reference, reference + noise)
    # Σr² = 1000, Σe² = 1000·0.01 = 10 → 20 dB; relative error 0.1; Σr·c = 1000 (the noise cancels).
    assert stats.sqnr_db == pytest.approx(20.0, abs=1e-5)
    assert stats.relative_error == pytest.approx(0.1, rel=1e-5)
    assert stats.cosine == pytest.approx(1000 / math.sqrt(1000 * 1010), rel=1e-6)
    assert stats.max_abs_err == pytest.approx(0.1, rel=1e-6)
    assert stats.mean_abs_err == pytest.approx(0.1, rel=1e-6)
    assert (stats.ref_min, stats.ref_max) == (1.0, 1.0)
    # every |error| is 0.1 (in float32): all in the one bin [10^-1, 10^-0.75)
    assert stats.histogram[44] == 1000
    assert stats.histogram.sum() == 1000
    assert stats.zero_errors == 0


def test_sqnr_scales_with_noise_power():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(200_000)
    for noise_db in (10.0, 30.0, 50.0):
        noise = rng.standard_normal(reference.size) * 10 ** (-noise_db / 20)
        stats = ErrorStats()
        stats.update(reference, reference + noise)
        assert stats.sqnr_db == pytest.approx(noise_db, abs=0.1)


def test_streaming_merge_equals_one_batch():
    rng = np.random.default_rng(2)
    reference = rng.standard_normal((40, 7, 5)).astype(np.float32)
    candidate = reference + rng.standard_normal(reference.shape).astype(np.float32) * 0.05
    candidate[3, 2, 1] = reference[3, 2, 1]  # one exact element
    whole = ErrorStats()
    whole.update(reference, candidate)
    parts = []
    for chunk in np.array_split(np.arange(40), 5):
        part = ErrorStats()
        part.update(reference[chunk], candidate[chunk])
        parts.append(part)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert merged.count == whole.count == reference.size
    for name in ("sum_ref_sq", "sum_cand_sq", "sum_err_sq", "sum_dot", "sum_abs_err"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-12)
    assert merged.max_abs_err == whole.max_abs_err
    assert (merged.ref_min, merged.ref_max) == (whole.ref_min, whole.ref_max)
    assert merged.zero_errors == whole.zero_errors == 1
    np.testing.assert_array_equal(merged.histogram, whole.histogram)
    assert merged.sqnr_db == pytest.approx(whole.sqnr_db, rel=1e-12)

    top_whole, top_merged = TopKAgreement(), TopKAgreement()
    top_whole.update(reference[:, :, 0], candidate[:, :, 0])
    for chunk in np.array_split(np.arange(40), 3):
        part = TopKAgreement()
        part.update(reference[chunk, :, 0], candidate[chunk, :, 0])
        top_merged.merge(part)
    assert (top_merged.samples, top_merged.top1, top_merged.top5) == (top_whole.samples, top_whole.top1, top_whole.top5)


def test_nonfinite_values_are_counted_not_averaged():
    stats = ErrorStats()
    reference = np.array([1.0, np.nan, np.inf, 2.0, -np.inf, 3.0])
    candidate = np.array([1.5, np.nan, 5.0, np.nan, -np.inf, 3.0])
    stats.update(reference, candidate)
    assert stats.nonfinite_matched == 2  # NaN/NaN and -inf/-inf
    assert stats.nonfinite_mismatch == 2  # inf vs 5 and 2 vs NaN
    assert stats.count == 2  # the finite pairs (1, 1.5) and (3, 3)
    assert stats.sqnr_db == pytest.approx(10 * math.log10(10 / 0.25))
    assert not math.isnan(stats.cosine)


def test_sqnr_limits_and_shape_check():
    same = ErrorStats()
    same.update(np.arange(5.0), np.arange(5.0))
    assert same.sqnr_db == math.inf
    assert same.relative_error == 0.0
    assert same.cosine == pytest.approx(1.0)
    zero_reference = ErrorStats()
    zero_reference.update(np.zeros(3), np.ones(3))
    assert zero_reference.sqnr_db == -math.inf
    assert zero_reference.cosine == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        ErrorStats().update(np.zeros(3), np.zeros(4))


def test_topk_agreement_counts_ties_for_the_candidate_and_nan_rows_against_it():
    reference = np.array([[0.1, 0.9, 0.0, 0, 0, 0, 0], [0.8, 0.1, 0.0, 0, 0, 0, 0], [0.0, 0.2, 0.7, 0, 0, 0, 0]])
    candidate = np.array(
        [
            [0.1, 0.9, 0.0, 0, 0, 0, 0],  # same top-1
            [0.5, 0.5, 0.0, 0, 0, 0, 0],  # tie between 0 and 1: agrees
            [0.0, 0.9, 0.3, 0, 0, 0, 0],  # reference class 2 is second: top-5 only
        ]
    )
    agreement = TopKAgreement()
    agreement.update(reference, candidate)
    assert (agreement.samples, agreement.top1, agreement.top5, agreement.classes) == (3, 2, 3, 7)
    assert agreement.top1_agreement == pytest.approx(2 / 3)
    with_nan = TopKAgreement()
    with_nan.update(reference[:1], np.full((1, 7), np.nan))
    assert with_nan.top1 == 0
    assert with_nan.top1_flips == 1
    few_classes = TopKAgreement()
    few_classes.update(reference[:, :3], candidate[:, :3])
    assert few_classes.top5_agreement is None


def test_label_accuracy_and_drop():
    labels = np.array([0, 1, 2, 1])
    reference = np.eye(3)[[0, 1, 2, 0]]  # 3 of 4 right
    candidate = np.eye(3)[[0, 2, 2, 1]]  # 3 of 4 right: loses sample 1, gains sample 3
    accuracy = LabelAccuracy()
    accuracy.update(labels, reference, candidate)
    assert (accuracy.reference_accuracy, accuracy.candidate_accuracy) == (0.75, 0.75)
    assert (accuracy.lost, accuracy.gained, accuracy.drop_pp) == (1, 1, 0.0)
    one_hot = LabelAccuracy()
    one_hot.update(np.eye(3)[labels], reference, candidate[:, [1, 0, 2]])
    assert one_hot.candidate_accuracy == 0.25
    assert one_hot.drop_pp == pytest.approx(50.0)


def test_classifier_rule():
    assert is_classifier(np.zeros((8, 10), np.float32), 8)
    assert not is_classifier(np.zeros((8, 1), np.float32), 8)  # one class
    assert not is_classifier(np.zeros((8, 4, 4), np.float32), 8)  # rank 3
    assert not is_classifier(np.zeros((10, 8), np.float32), 8)  # first axis is not the batch
    assert not is_classifier(np.zeros((8, 10), np.int64), 8)


def test_wilson_bound_is_below_the_observed_rate_and_tightens_with_samples():
    assert wilson_lower_bound(0, 50) == 0.0
    assert wilson_lower_bound(1, 32) < 1 / 32
    # The gates module's documented example: one flip in 32 passes a 2 pp gate, two fail it.
    assert 100 * wilson_lower_bound(1, 32) < 2.0 < 100 * wilson_lower_bound(3, 32)
    assert 0.02 - wilson_lower_bound(200, 10_000) < 0.005


# --- gates -------------------------------------------------------------------------------------------


def test_gate_specs_global_per_output_and_off():
    gates = Gates.default().with_specs("min-sqnr", ["25", "logits:30", "out:0:12"]).with_specs("max_top1_drop", ["off"])
    assert gates.threshold("min_sqnr", "other").value == 25.0
    assert gates.threshold("min_sqnr", "logits").value == 30.0
    assert gates.threshold("min_sqnr", "out:0").value == 12.0  # the name is everything before the last ':'
    assert gates.global_threshold("max_top1_drop") is None
    assert gates.threshold("min_cosine", "logits").value == 0.99  # default untouched
    from_config = Gates.default().with_mapping({"min_cosine": {"*": 0.9, "logits": "off"}, "max-abs-err": 0.5})
    assert from_config.threshold("min_cosine", "x").value == 0.9
    assert from_config.threshold("min_cosine", "logits").value is None
    assert from_config.threshold("max_abs_err", "x").value == 0.5
    assert from_config.threshold("max_abs_err", "x").source == "config"


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("min_sqnr", "twenty", "not a number"),
        ("min_cosine", "1.5", r"\[-1, 1\]"),
        ("max_abs_err", "-1", ">= 0"),
        ("min_sqnr", ":20", "empty output name"),
        ("min_snr", "20", "unknown gate"),
        ("min_sqnr", "nan", "finite"),
    ],
)
def test_bad_gate_specs_are_one_line_errors(name: str, spec: str, message: str):
    with pytest.raises(Fp8ConvError, match=message):
        Gates.default().with_specs(name, [spec])


def test_gates_naming_unknown_outputs_or_non_classifiers_are_errors():
    output = OutputReport("y", (4, 3, 2), "float32")
    output.total.update(np.ones((4, 3, 2)), np.ones((4, 3, 2)))
    with pytest.raises(Fp8ConvError, match="do not have; outputs: y"):
        evaluate_gates(Gates.default().with_specs("min_sqnr", ["logits:20"]), [output], has_labels=False)
    with pytest.raises(Fp8ConvError, match="not a classifier output"):
        evaluate_gates(Gates.default().with_specs("max_top1_drop", ["y:1"]), [output], has_labels=False)
    explicit = evaluate_gates(Gates.default().with_specs("max_accuracy_drop", ["0.5"]), [output], has_labels=False)
    failed = [gate for gate in explicit if not gate.passed]
    assert [(gate.name, gate.output, gate.value) for gate in failed] == [("max_accuracy_drop", None, None)]
    assert "labels" in failed[0].note
    defaults = evaluate_gates(Gates.default(), [output], has_labels=False)
    assert {gate.name for gate in defaults} == {"min_sqnr", "min_cosine", "nonfinite"}
    assert all(gate.passed for gate in defaults)


# --- layer matching ----------------------------------------------------------------------------------


def test_layers_are_matched_by_name_and_constants_and_outputs_are_left_out(conv):
    reference = fp8conv.load(conv["fp8"]).model
    candidate = fp8conv.load(conv["int8"]).model
    sites = matched_tensors(reference, candidate)
    # W1_dequantized depends on constants only; "output" is a graph output; "output_float" and the
    # integer codes "input_quantized" exist only in the INT8 graph.
    assert [site.name for site in sites] == ["input_dequantized", "conv1", "relu1", "relu1_dequantized"]
    by_name = {site.name: site for site in sites}
    assert (by_name["conv1"].node, by_name["conv1"].op_type) == ("conv1", "Conv")
    assert by_name["relu1_dequantized"].quantizes == "relu1"


def test_layer_sqnr_equals_an_independent_comparison_of_the_same_named_tensors(conv):
    result = fp8conv.verify(conv["fp8"], conv["int8"], conv["data"])
    layers = {layer.tensor: layer for layer in result.layers}
    assert set(layers) == {"input_dequantized", "conv1", "relu1", "relu1_dequantized"}
    assert [layer.index for layer in result.layers] == [0, 1, 2, 3]
    x = np.load(conv["data"])["input"]
    runner = ReferenceRunner(fp8conv.load(conv["fp8"]).model, capture=["conv1", "relu1_dequantized"])
    candidate = onnx.load(conv["int8"])
    candidate.graph.output.extend([onnx.ValueInfoProto(name="conv1"), onnx.ValueInfoProto(name="relu1_dequantized")])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(candidate.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for name in ("conv1", "relu1_dequantized"):
        ref = np.concatenate([runner.run({"input": x[i : i + 1]})[name] for i in range(len(x))]).astype(np.float64)
        cand = np.concatenate([session.run([name], {"input": x[i : i + 1]})[0] for i in range(len(x))])
        expected = 10 * math.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2))
        assert layers[name].stats.sqnr_db == pytest.approx(expected, rel=1e-9)


def test_renamed_tensors_are_not_matched(conv, tmp_path):
    model = onnx.load(conv["int8"])
    for node in model.graph.node:
        node.input[:] = ["conv1_renamed" if name == "conv1" else name for name in node.input]
        node.output[:] = ["conv1_renamed" if name == "conv1" else name for name in node.output]
    onnx.save(model, tmp_path / "renamed.onnx")
    result = fp8conv.verify(conv["fp8"], tmp_path / "renamed.onnx", conv["data"])
    assert [layer.tensor for layer in result.layers] == ["input_dequantized", "relu1", "relu1_dequantized"]
    assert result.passed


# --- verification end to end -------------------------------------------------------------------------


def test_fp8_classifier_and_its_int8_conversion_pass_the_default_gates(classifier):
    result = fp8conv.verify(
        classifier["fp8"], classifier["int8"], classifier["data"], conversion=classifier["conversion"]
    )
    assert result.passed
    assert result.verified
    assert result.exit_code == 0
    gates = {gate.name for gate in result.gates}
    assert gates == {"min_sqnr", "min_cosine", "max_top1_drop", "max_accuracy_drop", "nonfinite", "min_integer_kernels"}
    (output,) = result.outputs
    assert output.name == "logits"
    assert output.topk is not None
    assert output.accuracy is not None
    assert output.total.sqnr_db > 20.0
    assert output.total.cosine > 0.99
    assert output.topk.samples == 96
    # every 8th label was changed, so the FP8 reference is right on 84 of 96 samples
    assert output.accuracy.reference_accuracy == pytest.approx(84 / 96)
    document = result.to_json()
    assert document["data"] == {"source": str(classifier["data"]), "samples": 96, "batch_size": 16, "random": False,
                                "labels": True, "dropped_samples": 0}  # fmt: skip
    assert document["reference"]["quant_points"] == 4
    assert document["kernels"]["counts_by_op"]["MatMul"]["integer"] == 2
    assert document["conversion"]["layers"][0]["node"] == "fc1"
    assert {layer["tensor"] for layer in document["layers"]} >= {"x_dq", "fc1", "relu", "relu_dq"}


def test_weights_scaled_by_1_5_fail_min_sqnr_but_not_cosine_and_the_first_failing_layer_is_named(conv):
    result = fp8conv.verify(conv["fp8"], conv["broken"], conv["data"])
    assert not result.passed
    assert result.exit_code == 1
    assert [(gate.name, gate.output) for gate in result.failed_gates] == [("min_sqnr", "output")]
    sqnr = next(gate for gate in result.gates if gate.name == "min_sqnr").value
    assert sqnr < 10.0  # ‖1.5·y − y‖ = 0.5‖y‖ → about 6 dB
    assert next(gate for gate in result.gates if gate.name == "min_cosine").passed  # a scale error keeps direction
    # without the per-layer gate, layers are diagnostics: the lowest is named, none is marked as failing
    assert result.first_failing_layer is None
    assert not any(layer.below_threshold for layer in result.layers)
    assert result.lowest_layer.tensor == "conv1"
    layered = fp8conv.verify(conv["fp8"], conv["broken"], conv["data"], gates={"min_layer_sqnr": 20})
    assert [(gate.name, gate.output) for gate in layered.failed_gates] == [
        ("min_sqnr", "output"),
        ("min_layer_sqnr", None),
    ]
    first = layered.first_failing_layer
    assert first is not None
    assert first.tensor == "conv1"
    layers = {layer.tensor: layer for layer in layered.layers}
    assert not layers["input_dequantized"].below_threshold
    assert layers["conv1"].stats.sqnr_db == pytest.approx(20 * math.log10(2), abs=0.5)
    assert [layer.tensor for layer in layered.layers if layer.first_below_threshold] == ["conv1"]
    healthy = fp8conv.verify(conv["fp8"], conv["int8"], conv["data"], gates={"min_layer_sqnr": 20})
    assert healthy.passed
    assert healthy.first_failing_layer is None


def test_kernel_error_is_the_measured_fused_vs_unfused_difference(tmp_path):
    model, x, lsb = build_saturating_matmul()
    onnx.save(model, tmp_path / "sat.onnx")
    np.savez(tmp_path / "data.npz", x=x)
    outputs = {}
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(tmp_path / "sat.onnx"), options, providers=["CPUExecutionProvider"])
        outputs[level] = session.run(None, {"x": x})[0].astype(np.float64)
    fused, unfused = (
        outputs[ort.GraphOptimizationLevel.ORT_ENABLE_ALL],
        outputs[ort.GraphOptimizationLevel.ORT_DISABLE_ALL],
    )
    difference = np.sum((unfused - fused) ** 2)
    measured = math.inf if difference == 0 else 10 * math.log10(np.sum(unfused**2) / difference)

    result = fp8conv.verify(tmp_path / "sat.onnx", tmp_path / "sat.onnx", tmp_path / "data.npz")
    (output,) = result.outputs
    assert output.kernel.sqnr_db == pytest.approx(measured, rel=1e-9)
    assert output.kernel.max_abs_err == pytest.approx(float(np.abs(unfused - fused).max()))
    # reference = the same QDQ graph unfused: no quantization error, all error is kernel error
    assert output.quantization.sqnr_db == math.inf
    assert output.total.sqnr_db == pytest.approx(measured, rel=1e-9)
    assert result.kernels["counts_by_op"] == {"MatMul": {"integer": 1, "float": 0}}
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    if x86 and "avx512_vnni" not in flags and "avx_vnni" not in flags:
        assert output.kernel.max_abs_err > 5 * lsb  # u8×s8 int16 saturation: tens of LSB
    else:
        assert output.kernel.max_abs_err <= lsb * 1.0001  # VNNI / ARM: at most one rounding step
    # a gate just above the measured total SQNR fails, just below passes
    if math.isfinite(measured):
        assert not fp8conv.verify(tmp_path / "sat.onnx", tmp_path / "sat.onnx", tmp_path / "data.npz",
                                  gates={"min_sqnr": measured + 0.5}).passed  # fmt: skip
        assert fp8conv.verify(tmp_path / "sat.onnx", tmp_path / "sat.onnx", tmp_path / "data.npz",
                              gates={"min_sqnr": measured - 0.5}).passed  # fmt: skip


def test_float_reference_runs_on_onnxruntime(classifier, tmp_path):
    """A reference without FP8 points (the classifier with its quantizers removed) is plain onnxruntime."""
    model = onnx.load(classifier["fp8"])
    keep = [node for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for node in keep:
        node.input[:] = [name.removesuffix("_dq") for name in node.input]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    onnx.save(model, tmp_path / "float.onnx")
    result = fp8conv.verify(tmp_path / "float.onnx", classifier["int8"], classifier["data"])
    assert result.reference["quant_points"] == 0
    assert result.outputs[0].total.sqnr_db > 15.0
    fp8_result = fp8conv.verify(classifier["fp8"], classifier["int8"], classifier["data"])
    assert result.outputs[0].total.sqnr_db != fp8_result.outputs[0].total.sqnr_db


def test_random_inputs_are_deterministic_and_warned_about(classifier):
    first = fp8conv.verify(classifier["fp8"], classifier["int8"], random_inputs=20)
    second = fp8conv.verify(classifier["fp8"], classifier["int8"], random_inputs=20)
    assert first.data["random"]
    assert first.data["samples"] == 20
    assert any("random inputs" in warning for warning in first.warnings)
    assert first.outputs[0].total.sum_err_sq == second.outputs[0].total.sum_err_sq
    assert first.outputs[0].accuracy.samples == 0
    assert not first.data["labels"]
    with pytest.raises(Fp8ConvError, match="needs data"):
        fp8conv.verify(classifier["fp8"], classifier["int8"])
    with pytest.raises(Fp8ConvError, match="not both"):
        fp8conv.verify(classifier["fp8"], classifier["int8"], classifier["data"], random_inputs=4)


def test_memory_does_not_grow_with_the_number_of_samples(classifier):
    def peak(samples: int) -> int:
        tracemalloc.start()
        fp8conv.verify(classifier["fp8"], classifier["int8"], random_inputs=samples, batch_size=16)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(64), peak(2048)
    # 2048 samples of all captured tensors would be 32x the 64-sample peak; streaming keeps it flat
    assert large < 1.5 * small


def test_bad_inputs_are_one_line_errors(conv, classifier, tmp_path):
    with pytest.raises(Fp8ConvError, match="no such data file"):
        fp8conv.verify(conv["fp8"], conv["int8"], tmp_path / "missing.npz")
    with pytest.raises(Fp8ConvError, match="different inputs"):
        fp8conv.verify(conv["fp8"], classifier["int8"], classifier["data"])
    with pytest.raises(Fp8ConvError, match="optimization level"):
        fp8conv.verify(conv["fp8"], conv["int8"], conv["data"], optimization_level="turbo")
    np.savez(tmp_path / "wrong.npz", input=np.zeros((4, 3, 8, 8), np.float64))
    with pytest.raises(Fp8ConvError, match="dtype float64"):
        fp8conv.verify(conv["fp8"], conv["int8"], tmp_path / "wrong.npz")


def test_in_memory_arrays_and_static_batches(conv):
    x = np.load(conv["data"])["input"][:5]
    result = fp8conv.verify(conv["fp8"], conv["int8"], {"input": x}, per_layer=False)
    assert result.data["samples"] == 5
    assert result.data["batch_size"] == 1
    assert result.layers == []
    assert result.outputs[0].total.count == 5 * 4 * 8 * 8
    with pytest.raises(Fp8ConvError, match="need batches of 1"):
        fp8conv.verify(conv["fp8"], conv["int8"], {"input": x}, batch_size=4)


def test_deployment_level_changes_only_the_deployed_run(conv):
    disabled = fp8conv.verify(conv["fp8"], conv["int8"], conv["data"], optimization_level="disable")
    (output,) = disabled.outputs
    assert output.kernel.sqnr_db == math.inf  # deployed == unfused when nothing is fused
    assert disabled.kernels["optimization_level"] == "disable"
    assert disabled.kernels["integer_count"] == 0
