"""Data and oracles shared by the calibration tests (tests/converter/calibration/test_calibration_*.py)."""

from __future__ import annotations

import numpy as np
from helpers import run_unoptimized
from onnx import TensorProto, helper

from fp8conv import fp8
from fp8conv.converter import calibration as cal

QTYPES = ["uint8", "int8", "uint16", "int16"]
RANGE_METHODS = ["minmax", "percentile", "entropy", "mse"]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaussian(n: int = 100_000, seed: int = 0) -> np.ndarray:
    return rng(seed).normal(size=n).astype(np.float32)


def laplace_with_outliers(n: int = 1_000_000, seed: int = 1) -> np.ndarray:
    """Laplace(b=1) with a handful of large outliers: the case where clipping pays off."""
    x = rng(seed).laplace(size=n).astype(np.float32)
    x[:3] = [60.0, -45.0, 52.0]
    return x


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.0))


def fake_quantized(x: np.ndarray, scale: float, fmt: str = "e4m3fn") -> np.ndarray:
    return fp8.fake_quantize(x, np.float32(scale), fmt)


def streaming(x: np.ndarray, num_bins: int = 2048) -> cal.StreamingHistogram:
    return cal.StreamingHistogram(num_bins).update(x)


def code_histogram(x: np.ndarray, scale: float, fmt: str = "e4m3fn") -> cal.CodeHistogram:
    return cal.CodeHistogram(fmt, scale).update(x)


def state_bytes(stats: object) -> int:
    return sum(value.nbytes for value in vars(stats).values() if isinstance(value, np.ndarray))


def ort_qdq(x: np.ndarray, scale: np.float32, zero_point: int, qtype: str) -> np.ndarray:
    """onnxruntime QuantizeLinear -> DequantizeLinear (opset 21) on float32 x."""
    elem = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8, "uint16": TensorProto.UINT16}[qtype]
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [float(scale)]),
            helper.make_tensor("z", elem, [], [zero_point]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return run_unoptimized(model, {"x": x})
