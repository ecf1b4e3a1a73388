"""Property tests: random small FP8 graphs (:mod:`tests.random_models`) convert with every target.

For each drawn network and target the written model must pass ``onnx.checker`` (full check), hold no
FP8 tensor, run on onnxruntime with its default optimizations, and match the exact FP8 reference on the
calibration samples within an error bound derived from the integer steps:

* an activation point with values ``x`` (power ``P``, max ``|x|``) quantized to ``b`` bits by the
  ``minmax`` range method has a step of at most ``2 max|x| / (2^b - 2)``; against the FP8 reference its
  error is at most ``step / 2`` (the integer rounding) plus ``2^-(m+1) |x|`` (the FP8 rounding that is no
  longer done, ``m`` mantissa bits) plus half the FP8 subnormal step; its noise-to-signal ratio is the
  square of that sum over ``P`` (Minkowski: root-mean-square errors add at most linearly);
* a weight ``w`` rounded to ``q`` levels either side of zero by the ``max`` method has a step of at
  most ``max|w| / q`` (per tensor, so also for per-channel and blocked scales) and a noise-to-signal
  ratio of at most ``(step / 2)^2 / mean(w^2)``;
* the network's output noise-to-signal ratio is bounded by the sum over its points, with a 6 dB margin
  for the gain of noise through the layers (random He-initialized layers keep the ratio about constant).

8-bit weights use ``q = 63`` (fp8conv's AVX2-safe default), 4-bit ``q = 7``; ``w8a16`` activations 16
bits, ``w4a16`` none (only the FP8 rounding term). The bound takes every layer at the target's weight
bits and every activation point at its activation bits, which can only loosen it.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import random_models as rm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fp8conv import Fp8ConvError, convert_file, fp8, load
from fp8conv.passes.reference_runner import ReferenceRunner

TARGETS = ("int8", "int4", "w8a16", "w4a16")
_ACTIVATION_BITS = {"int8": 8, "int4": 8, "w8a16": 16, "w4a16": None}
_WEIGHT_LEVELS = {"int8": 63, "int4": 7, "w8a16": 63, "w4a16": 7}
_MARGIN_DB = 6.0
_FP8_TYPES = {
    onnx.TensorProto.FLOAT8E4M3FN,
    onnx.TensorProto.FLOAT8E4M3FNUZ,
    onnx.TensorProto.FLOAT8E5M2,
    onnx.TensorProto.FLOAT8E5M2FNUZ,
}
_PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def sqnr_bound_db(net: rm.BuiltNet, target: str) -> float:
    """The lowest output SQNR (dB) against the FP8 reference that the module docstring's bound allows."""
    bits = _ACTIVATION_BITS[target]
    nsr = 0.0
    for point in net.activations:
        fmt = fp8.FORMATS[point.fmt]
        relative = 2.0 ** -(fmt.mantissa_bits + 1)
        power = float(np.mean(point.values.astype(np.float64) ** 2))
        if power == 0.0:
            continue
        amax = float(np.abs(point.values).max()) * (1 + relative)
        step = 2 * amax / (2**bits - 2) if bits else 0.0
        subnormal = fmt.min_subnormal / 2 * amax / fmt.max_value * 3  # the FP8 scale is at most 3 amax / max
        nsr += (step / 2 + relative * math.sqrt(power) + subnormal) ** 2 / power
    for w in net.weights.values():
        step = float(np.abs(w).max()) / _WEIGHT_LEVELS[target]
        nsr += (step / 2) ** 2 / float(np.mean(w.astype(np.float64) ** 2))
    return -10 * math.log10(nsr) - _MARGIN_DB if nsr > 0 else math.inf


def _fp8_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of FP8 initializers, FP8 Cast targets and Q nodes with FP8 zero points or output types."""
    found = [init.name for init in model.graph.initializer if init.data_type in _FP8_TYPES]
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in ("to", "output_dtype") and attr.i in _FP8_TYPES:
                found.append(node.output[0])
    return found


def _sqnr_db(expected: np.ndarray, actual: np.ndarray) -> float:
    signal = float(np.sum(expected.astype(np.float64) ** 2))
    noise = float(np.sum((expected.astype(np.float64) - actual) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def check_conversion(spec: rm.NetSpec, target: str) -> None:
    """Convert the network of ``spec`` to ``target`` and check every property the module states."""
    net = rm.build(spec)
    with tempfile.TemporaryDirectory() as tmp:
        source, data, output = Path(tmp, "model.onnx"), Path(tmp, "data.npz"), Path(tmp, "out.onnx")
        onnx.save(net.model, source)
        np.savez(data, input=net.samples)
        source_bytes = source.read_bytes()
        refusal: Fp8ConvError | None = None
        try:
            result = convert_file(source, output, to=target, data=data, activations_range="minmax", weights_range="max")
        except Fp8ConvError as error:
            refusal = error
        if refusal is not None:
            # The one legitimate refusal: a weight-only INT4 target on a network without MatMul/Gemm.
            assert target == "w4a16", f"{target}: {refusal}"
            assert not spec.has_matmul_layer, f"{target}: {refusal}"
            assert "converts none of its layers" in str(refusal)
            assert not output.exists()
            return
        assert source.read_bytes() == source_bytes, "the input model was modified"
        written = onnx.load(output)
        onnx.checker.check_model(written, full_check=True)
        assert _fp8_tensors(written) == [], "FP8 left in the written model"
        assert result.written is not None
        assert len(result.written.converted) >= 1
        reference = ReferenceRunner(load(source).model)
        session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        expected = np.concatenate([reference.run({"input": x[None]})["output"] for x in net.samples])
        actual = np.concatenate([session.run(["output"], {"input": x[None]})[0] for x in net.samples])
    assert np.isfinite(actual).all()
    measured, bound = _sqnr_db(expected, actual), sqnr_bound_db(net, target)
    assert measured >= bound, f"{target}: SQNR {measured:.1f} dB below the bound {bound:.1f} dB"


@_PROPERTY_SETTINGS
@given(spec=rm.net_specs(), target=st.sampled_from(TARGETS))
def test_random_fp8_graph_converts_and_matches_reference(spec: rm.NetSpec, target: str) -> None:
    check_conversion(spec, target)


@pytest.mark.parametrize("target", TARGETS)
def test_every_dialect_in_one_graph(target: str) -> None:
    """A fixed network holding every activation and weight dialect, for every target."""
    ops = [
        rm.Op("conv", channels=4, kernel=3, bias=True, act=rm.Quantizer(a), weight=rm.Quantizer(w, per_channel=True))
        for a, w in zip(rm.ACT_DIALECTS[:5], ("qdq", "fp8_dq", "floatquant", "cast", "qdq"), strict=True)
    ]
    ops += [
        rm.Op("relu"),
        rm.Op("flatten"),
        rm.Op("gemm", channels=5, trans_b=True, act=rm.Quantizer("cast_clip"), weight=rm.Quantizer("trt_codes")),
        rm.Op("matmul", channels=3, act=rm.Quantizer("cast"), weight=rm.Quantizer("fp8_dq", "e5m2")),
    ]
    check_conversion(rm.NetSpec(3, 4, tuple(ops), "mixed", 7), target)


def test_bound_rejects_a_wrong_scale() -> None:
    """The bound is tight enough to catch an activation scale off by 2 (a real folding bug's size)."""
    spec = rm.NetSpec(
        3, 6, (rm.Op("conv", channels=4, kernel=3, act=rm.Quantizer("qdq"), weight=rm.Quantizer("qdq")),), "unique", 3
    )
    net = rm.build(spec)
    reference = ReferenceRunner(load(net.model).model)
    expected = np.concatenate([reference.run({"input": x[None]})["output"] for x in net.samples])
    assert _sqnr_db(expected, expected * 2) < sqnr_bound_db(net, "int8")
    assert _sqnr_db(expected, expected * 1.01) > sqnr_bound_db(net, "int8")


@given(spec=rm.net_specs())
@settings(max_examples=25, deadline=None, database=None, derandomize=True)
def test_generator_builds_valid_fp8_models(spec: rm.NetSpec) -> None:
    """Every drawn model passes the full checker and has at least one FP8 quantization point."""
    net = rm.build(spec)
    onnx.checker.check_model(net.model, full_check=True)
    assert load(net.model).quant_points
    assert net.samples.shape == (rm.SAMPLES, spec.channels, spec.size, spec.size)


def test_cast_chain_on_a_tensor_of_unknown_type() -> None:
    """Found by the property test: a Cast chain reading a Conv whose input comes from a ``trt``-domain DQ
    (no type known to shape inference) was read as FakeQuantize followed by a float→float Cast, and
    calibration of the next layer's input then saw nothing ("calibration saw no finite values")."""
    q = rm.Quantizer
    ops = (
        rm.Op("conv", channels=2, act=q("qdq_trt_domain", margin=1.05), weight=q("qdq", margin=1.05)),
        rm.Op("conv", channels=2, act=q("cast_clip", margin=1.05)),
    )
    spec = rm.NetSpec(2, 4, ops, "unique", 0)
    canonical = load(rm.build(spec).model).model
    assert "Cast" not in [node.op_type for node in canonical.graph]
    check_conversion(spec, "int8")


def test_float_layer_merged_by_onnxruntime_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Found by the property test: a Conv that ``w4a16`` keeps float and onnxruntime merges away
    (Transpose → MatMul → Transpose → Relu → Conv) was a "kernel audit" warning on every run."""
    q = rm.Quantizer
    ops = (
        rm.Op("nhwc_matmul", channels=4, act=q("floatquant", margin=1.5), weight=q("qdq", per_channel=True)),
        rm.Op("relu"),
        rm.Op("conv", channels=4, act=q("floatquant", margin=1.5)),
    )
    net = rm.build(rm.NetSpec(3, 6, ops, "mixed", 31243))
    with tempfile.TemporaryDirectory() as tmp:
        source, data = Path(tmp, "model.onnx"), Path(tmp, "data.npz")
        onnx.save(net.model, source)
        np.savez(data, input=net.samples)
        with caplog.at_level("DEBUG", logger="fp8conv.runtime.audit"):
            result = convert_file(source, Path(tmp, "out.onnx"), to="w4a16", data=data)
    assert result.audit is not None
    conv = [record for record in result.audit.records if record.op_type == "Conv"]
    assert [record.reason.split(":")[0] for record in conv] == ["not found in the optimized graph"]
    assert [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "kernel audit" in r.getMessage()
    ] == []
