"""Small helpers shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fp8_models import residual_cnn

from fp8conv import load
from fp8conv.passes.reference_runner import ReferenceRunner

CALIBRATION = 32


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


def write_model_and_data(tmp_path: Path, model: onnx.ModelProto, name: str = "model") -> tuple[Path, Path]:
    """Save the model and random calibration data for its input; return both paths."""
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    graph_input = model.graph.input[0]
    shape = [dim.dim_value or 1 for dim in graph_input.type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal([CALIBRATION, *shape[1:]]).astype(np.float32)
    data = tmp_path / f"{name}.npz"
    np.savez(data, **{graph_input.name: x})
    return path, data


def sqnr_against_reference(source: Path, converted: Path, data: Path) -> float:
    """SQNR (dB) of the converted model on onnxruntime against the exact FP8 reference, first output."""
    reference = ReferenceRunner(load(source).model)
    session = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    name = reference.input_names[0]
    batch = reference.static_batch_size or 1
    inputs = np.load(data)[name]
    signal = noise = 0.0
    for start in range(0, len(inputs), batch):
        feed = {name: inputs[start : start + batch]}
        expected = next(iter(reference.run(feed).values())).astype(np.float64)
        actual = session.run(None, feed)[0].astype(np.float64)
        signal += float(np.sum(expected**2))
        noise += float(np.sum((expected - actual) ** 2))
    return 10 * np.log10(signal / noise)


def refused_in_one_line(outcome, *parts: str) -> str:
    """Assert a CLI run was refused as bad input: exit 2 and one line holding every one of ``parts``."""
    assert outcome.exit_code == 2, outcome.output
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1, outcome.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def one_error_line(outcome) -> str:
    """The one line a bad input or usage error prints: on stderr, nothing on stdout, exit code 2."""
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("fp8conv: error: ")
    assert "Usage:" not in outcome.stderr
    return lines[0]


def residual_cnn_file(directory: Path, name: str = "model.onnx") -> Path:
    """:func:`fp8_models.residual_cnn` saved as ``directory / name``."""
    path = directory / name
    onnx.save(residual_cnn(), str(path))
    return path


def residual_cnn_files(directory: Path) -> tuple[Path, Path]:
    """``model.onnx`` (:func:`fp8_models.residual_cnn`) and 8 random calibration samples ``calib.npz`` for it."""
    path = residual_cnn_file(directory)
    graph_input = residual_cnn().graph.input[0]
    shape = [dim.dim_value or 1 for dim in graph_input.type.tensor_type.shape.dim]
    data = directory / "calib.npz"
    x = np.random.default_rng(1).standard_normal([8, *shape[1:]]).astype(np.float32)
    np.savez(data, **{graph_input.name: x})
    return path, data
