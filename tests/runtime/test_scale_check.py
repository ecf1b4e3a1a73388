"""One check of quantization scales (issue 12): every reader refuses the same scales with the same words.

:func:`fp8conv.runtime.emulator.check_scale` says what a valid scale is (not empty, every float32 entry
positive and finite); the emulator, normalization and lowering (:func:`fp8conv.passes.canonical.read_scale`),
the quantization points of a model already in canonical form, calibration's code histograms and the bias
quantizer all ask it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from golden_models import GOLDEN, with_initializer

import fp8conv
from fp8conv import fp8
from fp8conv.converter.calibration import CodeHistogram
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.canonical import CANONICAL_DOMAIN, QuantSpec, collect_quant_points, make_fake_quantize
from fp8conv.passes.lower_fake_quantize import LowerFakeQuantizePass
from fp8conv.passes.normalize import normalize_fp8
from fp8conv.runtime.emulator import check_scale
from fp8conv.runtime.integer_quantization import quantize_bias

BAD = [0.0, -0.5, float("nan"), float("inf"), 1e-50]  # 1e-50 is 0 as a float32
WORDS = "must be positive and finite; found"


def _canonical(scale: float) -> ir.Model:
    """``x → FakeQuantize(s) → MatMul(w)`` in canonical form (fp8conv's own domain, as a caller may pass it)."""
    x = ir.Value(name="x", shape=ir.Shape([2, 4]), type=ir.TensorType(ir.DataType.FLOAT))
    s = ir.Value(name="s", const_value=ir.tensor(np.float32(scale), name="s"))
    w = ir.Value(name="w", const_value=ir.tensor(np.ones((4, 3), np.float32), name="w"))
    quantize = make_fake_quantize(x, s, QuantSpec(fp8.FORMATS["e4m3fn"]), source="test", name="fq")
    quantize.outputs[0].name = "xq"
    matmul = ir.node("MatMul", [quantize.outputs[0], w], name="mm")
    matmul.outputs[0].name = "y"
    matmul.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    matmul.outputs[0].shape = ir.Shape([2, 3])
    graph = ir.Graph(
        [x],
        matmul.outputs,
        nodes=[quantize, matmul],
        initializers=[s, w],
        opset_imports={"": 19, CANONICAL_DOMAIN: 1},
        name="g",
    )
    return ir.Model(graph, ir_version=10)


@pytest.mark.parametrize("scale", BAD)
def test_check_scale_refuses_what_float32_cannot_divide_by(scale):
    with pytest.raises(ValueError, match=f"^x_scale {WORDS} "):
        check_scale(np.array([1.0, scale]), "x_scale")


def test_check_scale_gives_the_float32_scale():
    scale = check_scale(np.array([[0.5], [2.0]]))
    assert scale.dtype == np.float32
    assert scale.shape == (2, 1)
    with pytest.raises(ValueError, match="scale is empty"):
        check_scale(np.array([]))


@pytest.mark.parametrize("scale", BAD)
def test_a_canonical_model_with_a_bad_scale_is_bad_input(scale):
    """Was a plain ValueError from calibration's histogram (exit 3, internal error), not bad input (exit 2)."""
    model = _canonical(scale)
    with pytest.raises(Fp8ConvError, match=f"node 'fq': scale 's' {WORDS}"):
        collect_quant_points(model)
    with pytest.raises(Fp8ConvError, match=f"node 'fq': scale 's' {WORDS}"):
        fp8conv.convert(_canonical(scale), "int8")


@pytest.mark.parametrize("scale", BAD)
def test_every_reader_uses_the_one_check(scale):
    readers = {
        "emulator": lambda: fp8.fake_quantize(np.ones(3, np.float32), scale, "e4m3fn"),
        "lowering": lambda: LowerFakeQuantizePass()(_canonical(scale)),
        "histogram": lambda: CodeHistogram("e4m3fn", scale),
        "bias input scale": lambda: quantize_bias(np.zeros(2), scale, np.ones(2)),
        "bias weight scale": lambda: quantize_bias(np.zeros(2), 1.0, np.array([1.0, scale])),
    }
    for what, read in readers.items():
        with pytest.raises(ValueError, match=WORDS) as raised:
            read()
        assert "\n" not in str(raised.value), what


@pytest.mark.parametrize("name", ["qdq_per_tensor", "cast_e5m2"])
def test_normalization_words_it_the_same_way(name):
    model = with_initializer(GOLDEN[name].build(), "input_scale", 0.0)
    with pytest.raises(Fp8ConvError, match=f"scale 'input_scale' {WORDS} np.float32\\(0.0\\)"):
        normalize_fp8(ir.from_proto(model))
