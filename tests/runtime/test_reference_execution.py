"""Exact FP8 reference execution: the lowering of FakeQuantize and the onnxruntime session settings.

Two kinds of evidence:

1. Lowering sweeps: single FakeQuantize graphs, lowered by ``LowerFakeQuantizePass`` and run on
   onnxruntime with the reference session settings, against ``fp8.fake_quantize`` on more than two million
   float32 values per case — every grid value and midpoint of the format and their float32 neighbours
   (derived here from the format's parameters, not from the emulator), the overflow and subnormal
   boundaries, specials, and random values over the whole float32 range.
2. Models: a small CNN (and every golden model, normalized) run by ``ReferenceRunner`` with every
   FakeQuantize input and output captured; each captured output must equal the emulator applied to the
   captured input, bit for bit. The float ops between quantization points are checked against torch in
   float64, outputs with and without captures must be identical, and onnxruntime's default settings must
   give a different result on the same lowered model (the hazard the settings remove).

Comparisons are on float32 bit patterns (so the sign of zero counts), NaN equal to NaN of either sign.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from golden_models import GOLDEN

from fp8conv import fp8
from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.passes.canonical import (
    CANONICAL_DOMAIN,
    QuantSpec,
    collect_quant_points,
    is_fake_quantize,
    make_fake_quantize,
    read_fake_quantize,
)
from fp8conv.passes.lower_fake_quantize import LowerFakeQuantizePass
from fp8conv.passes.normalize import normalize_fp8
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.runtime.ort_backend import create_session
from fp8conv.runtime.reference import DISABLED_OPTIMIZERS, SESSION_CONFIG

FLOAT = ir.DataType.FLOAT

# ---------------------------------------------------------------------------------------------
# helpers


def assert_same_floats(actual: np.ndarray, expected: np.ndarray, inputs: np.ndarray, what: str) -> None:
    """Identical float32 bit patterns, NaN equal to NaN of either sign."""
    assert actual.dtype == np.float32, what
    assert expected.dtype == np.float32, what
    assert actual.shape == expected.shape, what
    a, b = actual.reshape(-1), expected.reshape(-1)
    ok = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    if not ok.all():
        bad = np.flatnonzero(~ok)[:6]
        x = np.broadcast_to(inputs, actual.shape).reshape(-1)
        pytest.fail(
            f"{what}: {(~ok).sum()} of {ok.size} differ; first: "
            + ", ".join(f"x={x[i]!r} ort={a[i]!r} emulator={b[i]!r}" for i in bad)
        )


def const(name: str, array: np.ndarray) -> ir.Value:
    return ir.Value(name=name, const_value=ir.tensor(array, name=name))


def tensor_value(name: str, shape: list[int | str] | None, dtype: ir.DataType = FLOAT) -> ir.Value:
    return ir.Value(name=name, type=ir.TensorType(dtype), shape=ir.Shape(shape) if shape is not None else None)


def model_of(inputs, outputs, nodes, initializers, opset: int = 21) -> ir.Model:
    graph = ir.Graph(
        inputs,
        outputs,
        nodes=nodes,
        initializers=initializers,
        opset_imports={"": opset, CANONICAL_DOMAIN: 1},
        name="test",
    )
    return ir.Model(graph, ir_version=10)


def fake_quantize_model(
    fmt: fp8.FloatFormat,
    scales: list[np.ndarray],
    *,
    saturate: bool = True,
    axis: int | None = None,
    block_size: int | None = None,
    shape: list[int | str] | None = None,
    dtype: ir.DataType = FLOAT,
    opset: int = 21,
) -> ir.Model:
    """``x`` → one FakeQuantize per scale → outputs ``y0``, ``y1``, …"""
    x = tensor_value("x", shape, dtype)
    nodes, initializers = [], []
    for index, scale in enumerate(scales):
        s = const(f"s{index}", np.asarray(scale, np.float32))
        spec = QuantSpec(fmt, axis=axis, block_size=block_size, saturate=saturate)
        node = make_fake_quantize(x, s, spec, source="test", name=f"fq{index}")
        node.outputs[0].name = f"y{index}"
        node.outputs[0].type = ir.TensorType(dtype)
        nodes.append(node)
        initializers.append(s)
    return model_of([x], [n.outputs[0] for n in nodes], nodes, initializers, opset)


def lower_and_run(model: ir.Model, x: np.ndarray, native: bool = True) -> list[np.ndarray]:
    LowerFakeQuantizePass(native=native)(model)
    session = create_session(model, disabled_optimizers=DISABLED_OPTIMIZERS, config=SESSION_CONFIG)
    return session.run(None, {"x": x})


def op_types(model: ir.Model) -> set[str]:
    return {node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph)}


# ---------------------------------------------------------------------------------------------
# probe values, from the format's parameters


def grid(fmt: fp8.FloatFormat) -> np.ndarray:
    """The format's finite non-negative values up to max, sorted (float64)."""
    m, e_min = fmt.mantissa_bits, fmt.min_exponent
    fractions = 1.0 + np.arange(1 << m) / (1 << m)
    exponents = np.arange(e_min, math.floor(math.log2(fmt.max_value)) + 1)
    normals = (fractions[None, :] * np.exp2(exponents)[:, None]).reshape(-1)
    small = np.arange(1 << m) * 2.0 ** (e_min - m) if fmt.has_subnormal else np.array([0.0])
    values = np.concatenate([small, normals])
    return np.unique(values[values <= fmt.max_value])


@functools.cache
def probes(fmt: fp8.FloatFormat, count: int = 2_000_000) -> np.ndarray:
    """Grid values, midpoints, overflow and underflow boundaries, each with its float32 neighbours,
    both signs and two power-of-two scalings, specials, then random values up to ``count`` in all."""
    g = grid(fmt)
    top_step = g[-1] - g[-2]
    anchors = np.concatenate(
        [g, (g[:-1] + g[1:]) / 2, [g[-1] + top_step / 2, g[-1] + top_step, 2 * g[-1], fmt.min_normal / 2]]
    )
    with np.errstate(over="ignore"):
        anchors = np.concatenate([anchors, anchors * 2.0**-5, anchors * 2.0**7]).astype(np.float32)
    up, down = np.float32(np.inf), np.float32(0)
    near = np.concatenate([anchors, np.nextafter(anchors, up), np.nextafter(anchors, down)])
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1.2e-38, 3.4028235e38, -3.4028235e38], np.float32
    )
    fixed = np.concatenate([near, -near, specials])
    rng = np.random.default_rng(20261129)
    n = count - fixed.size
    wide = rng.choice([-1.0, 1.0], n // 2) * 10.0 ** rng.uniform(-45, 38.5, n // 2)
    around = rng.standard_normal(n - n // 2) * 10.0 ** rng.uniform(-3, 3, n - n // 2) * fmt.max_value / 8
    with np.errstate(over="ignore"):
        return np.concatenate([fixed, wide.astype(np.float32), around.astype(np.float32)])


def expected_nan_zero(x: np.ndarray, y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Where the documented difference applies: formats without NaN that the emulator evaluates through
    ml_dtypes-derived tables map a positive NaN to -0.0, the lowering to +0.0 (ONNX cannot read a NaN's
    sign). Returns the mask of those elements after checking that they are exactly that case."""
    mask = np.isnan(x) & ~np.signbit(x) & (y.view(np.uint32) != e.view(np.uint32))
    assert (y[mask].view(np.uint32) == 0).all()
    assert (e[mask].view(np.uint32) == 0x80000000).all()
    return mask


SWEEP_FORMATS = {
    "e4m3fn": fp8.FORMATS["e4m3fn"],
    "e4m3fnuz": fp8.FORMATS["e4m3fnuz"],
    "e5m2": fp8.FORMATS["e5m2"],
    "e5m2fnuz": fp8.FORMATS["e5m2fnuz"],
    "e4m3": fp8.FORMATS["e4m3"],
    "e3m4": fp8.FORMATS["e3m4"],
    "e4m3b11fnuz": fp8.FORMATS["e4m3b11fnuz"],
    "e2m3fn": fp8.FORMATS["e2m3fn"],
    "e3m2fn": fp8.FORMATS["e3m2fn"],
    "e2m1fn": fp8.FORMATS["e2m1fn"],
    "minifloat(3,4)": fp8.minifloat(3, 4),
    "minifloat(2,5)": fp8.minifloat(2, 5),
    "minifloat(5,7)": fp8.minifloat(5, 7),
    "minifloat(4,3,nosub)": fp8.minifloat(4, 3, has_subnormal=False),
    "minifloat(5,7,nosub)": fp8.minifloat(5, 7, has_subnormal=False),
    "minifloat(5,2,inf)": fp8.minifloat(5, 2, has_inf=True),
    "minifloat(3,8,nan)": fp8.minifloat(3, 8, has_nan=True),
    "minifloat(4,3,max240)": fp8.minifloat(4, 3, max_value=240.0),
    "minifloat(8,3,bias140)": fp8.minifloat(8, 3, bias=140),
    "minifloat(8,5,inf)": fp8.minifloat(8, 5, has_inf=True),
}
NATIVE = {"e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz"}


@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nosat"])
@pytest.mark.parametrize("name", list(SWEEP_FORMATS))
def test_lowering_is_bit_exact(name, saturate):
    fmt = SWEEP_FORMATS[name]
    x = probes(fmt)
    scales = [np.float32(1.0), np.float32(0.0371)]
    model = fake_quantize_model(fmt, scales, saturate=saturate)
    outputs = lower_and_run(model, x)
    native = name in NATIVE and (saturate or fmt.style == "fnuz")
    assert ("QuantizeLinear" in op_types(model)) == native
    assert CANONICAL_DOMAIN not in model.opset_imports
    for scale, y in zip(scales, outputs, strict=True):
        e = fp8.fake_quantize(x, scale, fmt, saturate=saturate)
        if fmt.style == "none" and fmt.bits <= 8 and fmt.mantissa_bits <= 5:
            documented = expected_nan_zero(x, y, e)
            assert documented.any()  # the probe set has a positive NaN
            y, e = y[~documented], e[~documented]
            xs = x[~documented]
        else:
            xs = x
        assert_same_floats(y, e, xs, f"{name} saturate={saturate} scale={scale}")
    # the probes reach overflow and, when the format has them, subnormals
    e = fp8.fake_quantize(x, 1.0, fmt, saturate=saturate)
    finite = np.isfinite(e)
    assert (np.abs(e[finite]) == np.float32(fmt.max_value)).any()
    if fmt.has_subnormal:
        assert ((np.abs(e) > 0) & (np.abs(e) < fmt.min_normal)).any()


@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nosat"])
@pytest.mark.parametrize("name", list(SWEEP_FORMATS))
def test_grid_outputs_name_the_codes_of_every_format(name, saturate):
    """The float16 grid of a float-lowered FakeQuantize is the FP8 value: its code histogram equals the
    emulator's codes of the output, for every format whose values are float16s (the others get none)."""
    from fp8conv.converter.calibration import CodeHistogram
    from fp8conv.runtime.emulator import float16_codes

    fmt = SWEEP_FORMATS[name]
    x = probes(fmt)
    scale = np.float32(0.0371)
    model = fake_quantize_model(fmt, [scale], saturate=saturate, shape=["n"])
    fq_output = model.graph.outputs[0]
    passthrough = ir.Value(name="y_copy")
    model.graph.append(ir.node("Identity", [fq_output], outputs=[passthrough]))
    model.graph.outputs[0] = passthrough
    runner = ReferenceRunner(model, capture_grid=["y0"])
    fits = float16_codes(fmt) is not None
    assert runner.grid_outputs == (frozenset({"y0"}) if fits else frozenset())
    if not fits:
        return
    result = runner.run({"x": x})
    q = result["y0"]
    assert q.dtype == np.float16
    assert_same_floats(q.astype(np.float32) * scale, result["y_copy"], x, name)
    y = fp8.fake_quantize(x, scale, fmt, saturate=saturate)
    finite = np.isfinite(y)
    from_grid = CodeHistogram(fmt, scale).update_grid(q)
    from_values = CodeHistogram(fmt, scale).update(result["y_copy"])
    np.testing.assert_array_equal(from_grid.counts(), from_values.counts())
    assert from_grid.nonfinite == from_values.nonfinite == int((~finite).sum())


@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nosat"])
@pytest.mark.parametrize("name", sorted(NATIVE))
def test_float_lowering_of_onnx_float8_formats_is_bit_exact(name, saturate):
    """``native=False`` (the ReferenceRunner default) lowers the ONNX float8 formats to float ops too."""
    fmt = SWEEP_FORMATS[name]
    x = probes(fmt)
    model = fake_quantize_model(fmt, [np.float32(0.0371)], saturate=saturate)
    (y,) = lower_and_run(model, x, native=False)
    assert "QuantizeLinear" not in op_types(model)
    assert_same_floats(y, fp8.fake_quantize(x, 0.0371, fmt, saturate=saturate), x, f"{name} float ops")


def test_nan_in_formats_without_nan_is_a_zero():
    """The documented difference, spelled out: NaN → +0.0 (the emulator: zero of the opposite sign)."""
    x = np.array([np.nan, -np.nan, 1.0], np.float32)
    (y,) = lower_and_run(fake_quantize_model(fp8.FORMATS["e2m1fn"], [np.float32(0.5)]), x)
    assert y.view(np.uint32).tolist() == [0, 0, np.float32(1.0).view(np.uint32)]
    emulator = fp8.fake_quantize(x, 0.5, "e2m1fn")
    assert emulator.view(np.uint32).tolist() == [0x80000000, 0, np.float32(1.0).view(np.uint32)]
    # formats wider than the emulator's tables keep NaN, and so does the lowering
    (y,) = lower_and_run(fake_quantize_model(fp8.minifloat(1, 6), [np.float32(0.5)]), x)
    assert np.isnan(y[:2]).all()
    assert np.isnan(fp8.fake_quantize(x, 0.5, fp8.minifloat(1, 6))[:2]).all()


# ---------------------------------------------------------------------------------------------
# granularity, shapes, dtypes, opsets


GRANULARITY = [
    # id, format, axis, block, shape in the model (None: unknown rank, "n": unknown length), data shape
    ("per-axis-e3m4", "e3m4", 1, None, [64, 6, 5], (64, 6, 5)),
    ("per-axis-e3m4-unknown-rank", "e3m4", 1, None, None, (64, 6, 5)),
    ("per-axis-e3m4-negative-axis", "e3m4", -2, None, None, (64, 6, 5)),
    ("per-axis-e3m4-last-axis-unknown-rank", "e3m4", 2, None, None, (64, 6, 5)),
    ("per-axis-e4m3fn", "e4m3fn", 0, None, [4, 60, 5], (4, 60, 5)),
    ("blocked-e3m4", "e3m4", 1, 4, [30, 10, 2], (30, 10, 2)),
    ("blocked-e3m4-unknown-length", "e3m4", 1, 4, [30, "n", 2], (30, 10, 2)),
    ("blocked-e4m3fn", "e4m3fn", 1, 4, [30, 10, 2], (30, 10, 2)),
]


@pytest.mark.parametrize(
    ("fmt", "axis", "block", "shape", "data"), [c[1:] for c in GRANULARITY], ids=[c[0] for c in GRANULARITY]
)
def test_per_axis_and_blocked_scales(fmt, axis, block, shape, data):
    rng = np.random.default_rng(7)
    blocked_shape = tuple(-(-n // block) if d == axis else n for d, n in enumerate(data)) if block else None
    scale_shape = blocked_shape or (data[axis],)
    scale = (10.0 ** rng.uniform(-3, 1, scale_shape)).astype(np.float32)
    x = (rng.standard_normal(data) * 10.0 ** rng.uniform(-4, 3, data)).astype(np.float32)
    model = fake_quantize_model(fp8.FORMATS[fmt], [scale], axis=axis, block_size=block, shape=shape)
    (y,) = lower_and_run(model, x)
    assert ("QuantizeLinear" in op_types(model)) == (fmt == "e4m3fn")
    assert_same_floats(y, fp8.fake_quantize(x, scale, fmt, axis=axis, block_size=block), x, fmt)


def test_float16_input_is_quantized_in_float32_and_cast_back():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(50_000) * 10.0 ** rng.uniform(-3, 2, 50_000)).astype(np.float16)
    for name in ("e4m3fn", "e3m4"):
        model = fake_quantize_model(fp8.FORMATS[name], [np.float32(0.03)], dtype=ir.DataType.FLOAT16)
        (y,) = lower_and_run(model, x)
        assert y.dtype == np.float16
        expected = fp8.fake_quantize(x.astype(np.float32), 0.03, name).astype(np.float16)
        assert (y.view(np.uint16) == expected.view(np.uint16)).all(), name


@pytest.mark.parametrize("opset", [13, 17, 19, 20])
def test_old_opsets_take_the_float_lowering(opset):
    """Float8 Q/DQ needs opset 19 (blocked: 21); below, the float lowering; the opset is never changed."""
    fmt = fp8.FORMATS["e4m3fn"]
    x = probes(fmt, 200_000)
    rng = np.random.default_rng(1)
    scale = (10.0 ** rng.uniform(-2, 0, (3, 3))).astype(np.float32)
    data = rng.standard_normal((3, 10)).astype(np.float32)
    per_tensor = fake_quantize_model(fmt, [np.float32(0.0371)], opset=opset)
    (y,) = lower_and_run(per_tensor, x)
    assert ("QuantizeLinear" in op_types(per_tensor)) == (opset >= 19)
    assert per_tensor.opset_imports[""] == opset
    assert_same_floats(y, fp8.fake_quantize(x, 0.0371, fmt), x, f"opset {opset}")
    blocked = fake_quantize_model(fmt, [scale], axis=1, block_size=4, shape=[3, 10], opset=opset)
    (y,) = lower_and_run(blocked, data)
    assert "QuantizeLinear" not in op_types(blocked)
    assert_same_floats(y, fp8.fake_quantize(data, scale, fmt, axis=1, block_size=4), data, f"blocked {opset}")


def test_fake_quantize_inside_a_subgraph():
    """A FakeQuantize in an If branch reads constants of the main graph (outer scope)."""
    fmt = fp8.FORMATS["e3m4"]
    x = tensor_value("x", [1000])
    cond = tensor_value("cond", [], ir.DataType.BOOL)
    s = const("s", np.array(0.02, np.float32))
    inner = make_fake_quantize(x, s, QuantSpec(fmt), source="test", name="fq_inner")
    inner.outputs[0].name = "then_y"
    then_branch = ir.Graph([], [inner.outputs[0]], nodes=[inner], name="then")
    neg = ir.node("Neg", [x], outputs=[ir.Value(name="else_y")])
    else_branch = ir.Graph([], [neg.outputs[0]], nodes=[neg], name="else")
    branch = ir.node(
        "If", [cond], {"then_branch": then_branch, "else_branch": else_branch}, outputs=[tensor_value("y", [1000])]
    )
    model = model_of([x, cond], branch.outputs, [branch], [s])
    runner = ReferenceRunner(model)
    data = (np.random.default_rng(2).standard_normal(1000) * 3).astype(np.float32)
    y = runner.run({"x": data, "cond": np.array(True)})["y"]
    assert_same_floats(y, fp8.fake_quantize(data, 0.02, fmt), data, "If branch")
    assert not any(is_fake_quantize(n) for n in ir.traversal.RecursiveGraphIterator(runner.model.graph))
    assert CANONICAL_DOMAIN not in runner.model.opset_imports


def test_source_scale_constants_are_removed_and_shared_ones_kept():
    fmt = fp8.FORMATS["e3m4"]
    model = fake_quantize_model(fmt, [np.float32(0.5)])
    LowerFakeQuantizePass()(model)
    assert "s0" not in model.graph.initializers
    # a scale that is also read by another node stays
    model = fake_quantize_model(fmt, [np.float32(0.5)])
    s0 = model.graph.initializers["s0"]
    extra = ir.node("Identity", [s0], outputs=[ir.Value(name="s_copy")])
    model.graph.append(extra)
    model.graph.outputs.append(extra.outputs[0])
    LowerFakeQuantizePass()(model)
    assert "s0" in model.graph.initializers


def bad_model(fmt: fp8.FloatFormat, scale: np.ndarray, **kwargs) -> ir.Model:
    return fake_quantize_model(fmt, [scale], **kwargs)


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        (lambda: bad_model(fp8.FORMATS["e3m4"], np.float32(0.0)), Fp8ConvError, "positive and finite"),
        (lambda: bad_model(fp8.FORMATS["e4m3fn"], np.float32(np.nan)), Fp8ConvError, "positive and finite"),
        (lambda: bad_model(fp8.FORMATS["e3m4"], np.ones(3, np.float32)), Fp8ConvError, "needs an axis"),
        (
            lambda: bad_model(fp8.FORMATS["e3m4"], np.ones(3, np.float32), axis=1, shape=[2, 4]),
            Fp8ConvError,
            "axis 1 has 4",
        ),
        (
            lambda: bad_model(fp8.FORMATS["e3m4"], np.ones((2, 2), np.float32), axis=1, block_size=4, shape=[2, 9]),
            Fp8ConvError,
            "ceil(9/4)",
        ),
        (lambda: bad_model(fp8.FORMATS["e8m0fnu"], np.float32(1.0)), UnsupportedModelError, "no sign or no zero"),
        (lambda: bad_model(fp8.minifloat(8, 7), np.float32(1.0)), UnsupportedModelError, "exceeds float32"),
        (lambda: bad_model(fp8.FORMATS["e3m4"], np.float32(1.0), opset=10), UnsupportedModelError, "opset 10"),
    ],
    ids=["zero", "nan", "no-axis", "axis-length", "blocks", "e8m0fnu", "e8-grid", "opset10"],
)
def test_lowering_errors_name_the_node(model, error, message):
    with pytest.raises(error, match="fq0") as raised:
        LowerFakeQuantizePass()(model())
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_non_constant_scale_is_rejected():
    x, s = tensor_value("x", [4]), tensor_value("s", [])
    node = make_fake_quantize(x, s, QuantSpec(fp8.FORMATS["e3m4"]), source="test", name="fq")
    model = model_of([x, s], node.outputs, [node], [])
    with pytest.raises(Fp8ConvError, match="'fq': the scale 's' is not a constant"):
        LowerFakeQuantizePass()(model)


# ---------------------------------------------------------------------------------------------
# the CNN proof


E4M3FN = fp8.FORMATS["e4m3fn"]
E3M4_MINIFLOAT = fp8.minifloat(3, 4)


def _weight_scale(w: np.ndarray, fmt: fp8.FloatFormat, axis: int = 0) -> np.ndarray:
    reduce = tuple(d for d in range(w.ndim) if d != axis)
    return (np.abs(w).max(axis=reduce) / fmt.max_value).astype(np.float32)


def cnn_model() -> ir.Model:
    """input [2,3,16,16] ─FQ e4m3fn─ Conv1 (FQ'd W per channel, bias) ─ Relu ─FQ e4m3fn (Relu right before an
    fp8 quantizer) ─ Conv2 (W per channel in e3m4, bias) ─ Relu ─FQ minifloat(3,4)─FQ e4m3fn (two quantizers
    in a row) ─ Conv3 1×1 (stored e4m3fn weight, DequantizeLinear) ─ Clip(0, 6) ─FQ e4m3fn (Clip right
    before a quantizer) ─ GlobalAveragePool ─ Flatten ─ Gemm (FQ'd W per row, transB) ─ logits [2,10]."""
    rng = np.random.default_rng(11)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2
    w3 = rng.standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.4
    w4 = rng.standard_normal((10, 8)).astype(np.float32) * 0.5
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1 - 0.2
    b2 = rng.standard_normal(8).astype(np.float32) * 0.1
    b4 = rng.standard_normal(10).astype(np.float32) * 0.1
    s3 = _weight_scale(w3, E4M3FN)
    codes = fp8.encode(w3 / s3[:, None, None, None], E4M3FN)
    inits = {
        "W1": w1,
        "B1": b1,
        "W2": w2,
        "B2": b2,
        "W4": w4,
        "B4": b4,
        "W3_scale": s3,
        "W1_scale": _weight_scale(w1, E4M3FN),
        "W2_scale": _weight_scale(w2, fp8.FORMATS["e3m4"]),
        "W4_scale": _weight_scale(w4, E4M3FN),
        "input_scale": np.array(3.0 / 448, np.float32),
        "relu1_scale": np.array(2.5 / 448, np.float32),
        "relu2_scale": np.array(2.0 / 15.5, np.float32),
        "relu2_requant_scale": np.array(1.7 / 448, np.float32),
        "clip3_scale": np.array(6.0 / 448, np.float32),
        "clip_min": np.array(0.0, np.float32),
        "clip_max": np.array(6.0, np.float32),
        "shape_keep": np.array([0, -1], np.int64),
    }
    values = {name: const(name, array) for name, array in inits.items()}
    values["W3_fp8"] = ir.Value(
        name="W3_fp8", const_value=ir.Tensor(codes, dtype=ir.DataType.FLOAT8E4M3FN, name="W3_fp8")
    )
    x = tensor_value("input", [2, 3, 16, 16])
    nodes: list[ir.Node] = []

    def add(op: str, inputs: list[ir.Value], name: str, **attrs) -> ir.Value:
        node = ir.node(op, inputs, attrs or None, outputs=[ir.Value(name=name)], name=name)
        nodes.append(node)
        return node.outputs[0]

    def fq(value: ir.Value, scale: str, fmt: fp8.FloatFormat, name: str, axis: int | None = None) -> ir.Value:
        node = make_fake_quantize(value, values[scale], QuantSpec(fmt, axis=axis), source="test", name=f"{name}_fq")
        node.outputs[0].name = f"{name}_q"
        nodes.append(node)
        return node.outputs[0]

    xq = fq(x, "input_scale", E4M3FN, "input")
    w1q = fq(values["W1"], "W1_scale", E4M3FN, "W1", axis=0)
    relu1 = add("Relu", [add("Conv", [xq, w1q, values["B1"]], "conv1", pads=[1, 1, 1, 1])], "relu1")
    a1 = fq(relu1, "relu1_scale", E4M3FN, "relu1")
    w2q = fq(values["W2"], "W2_scale", fp8.FORMATS["e3m4"], "W2", axis=0)
    relu2 = add("Relu", [add("Conv", [a1, w2q, values["B2"]], "conv2", pads=[1, 1, 1, 1])], "relu2")
    a2 = fq(fq(relu2, "relu2_scale", E3M4_MINIFLOAT, "relu2"), "relu2_requant_scale", E4M3FN, "relu2_requant")
    w3 = add("DequantizeLinear", [values["W3_fp8"], values["W3_scale"]], "W3_dequantized", axis=0)
    clip3 = add("Clip", [add("Conv", [a2, w3], "conv3"), values["clip_min"], values["clip_max"]], "clip3")
    a3 = fq(clip3, "clip3_scale", E4M3FN, "clip3")
    pooled = add("Reshape", [add("GlobalAveragePool", [a3], "pool"), values["shape_keep"]], "flat")
    w4q = fq(values["W4"], "W4_scale", E4M3FN, "W4", axis=0)
    logits = add("Gemm", [pooled, w4q, values["B4"]], "logits", transB=1)
    logits.type, logits.shape = ir.TensorType(FLOAT), ir.Shape([2, 10])
    return model_of([x], [logits], nodes, list(values.values()), opset=21)


@functools.cache
def cnn_case() -> tuple[ir.Model, dict[str, np.ndarray]]:
    data = (np.random.default_rng(5).standard_normal((2, 3, 16, 16)) * 1.5).astype(np.float32)
    return cnn_model(), {"input": data}


def fake_quantize_nodes(model: ir.Model) -> list[ir.Node]:
    return [node for node in model.graph if is_fake_quantize(node)]


def check_quant_points(model: ir.Model, captured: dict[str, np.ndarray]) -> int:
    """Every FakeQuantize output equals the emulator on its captured input; returns how many."""
    for node in fake_quantize_nodes(model):
        spec = read_fake_quantize(node)
        x = captured[node.inputs[0].name]
        scale = node.inputs[1].const_value.numpy().astype(np.float32)
        expected = fp8.fake_quantize(
            x.astype(np.float32),
            scale,
            spec.format,
            axis=spec.axis,
            block_size=spec.block_size,
            saturate=spec.saturate,
        )
        got = captured[node.outputs[0].name]
        # a float16 tensor holds the float32 result rounded to float16 (the lowering casts back)
        expected = expected.astype(got.dtype).astype(np.float32)
        assert_same_floats(got.astype(np.float32), expected, x, f"quantization point {node.name}")
    return len(fake_quantize_nodes(model))


def capture_names(model: ir.Model) -> list[str]:
    names = [name for node in fake_quantize_nodes(model) for name in (node.inputs[0].name, node.outputs[0].name)]
    return list(dict.fromkeys(names))


@pytest.mark.parametrize("native_qdq", [False, True], ids=["float-ops", "qdq"])
def test_cnn_quantization_points_are_exact(native_qdq):
    model, feeds = cnn_case()
    captures = [*capture_names(model), "W3_dequantized", "relu1", "clip3"]
    runner = ReferenceRunner(model, capture=captures, native_qdq=native_qdq)
    assert ("QuantizeLinear" in op_types(runner.model)) == native_qdq
    captured = runner.run(feeds)
    assert check_quant_points(model, captured) == 8
    # the stored FP8 weight: DequantizeLinear = decode(codes) * scale per output channel
    codes = model.graph.initializers["W3_fp8"].const_value.numpy().view(np.uint8)
    scale = model.graph.initializers["W3_scale"].const_value.numpy()
    expected = fp8.decode(codes, "e4m3fn") * scale[:, None, None, None]
    assert_same_floats(captured["W3_dequantized"], expected, codes, "stored weight")
    # the quantizers see negative values where the Relu/Clip would remove them: the Relu and Clip ran
    assert (captured["relu1"] >= 0).all()
    assert (captured["relu1"] == 0).mean() > 0.2
    assert captured["clip3"].max() <= 6.0
    assert (captured["clip3"] == 0).mean() > 0.2


@pytest.mark.parametrize("native_qdq", [False, True], ids=["float-ops", "qdq"])
def test_cnn_float_ops_between_quantization_points_match_torch(native_qdq):
    """The float ops ran as written: no Relu/Clip deleted, no bias re-quantized (float64 torch reference)."""
    model, feeds = cnn_case()
    runner = ReferenceRunner(model, capture=[*capture_names(model), "W3_dequantized"], native_qdq=native_qdq)
    c = {name: torch.from_numpy(np.asarray(v, np.float64)) for name, v in runner.run(feeds).items()}
    b = {
        n: torch.from_numpy(model.graph.initializers[n].const_value.numpy().astype(np.float64))
        for n in ("B1", "B2", "B4")
    }
    relu1 = torch.relu(torch.nn.functional.conv2d(c["input_q"], c["W1_q"], b["B1"], padding=1))
    relu2 = torch.relu(torch.nn.functional.conv2d(c["relu1_q"], c["W2_q"], b["B2"], padding=1))
    clip3 = torch.clamp(torch.nn.functional.conv2d(c["relu2_requant_q"], c["W3_dequantized"]), 0.0, 6.0)
    logits = c["clip3_q"].mean(dim=(2, 3)) @ c["W4_q"].T + b["B4"]
    for name, reference in [("relu1", relu1), ("relu2", relu2), ("clip3", clip3), ("logits", logits)]:
        np.testing.assert_allclose(c[name].numpy(), reference.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("native_qdq", [False, True], ids=["float-ops", "qdq"])
def test_captures_do_not_change_the_outputs(native_qdq):
    model, feeds = cnn_case()
    plain = ReferenceRunner(model, native_qdq=native_qdq).run(feeds)["logits"]
    captured = ReferenceRunner(model, capture=capture_names(model), native_qdq=native_qdq).run(feeds)["logits"]
    assert plain.view(np.uint32).tolist() == captured.view(np.uint32).tolist()


def test_grid_captures_are_the_fp8_values_of_the_quantization_points():
    """capture_grid returns float16 q with q * scale equal to the FakeQuantize output bit for bit."""
    model, feeds = cnn_case()
    per_tensor = [n for n in fake_quantize_nodes(model) if n.inputs[1].const_value.numpy().size == 1]
    outputs = [n.outputs[0].name for n in per_tensor]
    floats = ReferenceRunner(model, capture=outputs).run(feeds)
    runner = ReferenceRunner(model, capture_grid=outputs)
    assert runner.grid_outputs == frozenset(outputs)
    grids = runner.run(feeds)
    assert grids["logits"].view(np.uint32).tolist() == floats["logits"].view(np.uint32).tolist()
    for node in per_tensor:
        name, spec = node.outputs[0].name, read_fake_quantize(node)
        assert grids[name].dtype == np.float16
        scale = node.inputs[1].const_value.numpy().astype(np.float32)
        assert_same_floats(grids[name].astype(np.float32) * scale, floats[name], floats[name], name)
        codes = fp8.encode(grids[name].astype(np.float32), spec.format)
        assert_same_floats(fp8.decode(codes, spec.format), grids[name].astype(np.float32), codes, name)


def test_grid_captures_fall_back_to_the_output_where_there_is_no_grid():
    """Native Q/DQ lowering and names also wanted as floats return the float32 output itself."""
    model, feeds = cnn_case()
    name = fake_quantize_nodes(model)[0].outputs[0].name
    native = ReferenceRunner(model, capture_grid=[name], native_qdq=True)
    assert native.grid_outputs == frozenset()
    wanted_as_float = ReferenceRunner(model, capture=[name], capture_grid=[name])
    assert wanted_as_float.grid_outputs == frozenset()
    expected = ReferenceRunner(model, capture=[name]).run(feeds)[name]
    for runner in (native, wanted_as_float):
        got = runner.run(feeds)[name]
        assert got.dtype == np.float32
        assert got.view(np.uint32).tolist() == expected.view(np.uint32).tolist()


def test_concurrent_runs_on_one_thread_each_match_a_single_run():
    """ReferenceRunner.run from two threads at once (intra_op_threads=1), as calibration does."""
    import concurrent.futures

    model, feeds = cnn_case()
    outputs = capture_names(model)
    expected = ReferenceRunner(model, capture=outputs).run(feeds)
    runner = ReferenceRunner(model, capture=outputs, intra_op_threads=1)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: runner.run(feeds), range(8)))
    for result in results:
        for name in outputs:
            assert result[name].view(np.uint32).tolist() == expected[name].view(np.uint32).tolist(), name


def test_both_lowerings_give_the_same_outputs():
    model, feeds = cnn_case()
    float_ops = ReferenceRunner(model).run(feeds)["logits"]
    qdq = ReferenceRunner(model, native_qdq=True).run(feeds)["logits"]
    assert float_ops.view(np.uint32).tolist() == qdq.view(np.uint32).tolist()


def test_default_onnxruntime_settings_break_the_lowered_model():
    """Negative control, on the same lowered model: at onnxruntime's defaults ClipQuantRewrite fails on a
    Clip in front of a float8 QuantizeLinear, and ReluQuantRewrite deletes the Relu in front of one. The
    rules are matched by rule name; the class names (ReluQuantFusion, ClipQuantFusion) disable nothing."""
    model, feeds = cnn_case()
    runner = ReferenceRunner(model, capture=["relu1_q"], native_qdq=True)
    reference = runner.run(feeds)
    for disabled in [(), ("ReluQuantFusion", "ClipQuantFusion")]:
        with pytest.raises(Fp8ConvError, match="y_zero_point of 17"):
            create_session(runner.model, disabled_optimizers=disabled, config=SESSION_CONFIG)
    session = create_session(runner.model, disabled_optimizers=["ClipQuantRewrite"], config=SESSION_CONFIG)
    logits, relu1_q = session.run(["logits", "relu1_q"], feeds)
    assert (relu1_q < 0).any()  # the Relu before relu1's quantizer is gone
    assert (reference["relu1_q"] >= 0).all()
    assert not np.array_equal(logits, reference["logits"])


def optimized_initializer_types(model: ir.Model, config: dict[str, str], path) -> set[int]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path)
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    data = ir.to_proto(model).SerializeToString()
    ort.InferenceSession(data, options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS)
    return {tensor.data_type for tensor in onnx.load(str(path)).graph.initializer}


def test_quant_qdq_transformers_are_off(tmp_path):
    """Without session.disable_quant_qdq, WeightBiasQuantization turns the float conv biases between float8
    Q/DQ into int32 (x_scale · w_scale); with the reference settings every bias stays float."""
    runner = ReferenceRunner(cnn_case()[0], native_qdq=True)
    int32 = onnx.TensorProto.INT32
    assert int32 in optimized_initializer_types(runner.model, {}, tmp_path / "default.onnx")
    assert int32 not in optimized_initializer_types(runner.model, dict(SESSION_CONFIG), tmp_path / "reference.onnx")


def test_runner_does_not_modify_the_callers_model():
    model, feeds = cnn_case()
    before = ir.to_proto(model).SerializeToString()
    ReferenceRunner(model, capture=["relu1"]).run(feeds)
    assert ir.to_proto(model).SerializeToString() == before


# ---------------------------------------------------------------------------------------------
# the runner's interface


def test_runner_interface():
    model, feeds = cnn_case()
    runner = ReferenceRunner(model, capture=["relu1", "W1", "input"])
    assert runner.input_names == ("input",)
    assert runner.output_names == ("logits", "relu1", "W1", "input")
    assert runner.static_batch_size == 2
    results = list(runner.run_batches([feeds, {"input": feeds["input"] * 2}]))
    assert len(results) == 2
    assert list(results[0]) == list(runner.output_names)
    assert np.array_equal(results[0]["W1"], model.graph.initializers["W1"].const_value.numpy())
    assert results[1]["input"] is not feeds["input"]
    assert not np.array_equal(results[0]["logits"], results[1]["logits"])


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "feeds: missing input"),
        ({"input": np.zeros((2, 3, 16, 16), np.float32), "other": np.zeros(1)}, "unknown other"),
        ({"input": np.zeros((2, 3, 16, 16), np.float64)}, "dtype float64, the model wants float32"),
        ({"input": np.zeros((3, 16, 16), np.float32)}, "rank 3"),
        ({"input": np.zeros((2, 3, 16, 15), np.float32)}, "dimension 3 is 15"),
        ({"input": [[0.0]]}, "expected a NumPy array"),
    ],
    ids=["missing", "extra", "dtype", "rank", "dimension", "not-array"],
)
def test_runner_rejects_bad_feeds(feeds, message):
    runner = ReferenceRunner(cnn_case()[0])
    with pytest.raises(Fp8ConvError) as raised:
        runner.run(feeds)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_runner_rejects_unknown_capture():
    with pytest.raises(Fp8ConvError, match="capture: 'nope' is not a tensor"):
        ReferenceRunner(cnn_case()[0], capture=["nope"])


# ---------------------------------------------------------------------------------------------
# every golden model, normalized


def dequantized(codes: np.ndarray, fmt: fp8.FloatFormat, scale: np.ndarray, axis, block_size) -> np.ndarray:
    """``decode(codes) * scale`` with the scale broadcast as DequantizeLinear does (float32)."""
    if block_size:
        axis %= codes.ndim
        scale = np.repeat(scale, block_size, axis=axis)[(slice(None),) * axis + (slice(0, codes.shape[axis]),)]
    elif axis is not None:
        scale = scale.reshape((-1,) + (1,) * (codes.ndim - axis % codes.ndim - 1))
    return fp8.decode(codes, fmt) * scale.astype(np.float32)


@pytest.mark.parametrize("native_qdq", [False, True], ids=["float-ops", "qdq"])
@pytest.mark.parametrize("name", [name for name, case in GOLDEN.items() if not case.unsupported])
def test_golden_models_quantization_points_are_exact(name, native_qdq):
    case = GOLDEN[name]
    model = normalize_fp8(ir.from_proto(case.build())).model
    points = collect_quant_points(model)
    assert len(points) == case.activation_points + case.weight_points
    stored = [p for p in points if p.stored]
    runner = ReferenceRunner(model, capture=[*capture_names(model), *(p.output for p in stored)], native_qdq=native_qdq)
    rng = np.random.default_rng(0)
    feeds = {
        value.name: (rng.standard_normal([d if isinstance(d, int) else 1 for d in value.shape]) * 2).astype(np.float32)
        for value in model.graph.inputs
    }
    captured = runner.run(feeds)
    assert check_quant_points(model, captured) == len(points) - len(stored)
    for p in stored:
        codes = model.graph.initializers[p.tensor].const_value.numpy().view(np.uint8)
        expected = dequantized(codes, p.spec.format, p.scale, p.spec.axis, p.spec.block_size)
        assert_same_floats(captured[p.output].astype(np.float32), expected, codes, f"stored weight {p.tensor}")


def test_the_callers_model_is_not_modified():
    model, feeds = cnn_case()
    before = ir.to_proto(model).SerializeToString()
    runner = ReferenceRunner(model, capture=capture_names(model), capture_grid=["relu1_q"])
    runner.run(feeds)
    assert ir.to_proto(model).SerializeToString() == before
    assert any(is_fake_quantize(node) for node in model.graph)
