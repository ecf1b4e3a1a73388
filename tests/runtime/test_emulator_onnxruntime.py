"""The emulator against onnxruntime's CPU kernels for the four ONNX float8 types, bit for bit.

Graphs are built here with ``onnx.helper`` and run with every graph optimization disabled, so the
kernels execute exactly the nodes written. onnxruntime's Python binding cannot hand FNUZ tensors to
NumPy, so every graph casts (or dequantizes) back to float32 inside the graph.
"""

from __future__ import annotations

import functools

import helpers
import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fp8conv import fp8

# name -> (ONNX enum, ml_dtypes type used only to list the format's grid for the inputs)
ONNX_FLOAT8 = {
    "e4m3fn": (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn),
    "e4m3fnuz": (TensorProto.FLOAT8E4M3FNUZ, ml_dtypes.float8_e4m3fnuz),
    "e5m2": (TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2),
    "e5m2fnuz": (TensorProto.FLOAT8E5M2FNUZ, ml_dtypes.float8_e5m2fnuz),
}
NAMES = list(ONNX_FLOAT8)


def test_onnx_enums_match_the_format_table():
    for name, (onnx_type, _) in ONNX_FLOAT8.items():
        assert fp8.FORMATS[name].onnx_type == onnx_type


# ---------------------------------------------------------------------------------------------
# helpers


def run(graph_nodes, inputs: dict[str, np.ndarray], initializers, opset: int) -> np.ndarray:
    graph = helper.make_graph(
        graph_nodes,
        "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, inputs)
    return y


def assert_same_floats(actual: np.ndarray, expected: np.ndarray, inputs: np.ndarray, what: str) -> None:
    helpers.assert_same_floats(actual, expected, inputs, what, ("ort", "fp8conv"))


@functools.cache
def grid(name: str) -> np.ndarray:
    """The format's finite non-negative values, sorted (from ml_dtypes, independent of fp8conv)."""
    values = np.arange(256, dtype=np.uint8).view(ONNX_FLOAT8[name][1]).astype(np.float64)
    return np.unique(np.abs(values[np.isfinite(values)]))


@functools.cache
def cast_inputs(name: str) -> np.ndarray:
    """Many decades of random magnitudes, both signs, every grid value and midpoint ±1 ulp, specials."""
    rng = np.random.default_rng(1234)
    n = 100_000
    random = (rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-12, 8, n)).astype(np.float32)
    g = grid(name)
    anchors = np.concatenate([g, (g[:-1] + g[1:]) / 2, [g[-1] + (g[-1] - g[-2]) / 2]]).astype(np.float32)
    near = np.concatenate([anchors, np.nextafter(anchors, np.float32(np.inf)), np.nextafter(anchors, np.float32(0))])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 3.4e38, -3.4e38, 1e-45, -1e-45], np.float32)
    return np.concatenate([random, near, -near, specials])


# ---------------------------------------------------------------------------------------------
# Cast -> Cast


def cast_graph(onnx_type: int, saturate: int):
    return [
        helper.make_node("Cast", ["x"], ["q"], to=onnx_type, saturate=saturate),
        helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT),
    ]


@pytest.mark.parametrize("opset", [19, 21, 23, 24, 25])
@pytest.mark.parametrize("name", NAMES)
def test_cast_saturating_matches_quantize_values(name, opset):
    x = cast_inputs(name)
    y = run(cast_graph(ONNX_FLOAT8[name][0], 1), {"x": x}, [], opset)
    assert_same_floats(y, fp8.quantize_values(x, name, saturate=True), x, f"Cast({name}, saturate=1) opset {opset}")


@pytest.mark.parametrize("name", NAMES)
def test_cast_non_saturating_away_from_the_overflow_edge(name):
    # onnxruntime 1.32's saturate=0 Cast deviates from the ONNX spec (and ml_dtypes) just above the
    # largest value: e4m3fn inputs in [480, 496) give 448 instead of NaN, and e5m2 inputs in
    # [61440, 65536) give NaN instead of Inf (reference §6.2, experiment E2). That is onnxruntime's
    # rounding-then-range-check order, not a property of the format, so the window between max and
    # four times the top binade is left out here; in-range values, far overflow, ±Inf and NaN are
    # compared.
    x = cast_inputs(name)
    fmt = fp8.FORMATS[name]
    edge_end = 4.0 * 2.0 ** np.floor(np.log2(fmt.max_value))
    magnitude = np.abs(x.astype(np.float64))
    x = x[~((magnitude > fmt.max_value) & (magnitude < edge_end))]
    assert (np.abs(x) >= edge_end).sum() > 1000  # far overflow really is exercised
    y = run(cast_graph(ONNX_FLOAT8[name][0], 0), {"x": x}, [], 19)
    assert_same_floats(y, fp8.quantize_values(x, name, saturate=False), x, f"Cast({name}, saturate=0)")


# ---------------------------------------------------------------------------------------------
# QuantizeLinear -> DequantizeLinear


def qdq_graph(onnx_type: int, scale: np.ndarray, axis: int | None, block_size: int | None):
    attrs = {}
    if axis is not None:
        attrs["axis"] = axis
    if block_size is not None:
        attrs["block_size"] = block_size
    zero = helper.make_tensor("zp", onnx_type, list(scale.shape), vals=bytes(scale.size), raw=True)
    initializers = [numpy_helper.from_array(scale.astype(np.float32), "scale"), zero]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], saturate=1, **attrs),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], **attrs),
    ]
    return nodes, initializers


def qdq_inputs(name: str, shape: tuple[int, int], scale_full: np.ndarray, seed: int) -> np.ndarray:
    """Log-uniform magnitudes over ~16 decades around the scale, with a quarter of the entries set to
    (scaled) grid midpoints and their float32 neighbours, and a few specials."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], shape)
    x = sign * 10.0 ** rng.uniform(-10, 6, shape) * scale_full
    g = grid(name)
    mids = np.concatenate([(g[:-1] + g[1:]) / 2, [g[-1] * 1.03, g[-1] + (g[-1] - g[-2]) / 2]])
    pick = rng.random(shape) < 0.25
    x = np.where(pick, sign * rng.choice(mids, shape) * scale_full, x).astype(np.float32)
    nudge = rng.integers(-1, 2, shape)
    x = np.where(nudge > 0, np.nextafter(x, np.float32(np.inf)), x)
    x = np.where(nudge < 0, np.nextafter(x, np.float32(-np.inf)), x).astype(np.float32)
    flat = x.reshape(-1)
    flat[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e30, 3.0e38]
    return x


def log_uniform_scales(rng: np.random.Generator, shape) -> np.ndarray:
    return (10.0 ** rng.uniform(-4, 3, shape)).astype(np.float32)


@pytest.mark.parametrize("opset", [19, 21])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1.0, 0.0371, 3.3, 1.7e-5, 250.0])
def test_qdq_per_tensor(name, opset, scale):
    scale_array = np.array(scale, dtype=np.float32)
    x = qdq_inputs(name, (200, 64), scale_array, seed=7)
    nodes, inits = qdq_graph(ONNX_FLOAT8[name][0], scale_array, None, None)
    y = run(nodes, {"x": x}, inits, opset)
    expected = fp8.fake_quantize(x, scale_array, name)
    assert_same_floats(y, expected, x, f"Q/DQ {name} per-tensor {scale} opset {opset}")
    # a plain Python float gives the same answer as a 0-d float32 array
    assert_same_floats(fp8.fake_quantize(x, float(scale_array), name), expected, x, "python float scale")


@pytest.mark.parametrize("opset", [19, 21])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_qdq_per_axis(name, opset, axis):
    shape = (48, 37)
    rng = np.random.default_rng(11 + axis)
    scale = log_uniform_scales(rng, shape[axis])
    view = [1, 1]
    view[axis] = shape[axis]
    x = qdq_inputs(name, shape, scale.reshape(view), seed=3 + axis)
    nodes, inits = qdq_graph(ONNX_FLOAT8[name][0], scale, axis, None)
    y = run(nodes, {"x": x}, inits, opset)
    expected = fp8.fake_quantize(x, scale, name, axis=axis)
    assert_same_floats(y, expected, x, f"Q/DQ {name} axis {axis} opset {opset}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("shape", "axis", "block_size"),
    [
        ((16, 40), 1, 4),  # even blocks
        ((16, 10), 1, 4),  # ragged last block (4, 4, 2)
        ((11, 6), 0, 4),  # blocked along axis 0, ragged (4, 4, 3)
        ((3, 9, 5), 1, 2),  # rank 3, ragged (2, 2, 2, 2, 1)
        ((7, 13), -1, 5),  # negative axis
    ],
)
def test_qdq_blocked(name, shape, axis, block_size):
    rng = np.random.default_rng(sum(shape) + block_size)
    ax = axis % len(shape)
    scale_shape = tuple(-(-n // block_size) if d == ax else n for d, n in enumerate(shape))
    scale = log_uniform_scales(rng, scale_shape)
    scale_full = np.repeat(scale, block_size, axis=ax)[tuple(slice(0, n) for n in shape)]
    x = qdq_inputs(name, shape, scale_full, seed=5)
    nodes, inits = qdq_graph(ONNX_FLOAT8[name][0], scale, axis, block_size)
    y = run(nodes, {"x": x}, inits, 21)
    expected = fp8.fake_quantize(x, scale, name, axis=axis, block_size=block_size)
    assert_same_floats(y, expected, x, f"Q/DQ {name} blocked {shape} axis {axis} block {block_size}")
