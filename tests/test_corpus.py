"""fp8conv on the corpus of real FP8 exports (``tests/corpus``, built by ``tests/corpus/build.py``).

Every file of ``tests/corpus/manifest.json`` was written by a real tool (onnxruntime ``quantize_static``,
AMD Quark, NVIDIA ModelOpt, Brevitas, the PyTorch exporters) and comes with the tool's own FP8 outputs
on fixed evaluation inputs. For each file the tests require what issue 11 calls done:

* it is read, with the dialects and the number of FP8 quantization points the tool wrote;
* the exact FP8 reference equals the tool's outputs within the tolerance the manifest states for it;
* it converts for every target with the calibration inputs as data, the written model passes
  ``onnx.checker``, holds no FP8 type, and runs on onnxruntime;
* int8: every layer the tool quantized runs on an integer kernel (the conversion's kernel audit) with
  8-bit weights in the file, and the outputs reach cosine >= 0.99 to the tool's FP8 outputs (centered:
  the mean over samples removed) or top-1 agreement within 0.5 point (counted only where the FP8
  outputs predict at least 3 classes);
* int4: 4-bit weights in the file; w8a16: 16-bit activations and 8-bit weights; w4a16: every quantized
  weight MatMul/Gemm runs as MatMulNBits.

Nothing here needs an exporter installed: only the committed files are read.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from paths import CORPUS

import fp8conv
from fp8conv.converter.pipeline import convert_file
from fp8conv.passes.reference_runner import ReferenceRunner

MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
ENTRIES = MANIFEST["files"]
TARGETS = ("int8", "int4", "w8a16", "w4a16")
IDS = [entry["file"].removesuffix(".onnx") for entry in ENTRIES]
LAYER_OPS = ("Conv", "MatMul", "Gemm")
PASS_THROUGH = ("Transpose", "Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze")
FP8_TYPES = {
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ,
    TensorProto.FLOAT8E5M2,
    TensorProto.FLOAT8E5M2FNUZ,
}
BITS = {
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.INT8: 8,
    TensorProto.UINT8: 8,
    TensorProto.INT16: 16,
    TensorProto.UINT16: 16,
}


def _graph_input(path: Path) -> str:
    """The one graph input that is not an initializer (brevitas lists initializers as inputs too)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    (name,) = [value.name for value in graph.input if value.name not in initializers]
    return name


@functools.cache
def _inputs(entry_file: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The file's input name and the network's calibration and evaluation samples."""
    entry = next(e for e in ENTRIES if e["file"] == entry_file)
    name = _graph_input(CORPUS / entry_file)
    calibration = np.load(CORPUS / entry["inputs"]["calibration"])["input"]
    evaluation = np.load(CORPUS / entry["inputs"]["evaluation"])["input"]
    return name, calibration, evaluation


def _expected(entry: dict) -> np.ndarray:
    """The tool's own FP8 outputs on the evaluation inputs (the file's single output)."""
    saved = np.load(CORPUS / entry["expected_outputs"])
    (name,) = saved.files
    return saved[name]


def _run_batched(run, name: str, x: np.ndarray, batch: int | None) -> np.ndarray:
    step = batch or len(x)
    return np.concatenate([run({name: x[i : i + step]}) for i in range(0, len(x), step)])


@functools.cache
def _reference(entry_file: str) -> np.ndarray:
    """fp8conv's exact FP8 reference on the evaluation inputs."""
    name, _, evaluation = _inputs(entry_file)
    runner = ReferenceRunner(fp8conv.load(CORPUS / entry_file).model)
    (output,) = runner.output_names[:1]
    return _run_batched(lambda feed: runner.run(feed)[output], name, evaluation, runner.static_batch_size)


def _ort_outputs(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    """The converted model on onnxruntime at its default optimization level (what its users run)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = [i for i in session.get_inputs() if i.name == name]
    batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None
    return _run_batched(lambda feed: session.run(None, feed)[0], name, x, batch)


def _per_sample_errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``max|a_i - b_i| / max|b_i|`` per sample i."""
    a = actual.reshape(len(actual), -1).astype(np.float64)
    b = expected.reshape(len(expected), -1).astype(np.float64)
    return np.abs(a - b).max(axis=1) / np.maximum(np.abs(b).max(axis=1), 1e-30)


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the main graph (shape inference, initializers, Constant nodes)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _layer_operand_types(model: onnx.ModelProto) -> list[tuple[str, int | None, int | None]]:
    """For every Conv/MatMul/Gemm: (op, type behind its activation DQ, type behind its weight DQ).

    The type is that of the tensor a DequantizeLinear dequantizes, found by walking up from the
    layer's input through data movement. The weight entry is None unless that tensor is an
    initializer (a constant weight); the activation entry is None where no DequantizeLinear feeds it.
    """
    types = _tensor_types(model)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def dequantized(name: str) -> onnx.NodeProto | None:
        node = producers.get(name)
        while node is not None and node.op_type in PASS_THROUGH:
            node = producers.get(node.input[0])
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    layers = []
    for node in graph.node:
        if node.op_type in LAYER_OPS:
            activation, weight = dequantized(node.input[0]), dequantized(node.input[1])
            layers.append(
                (
                    node.op_type,
                    types.get(activation.input[0]) if activation is not None else None,
                    types.get(weight.input[0]) if weight is not None and weight.input[0] in initializers else None,
                )
            )
    return layers


def _fp8_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of FP8-typed tensors left in the model (initializers, Constant nodes, typed values)."""
    return sorted(name for name, elem in _tensor_types(model).items() if elem in FP8_TYPES)


def _centered_cosine(actual: np.ndarray, expected: np.ndarray) -> float:
    """Cosine similarity of the outputs after removing the expected outputs' mean over samples.

    Without centering, the part of the logits common to every sample (the head's bias and the mean
    feature) makes even a constant prediction score close to 1.
    """
    mean = expected.mean(axis=0, keepdims=True)
    a = (actual - mean).astype(np.float64).reshape(-1)
    b = (expected - mean).astype(np.float64).reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_reads_the_tools_fp8_quantization_points(entry):
    loaded = fp8conv.load(CORPUS / entry["file"])
    assert sorted(loaded.dialects) == sorted(entry["dialects"]), f"dialects {loaded.dialects}"
    assert len(loaded.quant_points) == entry["fp8_quantizers"], (
        f"{len(loaded.quant_points)} FP8 quantization points found, the tool wrote {entry['fp8_quantizers']}"
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_exact_reference_equals_the_tools_outputs(entry):
    tolerance = entry["tolerance"]
    errors = _per_sample_errors(_reference(entry["file"]), _expected(entry))
    close = float(np.mean(errors <= tolerance["close"]))
    summary = (
        f"vs {entry['expected_from']}: {close:.0%} of samples within {tolerance['close']:g} "
        f"(need {tolerance['min_close_fraction']:.0%}), worst {errors.max():.3g} (allowed {tolerance['max']:g})"
    )
    assert close >= tolerance["min_close_fraction"], summary
    assert errors.max() <= tolerance["max"], summary


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_converts_and_runs_on_integer_kernels(entry, target, tmp_path):
    name, calibration, evaluation = _inputs(entry["file"])
    data = tmp_path / "calib.npz"
    np.savez(data, **{name: calibration})
    output = tmp_path / f"model.{target}.onnx"
    result = convert_file(CORPUS / entry["file"], output, to=target, data=data)

    written = onnx.load(str(output))
    onnx.checker.check_model(written, full_check=True)
    converted = _ort_outputs(output, name, evaluation)
    expected = _expected(entry)
    assert converted.shape == expected.shape
    assert np.isfinite(converted).all()

    # Every criterion is checked, so that the failure lists all that the output does not prove.
    problems = []
    if _fp8_tensors(written):
        problems.append(f"FP8 tensors left in the output: {_fp8_tensors(written)[:3]}")
    records = result.audit.records
    if len(records) != entry["layers"]:
        problems.append(f"audit has {len(records)} Conv/MatMul/Gemm, the network has {entry['layers']}")
    operands = _layer_operand_types(written)
    weight_bits = [BITS.get(w) for _, _, w in operands]
    activation_bits = [BITS.get(a) for _, a, _ in operands]
    quantized, with_weights = entry["quantized_layers"], entry["quantized_weight_layers"]
    kernels = [r.kernel for r in records]

    if target == "int8":
        if result.audit.integer_count < quantized:
            floats = [f"{r.node}: {r.kernel} ({r.reason})" for r in records if not r.integer]
            problems.append(
                f"{result.audit.integer_count}/{len(records)} layers on integer kernels, the tool quantized "
                f"{quantized}; float: {floats[:2]}"
            )
        if weight_bits.count(8) < with_weights:
            problems.append(
                f"8-bit weight initializers behind DequantizeLinear in {weight_bits.count(8)} layers, "
                f"the tool quantized {with_weights}; bits {weight_bits}"
            )
        cosine = _centered_cosine(converted, expected)
        agreement = float(np.mean(converted.argmax(axis=1) == expected.argmax(axis=1)))
        if len(set(expected.argmax(axis=1).tolist())) < 3:
            agreement = 0.0  # an FP8 model that predicts (almost) one class: agreement proves nothing
        if cosine < 0.99 and agreement < 0.995:
            problems.append(f"int8 vs the tool's FP8 outputs: cosine {cosine:.4f}, top-1 agreement {agreement:.1%}")
    elif target == "int4":
        if weight_bits.count(4) < with_weights:
            problems.append(f"4-bit weight initializers: {weight_bits.count(4)}/{with_weights}, bits {weight_bits}")
    elif target == "w8a16":
        if activation_bits.count(16) < quantized:
            problems.append(f"16-bit activations in {activation_bits.count(16)} of {quantized}; bits {activation_bits}")
        if weight_bits.count(8) < with_weights:
            problems.append(f"8-bit weight initializers: {weight_bits.count(8)}/{with_weights}, bits {weight_bits}")
    elif kernels.count("MatMulNBits") != entry["weight_matmuls"]:
        problems.append(
            f"{kernels.count('MatMulNBits')} MatMulNBits for {entry['weight_matmuls']} quantized weight "
            f"MatMul/Gemm; kernels {kernels}"
        )
    assert not problems, "; ".join(problems)


def test_the_manifest_describes_every_committed_file():
    listed = {entry["file"] for entry in ENTRIES} | {entry["expected_outputs"] for entry in ENTRIES}
    on_disk = {path.name for path in CORPUS.iterdir() if path.name.startswith(("cnn.", "transformer."))}
    assert listed == on_disk
    # A file edited after the build (not by the tool) no longer has the size the build recorded.
    sizes = {entry["file"]: (CORPUS / entry["file"]).stat().st_size for entry in ENTRIES}
    assert sizes == {entry["file"]: entry["size_bytes"] for entry in ENTRIES}
