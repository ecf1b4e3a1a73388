"""Normalization of every FP8 dialect into the canonical form (fp8conv.passes.normalize*)."""

from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from golden_models import GOLDEN, qdq_zp_shape1, with_initializer
from onnx import TensorProto, helper, numpy_helper

from fp8conv import fp8
from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.passes.canonical import CANONICAL_DOMAIN, QuantPoint, collect_quant_points, is_fake_quantize
from fp8conv.passes.detect_unsupported import find_block_format_nodes, find_integer_qdq
from fp8conv.passes.normalize import normalize_fp8
from fp8conv.passes.reference_runner import ReferenceRunner

SUPPORTED = [name for name, case in GOLDEN.items() if not case.unsupported]
STANDARD = [name for name in GOLDEN if not any(o.domain for o in GOLDEN[name].build().opset_import)]


def _normalize(proto: onnx.ModelProto):
    return normalize_fp8(ir.from_proto(proto))


def _points(proto: onnx.ModelProto) -> dict[str, QuantPoint]:
    result = _normalize(proto)
    return {point.node: point for point in collect_quant_points(result.model)}


def _fake_quantize(x: np.ndarray, point: QuantPoint) -> np.ndarray:
    spec = point.spec
    return fp8.fake_quantize(
        x, point.scale, spec.format, axis=spec.axis, block_size=spec.block_size, saturate=spec.saturate
    )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values bit for bit: NaN where the other has NaN (any payload), -0 differs from +0."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    numbers = ~np.isnan(a)
    return bool(np.array_equal(a[numbers].view(np.uint8), b[numbers].view(np.uint8)))


def _run_subgraph(model: onnx.ModelProto, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
    """Run the source model's nodes between ``inputs`` and ``output`` alone in onnxruntime (no optimization)."""
    sub = onnx.utils.Extractor(model).extract_model(list(inputs), [output])
    for value in [*sub.graph.input, *sub.graph.output]:  # any batch size
        for dim in value.type.tensor_type.shape.dim:
            dim.dim_param = "n"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([output], inputs)[0]


def _random(shape: tuple[int, ...], spread: float, dtype: type = np.float32) -> np.ndarray:
    """Random values over many magnitudes, with ±0, ±Inf and NaN."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * np.exp2(rng.uniform(-12, np.log2(spread), shape))).astype(dtype)
    x.reshape(-1)[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e4]
    return x


def _initializer(proto: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == name))


# --- recognition ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_models_are_valid_onnx(name):
    model = GOLDEN[name].build()
    onnx.checker.check_model(model, full_check=name in STANDARD)


@pytest.mark.parametrize("name", SUPPORTED)
def test_golden_model_is_recognised(name):
    case = GOLDEN[name]
    result = _normalize(case.build())
    points = collect_quant_points(result.model)
    assert result.modified
    assert result.dialects == case.dialects
    assert sum(p.role == "activation" for p in points) == case.activation_points
    assert sum(p.role == "weight" for p in points) == case.weight_points
    assert len(result.integer_qdq) == case.integer_qdq


def _p(node, role, fmt="e4m3fn", axis=None, block_size=None, saturate=True, stored=False):
    return (node, role, fmt, axis, block_size, saturate, stored)


def _conv_points(suffix, fmt="e4m3fn", weight_axis=None, saturate=True, weight_suffix=None, act_prefix=""):
    weight_suffix = weight_suffix or suffix
    return [
        _p(f"input{act_prefix}_{suffix}", "activation", fmt, saturate=saturate),
        _p(f"W1_{weight_suffix}", "weight", fmt, weight_axis, saturate=saturate),
        _p(f"relu1{act_prefix}_{suffix}", "activation", fmt, saturate=saturate),
        _p(f"W2_{weight_suffix}", "weight", fmt, weight_axis, saturate=saturate),
    ]


EXPECTED_POINTS = {
    "qdq_per_tensor": _conv_points("QuantizeLinear"),
    "qdq_per_axis": _conv_points("QuantizeLinear", weight_axis=0),
    "qdq_blocked": [
        _p("input_QuantizeLinear", "activation"),
        _p("W_QuantizeLinear", "weight", axis=0, block_size=16),
    ],
    "qdq_f16_scale": _conv_points("QuantizeLinear", act_prefix="_f16"),
    "qdq_zp_shape1": [
        _p("input_QuantizeLinear", "activation"),
        _p("W1_DequantizeLinear", "weight", stored=True),
        _p("relu1_QuantizeLinear", "activation"),
        _p("W2_DequantizeLinear", "weight", stored=True),
    ],
    "qdq_output_dtype": _conv_points("QuantizeLinear"),
    "qdq_e4m3fnuz": _conv_points("QuantizeLinear", "e4m3fnuz"),
    "qdq_e5m2": _conv_points("QuantizeLinear", "e5m2"),
    "qdq_e5m2fnuz": _conv_points("QuantizeLinear", "e5m2fnuz"),
    "qdq_saturate0": _conv_points("QuantizeLinear", saturate=False),
    "dq_weight": [
        _p("W1_DequantizeLinear", "weight", stored=True),
        _p("W2_DequantizeLinear", "weight", axis=0, stored=True),
    ],
    "dq_weight_blocked": [_p("W_DequantizeLinear", "weight", "e5m2", 0, 16, stored=True)],
    "trt_opset1": [
        _p("input_TRT_Q", "activation"),
        _p("W1_TRT_DQ", "weight", stored=True),
        _p("relu1_TRT_Q", "activation"),
        _p("W2_TRT_Q", "weight"),
    ],
    "floatquant_e4m3fn": _conv_points("FloatQuant"),
    "floatquant_e3m4": [
        _p("input_FloatQuant", "activation", "minifloat_e3m4"),
        _p("W1_FloatQuant", "weight", "minifloat_e3m4", 0),
        _p("relu1_FloatQuant", "activation", "minifloat_e3m4", 1),
        _p("W2_FloatQuant", "weight", "minifloat_e3m4", 0),
    ],
    "cast_e4m3fn_clip": _conv_points("cast_fp8", weight_axis=0),
    "cast_e5m2": _conv_points("cast_fp8", "e5m2", weight_axis=0),
    "mixed_int8": [_p("relu1_QuantizeLinear", "activation"), _p("W2_DequantizeLinear", "weight", stored=True)],
}
EXPECTED_POINTS["trt_opset100"] = EXPECTED_POINTS["trt_opset1"]
EXPECTED_POINTS["qdq_trt_domain"] = EXPECTED_POINTS["qdq_zp_shape1"]


@pytest.mark.parametrize("name", SUPPORTED)
def test_quant_points_have_the_expected_roles_formats_and_granularity(name):
    points = collect_quant_points(_normalize(GOLDEN[name].build()).model)
    found = [
        (p.node, p.role, p.spec.format.name, p.spec.axis, p.spec.block_size, p.spec.saturate, p.stored) for p in points
    ]
    assert found == EXPECTED_POINTS[name]


@pytest.mark.parametrize("name", SUPPORTED)
def test_tensor_names_are_kept(name):
    source = GOLDEN[name].build()
    model = ir.to_proto(_normalize(source).model)
    source_values = {v for node in source.graph.node for v in node.output} | {i.name for i in source.graph.input}
    for node in model.graph.node:
        assert set(node.output) <= source_values, node.name
        assert node.name in {n.name for n in source.graph.node}
    assert [o.name for o in model.graph.output] == [o.name for o in source.graph.output]
    assert [i.name for i in model.graph.input] == [i.name for i in source.graph.input]
    for point in collect_quant_points(ir.from_proto(model)):
        assert point.output.endswith("_dequantized"), point
        assert point.output.startswith(point.tensor.removesuffix("_fp8").removesuffix("_codes")), point


@pytest.mark.parametrize("name", SUPPORTED)
def test_canonical_model_is_valid_and_topologically_sorted(name):
    model = ir.to_proto(_normalize(GOLDEN[name].build()).model)
    onnx.checker.check_model(model)
    defined = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        assert all(value in defined for value in node.input if value), node.name
        defined.update(node.output)
    domains = {o.domain: o.version for o in model.opset_import}
    assert "trt" not in domains
    assert not any(domain.startswith("qonnx") for domain in domains)
    assert (CANONICAL_DOMAIN in domains) == any(n.domain == CANONICAL_DOMAIN for n in model.graph.node)


@pytest.mark.parametrize("name", SUPPORTED)
def test_normalization_is_idempotent(name):
    first = _normalize(GOLDEN[name].build())
    canonical = ir.to_proto(first.model).SerializeToString()
    again = normalize_fp8(first.model)
    assert not again.modified
    assert again.dialects == first.dialects
    assert again.integer_qdq == first.integer_qdq
    assert ir.to_proto(again.model).SerializeToString() == canonical
    reloaded = normalize_fp8(ir.from_proto(onnx.load_from_string(canonical)))
    assert not reloaded.modified
    assert reloaded.dialects == first.dialects
    assert ir.to_proto(reloaded.model).SerializeToString() == canonical


def test_unused_quantizer_constants_are_removed():
    qdq = ir.to_proto(_normalize(GOLDEN["qdq_per_tensor"].build()).model)
    assert sorted(t.name for t in qdq.graph.initializer) == [
        "B1", "W1", "W1_scale", "W2", "W2_scale", "input_scale", "relu1_scale",
    ]  # fmt: skip
    floatquant = ir.to_proto(_normalize(GOLDEN["floatquant_e3m4"].build()).model)
    assert not [t.name for t in floatquant.graph.initializer if t.name.startswith("fq_")]
    assert not [t.name for t in floatquant.graph.initializer if t.name == "W1_scale"]  # replaced by 1-D W1_scale_axis0


def test_stored_weight_zero_point_is_dropped():
    model = ir.to_proto(_normalize(GOLDEN["dq_weight"].build()).model)
    dq = next(n for n in model.graph.node if n.name == "W1_DequantizeLinear")
    assert list(dq.input) == ["W1_fp8", "W1_scale"]
    assert "W1_zero_point" not in {t.name for t in model.graph.initializer}


def test_per_channel_broadcast_scale_becomes_a_1d_initializer_and_the_original_stays_shared():
    source = GOLDEN["cast_e4m3fn_clip"].build()
    model = ir.to_proto(_normalize(source).model)
    fq = next(n for n in model.graph.node if n.name == "W1_cast_fp8")
    assert fq.input[1] == "W1_scale_axis0"
    assert _initializer(model, "W1_scale_axis0").shape == (4,)
    np.testing.assert_array_equal(_initializer(model, "W1_scale_axis0"), _initializer(source, "W1_scale").reshape(-1))


def test_floatquant_records_has_subnormal_and_uses_a_negative_axis_when_the_rank_is_unknown():
    source = GOLDEN["floatquant_e3m4"].build()
    del source.graph.value_info[:]
    model = _normalize(source).model
    points = {p.node: p for p in collect_quant_points(model)}
    assert points["relu1_FloatQuant"].spec.axis == -3  # scale [1,4,1,1], rank of relu1 unknown
    fq = next(n for n in model.graph if n.name == "relu1_FloatQuant")
    assert fq.metadata_props["fp8conv.qonnx.has_subnormal"] == "1"


def test_trt_stored_weight_becomes_an_fp8_initializer_with_the_same_bytes(caplog):
    source = GOLDEN["trt_opset1"].build()
    with caplog.at_level(logging.INFO):
        model = ir.to_proto(_normalize(source).model)
    weight = next(t for t in model.graph.initializer if t.name == "W1_codes")
    assert weight.data_type == TensorProto.FLOAT8E4M3FN
    assert numpy_helper.to_array(weight).view(np.uint8).tobytes() == _initializer(source, "W1_codes").tobytes()
    dq = next(n for n in model.graph.node if n.name == "W1_TRT_DQ")
    assert (dq.op_type, dq.domain, list(dq.input)) == ("DequantizeLinear", "", ["W1_codes", "W1_scale"])
    assert "needs ONNX opset 19" in caplog.text  # trt_opset1 is opset 17
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _normalize(GOLDEN["trt_opset100"].build())
    assert "needs ONNX opset 19" not in caplog.text


def test_integer_qdq_is_reported_and_kept():
    source = GOLDEN["mixed_int8"].build()
    result = _normalize(source)
    assert result.integer_qdq == (
        "input_QuantizeLinear",
        "input_DequantizeLinear",
        "W1_DequantizeLinear",
        "B1_DequantizeLinear",
    )
    found = {(e.node, e.op_type, e.dtype) for e in find_integer_qdq(result.model)}
    assert found == {
        ("input_QuantizeLinear", "QuantizeLinear", "UINT8"),
        ("input_DequantizeLinear", "DequantizeLinear", "UINT8"),
        ("W1_DequantizeLinear", "DequantizeLinear", "INT8"),
        ("B1_DequantizeLinear", "DequantizeLinear", "INT32"),
    }
    model = ir.to_proto(result.model)

    def described(nodes):
        return [
            (
                n.name,
                n.op_type,
                n.domain,
                list(n.input),
                list(n.output),
                {a.name: helper.get_attribute_value(a) for a in n.attribute},
            )
            for n in nodes
            if n.name in result.integer_qdq
        ]

    assert described(model.graph.node) == described(source.graph.node)


# --- numerics: the canonical FakeQuantize computes what the source quantizer computed ------------------


@pytest.mark.parametrize(
    ("name", "tensor", "dequantized"),
    [
        ("qdq_per_tensor", "input", "input_dequantized"),
        ("qdq_e4m3fnuz", "input", "input_dequantized"),
        ("qdq_e5m2", "relu1", "relu1_dequantized"),
        ("qdq_e5m2fnuz", "input", "input_dequantized"),
        ("qdq_zp_shape1", "input", "input_dequantized"),
        ("cast_e4m3fn_clip", "input", "input_dequantized"),
        ("cast_e5m2", "relu1", "relu1_dequantized"),
    ],
)
def test_activation_fake_quantize_equals_the_source_in_onnxruntime(name, tensor, dequantized):
    source = GOLDEN[name].build()
    point = next(p for p in _points(source).values() if p.output == dequantized)
    x = _random((64, 3 if tensor == "input" else 4, 8, 8), 1e4)
    expected = _run_subgraph(source, {tensor: x}, dequantized)
    assert _same(_fake_quantize(x, point), expected)


def test_float16_fake_quantize_equals_the_source_in_onnxruntime():
    source = GOLDEN["qdq_f16_scale"].build()
    point = _points(source)["input_f16_QuantizeLinear"]
    x = _random((64, 3, 8, 8), 100, np.float16)
    expected = _run_subgraph(source, {"input_f16": x}, "input_f16_dequantized")
    assert expected.dtype == np.float16
    assert _same(_fake_quantize(x.astype(np.float32), point).astype(np.float16), expected)


@pytest.mark.parametrize(
    ("name", "node"),
    [
        ("qdq_per_axis", "W1_QuantizeLinear"),
        ("qdq_blocked", "W_QuantizeLinear"),
        ("cast_e4m3fn_clip", "W2_cast_fp8"),
        ("cast_e5m2", "W1_cast_fp8"),
    ],
)
def test_weight_fake_quantize_equals_the_source_in_onnxruntime(name, node):
    source = GOLDEN[name].build()
    point = _points(source)[node]
    expected = _run_subgraph(source, {}, point.output)
    assert _same(_fake_quantize(_initializer(source, point.tensor), point), expected)


@pytest.mark.parametrize("name", ["dq_weight", "dq_weight_blocked", "trt_opset1"])
def test_stored_weights_decode_to_what_the_source_dequantizes(name):
    source = GOLDEN[name].build()
    normalized = _normalize(source).model
    points = [p for p in collect_quant_points(normalized) if p.stored]
    assert points
    canonical = ir.to_proto(normalized)
    for point in points:
        codes = numpy_helper.to_array(next(t for t in canonical.graph.initializer if t.name == point.tensor))
        values = fp8.decode(codes.view(np.uint8), point.spec.format)
        if point.spec.block_size:
            scale = np.repeat(point.scale, point.spec.block_size, axis=point.spec.axis)
        elif point.spec.axis is not None:
            scale = point.scale.reshape([-1 if d == point.spec.axis else 1 for d in range(values.ndim)])
        else:
            scale = point.scale
        if name.startswith("trt"):  # the source cannot run in onnxruntime: decode the uint8 codes
            expected = _initializer(source, "W1_codes").view(ml_dtypes.float8_e4m3fn).astype(np.float32) * scale
        else:
            expected = _run_subgraph(source, {}, point.output)
        assert _same(values * scale, expected)


def test_trt_fake_quantize_equals_saturating_e4m3fn():
    source = GOLDEN["trt_opset100"].build()
    point = _points(source)["relu1_TRT_Q"]
    s = _initializer(source, "relu1_scale")
    x = _random((64, 4, 8, 8), 1e4)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.clip(x / s, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    assert _same(_fake_quantize(x, point), q * s)


def _qonnx_float_quant(x, scale, exponent_bits, mantissa_bits, bias, max_val):
    """QONNX's reference ``float_quant`` (saturation=1, rounding ROUND), written out in NumPy."""
    x = x / scale
    exponent = np.floor(np.log2(np.abs(x) + np.finfo(np.float32).tiny)) - np.float32(mantissa_bits)
    step = np.exp2(np.maximum(exponent, np.float32(1.0 - bias - mantissa_bits)))
    q = step * np.round(x / step)
    full = np.sum(2.0 ** np.arange(0, -mantissa_bits - 1.0, -1.0)) * 2.0 ** (2.0**exponent_bits - 1 - bias)
    limit = min(full, max_val)
    return (np.clip(q, -limit, limit) * scale).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "node", "tensor", "parameters"),
    [
        ("floatquant_e4m3fn", "input_FloatQuant", "input", (4, 3, 7, 448.0)),
        ("floatquant_e3m4", "relu1_FloatQuant", "relu1", (3, 4, 3, 31.0)),
        ("floatquant_e3m4", "W1_FloatQuant", "W1", (3, 4, 3, 31.0)),
    ],
)
def test_floatquant_fake_quantize_equals_the_qonnx_formula(name, node, tensor, parameters):
    source = GOLDEN[name].build()
    point = _points(source)[node]
    scale = _initializer(source, f"{tensor}_scale")  # as in the source: scalar, [1,4,1,1] or [4,1,1,1]
    if tensor.startswith("W"):
        x = _initializer(source, tensor)
    else:
        x = _random((64, 3 if tensor == "input" else 4, 8, 8), 1e3)
        x[np.isinf(x) | np.isnan(x)] = 0.0  # QONNX turns ±Inf into NaN; FakeQuantize saturates (documented)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        expected = _qonnx_float_quant(x, scale, *parameters)
    assert _same(_fake_quantize(x, point), expected)


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "initializer", "value", "node"),
    [
        ("qdq_per_tensor", "input_zero_point", 1.0, "input_QuantizeLinear"),
        ("qdq_zp_shape1", "relu1_zero_point", [-2.0], "relu1_QuantizeLinear"),
        ("dq_weight", "W1_zero_point", 0.5, "W1_DequantizeLinear"),
    ],
)
def test_non_zero_fp8_zero_point_is_rejected(name, initializer, value, node):
    model = with_initializer(GOLDEN[name].build(), initializer, value)
    with pytest.raises(Fp8ConvError, match=f"node '{node}': FP8 zero point must be 0"):
        _normalize(model)


@pytest.mark.parametrize("value", [0.0, np.nan, -0.5, np.inf])
@pytest.mark.parametrize(
    ("name", "scale", "node"),
    [
        ("qdq_per_tensor", "input_scale", "input_QuantizeLinear"),
        ("dq_weight", "W1_scale", "W1_DequantizeLinear"),
        ("trt_opset1", "relu1_scale", "relu1_TRT_Q"),
        ("floatquant_e4m3fn", "W2_scale", "W2_FloatQuant"),
        ("cast_e5m2", "input_scale", "input_cast_fp8"),
    ],
)
def test_invalid_scale_is_rejected_naming_node_and_tensor(name, scale, node, value):
    model = with_initializer(GOLDEN[name].build(), scale, value)
    with pytest.raises(Fp8ConvError, match=f"node '{node}': scale '{scale}' must be positive and finite"):
        _normalize(model)


@pytest.mark.parametrize(
    ("name", "scale", "value", "node"),
    [
        ("qdq_per_axis", "W1_scale", np.ones(3), "W1_QuantizeLinear"),
        ("qdq_per_tensor", "input_scale", np.ones((2, 2)), "input_QuantizeLinear"),
        ("qdq_blocked", "W_scale", np.ones((4, 16)), "W_QuantizeLinear"),
        ("dq_weight", "W2_scale", np.ones(5), "W2_DequantizeLinear"),
    ],
)
def test_scale_shape_mismatch_is_rejected(name, scale, value, node):
    source = GOLDEN[name].build()
    zero_point = scale.replace("_scale", "_zero_point")
    if any(t.name == zero_point for t in source.graph.initializer):
        source = with_initializer(source, zero_point, np.zeros(np.shape(value)))
    with pytest.raises(Fp8ConvError, match=f"node '{node}': scale '{scale}'"):
        _normalize(with_initializer(source, scale, value))


def test_mx_model_is_unsupported_listing_its_nodes():
    model = ir.from_proto(GOLDEN["mx_unsupported"].build())
    assert [n.name for n in find_block_format_nodes(model)] == ["input_MXFP8_Q", "input_MXFP8_DQ", "W_DequantizeLinear"]
    with pytest.raises(UnsupportedModelError, match=r"'input_MXFP8_Q' .*'input_MXFP8_DQ' .*'W_DequantizeLinear'"):
        normalize_fp8(model)


def _set_attribute(model: onnx.ModelProto, node_name: str, **attributes) -> onnx.ModelProto:
    for node in model.graph.node:
        if node.name == node_name:
            for key, value in attributes.items():
                kept = [a for a in node.attribute if a.name != key]
                del node.attribute[:]
                node.attribute.extend([*kept, helper.make_attribute(key, value)])
    return model


def test_floatquant_rounding_mode_other_than_round_is_unsupported():
    model = _set_attribute(GOLDEN["floatquant_e4m3fn"].build(), "relu1_FloatQuant", rounding_mode="floor")
    with pytest.raises(UnsupportedModelError, match="node 'relu1_FloatQuant': FloatQuant rounding_mode 'floor'"):
        _normalize(model)


def test_floatquant_without_saturation_needs_inf_or_nan():
    model = _set_attribute(GOLDEN["floatquant_e3m4"].build(), "input_FloatQuant", saturation=0)
    with pytest.raises(Fp8ConvError, match="node 'input_FloatQuant': FloatQuant with saturation=0 needs has_inf"):
        _normalize(model)


def test_floatquant_max_between_grid_values_is_unsupported():
    model = with_initializer(GOLDEN["floatquant_e4m3fn"].build(), "fq_max_val", 300.0)
    with pytest.raises(
        UnsupportedModelError, match=r"node 'input_FloatQuant': FloatQuant max_val 300\.0 is not a value"
    ):
        _normalize(model)


@pytest.mark.parametrize(
    ("has_inf", "has_nan", "expected"),
    [(0, 1, "e4m3fn"), (1, 1, None)],
)
def test_floatquant_without_saturation_maps_to_a_named_format_only_when_overflow_matches(has_inf, has_nan, expected):
    model = _set_attribute(
        GOLDEN["floatquant_e4m3fn"].build(), "input_FloatQuant", saturation=0, has_inf=has_inf, has_nan=has_nan
    )
    if expected is None:  # E4M3 with Inf would need the top binade for Inf: max 240, not 448
        with pytest.raises(UnsupportedModelError, match="node 'input_FloatQuant'"):
            _normalize(model)
        return
    point = _points(model)["input_FloatQuant"]
    assert (point.spec.format.name, point.spec.saturate) == (expected, False)


# --- patterns left alone and special structures ------------------------------------------------------


def _model(nodes, initializers, inputs, outputs, opset=19, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def _fp8_zero(name, data_type=TensorProto.FLOAT8E4M3FN):
    return helper.make_tensor(name, data_type, [], b"\x00", raw=True)


def _vi(name, shape=(2, 8)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def test_qdq_with_different_scales_is_left_alone(caplog):
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s2", "zp"], ["y"], name="dq"),
        ],
        [
            numpy_helper.from_array(np.float32(0.5), "s"),
            numpy_helper.from_array(np.float32(0.25), "s2"),
            _fp8_zero("zp"),
        ],
        [_vi("x")],
        [_vi("y")],
    )
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    assert not result.modified
    assert _ops(result.model) == ["QuantizeLinear", "DequantizeLinear"]
    assert "uses another scale" in caplog.text


def test_qdq_whose_dq_has_another_axis_is_left_alone(caplog):
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q", axis=0),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq", axis=1),
        ],
        [
            numpy_helper.from_array(np.full(8, 0.5, np.float32), "s"),
            helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, [8], bytes(8), raw=True),
        ],
        [_vi("x", (8, 8))],
        [_vi("y", (8, 8))],
    )
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    assert _ops(result.model) == ["QuantizeLinear", "DequantizeLinear"]
    assert "has axis=1, block_size=0; QuantizeLinear axis=0" in caplog.text


def test_qdq_with_equal_scale_copies_is_rewritten_and_dq_output_stays_a_graph_output():
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s_copy"], ["y"], name="dq"),
        ],
        [
            numpy_helper.from_array(np.float32(0.5), "s"),
            numpy_helper.from_array(np.float32(0.5), "s_copy"),
            _fp8_zero("zp"),
        ],
        [_vi("x")],
        [_vi("y")],
    )
    result = _normalize(model)
    proto = ir.to_proto(result.model)
    assert [(n.op_type, n.name, list(n.input), list(n.output)) for n in proto.graph.node] == [
        ("FakeQuantize", "q", ["x", "s"], ["y"])
    ]
    assert [o.name for o in proto.graph.output] == ["y"]
    assert [t.name for t in proto.graph.initializer] == ["s"]


def test_q_read_by_two_dqs_gives_one_fake_quantize_per_dq():
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y1"], name="dq1"),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y2"], name="dq2"),
            helper.make_node("Add", ["y1", "y2"], ["z"], name="add"),
        ],
        [numpy_helper.from_array(np.float32(0.5), "s"), _fp8_zero("zp")],
        [_vi("x")],
        [_vi("z")],
    )
    proto = ir.to_proto(_normalize(model).model)
    assert [(n.op_type, n.name, list(n.output)) for n in proto.graph.node] == [
        ("FakeQuantize", "dq1", ["y1"]),
        ("FakeQuantize", "dq2", ["y2"]),
        ("Add", "add", ["z"]),
    ]


def test_q_whose_output_is_also_read_elsewhere_is_left_alone(caplog):
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq"),
        ],
        [numpy_helper.from_array(np.float32(0.5), "s"), _fp8_zero("zp")],
        [_vi("x")],
        [_vi("y"), helper.make_tensor_value_info("q", TensorProto.FLOAT8E4M3FN, [2, 8])],
    )
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    assert _ops(result.model) == ["QuantizeLinear", "DequantizeLinear"]
    assert "also read outside a DequantizeLinear" in caplog.text


def test_qdq_inside_a_subgraph_is_rewritten():
    body = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q_in_then"),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y_then"], name="dq_in_then"),
        ],
        "then",
        [],
        [_vi("y_then")],
    )
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y_else"])], "else", [], [_vi("y_else")])
    model = _model(
        [helper.make_node("If", ["c"], ["y"], name="if", then_branch=body, else_branch=other)],
        [numpy_helper.from_array(np.float32(0.5), "s"), _fp8_zero("zp")],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vi("x")],
        [_vi("y")],
    )
    result = _normalize(model)
    assert result.dialects == ("qdq",)
    points = collect_quant_points(result.model)
    assert [(p.node, p.output) for p in points] == [("q_in_then", "y_then")]


def _cast_model(*, clip=None, saturate=None, front="Div", back="Mul", scale=0.5, back_scale=None, dtype=np.float32):
    nodes, inits = [], [numpy_helper.from_array(np.asarray(scale, dtype=dtype), "s")]
    if back_scale is not None:
        inits.append(numpy_helper.from_array(np.asarray(back_scale, dtype=dtype), "s_back"))
    nodes.append(helper.make_node(front, ["x", "s"], ["scaled"], name="front"))
    data = "scaled"
    if clip is not None:
        inits += [
            numpy_helper.from_array(np.float32(clip[0]), "lo"),
            numpy_helper.from_array(np.float32(clip[1]), "hi"),
        ]
        nodes.append(helper.make_node("Clip", ["scaled", "lo", "hi"], ["clipped"], name="clip"))
        data = "clipped"
    attrs = {} if saturate is None else {"saturate": saturate}
    nodes.append(helper.make_node("Cast", [data], ["f8"], name="to_fp8", to=TensorProto.FLOAT8E4M3FN, **attrs))
    float_type = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    nodes.append(helper.make_node("Cast", ["f8"], ["back"], name="to_float", to=float_type))
    nodes.append(helper.make_node(back, ["back", "s_back" if back_scale is not None else "s"], ["y"], name="rescale"))
    x, y = (
        helper.make_tensor_value_info("x", float_type, [2, 8]),
        helper.make_tensor_value_info("y", float_type, [2, 8]),
    )
    return _model(nodes, inits, [x], [y], opset=20)


@pytest.mark.parametrize(
    ("clip", "saturate", "rewritten", "canonical_saturate"),
    [
        ((-448, 448), None, True, True),
        ((-1e4, 1e4), 1, True, True),
        ((-448, 448), 0, True, True),  # Clip(±max) + non-saturating cast == saturating cast
        ((-1e4, 1e4), 0, False, None),  # values in (448, 1e4] would become NaN: the Clip matters
        ((0, 448), None, False, None),  # a Relu-like Clip changes negative values
        (None, 0, True, False),
    ],
)
def test_cast_pair_clip_is_absorbed_only_when_it_cannot_change_the_result(
    clip, saturate, rewritten, canonical_saturate
):
    result = _normalize(_cast_model(clip=clip, saturate=saturate))
    points = collect_quant_points(result.model)
    assert result.modified is rewritten
    if rewritten:
        assert [(p.node, p.tensor, p.output, p.spec.saturate) for p in points] == [
            ("to_fp8", "x", "y", canonical_saturate)
        ]
        assert _ops(result.model) == ["FakeQuantize"]
    else:
        assert points == []
        assert "Cast" in _ops(result.model)


@pytest.mark.parametrize(
    ("front", "back", "scale", "back_scale", "expected_scale"),
    [
        ("Mul", "Mul", 4.0, 0.25, 0.25),  # Mul(x, 1/s) … Mul(s), s a power of two
        ("Div", "Div", 0.25, 4.0, 0.25),  # Div(x, s) … Div(1/s)
        ("Mul", "Div", 4.0, None, 0.25),  # Mul(x, r) … Div(r): scale 1/r, a new initializer
        ("Mul", "Mul", 3.0, 1 / 3.0, None),  # not a power of two: not provably exact
        ("Div", "Mul", 0.5, 0.25, None),  # different scales
    ],
)
def test_cast_pair_reciprocal_forms_need_exact_powers_of_two(front, back, scale, back_scale, expected_scale, caplog):
    model = _cast_model(front=front, back=back, scale=scale, back_scale=back_scale)
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    points = collect_quant_points(result.model)
    if expected_scale is None:
        assert points == []
        assert "left as is" in caplog.text
        return
    assert [(p.node, p.tensor, p.output) for p in points] == [("to_fp8", "x", "y")]
    assert points[0].scale == np.float32(expected_scale)
    x = _random((4, 2, 8), 1e4)
    assert _same(_fake_quantize(x, points[0]), _run_subgraph(model, {"x": x.reshape(-1, 8)}, "y").reshape(x.shape))


def test_cast_pair_computed_in_float16_is_left_alone(caplog):
    with caplog.at_level(logging.WARNING):
        result = _normalize(_cast_model(dtype=np.float16))
    assert not result.modified
    assert "computed in FLOAT16, not float32" in caplog.text


def test_cast_pair_with_a_shared_intermediate_becomes_a_unit_scale_fake_quantize(caplog):
    """The chain cannot become one FakeQuantize (``scaled`` is an output too), so the Cast pair alone does:
    ``FakeQuantize(scaled, 1)``, with the Div and Mul left as float ops; bit-exact against onnxruntime."""
    model = _cast_model()
    model.graph.output.append(_vi("scaled"))
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    assert "'scaled' of the FP8 Cast chain is read outside it" in caplog.text
    assert result.modified
    [point] = collect_quant_points(result.model)
    assert (point.tensor, np.asarray(point.scale).reshape(-1).tolist(), point.spec.format.name) == (
        "scaled",
        [1.0],
        "e4m3fn",
    )
    ops = [node.op_type for node in result.model.graph]
    assert "Cast" not in ops
    assert {"Div", "Mul"} <= set(ops)
    x = np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32) * 300
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})
    actual = ReferenceRunner(result.model).run({"x": x})
    for want, name in zip(expected, ("y", "scaled"), strict=True):
        np.testing.assert_array_equal(actual[name], want)


def test_trt_model_with_unknown_trt_version_is_left_alone(caplog):
    model = GOLDEN["trt_opset1"].build()
    next(o for o in model.opset_import if o.domain == "trt").version = 7
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    assert not result.modified
    assert result.dialects == ()
    assert "trt domain in version 7" in caplog.text


def test_stored_weight_dq_in_trt_domain_moves_to_the_onnx_domain():
    model = _model(
        [
            helper.make_node("DequantizeLinear", ["w", "s"], ["y"], name="dq", domain="trt"),
        ],
        [
            helper.make_tensor("w", TensorProto.FLOAT8E4M3FN, [4], b"\x38\x40\x48\x50", raw=True),
            numpy_helper.from_array(np.float32(0.5), "s"),
        ],
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        extra_opsets=[("trt", 1)],
    )
    result = _normalize(model)
    proto = ir.to_proto(result.model)
    assert (proto.graph.node[0].domain, result.dialects) == ("", ("dq-weight",))
    assert "trt" not in {o.domain for o in proto.opset_import}


def test_fake_quantize_nodes_carry_their_source_dialect():
    model = _normalize(GOLDEN["cast_e5m2"].build()).model
    sources = {node.attributes.get_string("source") for node in model.graph if is_fake_quantize(node)}
    assert sources == {"cast"}


# --- constant operands written as casts of constants; clamps as Max/Min --------------------------------


def _clamp_model(clamps, saturate=None, bound_form="initializer"):
    """``Div(x, s)`` → the given clamps (``(op, bound)``, applied in turn) → Cast(FP8) → Cast(float) → Mul(s).

    ``bound_form``: ``initializer``; ``castlike`` (PyTorch dynamo without optimization:
    ``CastLike(Cast(Constant int64, to=FLOAT), scaled)``).
    """
    nodes = [helper.make_node("Div", ["x", "s"], ["t0"], name="front")]
    inits = [numpy_helper.from_array(np.float32(0.5), "s")]
    for index, (op, bound) in enumerate(clamps):
        name = f"b{index}"
        if bound_form == "initializer":
            inits.append(numpy_helper.from_array(np.float32(bound), name))
        else:
            nodes += [
                helper.make_node("Constant", [], [f"{name}_i"], value=numpy_helper.from_array(np.int64(bound))),
                helper.make_node("Cast", [f"{name}_i"], [f"{name}_f"], to=TensorProto.FLOAT),
                helper.make_node("CastLike", [f"{name}_f", "t0"], [name]),
            ]
        operands = [f"t{index}", name] if index % 2 == 0 else [name, f"t{index}"]  # either side
        nodes.append(helper.make_node(op, operands, [f"t{index + 1}"], name=f"clamp{index}"))
    attrs = {} if saturate is None else {"saturate": saturate}
    nodes += [
        helper.make_node("Cast", [f"t{len(clamps)}"], ["f8"], name="to_fp8", to=TensorProto.FLOAT8E4M3FN, **attrs),
        helper.make_node("Cast", ["f8"], ["back"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["back", "s"], ["y"], name="rescale"),
    ]
    value_info = [_vi(f"t{i}") for i in range(len(clamps) + 1)]
    model = _model(nodes, inits, [_vi("x")], [_vi("y")], opset=20)
    model.graph.value_info.extend(value_info)  # the CastLike's type source is declared, as exporters write it
    return model


@pytest.mark.parametrize("bound_form", ["initializer", "castlike"])
@pytest.mark.parametrize(
    ("clamps", "saturate", "rewritten"),
    [
        ([("Max", -448), ("Min", 448)], None, True),  # torch's clamp(-448, 448) without optimization
        ([("Min", 448), ("Max", -448)], 0, True),  # exactly ±max: the saturating cast
        ([("Max", -1e4), ("Min", 1e4)], 1, True),
        ([("Max", -448)], 1, True),  # one side only: the saturating cast bounds the other
        ([("Max", -448)], 0, False),  # values above 448 would become NaN
        ([("Max", 0), ("Min", 448)], None, False),  # a Relu-like clamp changes negative values
        ([("Max", -448), ("Min", 100)], None, False),
    ],
)
def test_max_min_clamps_are_absorbed_only_when_they_cannot_change_the_result(
    clamps, saturate, rewritten, bound_form, caplog
):
    model = _clamp_model(clamps, saturate, bound_form)
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    points = collect_quant_points(result.model)
    assert "read outside" not in caplog.text
    if not rewritten:  # the clamps stay float ops; the FP8 Cast pair alone becomes FakeQuantize(·, 1), exact
        assert "may change the result" in caplog.text
        assert [(point.node, float(point.scale)) for point in points] == [("to_fp8", 1.0)]
        ops = _ops(result.model)
        assert "Cast" not in ops
        assert {"Div", "Mul", "FakeQuantize"} <= set(ops)
        x = _random((2, 8), 1e4)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert _same(ReferenceRunner(result.model).run({"x": x})["y"], session.run(None, {"x": x})[0])
        return
    assert _ops(result.model) == ["FakeQuantize"]
    assert list(result.model.graph.initializers) == ["s"]  # the bounds went with the clamps
    x = _random((4, 2, 8), 1e4)
    assert _same(_fake_quantize(x, points[0]), _run_subgraph(model, {"x": x.reshape(-1, 8)}, "y").reshape(x.shape))


def test_casts_of_constants_are_folded_into_initializers_that_keep_the_tensor_names():
    # onnxruntime quantize_static: a float bias behind Cast(to=FLOAT); TorchScript: Identity on a weight.
    w = helper.make_tensor("w", TensorProto.FLOAT8E4M3FN, [3, 8], bytes(range(0x30, 0x48)), raw=True)
    model = _model(
        [
            helper.make_node("Identity", ["w"], ["w_shared"], name="identity"),
            helper.make_node("DequantizeLinear", ["w_shared", "s"], ["w_dq"], name="w_dq"),
            helper.make_node("Cast", ["b_f64"], ["b"], name="bias_cast", to=TensorProto.FLOAT),
            helper.make_node("Gemm", ["x", "w_dq", "b"], ["y"], name="gemm", transB=1),
            helper.make_node("Cast", ["w_float"], ["w_fp8"], name="to_fp8", to=TensorProto.FLOAT8E4M3FN),
            helper.make_node("Cast", ["w_fp8"], ["z"], name="from_fp8", to=TensorProto.FLOAT),
        ],
        [
            w,
            numpy_helper.from_array(np.float32(0.5), "s"),
            numpy_helper.from_array(np.array([0.1, 1 / 3, 1e-40], np.float64), "b_f64"),
            numpy_helper.from_array(np.float32([1.5, 2.5]), "w_float"),
        ],
        [_vi("x")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("z", 1, [2])],
    )
    result = _normalize(model)
    graph = result.model.graph
    # The bare Cast pair of a constant is a quantizer (scale 1), never folded.
    points = [(p.tensor, p.dialect) for p in collect_quant_points(result.model)]
    assert points == [("w_shared", "dq-weight"), ("w_float", "cast")]
    assert "w" not in graph.initializers  # read only by the Identity
    gemm = next(node for node in graph if node.op_type == "Gemm")
    bias = gemm.inputs[2]
    assert (bias.name, bias.dtype, bias.is_initializer()) == ("b", ir.DataType.FLOAT, True)
    np.testing.assert_array_equal(bias.const_value.numpy(), np.array([0.1, 1 / 3, 1e-40]).astype(np.float32))
    # A cast to FP8 is not folded (it is a quantizer, or data the readers must see).
    assert [node.op_type for node in graph] == ["DequantizeLinear", "Gemm", "FakeQuantize"]
    onnx.checker.check_model(ir.to_proto(result.model), full_check=True)


def test_castlike_with_an_undeclared_type_source_is_not_folded():
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("CastLike", ["c", "r"], ["c_like"], name="castlike"),
            helper.make_node("Add", ["r", "c_like"], ["y"], name="add"),
        ],
        [numpy_helper.from_array(np.float32(1.0), "c")],
        [_vi("x")],
        [_vi("y")],
    )
    result = _normalize(model)
    assert not result.modified
    assert _ops(result.model) == ["Relu", "CastLike", "Add"]


# --- standard Q/DQ in the trt and com.microsoft domains ------------------------------------------------


def test_modelopt_deploy_qdq_in_the_trt_domain_is_canonical_and_its_stale_uint8_types_are_not_trusted():
    source = GOLDEN["qdq_trt_domain"].build()
    stale = {v.name: v.type.tensor_type.elem_type for v in source.graph.value_info if v.name.endswith("_quantized")}
    assert stale == {"input_quantized": TensorProto.UINT8, "relu1_quantized": TensorProto.UINT8}
    result = _normalize(source)
    points = collect_quant_points(result.model)
    assert [(p.tensor, p.role, p.dialect) for p in points] == [
        ("input", "activation", "qdq"),
        ("W1_fp8", "weight", "dq-weight"),
        ("relu1", "activation", "qdq"),
        ("W2_fp8", "weight", "dq-weight"),
    ]
    assert result.integer_qdq == ()
    proto = ir.to_proto(result.model)
    assert {node.domain for node in proto.graph.node} == {"", CANONICAL_DOMAIN}
    assert "trt" not in {o.domain for o in proto.opset_import}
    assert not set(stale) & {v.name for v in proto.graph.value_info}
    x = _random((1, 3, 8, 8), 8.0)
    point = points[0]
    assert _same(_fake_quantize(x, point), _run_subgraph(qdq_zp_shape1(), {"input": x}, "input_dequantized"))


@pytest.mark.parametrize("domain", ["trt", "com.microsoft"])
def test_a_left_alone_fp8_pair_in_another_domain_is_not_reported_as_integer_qdq(domain, caplog):
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q", domain=domain),
            helper.make_node("DequantizeLinear", ["q", "s2"], ["y"], name="dq", domain=domain),
        ],
        [
            numpy_helper.from_array(np.float32(0.5), "s"),
            numpy_helper.from_array(np.float32(0.25), "s2"),
            _fp8_zero("zp"),
        ],
        [_vi("x")],
        [_vi("y")],
        extra_opsets=[(domain, 1)],
    )
    model.graph.value_info.append(helper.make_tensor_value_info("q", TensorProto.UINT8, [2, 8]))
    with caplog.at_level(logging.WARNING):
        result = _normalize(model)
    assert not result.modified
    assert "uses another scale than its QuantizeLinear" in caplog.text
    assert result.integer_qdq == ()
    assert find_integer_qdq(result.model) == []


def test_a_cast_pair_rescaled_in_float16_ends_in_a_cast_to_float16_and_keeps_true_types():
    # Div in float32, Cast(FP8), Cast(FLOAT16), Mul by the float16 scale: the result is float16.
    model = _model(
        [
            helper.make_node("Div", ["x", "s"], ["scaled"], name="front"),
            helper.make_node("Cast", ["scaled"], ["f8"], name="to_fp8", to=TensorProto.FLOAT8E4M3FN),
            helper.make_node("Cast", ["f8"], ["back"], name="to_half", to=TensorProto.FLOAT16),
            helper.make_node("Mul", ["back", "s16"], ["y"], name="rescale"),
        ],
        [numpy_helper.from_array(np.float32(0.375), "s"), numpy_helper.from_array(np.float16(0.375), "s16")],
        [_vi("x")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 8])],
        opset=20,
    )
    result = _normalize(model)
    assert _ops(result.model) == ["FakeQuantize", "Cast"]
    assert [(v.name, v.dtype) for node in result.model.graph for v in node.outputs] == [
        ("y_float", ir.DataType.FLOAT),
        ("y", ir.DataType.FLOAT16),
    ]
    runner = ReferenceRunner(result.model)
    for x in _random((4, 2, 8), 1e4):
        assert _same(runner.run({"x": x})["y"], _run_subgraph(model, {"x": x}, "y"))
