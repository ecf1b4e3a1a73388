"""Small helpers shared by the test modules."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest


def assert_same_floats(
    actual: np.ndarray, expected: np.ndarray, inputs: np.ndarray, what: str, names: tuple[str, str] = ("got", "want")
) -> None:
    """Identical float32 bit patterns (so the sign of zero counts), NaN equal to NaN of either sign."""
    assert actual.dtype == np.float32
    assert expected.dtype == np.float32
    assert actual.shape == expected.shape
    a, b = actual.reshape(-1), expected.reshape(-1)
    ok = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    if not ok.all():
        bad = np.flatnonzero(~ok)[:8]
        x = inputs.reshape(-1)
        pytest.fail(
            f"{what}: {(~ok).sum()} of {ok.size} differ; first: "
            + ", ".join(f"x={x[i]!r} {names[0]}={a[i]!r} {names[1]}={b[i]!r}" for i in bad)
        )


def run_unoptimized(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Check the model, run it on onnxruntime with every graph optimization off; the first output."""
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]
