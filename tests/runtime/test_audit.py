"""Integer-kernel audit: real onnxruntime sessions on small hand-built QDQ models."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fp8conv.errors import Fp8ConvError, ModelLoadError
from fp8conv.runtime.audit import KernelAudit, KernelRecord, audit_integer_kernels

RNG = np.random.default_rng(7)
NP_TYPE = {TensorProto.UINT8: np.uint8, TensorProto.INT8: np.int8, TensorProto.INT16: np.int16}


class Builder:
    """Collects nodes and initializers of one QDQ test model."""

    def __init__(self, x_shape: list[int], act: int = TensorProto.UINT8, opset: int = 13) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.x_shape = x_shape
        self.act = act
        self.opset = opset
        self.scales: dict[str, np.ndarray] = {}

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str | None = None, **attrs) -> str:
        name = f"{op}_{output}" if name is None else name
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def qdq_act(self, tensor: str, tag: str, zero_point: int | None = None, scale: float = 0.05) -> str:
        """QuantizeLinear → DequantizeLinear with the builder's activation type."""
        if zero_point is None:
            zero_point = 128 if self.act == TensorProto.UINT8 else 0
        s = self.init(f"{tag}_scale", np.array(scale, np.float32))
        self.scales[tag] = np.array(scale, np.float32)
        if self.act == TensorProto.FLOAT8E4M3FN:
            self.inits.append(helper.make_tensor(f"{tag}_zp", self.act, [], [0.0]))
            z = f"{tag}_zp"
        else:
            z = self.init(f"{tag}_zp", np.array(zero_point, NP_TYPE[self.act]))
        q = self.node("QuantizeLinear", [tensor, s, z], f"{tag}_q", name=f"{tag}_Q")
        return self.node("DequantizeLinear", [q, s, z], f"{tag}_dq", name=f"{tag}_DQ")

    def weight(self, tag: str, shape: tuple[int, ...], axis: int, int4: bool = False) -> str:
        """int8 weight in the 7-bit range [-64, 63] (or int4), per-channel along ``axis``, zero point 0."""
        if int4:
            values = RNG.integers(-8, 8, shape).flatten().tolist()
            self.inits.append(helper.make_tensor(f"{tag}_q", TensorProto.INT4, shape, values))
            self.inits.append(helper.make_tensor(f"{tag}_zp", TensorProto.INT4, [shape[axis]], [0] * shape[axis]))
            s = self.init(f"{tag}_scale", RNG.uniform(0.005, 0.02, shape[axis]).astype(np.float32))
            self.scales[tag] = numpy_helper.to_array(self.inits[-1])
            return self.node("DequantizeLinear", [f"{tag}_q", s, f"{tag}_zp"], f"{tag}_dq", name=f"{tag}_DQ", axis=axis)
        q = self.init(f"{tag}_q", RNG.integers(-64, 64, shape).astype(np.int8))
        s = self.init(f"{tag}_scale", RNG.uniform(0.005, 0.02, shape[axis]).astype(np.float32))
        self.scales[tag] = numpy_helper.to_array(self.inits[-1])
        z = self.init(f"{tag}_zp", np.zeros(shape[axis], np.int8))
        return self.node("DequantizeLinear", [q, s, z], f"{tag}_dq", name=f"{tag}_DQ", axis=axis)

    def bias(self, tag: str, x_tag: str, w_tag: str, scale_factor: float = 1.0) -> str:
        """int32 bias DQ with scale x_scale * w_scale (times ``scale_factor``), as QLinearConv/QGemm read it."""
        scale = (self.scales[x_tag] * self.scales[w_tag] * scale_factor).astype(np.float32)
        q = self.init(f"{tag}_q", RNG.integers(-500, 500, scale.size).astype(np.int32))
        s = self.init(f"{tag}_scale", scale)
        return self.node("DequantizeLinear", [q, s], f"{tag}_dq", name=f"{tag}_DQ", axis=0)

    def model(self, *outputs: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "audit_test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.x_shape)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=10)


def conv_model(
    *,
    act: int = TensorProto.UINT8,
    output_q: bool = True,
    relu_zero_point: int | None = None,
    opset: int = 13,
    bias_scale_factor: float = 1.0,
    int4_weight: bool = False,
) -> onnx.ModelProto:
    """x → Q/DQ → Conv(DQ W per-channel axis 0, DQ int32 bias) [→ Relu] [→ Q/DQ] → y."""
    b = Builder([1, 4, 8, 8], act, opset)
    x = b.qdq_act("x", "in")
    w = b.weight("w", (8, 4, 3, 3), axis=0, int4=int4_weight)
    bias = b.bias("b", "in", "w", bias_scale_factor)
    y = b.node("Conv", [x, w, bias], "conv_out", name="conv", pads=[1, 1, 1, 1])
    if relu_zero_point is not None:
        y = b.node("Relu", [y], "relu_out", name="relu")
    if output_q:
        y = b.qdq_act(y, "out", zero_point=relu_zero_point)
    b.node("Identity", [y], "y", name="out_id")
    return b.model("y")


def matmul_model(
    *, act: int = TensorProto.UINT8, output_q: bool = True, weight_axis: int = 1, opset: int = 13
) -> onnx.ModelProto:
    """x[2,16] → Q/DQ → MatMul(DQ W[16,8]) [→ Q/DQ] → y."""
    b = Builder([2, 16], act, opset)
    x = b.qdq_act("x", "in")
    w = b.weight("w", (16, 8), axis=weight_axis)
    y = b.node("MatMul", [x, w], "mm_out", name="matmul")
    if output_q:
        y = b.qdq_act(y, "out")
    b.node("Identity", [y], "y", name="out_id")
    return b.model("y")


def gemm_model(*, beta: float = 1.0, bias_scale_factor: float = 1.0) -> onnx.ModelProto:
    """x[2,16] → Q/DQ → Gemm(DQ W[8,16] transB, DQ int32 bias) → Q/DQ → y."""
    b = Builder([2, 16])
    x = b.qdq_act("x", "in")
    w = b.weight("w", (8, 16), axis=0)
    bias = b.bias("b", "in", "w", bias_scale_factor)
    y = b.node("Gemm", [x, w, bias], "gemm_out", name="gemm", transB=1, beta=beta)
    y = b.qdq_act(y, "out")
    b.node("Identity", [y], "y", name="out_id")
    return b.model("y")


def int4_matmul_model() -> onnx.ModelProto:
    """Float x[2,64] → MatMul(DQ int4 W[64,8], blocked along axis 0, block 32; opset 21)."""
    b = Builder([2, 64], opset=21)
    values = RNG.integers(-8, 8, (64, 8))
    b.inits.append(helper.make_tensor("w4_q", TensorProto.INT4, [64, 8], values.flatten().tolist()))
    s = b.init("w4_scale", RNG.uniform(0.01, 0.02, (2, 8)).astype(np.float32))
    w = b.node("DequantizeLinear", ["w4_q", s], "w4_dq", name="w4_DQ", axis=0, block_size=32)
    b.node("MatMul", ["x", w], "y", name="matmul4")
    return b.model("y")


def float_conv_model() -> onnx.ModelProto:
    b = Builder([1, 4, 8, 8])
    w = b.init("wf", RNG.standard_normal((8, 4, 3, 3)).astype(np.float32))
    b.node("Conv", ["x", w], "y", name="float_conv", pads=[1, 1, 1, 1])
    return b.model("y")


def only(audit: KernelAudit) -> KernelRecord:
    assert len(audit.records) == 1, audit.records
    return audit.records[0]


# ---------------------------------------------------------------------------------------------- fused


@pytest.mark.parametrize(("level", "domain"), [("all", "com.microsoft"), ("extended", "")])
def test_conv_becomes_qlinearconv(level: str, domain: str) -> None:
    record = only(audit_integer_kernels(conv_model(), optimization_level=level))
    assert (record.node, record.op_type, record.kernel) == ("conv", "Conv", "QLinearConv")
    assert record.integer
    assert record.reason is None
    assert record.kernel_domain == domain  # ORT_ENABLE_ALL: NHWC com.microsoft QLinearConv between Transposes
    if level == "all":
        assert record.optimized_node.startswith("conv_token_")
    else:
        assert record.optimized_node == "conv"


def test_matmul_becomes_qlinearmatmul() -> None:
    record = only(audit_integer_kernels(matmul_model()))
    assert (record.node, record.kernel, record.integer, record.reason) == ("matmul", "QLinearMatMul", True, None)


def test_matmul_without_output_q_becomes_matmulintegertofloat() -> None:
    record = only(audit_integer_kernels(matmul_model(output_q=False)))
    assert (record.kernel, record.kernel_domain, record.integer) == ("MatMulIntegerToFloat", "com.microsoft", True)


def test_gemm_with_int32_bias_becomes_qgemm() -> None:
    record = only(audit_integer_kernels(gemm_model()))
    assert (record.node, record.op_type, record.kernel, record.integer) == ("gemm", "Gemm", "QGemm", True)


def test_blocked_int4_weight_becomes_matmulnbits() -> None:
    # MatMulNBits consumes a repacked copy of the weight named w4_q_T; the node keeps its name.
    record = only(audit_integer_kernels(int4_matmul_model()))
    assert (record.node, record.kernel, record.integer, record.optimized_node) == (
        "matmul4",
        "MatMulNBits",
        True,
        "matmul4",
    )


def test_relu_folded_into_qlinearconv_when_zero_point_is_type_minimum() -> None:
    record = only(audit_integer_kernels(conv_model(relu_zero_point=0)))
    assert (record.kernel, record.integer) == ("QLinearConv", True)


def test_int8_activations_and_renamed_weights_still_map() -> None:
    # int8 activations are rewritten to uint8 (tensor names change); x64quantprecision renames the
    # weight <w>_s8_2_u8: the node is still found by its name.
    model = matmul_model(act=TensorProto.INT8)
    record = only(audit_integer_kernels(model, session_options_config={"session.x64quantprecision": "1"}))
    assert (record.kernel, record.integer) == ("QLinearMatMul", True)


# ---------------------------------------------------------------------------------------------- not fused


def test_int16_conv_stays_float() -> None:
    record = only(audit_integer_kernels(conv_model(act=TensorProto.INT16, opset=21)))
    assert (record.kernel, record.integer) == ("Conv", False)
    assert "16-bit activations (INT16)" in record.reason
    assert "no 16-bit integer kernels" in record.reason


def test_fp8_activations_stay_float() -> None:
    record = only(audit_integer_kernels(conv_model(act=TensorProto.FLOAT8E4M3FN, opset=21)))
    assert (record.kernel, record.integer) == ("Conv", False)
    assert "FP8 activations (FLOAT8E4M3FN)" in record.reason


def test_int4_conv_weight_stays_float() -> None:
    record = only(audit_integer_kernels(conv_model(int4_weight=True, opset=21)))
    assert (record.kernel, record.integer) == ("Conv", False)
    assert "4-bit weight on Conv" in record.reason


def test_int16_matmul_gets_weight_only_matmulnbits() -> None:
    # onnxruntime 1.32 leaves the int16 activation DQ in float and fuses the int8 weight DQ into MatMulNBits
    # (bits=8): an integer weight kernel, reported with a warning.
    record = only(audit_integer_kernels(matmul_model(act=TensorProto.INT16, opset=21)))
    assert (record.kernel, record.integer) == ("MatMulNBits", True)
    assert record.reason.startswith("warning:")
    assert "INT16" in record.reason


def test_int16_matmul_with_per_row_scales_stays_float() -> None:
    # Same model with per-row weight scales: MatMulNBits does not apply either; every reason is listed.
    record = only(audit_integer_kernels(matmul_model(act=TensorProto.INT16, opset=21, weight_axis=0)))
    assert (record.kernel, record.integer) == ("MatMul", False)
    assert "16-bit activations" in record.reason
    assert "per-row" in record.reason


def test_matmul_weight_scale_per_row_stays_float() -> None:
    record = only(audit_integer_kernels(matmul_model(weight_axis=0)))
    assert (record.kernel, record.integer) == ("MatMul", False)
    assert "per-row" in record.reason
    assert "axis 0" in record.reason


def test_conv_without_output_q_stays_float() -> None:
    record = only(audit_integer_kernels(conv_model(output_q=False), optimization_level="extended"))
    assert (record.kernel, record.integer) == ("Conv", False)
    assert "no QuantizeLinear after the Conv" in record.reason
    assert "quantized output" in record.reason


def test_conv_without_output_q_at_level_all() -> None:
    record = only(audit_integer_kernels(conv_model(output_q=False)))
    assert (record.kernel, record.integer, record.optimized_node) == ("Conv", False, "conv")
    assert "quantized output" in record.reason


@pytest.mark.parametrize(
    ("level", "domain", "optimized_name"), [("extended", "", "float_conv"), ("all", "com.microsoft.nchwc", "y_nchwc")]
)
def test_float_conv_without_dq(level: str, domain: str, optimized_name: str) -> None:
    # ORT_ENABLE_ALL rewrites the float Conv to com.microsoft.nchwc Conv named after its output tensor, with
    # a reordered weight ("reorder"): it is found through the output tensor behind ReorderOutput.
    record = only(audit_integer_kernels(float_conv_model(), optimization_level=level))
    assert (record.node, record.kernel, record.integer) == ("float_conv", "Conv", False)
    assert (record.kernel_domain, record.optimized_node) == (domain, optimized_name)
    assert "no DequantizeLinear on any input" in record.reason


def test_basic_level_does_not_fuse() -> None:
    audit = audit_integer_kernels(conv_model(), optimization_level="basic")
    record = only(audit)
    assert audit.optimization_level == "basic"
    assert (record.kernel, record.integer) == ("Conv", False)
    assert "ORT_ENABLE_EXTENDED" in record.reason


def test_relu_with_mid_range_zero_point_is_not_folded() -> None:
    record = only(audit_integer_kernels(conv_model(relu_zero_point=128)))
    assert record.integer is False
    assert record.kernel == "FusedConv"
    assert "Relu" in record.reason
    assert "zero point 128" in record.reason


def test_conv_bias_scale_mismatch_stays_float() -> None:
    record = only(audit_integer_kernels(conv_model(bias_scale_factor=1.5)))
    assert (record.kernel, record.integer) == ("Conv", False)
    assert "bias scale" in record.reason
    assert "0.5" in record.reason


def test_gemm_bias_scale_mismatch_fuses_with_warning() -> None:
    # QGemm ignores the bias DQ scale: fused, but its results differ from the QDQ graph.
    record = only(audit_integer_kernels(gemm_model(bias_scale_factor=1.5)))
    assert (record.kernel, record.integer) == ("QGemm", True)
    assert record.reason.startswith("warning:")
    assert "bias scale" in record.reason


def test_gemm_beta_not_one_stays_float() -> None:
    record = only(audit_integer_kernels(gemm_model(beta=0.5)))
    assert (record.kernel, record.integer) == ("Gemm", False)
    assert "beta=0.5" in record.reason


# ---------------------------------------------------------------------------------------------- API


def mixed_model() -> onnx.ModelProto:
    """An unnamed fused Conv, a float MatMul (per-row scales) and a fused MatMul in one graph."""
    b = Builder([1, 4, 4, 4])
    x = b.qdq_act("x", "in")
    w = b.weight("cw", (8, 4, 3, 3), axis=0)
    c = b.node("Conv", [x, w], "c", name="", pads=[1, 1, 1, 1])  # no name: found by its weight
    c = b.qdq_act(c, "c_out")
    f = b.node("Flatten", [c], "flat", name="flatten")
    f = b.qdq_act(f, "flat_out")
    w1 = b.weight("w1", (128, 16), axis=0)
    m1 = b.node("MatMul", [f, w1], "m1", name="mm_rows")
    m1 = b.qdq_act(m1, "m1_out")
    w2 = b.weight("w2", (16, 4), axis=1)
    m2 = b.node("MatMul", [m1, w2], "m2", name="mm_cols")
    m2 = b.qdq_act(m2, "m2_out")
    b.node("Identity", [m2], "y", name="out_id")
    return b.model("y")


def test_mixed_model_counts_and_json(tmp_path) -> None:
    audit = audit_integer_kernels(mixed_model())
    by_node = {r.node: r for r in audit.records}
    assert list(by_node) == ["Conv(c)", "mm_rows", "mm_cols"]
    assert by_node["Conv(c)"].kernel == "QLinearConv"
    assert by_node["Conv(c)"].optimized_node != ""
    assert by_node["mm_rows"].kernel == "MatMul"
    assert "per-row" in by_node["mm_rows"].reason
    assert by_node["mm_cols"].kernel == "QLinearMatMul"
    assert (audit.integer_count, audit.float_count) == (2, 1)
    assert audit.fraction_integer == pytest.approx(2 / 3)
    assert audit.counts_by_op() == {"Conv": {"integer": 1, "float": 0}, "MatMul": {"integer": 1, "float": 1}}
    data = json.loads(json.dumps(audit.to_json()))
    assert data["optimization_level"] == "all"
    assert data["integer_count"] == 2
    assert [r["node"] for r in data["records"]] == ["Conv(c)", "mm_rows", "mm_cols"]
    assert data["records"][1]["reason"] == by_node["mm_rows"].reason
    assert audit.float_records() == (by_node["mm_rows"],)


def test_path_with_external_data_and_temp_cleanup(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.onnx"
    onnx.save_model(conv_model(), path, save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    record = only(audit_integer_kernels(path))
    assert (record.kernel, record.integer) == ("QLinearConv", True)
    assert list(scratch.iterdir()) == []  # the optimized model and its data were removed


def test_an_onnx_ir_model_is_audited_as_its_protobuf() -> None:
    proto = mixed_model()
    expected = audit_integer_kernels(proto).records
    assert audit_integer_kernels(ir.from_proto(proto)).records == expected
    assert audit_integer_kernels(ir.from_proto(proto), serialized=proto.SerializeToString()).records == expected


def test_external_data_is_read_lazily_and_only_for_small_parameters(tmp_path, monkeypatch) -> None:
    """A file's weights stay on disk (onnxruntime reads them); the audit loads only the scales it checks."""
    path = tmp_path / "model.onnx"
    model = conv_model(bias_scale_factor=1.5)  # a float Conv: the bias scale check reads three scales
    saved = onnx.ModelProto()
    saved.CopyFrom(model)  # onnx.save_model moves the data of the proto it saves out to the file
    onnx.save_model(saved, path, save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    loaded: list[str] = []
    load = ir.ExternalTensor._load

    def loading(self):
        loaded.append(self.name)
        return load(self)

    monkeypatch.setattr(ir.ExternalTensor, "_load", loading)
    by_path = only(audit_integer_kernels(path))
    assert (by_path.kernel, by_path.integer) == ("Conv", False)
    assert "bias scale differs from input scale x weight scale by up to 0.5" in by_path.reason
    assert sorted(set(loaded)) == ["b_scale", "in_scale", "w_scale"]
    # An onnx_ir model loaded from that file: serialized with its external data left where it is.
    loaded.clear()
    assert only(audit_integer_kernels(ir.load(path))) == by_path
    assert sorted(set(loaded)) == ["b_scale", "in_scale", "w_scale"]
    assert only(audit_integer_kernels(model)) == by_path


def test_level_names_and_errors(tmp_path) -> None:
    assert audit_integer_kernels(matmul_model(), optimization_level="ORT_ENABLE_EXTENDED").optimization_level == (
        "extended"
    )
    disabled = audit_integer_kernels(matmul_model(), optimization_level="disable")
    assert "ORT_ENABLE_EXTENDED" in only(disabled).reason
    with pytest.raises(Fp8ConvError, match="optimization level"):
        audit_integer_kernels(matmul_model(), optimization_level="max")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        audit_integer_kernels(bad)
    assert audit_integer_kernels(Builder([2]).model("x")).fraction_integer == 0.0


def test_derived_names_match_the_suffix_grammar():
    """``derives(base, name)`` is ``name == (fused )?base(suffix)*`` for onnxruntime's suffixes (regex oracle)."""
    import random
    import re

    from fp8conv.runtime.audit import matching

    rng = random.Random(0)
    suffixes = ["/MatMulAddFusion/", "/GemmFusion", "/duplicated", "_token_12", "_T", "_s8_2_u8", "_nchwc"]
    suffixes.append("_bias_int32")
    bases = ["conv1", "layer1.0/conv", "fused x", "a_T_x", "w", "fc_T"]
    for _ in range(5000):
        base = rng.choice(bases)
        name = rng.choice(["", "fused "]) + rng.choice(bases) + "".join(rng.choices(suffixes, k=rng.randint(0, 3)))
        expected = re.fullmatch("(?:fused )?" + re.escape(base) + f"(?:{matching.SUFFIXES})*", name) is not None
        assert matching.derives(base, name) == expected, (base, name)
    assert not matching.derives("", "x")


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("all", "all"),
        ("ORT_ENABLE_ALL", "all"),
        ("enable_all", "all"),
        (" Extended ", "extended"),
        ("ORT_ENABLE_EXTENDED", "extended"),
        ("enable_basic", "basic"),
        ("ort_enable_layout", "layout"),
        ("disable", "disable"),
        ("disabled", "disable"),
        ("none", "disable"),
        ("ORT_DISABLE_ALL", "disable"),
        ("disable_all", "disable"),
        ("", "all"),
    ],
)
def test_one_optimization_level_parser_for_audit_and_verify(alias, key):
    """The audit and verify parse levels with the one parser (they accepted different aliases before)."""
    from fp8conv.runtime.ort_backend import OPTIMIZATION_LEVELS, graph_optimization_level, optimization_level

    assert optimization_level(alias) == key
    assert graph_optimization_level(alias) == getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[key])
    for bad in ("fast", "ORT_ENABLE_EVERYTHING", "enable"):
        with pytest.raises(Fp8ConvError, match=f"unknown optimization level {bad!r}; expected one of disable, basic"):
            optimization_level(bad)
