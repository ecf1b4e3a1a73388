"""Weight requantization (INT8 / 7-bit / INT4; per tensor, per channel, blocked) and int32 bias quantization.

Oracles: onnxruntime's DequantizeLinear (opset 21) for the dequantized values, a brute-force evaluation of
the clipping ratio for the MSE claims, and ``np.rint`` of the float64 quotient for the bias.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
from helpers import run_unoptimized
from onnx import TensorProto, helper

from fp8conv import fp8
from fp8conv.runtime.integer_quantization import (
    QuantizedWeights,
    WeightCodes,
    dequantize,
    distinct_values,
    quantize_bias,
    quantize_weights,
    weight_range,
)
from fp8conv.runtime.integer_quantization import codes as codes_module
from fp8conv.runtime.integer_quantization import groups as groups_module
from fp8conv.runtime.integer_quantization import weights as weights_module


def normal(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def fp8_weights(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """FP8-trained-like weights: e4m3fn fake-quantized with a per-output-channel max scale (axis 0)."""
    w = normal(shape, seed) * np.random.default_rng(seed + 1).uniform(0.01, 1.0, size=(shape[0], 1)).astype(np.float32)
    scale = (np.abs(w).max(axis=1) / 448.0).astype(np.float32)
    return fp8.fake_quantize(w, scale, "e4m3fn", axis=0)


def squared_error_at_ratio(w: np.ndarray, ratio: float, qmax: int, qmin: int) -> np.ndarray:
    """Per-row sum of squared errors at one clipping ratio (brute force, rows = groups)."""
    amax = np.abs(w).max(axis=1)
    scale = (ratio * amax.astype(np.float64) / qmax).astype(np.float32)[:, None]
    q = np.clip(np.rint(w / scale), qmin, qmax)
    return np.sum((w.astype(np.float64) - (q * scale).astype(np.float64)) ** 2, axis=1)


def ort_dequantize(qw: QuantizedWeights) -> np.ndarray:
    """onnxruntime DequantizeLinear of the integer weights with their scales (opset 21)."""
    elem = TensorProto.INT4 if qw.bits == 4 else TensorProto.INT8
    attrs = {}
    if qw.axis is not None:
        attrs["axis"] = qw.axis
    if qw.block_size is not None:
        attrs["block_size"] = qw.block_size
    q = helper.make_tensor("q", elem, qw.q.shape, qw.q.astype(np.int8).ravel().tolist())
    s = helper.make_tensor("s", TensorProto.FLOAT, qw.scale.shape, qw.scale.ravel().tolist())
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s"], ["y"], **attrs)],
        "dq",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(qw.q.shape))],
        [q, s],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return run_unoptimized(model, {})


# ---------------------------------------------------------------------------------------------------------------
# Ranges and layouts
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "narrow_bits", "expected"),
    [
        (8, None, (8, -127, 127)),
        (7, None, (8, -63, 63)),
        (8, 7, (8, -63, 63)),
        (4, None, (4, -8, 7)),
        (4, 3, (4, -3, 3)),
    ],
)
def test_weight_range(bits: int, narrow_bits: int | None, expected: tuple[int, int, int]) -> None:
    assert weight_range(bits, narrow_bits) == expected


@pytest.mark.parametrize("method", ["mse", "max"])
@pytest.mark.parametrize(
    ("bits", "low", "high", "used"),
    [(8, -128, 127, (-127, 127)), (7, -64, 63, (-63, 63)), (4, -8, 7, (-8, 7))],
)
def test_integers_stay_in_range(method: str, bits: int, low: int, high: int, used: tuple[int, int]) -> None:
    w = normal((32, 200), seed=1)
    w[0, 0], w[1, 0] = 50.0, -50.0  # outliers: the MSE search clips them
    qw = quantize_weights(w, axis=0, bits=bits, method=method)
    assert qw.q.dtype == np.int8
    assert (qw.qmin, qw.qmax) == used
    assert low <= used[0] <= qw.q.min()  # 7-bit weights lie in the AVX2-safe [-64, 63]
    assert qw.q.max() <= used[1] <= high


def test_int4_uses_minus_eight_when_clipping() -> None:
    qw = quantize_weights(normal((64, 256), seed=2), axis=0, bits=4, method="mse")
    assert (qw.clip_ratio < 1).all()  # 4-bit MSE always clips Gaussian rows of 256
    assert qw.q.min() == -8


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel_layout(axis: int) -> None:
    w = normal((6, 10), seed=3)
    qw = quantize_weights(w, axis=axis, bits=8, method="max")
    channel = axis % 2
    assert qw.axis == channel
    assert qw.scale.shape == (w.shape[channel],)
    assert qw.scale.dtype == np.float32
    expected = (np.abs(w).max(axis=1 - channel).astype(np.float64) / 127).astype(np.float32)
    np.testing.assert_array_equal(qw.scale, expected)
    np.testing.assert_array_equal(qw.clip_ratio, 1.0)


def test_per_tensor_layout() -> None:
    w = normal((3, 4, 5), seed=4)
    qw = quantize_weights(w, axis=None, bits=8, method="max")
    assert qw.scale.shape == ()
    assert qw.scale == np.float32(np.abs(w).max() / 127.0)
    assert qw.mse.shape == qw.clip_ratio.shape == ()


@pytest.mark.parametrize(
    ("shape", "axis", "block", "scale_shape"),
    [
        ((64, 8), 0, 32, (2, 8)),  # MatMul [K, N] blocked along K
        ((100, 8), 0, 32, (4, 8)),  # ragged last block (100 = 3 * 32 + 4)
        ((4, 70), 1, 64, (4, 2)),
        ((2, 3, 50), 2, 16, (2, 3, 4)),
        ((2, 50, 3), 1, 128, (2, 1, 3)),  # one block shorter than block_size
    ],
)
def test_blocked_layout(shape: tuple[int, ...], axis: int, block: int, scale_shape: tuple[int, ...]) -> None:
    w = normal(shape, seed=5)
    qw = quantize_weights(w, axis=axis, bits=4, method="max", block_size=block)
    assert qw.q.shape == w.shape
    assert qw.scale.shape == qw.mse.shape == scale_shape
    # Each scale is the max of its own block (ragged last block included).
    moved = np.moveaxis(w, axis, -1)
    for index in np.ndindex(*np.moveaxis(qw.scale, axis, -1).shape):
        *outer, block_index = index
        chunk = moved[(*outer, slice(block_index * block, (block_index + 1) * block))]
        assert np.moveaxis(qw.scale, axis, -1)[index] == np.float32(np.abs(chunk).max() / 7.0)


def test_zero_channel_gets_unit_scale() -> None:
    w = normal((3, 16), seed=6)
    w[1] = 0.0
    for method in ("max", "mse"):
        qw = quantize_weights(w, axis=0, bits=8, method=method)
        assert qw.scale[1] == 1.0
        assert (qw.q[1] == 0).all()
        assert qw.mse[1] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# MSE search
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 7, 4])
@pytest.mark.parametrize(("axis", "block"), [(0, None), (1, 32), (None, None)])
def test_mse_never_loses_to_max_per_group(bits: int, axis: int | None, block: int | None) -> None:
    w = normal((48, 96), seed=7) ** 3  # heavy tails
    by_max = quantize_weights(w, axis=axis, bits=bits, method="max", block_size=block)
    by_mse = quantize_weights(w, axis=axis, bits=bits, method="mse", block_size=block)
    assert by_mse.scale.shape == by_max.scale.shape
    assert (by_mse.mse <= by_max.mse).all()
    assert by_mse.mse.sum() < by_max.mse.sum()
    # The reported MSE is that of the dequantized weights.
    error = (dequantize(by_mse).astype(np.float64) - w) ** 2
    if axis is None:
        np.testing.assert_allclose(by_mse.mse, error.mean(), rtol=1e-6)
    elif block is None:
        np.testing.assert_allclose(by_mse.mse, error.mean(axis=1), rtol=1e-6)


def test_mse_ratio_is_the_brute_force_optimum_on_the_grid() -> None:
    w = normal((16, 128), seed=8)
    qw = quantize_weights(w, axis=0, bits=4, method="mse")
    ratios = np.arange(250, 651) / 500.0  # every 0.002 in [0.5, 1.3]
    brute = np.min([squared_error_at_ratio(w, r, 7, -8) for r in ratios], axis=0)
    found = squared_error_at_ratio(w, 1.0, 7, -8)
    for row, ratio in enumerate(qw.clip_ratio):
        found[row] = squared_error_at_ratio(w[row : row + 1], float(ratio), 7, -8)[0]
    np.testing.assert_allclose(found, qw.mse * 128, rtol=1e-6)
    assert (found <= brute * 1.02).all()  # coarse-to-fine finds the grid optimum (or within 2 %)


@pytest.mark.parametrize("bits", [8, 7])
def test_fp8_grid_weights_choose_ratios_above_one(bits: int) -> None:
    w = fp8_weights((64, 256))
    by_mse = quantize_weights(w, axis=0, bits=bits, method="mse")
    by_max = quantize_weights(w, axis=0, bits=bits, method="max")
    above = by_mse.clip_ratio > 1.0
    assert above.mean() > 0.5  # the INT grid ends above the FP8 maximum (paper section 6)
    assert (by_mse.mse[above] < by_max.mse[above]).all()
    assert by_mse.mse.sum() < 0.7 * by_max.mse.sum()
    if bits == 8:
        # step = 4 FP8 scales: ratio 127 * 4 / 448; every e4m3fn value >= 32 scales is reproduced exactly.
        np.testing.assert_allclose(np.median(by_mse.clip_ratio), 127 * 4 / 448, atol=0.002)


def test_method_and_argument_validation() -> None:
    w = normal((4, 4))
    cases = [
        ({"axis": 0, "bits": 6}, "bits must be 8, 7"),
        ({"axis": 0, "bits": 8, "method": "minmax"}, "method must be 'mse' or 'max'"),
        ({"axis": 2, "bits": 8}, "out of range"),
        ({"axis": None, "bits": 8, "block_size": 32}, "needs axis="),
        ({"axis": 0, "bits": 8, "block_size": 0}, "block_size must be a positive int"),
        ({"axis": 0, "bits": 4, "narrow_bits": 5}, "narrow_bits must be"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            quantize_weights(w, **kwargs)  # type: ignore[arg-type]
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_weights(bad, axis=0, bits=8)
    with pytest.raises(ValueError, match="empty"):
        quantize_weights(np.zeros((0, 3)), axis=None, bits=8)


def element_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the MSE search score every element (the slow path) instead of distinct values."""
    monkeypatch.setattr(distinct_values, "_DISTINCT_MIN_LENGTH", 1 << 62)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((48, 576), {"axis": 0, "bits": 8}),  # Conv 3x3x64, per output channel
        ((48, 576), {"axis": 0, "bits": 7}),
        ((48, 576), {"axis": 0, "bits": 4}),  # [-8, 7] is not symmetric: signed values, not |w|
        ((96, 1152), {"axis": 0, "bits": 7}),  # several row chunks
        ((64, 512), {"axis": None, "bits": 8}),  # one group of 32768
        ((64, 2048), {"axis": 1, "bits": 8, "block_size": 512}),  # blocks along K, each inside one FP8 channel
    ],
)
def test_distinct_value_search_equals_element_search(
    shape: tuple[int, int], kwargs: dict[str, int | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = fp8_weights(shape, seed=12)
    groups = groups_module.group_weights(w, kwargs["axis"], kwargs.get("block_size")).data
    assert distinct_values.distinct(groups, absolute=kwargs["bits"] != 4)[1] is not None  # the fast path runs
    fast = quantize_weights(w, method="mse", **kwargs)  # type: ignore[arg-type]
    element_search(monkeypatch)
    assert distinct_values.distinct(groups, absolute=True)[1] is None
    slow = quantize_weights(w, method="mse", **kwargs)  # type: ignore[arg-type]
    # The same float32 error per element, summed in another order: the same choice on this data.
    np.testing.assert_array_equal(fast.clip_ratio, slow.clip_ratio)
    np.testing.assert_array_equal(fast.scale, slow.scale)
    np.testing.assert_array_equal(fast.q, slow.q)
    np.testing.assert_array_equal(fast.mse, slow.mse)


def fp8_coded_weights(shape: tuple[int, ...], fmt: str, axis: int | None, seed: int) -> tuple[np.ndarray, WeightCodes]:
    """Weights stored as FP8 codes with a per-tensor (axis None) or per-axis scale, and their float32 values."""
    w = normal(shape, seed) * np.float32(3.0)
    w[(0,) * w.ndim] = 0.0
    w.reshape(-1)[1] = -0.0
    if axis is None:
        scale = np.asarray(np.abs(w).max() / 200.0, dtype=np.float32)
        view = scale
    else:
        scale = (np.abs(np.moveaxis(w, axis, 0)).reshape(shape[axis], -1).max(axis=1) / 200.0).astype(np.float32)
        view = scale.reshape([-1 if d == axis else 1 for d in range(w.ndim)])
    codes = fp8.encode(w / view, fmt)
    table = fp8.decode(np.arange(256, dtype=np.uint8), fmt)
    values = table[codes] * view
    return values.astype(np.float32), WeightCodes(codes, table, scale, axis, 0x80)


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2", "e4m3fnuz"])
@pytest.mark.parametrize(
    ("shape", "axis", "code_axis", "bits"),
    [
        ((64, 64, 3, 3), 0, 0, 8),  # Conv weight, FP8 scale per output channel
        ((64, 64, 3, 3), 0, None, 7),  # per-tensor FP8 scale
        ((1024, 48), 1, 1, 8),  # MatMul [K, N]: channels on axis 1
        ((40, 2048), 0, 0, 4),  # INT4 [-8, 7]: signed values, -0 and +0 merged
    ],
)
def test_code_counting_gives_the_sort_path_result_bit_for_bit(
    fmt: str, shape: tuple[int, ...], axis: int, code_axis: int | None, bits: int
) -> None:
    w, codes = fp8_coded_weights(shape, fmt, code_axis, seed=31)
    groups = groups_module.group_weights(w, axis, None)
    coded = WeightCodes(
        codes=np.moveaxis(codes.codes, axis, 0).reshape(shape[axis], -1),
        values=codes.values,
        scale=np.broadcast_to(codes.scale.reshape(-1), (shape[axis],)),
        axis=0,
        sign_bit=codes.sign_bit,
    )
    absolute = bits != 4
    counted = distinct_values.pack_distinct(coded, codes_module.code_counts(coded), absolute=absolute)
    sorted_ = distinct_values.distinct(groups.data, absolute=absolute)
    assert counted is not None
    assert sorted_[1] is not None
    np.testing.assert_array_equal(counted[0].view(np.uint32) & 0x7FFFFFFF, sorted_[0].view(np.uint32) & 0x7FFFFFFF)
    np.testing.assert_array_equal(counted[1], sorted_[1])
    for method in ("mse", "max"):
        with_codes = quantize_weights(codes, axis=axis, bits=bits, method=method)
        without = quantize_weights(w, axis=axis, bits=bits, method=method)
        for field in ("q", "scale", "clip_ratio"):
            np.testing.assert_array_equal(getattr(with_codes, field), getattr(without, field), err_msg=field)
        assert with_codes.value_range == without.value_range == (float(w.min()), float(w.max()))
        # the same float32 errors, summed per code instead of per element
        np.testing.assert_allclose(with_codes.mse, without.mse, rtol=1e-12)


def test_codes_are_ignored_where_they_cannot_help() -> None:
    """Blocked groups, a code axis other than the channel axis, short rows: the sort path or the elements."""
    w, codes = fp8_coded_weights((32, 256), "e4m3fn", 1, seed=32)
    for kwargs in ({"axis": 0}, {"axis": 1, "block_size": 64}, {"axis": 1, "method": "max"}):
        np.testing.assert_array_equal(
            quantize_weights(codes, bits=8, **kwargs).q, quantize_weights(w, bits=8, **kwargs).q
        )
    short = WeightCodes(codes.codes[:, :16], codes.values, np.ones(32, np.float32), 0, 0x80)
    assert distinct_values.pack_distinct(short, codes_module.code_counts(short), absolute=True) is None
    no_sign = WeightCodes(codes.codes, codes.values, np.ones(32, np.float32), 0, None)
    assert distinct_values.pack_distinct(no_sign, codes_module.code_counts(no_sign), absolute=True) is None
    nan_weight = codes.codes.copy()
    nan_weight[0, 0] = 0x7F  # e4m3fn NaN: the codes cannot stand for the values, the caller checks the elements
    bad = WeightCodes(nan_weight, codes.values, np.ones(32, np.float32), 0, 0x80)
    assert weights_module._quantize_coded(bad, -63, 63, search=True) is None


def test_distinct_rows_match_numpy_unique() -> None:
    rng = np.random.default_rng(13)
    x = rng.choice(np.array([-1.5, -0.0, 0.0, 0.25, 3.0, 7.0], dtype=np.float32), size=(5, 40))
    x[2] = 3.0  # a row with one value
    values, counts = distinct_values._distinct_rows(x)
    for row in range(x.shape[0]):
        expected_values, expected_counts = np.unique(x[row] + np.float32(0.0), return_counts=True)  # -0 == 0
        used = counts[row] > 0
        np.testing.assert_array_equal(values[row][used], expected_values)
        np.testing.assert_array_equal(counts[row][used], expected_counts)
        assert (values[row][~used] == 0).all()


def test_distinct_values_only_where_they_shrink_the_groups() -> None:
    fp8_data = fp8_weights((16, 1024), seed=14)
    values, counts = distinct_values.distinct(fp8_data, absolute=True)
    assert counts is not None
    assert values.shape[1] <= 128  # at most 127 distinct e4m3fn magnitudes (and 0) per channel
    np.testing.assert_array_equal(counts.sum(axis=1), 1024)
    dense = normal((16, 1024), seed=15)  # float weights: every value distinct
    assert distinct_values.distinct(dense, absolute=True)[1] is None
    assert distinct_values.distinct(fp8_data[:, :32], absolute=True)[1] is None  # too short to pay


@pytest.mark.parametrize("bits", [8, 7, 4])
def test_mse_never_loses_to_max_on_fp8_weights(bits: int) -> None:
    w = fp8_weights((64, 576), seed=16)
    w[:8] = np.round(w[:8] / np.abs(w[:8]).max(axis=1, keepdims=True) * 3.0)  # few levels: max is optimal
    by_max = quantize_weights(w, axis=0, bits=bits, method="max")
    by_mse = quantize_weights(w, axis=0, bits=bits, method="mse")
    assert (by_mse.mse <= by_max.mse).all()
    assert (by_mse.clip_ratio[by_mse.mse == by_max.mse] == 1.0).all()


def test_narrow_bits_matches_seven_bit_weights() -> None:
    w = normal((8, 64), seed=9)
    a = quantize_weights(w, axis=0, bits=7)
    b = quantize_weights(w, axis=0, bits=8, narrow_bits=7)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.scale, b.scale)
    assert a.onnx_type == b.onnx_type == TensorProto.INT8


# ---------------------------------------------------------------------------------------------------------------
# Dequantization: exactly onnxruntime's DequantizeLinear
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "axis", "bits", "block"),
    [
        ((16, 3, 3, 3), 0, 8, None),  # Conv weight, per output channel
        ((40, 24), 1, 7, None),  # MatMul [K, N], per column
        ((40, 24), None, 8, None),  # per tensor
        ((100, 24), 0, 4, 32),  # blocked INT4 along K, ragged last block
        ((24, 96), 1, 8, 64),  # blocked INT8, ragged
    ],
)
def test_dequantize_equals_onnxruntime(shape: tuple[int, ...], axis: int | None, bits: int, block: int | None) -> None:
    qw = quantize_weights(normal(shape, seed=10) * np.float32(0.05), axis=axis, bits=bits, block_size=block)
    assert qw.onnx_type == (TensorProto.INT4 if bits == 4 else TensorProto.INT8)
    ours = dequantize(qw)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ort_dequantize(qw))


# ---------------------------------------------------------------------------------------------------------------
# Bias
# ---------------------------------------------------------------------------------------------------------------


def test_bias_scale_is_float32_product_and_rounding_is_half_even() -> None:
    s_x = np.float32(2.0**-6)  # powers of two: the ties below are exact in float32
    s_w = np.array([0.5, 0.25, 0.125, 2.0], dtype=np.float32)
    scale = s_x * s_w
    ties = np.array([2.5, 3.5, -2.5, -0.5], dtype=np.float64) * scale.astype(np.float64)
    bias = ties.astype(np.float32)
    assert (bias.astype(np.float64) / scale == [2.5, 3.5, -2.5, -0.5]).all()  # exact ties in float32
    q, got_scale = quantize_bias(bias, s_x, s_w)
    assert got_scale.dtype == np.float32
    np.testing.assert_array_equal(got_scale, scale)
    np.testing.assert_array_equal(q, [2, 4, -2, 0])
    assert q.dtype == np.int32


def test_bias_matches_rint_and_onnxruntime_dequantizes_it_back() -> None:
    rng = np.random.default_rng(11)
    bias = rng.normal(size=64).astype(np.float32) * np.float32(3.0)
    s_x = np.float32(0.0173)
    s_w = (rng.uniform(0.001, 0.01, size=64)).astype(np.float32)
    q, scale = quantize_bias(bias, s_x, s_w)
    np.testing.assert_array_equal(q, np.rint(bias.astype(np.float64) / (s_x * s_w).astype(np.float64)))
    graph_q = helper.make_tensor("q", TensorProto.INT32, q.shape, q.tolist())
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s"], ["y"], axis=0)],
        "dq",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(q.shape))],
        [graph_q, helper.make_tensor("s", TensorProto.FLOAT, scale.shape, scale.tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})[0]
    assert (np.abs(y - bias) <= scale / 2 * (1 + 1e-6)).all()
    np.testing.assert_array_equal(y, q.astype(np.float32) * scale)


def test_bias_saturates_to_int32_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    bias = np.array([1e6, -1e6, 1e-4], dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="fp8conv.runtime.integer_quantization.bias"):
        q, _ = quantize_bias(bias, 1e-4, np.float32(1e-6))  # 1e6 / 1e-10 = 1e16 > 2^31
    np.testing.assert_array_equal(
        q,
        [
            2**31 - 1,
            -(2**31),
            int(np.rint(np.float64(np.float32(1e-4)) / np.float64(np.float32(1e-4) * np.float32(1e-6)))),
        ],
    )
    assert "2 of 3 bias values saturate int32" in caplog.text


def test_bias_with_one_weight_scale_for_all_channels_is_the_scalar_case() -> None:
    bias = np.array([0.3, -1.7, 2.2], dtype=np.float32)
    q_one, scale_one = quantize_bias(bias, 0.02, np.array([0.05], dtype=np.float32))
    q_scalar, scale_scalar = quantize_bias(bias, 0.02, np.float32(0.05))
    np.testing.assert_array_equal(q_one, q_scalar)
    np.testing.assert_array_equal(scale_one, scale_scalar)
    assert scale_one.shape == (3,)


@pytest.mark.parametrize(
    ("bias", "s_x", "s_w", "match"),
    [
        (np.zeros((2, 2)), 1.0, 1.0, "1-D"),
        (np.array([np.inf]), 1.0, 1.0, "finite 1-D"),
        (np.zeros(3), 0.0, 1.0, "input_scale must be positive"),
        (np.zeros(3), 1.0, np.ones(4), "3 entries"),
        (np.zeros(3), 1.0, np.array([1.0, -1.0, 1.0]), "weight_scale must be positive"),
        (np.zeros(3), 1e-30, 1e-30, "underflows"),
    ],
)
def test_bias_validation(bias: np.ndarray, s_x: float, s_w: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        quantize_bias(bias, s_x, s_w)  # type: ignore[arg-type]
