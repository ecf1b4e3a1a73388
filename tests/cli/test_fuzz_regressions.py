"""Inputs benchmarks/fuzz.py found that crashed fp8conv (exit 3) or broke an exit-code promise.

Each is now a one-line refusal (exit 2, nothing written, the input untouched) or a conversion that works.
The models are built in code; each test names the fuzz mutation it stands for.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fp8_models import mlp, modelopt_transformer, residual_cnn
from golden_models import GOLDEN
from onnx import TensorProto, helper, numpy_helper

from fp8conv.cli import cli
from fp8conv.errors import ModelLoadError


def _invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _refused(outcome, *texts: str) -> None:
    """Exit 2 with one line ``fp8conv: error: …`` holding ``texts``."""
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.count("\n") == 1, outcome.output
    assert outcome.output.startswith("fp8conv: error: ")
    assert "Traceback" not in outcome.output
    for text in texts:
        assert text in outcome.output


def _save(tmp_path: Path, model: onnx.ModelProto | bytes, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


def _data(tmp_path: Path, model: onnx.ModelProto, count: int = 8, name: str = "calib.npz", **extra) -> Path:
    graph_input = model.graph.input[0]
    shape = [dim.dim_value or 1 for dim in graph_input.type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal([count, *shape[1:]]).astype(np.float32)
    path = tmp_path / name
    np.savez(path, **{graph_input.name: x}, **extra)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_cast(to: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], name="cast", to=to)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


# -- the model file --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", [99, -(2**31)])
def test_a_cast_to_no_onnx_type_is_refused_naming_the_node(tmp_path, to):
    """Fuzz: ``set attribute to of a Cast to -2147483648`` (was ValueError in FoldConstantCastsPass, exit 3)."""
    path = _save(tmp_path, _tiny_cast(to))
    for command in (["inspect"], ["convert", "--no-verify"]):
        _refused(_invoke(*command, path), "node 'cast' (Cast)", f"attribute to={to}", "not an ONNX element type")
    assert not (tmp_path / "model.int8.onnx").exists()


def _produced() -> onnx.ModelProto:
    model = residual_cnn()
    model.producer_name = "producerX"
    return model


def _with_metadata() -> onnx.ModelProto:
    model = residual_cnn()
    helper.set_model_props(model, {"source": "metadataX"})
    return model


@pytest.mark.parametrize(
    ("model", "old", "new", "message"),
    [
        (residual_cnn, b"Relu", b"R\xfflu", "not UTF-8"),  # the checker's message cannot be decoded
        (GOLDEN["trt_opset1"].build, b"TRT_FP8QuantizeLinear", b"TRT_FP8Q\xffantizeLinear", "not UTF-8"),
        (_produced, b"producerX", b"produc\xe3rX", "model.producer_name b'produc\\xe3rX' is not UTF-8"),
        (_with_metadata, b"metadataX", b"metad\x80taX", "model.metadata_props.value b'metad\\x80taX' is not UTF-8"),
    ],
    ids=["standard-op", "trt-op", "producer", "metadata"],
)
def test_a_string_that_is_not_utf8_is_refused(tmp_path, model, old, new, message):
    """Fuzz: ``overwrite bytes with 0xff`` inside an op type, ``flip 1 bit from byte 7`` (the producer name):
    UnicodeDecodeError in onnx.checker or when the converted model was serialized, exit 3."""
    content = model().SerializeToString()
    assert old in content
    path = _save(tmp_path, content.replace(old, new, 1))
    _refused(_invoke("inspect", path), message)
    _refused(_invoke("convert", path, "--no-verify"), message)


def _bias(model: onnx.ModelProto) -> onnx.TensorProto:
    tensor = next(t for t in model.graph.initializer if t.name == "conv1.bias")
    assert tensor.data_type == TensorProto.FLOAT
    assert tensor.HasField("raw_data")
    assert list(tensor.dims) == [8]
    return tensor


def _relabel(tensor: onnx.TensorProto) -> None:
    tensor.data_type = TensorProto.FLOAT8E5M2  # the float32 bytes stay: 4 per element, 1 needed


def _truncate(tensor: onnx.TensorProto) -> None:
    tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]


def _unknown_type(tensor: onnx.TensorProto) -> None:
    tensor.data_type = 99


def _negative_dim(tensor: onnx.TensorProto) -> None:
    tensor.dims[0] = -tensor.dims[0]


def _typed_field(tensor: onnx.TensorProto) -> None:
    values = numpy_helper.to_array(tensor).astype(np.float32).reshape(-1)
    tensor.ClearField("raw_data")
    tensor.data_type = TensorProto.FLOAT
    tensor.float_data.extend(values[:-1].tolist())  # one value short


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_relabel, "needs 8 bytes of data, has 32"),
        (_truncate, "too small"),  # onnx.checker finds the short ones
        (_unknown_type, "has data type 99, no ONNX type"),
        (_negative_dim, "Negative dimension"),
        (_typed_field, "too small"),
    ],
    ids=["relabelled", "truncated", "unknown-type", "negative-dim", "typed-field-short"],
)
def test_a_tensor_whose_data_does_not_fit_its_type_and_shape_is_refused(tmp_path, mutate, message):
    """Fuzz: ``relabel tensor FLOAT -> FLOAT8E5M2 (data unchanged)``, ``relabel ... -> 99`` (were ValueError /
    SerdeError in the readers, exit 3, or an FP8 tensor left in the written model)."""
    model = residual_cnn()
    tensor = _bias(model)
    mutate(tensor)
    path = _save(tmp_path, model)
    for command in (["inspect"], ["convert", "--no-verify"]):
        _refused(_invoke(*command, path), tensor.name, message)


def test_per_axis_scales_that_do_not_match_the_weight_are_refused(tmp_path):
    """Fuzz: ``reshape tensor 'v.layer.weight' [16, 16] -> [256] (flatten)`` while the value_info still says
    [16, 16]: the Cast-pair reader took the declared shape, the planner met 16 scales for 256 values (a
    broadcast ValueError, exit 3)."""
    model = GOLDEN["cast_e5m2"].build()  # weights: Div(W, s [4,1,1,1]) -> Cast pair -> Mul(s)
    weight = next(t for t in model.graph.initializer if t.name == "W1")
    weight.dims[:] = [4 * 3 * 3 * 3]  # the same values, flat
    model.graph.value_info.append(helper.make_tensor_value_info("W1", TensorProto.FLOAT, [4, 3, 3, 3]))  # stale
    path = _save(tmp_path, model)
    message = "4 scales along axis 0 of the weight 'W1' of shape [108]"
    _refused(_invoke("convert", path, "--no-verify"), "node 'W1_cast_fp8'", message)


def test_a_graph_output_of_no_onnx_type_is_refused(tmp_path):
    """Fuzz: ``graph output 'logits' elem_type -> 99`` (was ValueError in the preflight, exit 3)."""
    model = residual_cnn()
    model.graph.output[0].type.tensor_type.elem_type = 99
    path = _save(tmp_path, model)
    _refused(_invoke("convert", path, "--random-inputs", 2), "graph output", "element type 99")
    _refused(_invoke("inspect", path), "element type 99")


def test_a_graph_without_outputs_is_refused(tmp_path):
    """Fuzz: ``drop graph output 'logits'`` (every layer dead: "planned int4, not in the written model", exit 3)."""
    model = residual_cnn()
    model.graph.ClearField("output")
    path = _save(tmp_path, model)
    _refused(_invoke("convert", path, "--to", "int4", "--no-verify"), "the graph has no outputs")


def test_an_ir_version_older_than_the_oldest_supported_opset_is_refused(tmp_path):
    """Fuzz: ``set IR version to 3`` (the written model failed onnx.checker after it was written)."""
    model = residual_cnn()
    model.ir_version = 3  # before IR 4 every initializer is a graph input too (as Brevitas lists them)
    inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer]
    model.graph.input.extend(inputs)
    path = _save(tmp_path, model)
    _refused(_invoke("convert", path, "--random-inputs", 2), "IR version 3 is not supported")
    assert not (tmp_path / "model.int8.onnx").exists()


def _floatquant(mutate) -> onnx.ModelProto:
    model = GOLDEN["floatquant_e4m3fn"].build()
    node = next(node for node in model.graph.node if node.op_type == "FloatQuant")
    mutate(node)
    return model


def _no_scale(node: onnx.NodeProto) -> None:
    node.input[1] = ""


def _float_has_inf(node: onnx.NodeProto) -> None:
    attribute = next(a for a in node.attribute if a.name == "has_inf")
    attribute.CopyFrom(helper.make_attribute("has_inf", 1e-30))


def _int_rounding_mode(node: onnx.NodeProto) -> None:
    attribute = next(a for a in node.attribute if a.name == "rounding_mode")
    attribute.CopyFrom(helper.make_attribute("rounding_mode", 3))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_no_scale, "FloatQuant needs 6 inputs, got 5"),
        (_float_has_inf, "attribute has_inf must be INT, not FLOAT"),
        (_int_rounding_mode, "attribute rounding_mode must be STRING, not INT"),
    ],
    ids=["no-scale", "has_inf-float", "rounding_mode-int"],
)
def test_a_floatquant_without_its_scale_or_with_a_mistyped_attribute_is_refused(tmp_path, mutate, message):
    """Fuzz: ``rename input #1 of FloatQuant -> ''`` (AssertionError), ``set attribute has_inf to 1e-30`` and
    ``rounding_mode to 1e-45`` (TypeError in onnx_ir): all exit 3 before."""
    path = _save(tmp_path, _floatquant(mutate))
    _refused(_invoke("convert", path, "--no-verify"), "input_FloatQuant", message)


# -- conversions that crashed ----------------------------------------------------------------------------------


def test_a_layer_no_output_depends_on_is_not_planned(tmp_path):
    """Fuzz: ``duplicate node 'node_conv2d_5' (Conv) with new output names``: the copy computes nothing the
    outputs read, the written model drops it ("layer ..._dup: planned int8, not in the written model", exit 3)."""
    model = residual_cnn()
    conv = next(node for node in model.graph.node if node.name == "conv2_node")
    copy = model.graph.node.add()
    copy.CopyFrom(conv)
    copy.name, copy.output[0] = "conv2_dup", "conv2_dup_out"
    path = _save(tmp_path, model)
    outcome = _invoke("convert", path, "--no-verify", "--json", "-o", tmp_path / "out.onnx")
    assert outcome.exit_code == 0, outcome.output
    assert [layer["node"] for layer in json.loads(outcome.stdout)["layers"]] == [
        "conv1_node",
        "conv2_node",
        "conv3_node",
        "logits_node",
    ]
    assert "conv2_dup" not in _invoke("inspect", path).output


def test_a_dead_copy_of_a_node_is_no_second_reader_of_an_fp8_cast(tmp_path):
    """Fuzz: ``duplicate node 'node__to_copy_17' (Cast) with new output names``: the FP8 Cast then had two
    readers, the chain was not read, and its FP8 Cast was left in the written model (exit 3)."""
    model = GOLDEN["cast_e5m2"].build()
    back = next(node for node in model.graph.node if node.name == "input_cast_float")
    copy = model.graph.node.add()
    copy.CopyFrom(back)
    copy.name, copy.output[0] = "input_cast_float_dup", "input_float_dup"
    path = _save(tmp_path, model)
    points = json.loads(_invoke("inspect", path, "--json").stdout)["quant_points"]
    original = json.loads(_invoke("inspect", _save(tmp_path, GOLDEN["cast_e5m2"].build(), "o.onnx"), "--json").stdout)
    assert points == original["quant_points"]
    data = _data(tmp_path, model)
    outcome = _invoke("convert", path, "--data", data, "--no-verify", "-o", tmp_path / "out.onnx")
    assert outcome.exit_code == 0, outcome.output


def test_fp8_that_no_reader_takes_is_refused_before_converting(tmp_path):
    """Fuzz: ``rename input #0 of node 'node_div_dequantize' (DequantizeLinear) 'mul_7_fp8' -> 'input'``: a
    DequantizeLinear of a float tensor with an FP8 zero point stayed, and the postcondition found FP8 in the
    written model (exit 3)."""
    model = residual_cnn()
    dequantize = next(node for node in model.graph.node if node.name == "relu1_DequantizeLinear")
    dequantize.input[0] = "relu1"  # float, not the QuantizeLinear's FP8 output
    path = _save(tmp_path, model)
    outcome = _invoke("convert", path, "--no-verify", "-o", tmp_path / "out.onnx")
    _refused(outcome, "node 'relu1_DequantizeLinear' (DequantizeLinear): tensor 'relu1_fp8_zp' is FLOAT8E4M3FN")
    assert not (tmp_path / "out.onnx").exists()


def test_a_layer_reading_a_constant_through_its_fp8_quantizer_stays_float(tmp_path):
    """Fuzz: ``rename input #0 of node 'node_div_1' (Div) 'layer_norm' -> 'ln2.weight'``: the layer's quantized
    input is a constant (was KeyError in the planner, exit 3)."""
    model = residual_cnn()
    constant = np.random.default_rng(3).standard_normal((1, 8, 12, 12)).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(constant, "relu1_constant"))
    quantize = next(node for node in model.graph.node if node.name == "relu1_QuantizeLinear")
    quantize.input[0] = "relu1_constant"
    path = _save(tmp_path, model)
    outcome = _invoke("convert", path, "--no-verify", "--json", "-o", tmp_path / "out.onnx")
    assert outcome.exit_code == 0, outcome.output
    layers = {layer["node"]: layer for layer in json.loads(outcome.stdout)["layers"]}
    assert layers["conv2_node"]["precision"] == "float"
    assert "is a constant" in layers["conv2_node"]["reason"]
    assert layers["conv1_node"]["precision"] == "int8"


def test_an_fp8_cast_chain_whose_scales_do_not_match_still_leaves_no_fp8_cast(tmp_path):
    """Fuzz: ``node 'node_div_3' ::Div -> ::Mul`` in a Cast-pair model: the chain is not absorbed, and its Cast
    pair was left FP8 (postcondition "FLOAT8E4M3FN is left in the written model", exit 3)."""
    model = GOLDEN["cast_e4m3fn_clip"].build()
    front = next(node for node in model.graph.node if node.op_type == "Div")
    front.op_type = "Mul"  # x · s instead of x / s: the scales no longer cancel
    path = _save(tmp_path, model)
    data = _data(tmp_path, model)
    outcome = _invoke("convert", path, "--data", data, "--no-verify", "-o", tmp_path / "out.onnx")
    assert outcome.exit_code == 0, outcome.output
    written = onnx.load(tmp_path / "out.onnx")
    fp8 = {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2FNUZ}
    assert not [n.name for n in written.graph.node if n.op_type == "Cast" and n.attribute[0].i in fp8]
    assert not [t.name for t in written.graph.initializer if t.data_type in fp8]


def test_int16_for_one_layer_gives_int16_to_the_layers_sharing_its_input(tmp_path):
    """Fuzz (no mutation): ``convert transformer --int16 val_26``, one of the Q/K/V projections reading one
    LayerNorm output (was "layer k: planned 8-bit activations but its input is written as INT16", exit 3)."""
    model = modelopt_transformer(batch=2)
    path = _save(tmp_path, model)
    outcome = _invoke("convert", path, "--int16", "q_matmul_node", "--no-verify", "--json", "-o", tmp_path / "o.onnx")
    assert outcome.exit_code == 0, outcome.output
    record = json.loads(outcome.stdout)
    bits = {layer["node"]: layer["activation_bits"] for layer in record["layers"]}
    assert bits["q_matmul_node"] == bits["k_matmul_node"] == bits["v_matmul_node"] == 16
    assert bits["fc1_node"] == 8
    reasons = {layer["node"]: layer["reason"] for layer in record["layers"]}
    assert "is also read by a 16-bit layer" in reasons["k_matmul_node"]


def test_a_bias_that_broadcasts_over_the_channels_converts(tmp_path):
    """Fuzz: ``reshape tensor '...bias' [32] -> [1] (scalar)``: a MatMul + Add with a [1] bias is valid ONNX
    (was a broadcast ValueError while quantizing the bias to int32, exit 3)."""
    model = mlp()
    bias = next(t for t in model.graph.initializer if t.name == "fc1.bias")
    bias.CopyFrom(numpy_helper.from_array(np.array([0.05], np.float32), "fc1.bias"))
    path = _save(tmp_path, model)
    outcome = _invoke("convert", path, "--random-inputs", 4, "-o", tmp_path / "out.onnx")
    assert outcome.exit_code == 0, outcome.output
    written = onnx.load(tmp_path / "out.onnx")
    assert [list(t.dims) for t in written.graph.initializer if t.name == "fc1.bias"] == [[1]]  # kept float


# -- calibration and verification data -------------------------------------------------------------------------


def _truncated_npz(tmp_path: Path, model: onnx.ModelProto) -> Path:
    content = _data(tmp_path, model, name="good.npz").read_bytes()
    path = tmp_path / "calib.npz"
    path.write_bytes(content[: len(content) // 3])
    return path


def _npy_named_npz(tmp_path: Path, model: onnx.ModelProto) -> Path:
    arrays = np.load(_data(tmp_path, model, name="good.npz"))
    buffer = io.BytesIO()
    np.save(buffer, next(iter(arrays.values())))
    path = tmp_path / "calib.npz"
    path.write_bytes(buffer.getvalue())
    return path


def _unicode_labels(tmp_path: Path, model: onnx.ModelProto) -> Path:
    return _data(tmp_path, model, labels=np.array(["cat"] * 8))


def _three_d_labels(tmp_path: Path, model: onnx.ModelProto) -> Path:
    return _data(tmp_path, model, labels=np.zeros((8, 2, 2), np.int64))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated_npz, "not a readable .npz file"),
        (_npy_named_npz, "not an .npz archive but a single .npy array"),
        (_unicode_labels, "labels must be class indices"),
        (_three_d_labels, "labels must be class indices"),
    ],
    ids=["truncated", "npy-named-npz", "unicode-labels", "3d-labels"],
)
@pytest.mark.parametrize("flag", ["--data", "--verify-data"])
def test_calibration_or_verification_data_that_cannot_be_read_is_refused(tmp_path, make, message, flag):
    """Fuzz: ``a truncated npz`` (BadZipFile), ``an .npy file named .npz`` (TypeError), ``labels unicode``
    (ValueError in the accuracy metric): all exit 3 before."""
    model = residual_cnn()
    path = _save(tmp_path, model)
    data = make(tmp_path, model)
    extra = ["--no-verify"] if flag == "--data" else ["--data", _data(tmp_path, model, name="good.npz")]
    _refused(_invoke("convert", path, flag, data, "-o", tmp_path / "out.onnx", *extra), str(data), message)
    assert not (tmp_path / "out.onnx").exists()


def test_verification_data_found_bad_after_converting_leaves_no_model(tmp_path):
    """Fuzz: ``--verify-data`` is a directory of chunks whose second has another rank: the preflight reads
    the first sample only, so the error came after the model was written (exit 2 with out.onnx left)."""
    model = residual_cnn()
    path = _save(tmp_path, model)
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    x = np.load(_data(tmp_path, model))["input"]
    np.savez(chunks / "a.npz", input=x[:4])
    np.savez(chunks / "b.npz", input=x[4:, None])
    outcome = _invoke("convert", path, "--verify-data", chunks, "-o", tmp_path / "out.onnx")
    _refused(outcome, "rank 5")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_a_model_onnxruntime_refuses_in_the_audit_leaves_nothing_written(tmp_path, monkeypatch, external):
    """Fuzz: mutated models that the loader takes and onnxruntime refuses (``rename input #0 of a weight
    DequantizeLinear -> 'x'``): the audit's exit 2 came after the model was renamed into place."""

    def refuse(*args, **kwargs):
        raise ModelLoadError("onnxruntime cannot optimize the model for the kernel audit: Type Error")

    monkeypatch.setattr("fp8conv.converter.pipeline.audit_integer_kernels", refuse)
    path = _save(tmp_path, residual_cnn())
    flags = ["--external-data"] if external else []
    outcome = _invoke("convert", path, "--no-verify", "-o", tmp_path / "out.onnx", *flags)
    _refused(outcome, "kernel audit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_external_data_is_verified_from_any_working_directory(tmp_path, monkeypatch):
    """Fuzz (no mutation): ``convert --external-data --random-inputs 1`` run from another directory: the
    verification session read the model from bytes and looked for its data in the working directory."""
    path = _save(tmp_path, residual_cnn())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    outcome = _invoke("convert", path, "--external-data", "--random-inputs", 2, "-o", tmp_path / "out.onnx")
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "out.onnx.data").is_file()


# -- fp8conv run ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["model", "data", "under-a-file", "empty"])
def test_run_refuses_an_output_it_cannot_or_must_not_write(tmp_path, monkeypatch, where):
    """Fuzz: ``run -o ./model.onnx`` overwrote the model with its outputs (exit 0); ``-o notes.txt/out.onnx``
    (FileExistsError) and ``-o ''`` (ValueError) were exit 3."""
    model = residual_cnn()
    path = _save(tmp_path, model)
    data = _data(tmp_path, model)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a directory\n")
    monkeypatch.chdir(tmp_path)
    output = {"model": path, "data": data, "under-a-file": notes / "out.npz", "empty": ""}[where]
    before = {p.name: _digest(p) for p in (path, data, notes)}
    message = {"model": "overwrite the input model", "data": "overwrite the input data"}.get(where, "cannot write")
    _refused(_invoke("run", path, "--data", data, "-o", output), message)
    assert {p.name: _digest(p) for p in (path, data, notes)} == before
