"""onnxruntime's QDQ fusion rules in one module (issue 12): the plan, the expectation and the audit read them.

The plan expects a kernel per layer (:func:`fp8conv.converter.coverage.planned_kernel`) and the audit predicts
one from the written graph (``KernelRecord.expected_kernel``), both by
:func:`fp8conv.runtime.fusion_rules.expected_kernel`; onnxruntime's session then says what it did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fp8_models import mlp, modelopt_transformer, residual_cnn
from paths import REPO_ROOT

from fp8conv.config import ConversionConfig
from fp8conv.converter import postconditions
from fp8conv.converter.coverage import planned_kernel
from fp8conv.converter.pipeline import convert_file
from fp8conv.runtime import audit, fusion_rules
from fp8conv.runtime.fusion_rules import clip_folds, expected_kernel, fuses_at, range_inside_clip, relu_folds
from fp8conv.runtime.integer_quantization import weight_range

DIGITS = REPO_ROOT / "models" / "digits_cnn"


@pytest.mark.parametrize(
    ("op", "activation_bits", "weight_bits", "output_bits", "transposed", "kernel"),
    [
        ("Conv", 8, 8, 8, False, "QLinearConv"),
        ("Conv", 8, 8, None, False, None),  # QLinearConv needs a quantized output
        ("MatMul", 8, 8, 8, False, "QLinearMatMul"),
        ("MatMul", 8, 8, None, False, "MatMulIntegerToFloat"),
        ("Gemm", 8, 8, 8, True, "QGemm"),
        ("Gemm", 8, 8, None, False, "QGemm"),
        ("Conv", 8, 8, 16, False, None),  # an 8-bit layer quantized to 16 bits for its reader
        ("MatMul", 16, 8, 16, False, None),  # no 16-bit kernels
        ("MatMul", 8, 4, 8, False, None),  # 4-bit weights with quantized activations
        ("MatMul", None, 4, None, False, "MatMulNBits"),
        ("Gemm", None, 4, None, False, "MatMulNBits"),
        ("Gemm", None, 4, None, True, None),  # MatMulNBits needs [K, N]
        ("Conv", None, 4, None, False, None),  # no 4-bit Conv kernel
        ("MatMul", None, 8, None, False, None),  # 8-bit weight-only: onnxruntime's bonus, not a promise
        ("MatMul", None, None, None, False, None),
        ("Add", 8, 8, 8, False, None),
    ],
)
def test_expected_kernel_is_the_rule_table(op, activation_bits, weight_bits, output_bits, transposed, kernel):
    assert (
        expected_kernel(
            op, activation_bits=activation_bits, weight_bits=weight_bits, output_bits=output_bits, transposed=transposed
        )
        == kernel
    )


def test_small_rules():
    assert [fuses_at(level) for level in ("disable", "basic", "extended", "layout", "all")] == [0, 0, 1, 1, 1]
    assert relu_folds(0, 0)
    assert not relu_folds(128, 0)
    assert clip_folds((0.0, 6.0), (0.0, 6.0), 6 / 255)
    assert clip_folds((-1.0, 7.0), (0.0, 6.0), 6 / 255)
    assert not clip_folds((0.0, 5.0), (0.0, 6.0), 6 / 255)
    assert range_inside_clip(-1.0, 9.0, [(0.0, 6.0)]) == (0.0, 6.0)
    assert range_inside_clip(-1.0, 9.0, []) == (-1.0, 9.0)
    assert [fusion_rules.channel_axis(op) for op in ("Conv", "MatMul", "Gemm")] == [0, 1, 1]
    assert fusion_rules.channel_axis("Gemm", trans_b=True) == 0
    assert fusion_rules.reduction_axis("Gemm", trans_b=True) == 1


def test_the_avx2_fact_and_the_default_weight_range_agree():
    assert ConversionConfig().weight_bits == fusion_rules.AVX2_SAFE_WEIGHT_BITS
    assert weight_range(fusion_rules.AVX2_SAFE_WEIGHT_BITS) == (8, -63, 63)


def test_the_readers_share_one_table():
    assert audit.AUDITED_OPS is postconditions.LAYER_OPS is fusion_rules.LAYER_OPS
    assert audit.INTEGER_KERNELS is fusion_rules.INTEGER_KERNELS


def _cases():
    yield "digits_cnn", DIGITS / "model.onnx"
    yield "residual_cnn", residual_cnn()
    yield "mlp", mlp()
    yield "modelopt_transformer", modelopt_transformer()


@pytest.mark.parametrize("target", ["int8", "int4", "w8a16", "w4a16"])
@pytest.mark.parametrize("case", ["digits_cnn", "residual_cnn", "mlp", "modelopt_transformer"])
def test_onnxruntime_does_what_the_plan_expects(tmp_path, case, target):
    """Per layer: the plan's kernel is the one the audit predicts from the written graph, and onnxruntime runs it."""
    import onnx

    source = dict(_cases())[case]
    if not isinstance(source, Path):
        onnx.save(source, tmp_path / "model.onnx")
        source = tmp_path / "model.onnx"
    result = convert_file(source, tmp_path / "out.onnx", to=target)
    assert result.audit is not None
    records = {record.node: record for record in result.audit.records}
    planned = 0
    for written in result.written.layers:
        record = records[written.node]
        assert (record.expected_kernel is not None) == written.planned_integer_kernel, written.node
        planned += written.planned_integer_kernel
    assert result.audit.unexpected() == ()
    assert sum(record.integer for record in result.audit.records) >= planned
    assert planned_kernel.__name__ == "planned_kernel"


def test_a_weight_only_layer_before_a_relu_is_not_promised_matmulnbits(tmp_path):
    """mlp's fc1 (MatMul → bias Add → Relu) runs as a float FusedGemm: it was planned on MatMulNBits, so the
    default ``min_integer_kernels`` gate failed a w4a16 conversion that onnxruntime runs as it always does."""
    import onnx

    from fp8conv.verification.verify import not_verified

    onnx.save(mlp(), tmp_path / "model.onnx")
    result = convert_file(tmp_path / "model.onnx", tmp_path / "out.onnx", to="w4a16")
    planned = {layer.node: layer.planned_integer_kernel for layer in result.written.layers}
    assert planned == {"fc1_node": False, "fc2_node": True}
    fc1 = next(record for record in result.audit.records if record.node == "fc1_node")
    assert (fc1.kernel, fc1.integer, fc1.expected_kernel) == ("FusedGemm", False, None)
    assert "a Relu reads its output (after the bias Add)" in fc1.reason
    (gate,) = not_verified(tmp_path / "model.onnx", result.output_path, "test", conversion=result).gates
    assert (gate.threshold, gate.passed) == (1, True)
