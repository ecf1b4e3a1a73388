"""FP8 QDQ classifiers and INT8 graphs built in code, shared by the verification and report tests.

:func:`build_classifier` is a small FP8 QDQ MLP; :func:`build_saturating_matmul` an INT8 QDQ MatMul built to
hit onnxruntime's u8×s8 saturation hazard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fp8conv
from fp8conv.passes.reference_runner import ReferenceRunner


def _fp8_qdq(nodes: list, inits: list, tensor: str, scale: float) -> str:
    """Append FP8 E4M3FN QuantizeLinear → DequantizeLinear of ``tensor``; return the dequantized name."""
    inits.append(numpy_helper.from_array(np.array(scale, np.float32), f"{tensor}_scale"))
    inits.append(helper.make_tensor(f"{tensor}_zp", TensorProto.FLOAT8E4M3FN, [], [0.0]))
    nodes.append(
        helper.make_node(
            "QuantizeLinear", [tensor, f"{tensor}_scale", f"{tensor}_zp"], [f"{tensor}_q"], name=f"{tensor}_Q"
        )
    )
    nodes.append(
        helper.make_node(
            "DequantizeLinear",
            [f"{tensor}_q", f"{tensor}_scale", f"{tensor}_zp"],
            [f"{tensor}_dq"],
            name=f"{tensor}_DQ",
        )
    )
    return f"{tensor}_dq"


def build_classifier(inputs: int = 16, hidden: int = 32, classes: int = 10, seed: int = 3) -> onnx.ModelProto:
    """FP8 QDQ MLP: ``x [N,16] → Q/DQ → MatMul W1 → Add → Relu → Q/DQ → MatMul W2 → Add → logits [N,10]``."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((inputs, hidden)) * 0.4).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) * 0.4).astype(np.float32)
    nodes: list = []
    inits = [
        numpy_helper.from_array(w1, "W1"),
        numpy_helper.from_array(w2, "W2"),
        numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32), "B1"),
        numpy_helper.from_array((rng.standard_normal(classes) * 0.1).astype(np.float32), "B2"),
    ]
    x = _fp8_qdq(nodes, inits, "x", 4.0 / 448)
    w1q = _fp8_qdq(nodes, inits, "W1", float(np.abs(w1).max()) / 448)
    nodes.append(helper.make_node("MatMul", [x, w1q], ["fc1"], name="fc1"))
    nodes.append(helper.make_node("Add", ["fc1", "B1"], ["fc1_bias"], name="fc1_add"))
    nodes.append(helper.make_node("Relu", ["fc1_bias"], ["relu"], name="relu"))
    r = _fp8_qdq(nodes, inits, "relu", 8.0 / 448)
    w2q = _fp8_qdq(nodes, inits, "W2", float(np.abs(w2).max()) / 448)
    nodes.append(helper.make_node("MatMul", [r, w2q], ["fc2"], name="fc2"))
    nodes.append(helper.make_node("Add", ["fc2", "B2"], ["logits"], name="fc2_add"))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", inputs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
    return onnx.shape_inference.infer_shapes(model)


def classifier_data(path: Path, model_path: Path, samples: int = 96, seed: int = 0) -> Path:
    """Random inputs with labels: the FP8 model's own prediction, with every 8th label changed."""
    x = np.random.default_rng(seed).standard_normal((samples, 16)).astype(np.float32)
    logits = ReferenceRunner(fp8conv.load(model_path).model).run({"x": x})["logits"]
    labels = np.argmax(logits, axis=1)
    labels[::8] = (labels[::8] + 1) % logits.shape[1]
    np.savez(path, x=x, labels=labels)
    return path


def build_saturating_matmul(rows: int = 32, k: int = 64, n: int = 16) -> tuple[onnx.ModelProto, np.ndarray, float]:
    """INT8 QDQ MatMul with uint8 activations at 0/255 and full-range int8 weights (dialects §6.6).

    Returns:
        The model (input ``x [N, k]``, output ``y [N, n]``), inputs, and the output scale (1 LSB).
    """
    rng = np.random.default_rng(7)
    w = rng.choice(np.array([-127, 127, -120, 125], np.int8), size=(k, n))
    sx, sw = np.float32(1 / 255), np.float32(0.01)
    x = (rng.integers(0, 2, (rows, k)) * 255 * sx).astype(np.float32)
    sy = np.float32(2 * float(np.abs(x @ (w.astype(np.float32) * sw)).max()) / 255)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["x_q"], name="q_x"),
        helper.make_node("DequantizeLinear", ["x_q", "sx", "zx"], ["x_dq"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["W_q", "sw"], ["W_dq"], name="dq_w"),
        helper.make_node("MatMul", ["x_dq", "W_dq"], ["mm"], name="matmul"),
        helper.make_node("QuantizeLinear", ["mm", "sy", "zy"], ["y_q"], name="q_y"),
        helper.make_node("DequantizeLinear", ["y_q", "sy", "zy"], ["y"], name="dq_y"),
    ]
    inits = [
        numpy_helper.from_array(np.array(sx, np.float32), "sx"),
        numpy_helper.from_array(np.array(0, np.uint8), "zx"),
        numpy_helper.from_array(w, "W_q"),
        numpy_helper.from_array(np.array(sw, np.float32), "sw"),
        numpy_helper.from_array(np.array(sy, np.float32), "sy"),
        numpy_helper.from_array(np.array(128, np.uint8), "zy"),
    ]
    graph = helper.make_graph(
        nodes,
        "saturating_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10), x, float(sy)


def scale_initializer(src: Path, dst: Path, name: str, factor: float) -> Path:
    """Copy a model with one initializer multiplied by ``factor`` (e.g. a weight scale: weights × factor)."""
    model = onnx.load(src)
    for init in model.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) * factor).astype(np.float32), name))
            break
    else:
        raise AssertionError(f"no initializer {name}")
    onnx.save(model, dst)
    return dst
