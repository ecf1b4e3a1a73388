"""Shared helpers: onnxruntime sessions, logit agreement, deterministic file writers."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MAX_SHIPPED_FILE_BYTES = 5 * 1024 * 1024

# The onnxruntime rewrite rules (names as ``disabled_optimizers`` wants them; the C++ classes are
# ReluQuantFusion and ClipQuantFusion) that drop a Relu/Clip in front of a QuantizeLinear. Harmless for
# uint8 with zero point 0, wrong for float8 (a signed grid): they change or break FP8 Q/DQ models.
ORT_RELU_CLIP_REWRITES = ["ReluQuantRewrite", "ClipQuantRewrite"]


def ort_session(model: onnx.ModelProto, optimize: bool = False, disabled: Sequence[str] = ()) -> ort.InferenceSession:
    """A single-threaded CPU session; ``optimize=False`` runs the graph literally (``ORT_DISABLE_ALL``)."""
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
    )


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How closely two sets of outputs ``[N, K]`` agree."""

    max_abs: float
    mean_abs: float
    argmax_equal: float

    @classmethod
    def between(cls, a: np.ndarray, b: np.ndarray) -> Agreement:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        return cls(float(diff.max()), float(diff.mean()), float((a.argmax(1) == b.argmax(1)).mean()))

    def text(self) -> str:
        return f"max {self.max_abs:.3g}, mean {self.mean_abs:.2g}, same argmax {100 * self.argmax_equal:.2f} %"


def percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so that equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


FLOAT8_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT8E4M3FN,
        onnx.TensorProto.FLOAT8E4M3FNUZ,
        onnx.TensorProto.FLOAT8E5M2,
        onnx.TensorProto.FLOAT8E5M2FNUZ,
    }
)


def assert_plain_float(model: onnx.ModelProto, name: str = "model.fp32.onnx") -> None:
    """Fail unless ``model`` is float ONNX without quantizers: no (De)QuantizeLinear, no node outside the
    default domain, no Cast to a float8 type (the Cast-pair dialect's quantizer), no float8 tensor."""
    graph = model.graph
    for node in graph.node:
        assert node.op_type not in ("QuantizeLinear", "DequantizeLinear"), f"{name} has {node.op_type}"
        assert node.domain in ("", "ai.onnx"), f"{name} has {node.domain}::{node.op_type}"
        for attribute in node.attribute:
            if node.op_type in ("Cast", "CastLike") and attribute.name == "to":
                assert attribute.i not in FLOAT8_TYPES, f"{name} casts to float8 ({node.name})"
    types = [t.data_type for t in graph.initializer]
    types += [v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]]
    assert not FLOAT8_TYPES & set(types), f"{name} has float8 tensors"


def same_signature(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """Same graph input and output names, element types and (symbolic) shapes, in the same order."""

    def signature(model: onnx.ModelProto) -> list[tuple[str, bytes]]:
        return [(v.name, v.type.SerializeToString()) for v in [*model.graph.input, *model.graph.output]]

    return signature(a) == signature(b)


def save_onnx(model: onnx.ModelProto, path: Path, max_bytes: int | None = MAX_SHIPPED_FILE_BYTES) -> None:
    """Save ``model``; fail when a shipped file would exceed ``max_bytes`` (None: no limit)."""
    onnx.save_model(model, path)
    size = path.stat().st_size
    assert max_bytes is None or size < max_bytes, f"{path} is {size} bytes (limit {max_bytes})"
