"""``benchmarks/make_fp8_transformer.py``: a tiny synthetic FP8 transformer is read by fp8conv and converts."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import onnx
import pytest
from paths import REPO_ROOT

import fp8conv

_SCRIPT = REPO_ROOT / "benchmarks" / "make_fp8_transformer.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_fp8_transformer", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("weights", "activation"), [("float", "gelu"), ("fp8", "relu")])
def test_a_tiny_transformer_is_inspected_and_converts(tmp_path, weights, activation):
    gen = _generator()
    path = tmp_path / "t.onnx"
    argv = ["-o", str(path), "--layers", "2", "--hidden", "32", "--head-dim", "16", "--seq", "4", "--samples", "4"]
    assert gen.main([*argv, "--weights", weights, "--activation", activation]) == 0
    data = tmp_path / "t.calib.npz"
    assert (tmp_path / "t.onnx.data").stat().st_size > 0  # initializers of 1 KiB and more
    assert np.load(data)["hidden_states"].shape == (4, 4, 32)

    info = fp8conv.inspect(path)
    assert info.dialects == (("qdq",) if weights == "float" else ("dq-weight", "qdq"))
    assert len(info.layers) == 2 * 8  # q, k, v, scores, context, o, up, down
    weight_points = [p for p in info.quant_points if p.role == "weight"]
    assert len(weight_points) == 2 * 6

    out = tmp_path / "t.int8.onnx"
    result = fp8conv.convert_file(path, out, to="int8", data=data)
    assert [layer.precision for layer in result.layers] == ["int8"] * 16
    assert result.audit.integer_count == 16
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {"LayerNormalization", "Softmax", "Gelu" if activation == "gelu" else "Relu"} <= ops


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    gen = _generator()
    written = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        directory = tmp_path / name
        assert (
            gen.main(["-o", str(directory / "t.onnx"), "--hidden", "32", "--head-dim", "16", "--seed", str(seed)]) == 0
        )
        written.append([(directory / f).read_bytes() for f in ("t.onnx", "t.onnx.data", "t.calib.npz")])
    assert written[0] == written[1]
    assert written[0][1] != written[2][1]
    assert gen.weight_bytes(layers=2, hidden=32) == 2 * 12 * 32 * 32 * 4
