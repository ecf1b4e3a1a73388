"""FP8 quantization-aware training in plain torch: fake quantizers, quantized layers, BN folding.

The quantizer is the whitepaper's (van Baalen et al. 2023, §5): a scale per tensor for activations and
per output channel for weights, ``scale = amax / max_value``, values divided by the scale, rounded to the
FP8 grid (round half to even, saturating, subnormals kept) and multiplied back, with a straight-through
estimator (STE) for the gradient. Activation ranges are calibrated (running max), then tracked by an
exponential moving average of the batch amax during QAT, then frozen. Weight ranges follow the live
weights during training and are frozen into a buffer for evaluation and export.

Two formats:

``E4M3FN``
    ``(x / s).clamp(-448, 448).to(torch.float8_e4m3fn).to(torch.float32) * s``. The dynamo ONNX exporter
    turns this into ``Div -> Clip -> Cast(to=FLOAT8E4M3FN) -> Cast(to=FLOAT) -> Mul`` (the Cast-pair dialect).
``E3M4``
    The whitepaper's FP8-E3 (3 exponent bits, 4 mantissa bits, bias 3, subnormals, no Inf/NaN, saturating,
    max 31), computed with the QONNX ``FloatQuant`` formula. torch has no such dtype, so for export the
    quantizers emit an E4M3FN Cast chain clipped at ±31 as a *structural placeholder*; the ONNX rewrite in
    ``onnx_dialects.py`` replaces every such chain by a ``FloatQuant`` node. The placeholder graph itself
    computes a different function and is never shipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class QFormat:
    """A saturating FP8 format with subnormals and no Inf (the whitepaper's convention)."""

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_value: float


E4M3FN = QFormat("e4m3fn", exponent_bits=4, mantissa_bits=3, bias=7, max_value=448.0)
E3M4 = QFormat("e3m4", exponent_bits=3, mantissa_bits=4, bias=3, max_value=31.0)
FORMATS = {fmt.name: fmt for fmt in (E4M3FN, E3M4)}

ActivationMode = Literal["off", "observe", "ema", "frozen"]
WeightMode = Literal["off", "on"]


def cast_e4m3fn(scaled: torch.Tensor, clip: float = 448.0) -> torch.Tensor:
    """Round values (already divided by the scale) to float8_e4m3fn through torch's saturating cast."""
    return scaled.clamp(-clip, clip).to(torch.float8_e4m3fn).to(torch.float32)


def _exact_power_of_two(exponent: torch.Tensor) -> torch.Tensor:
    """``2.0 ** exponent`` for int32 exponents in the float32 normal range, built from the bits (exact)."""
    return torch.bitwise_left_shift(exponent + 127, 23).view(torch.float32)


def round_minifloat(scaled: torch.Tensor, fmt: QFormat) -> torch.Tensor:
    """QONNX ``FloatQuant`` rounding of values already divided by the scale (scale 1, saturating).

    ``e = max(floor(log2 |x|), 1 - bias)`` (``frexp`` gives the floor exactly), quantum ``2^(e - M)``,
    ``round_half_even(x / quantum) * quantum``, then clip to ``±max_value``.
    """
    _, frexp_exponent = torch.frexp(scaled)
    exponent = torch.clamp(frexp_exponent.to(torch.int32) - 1, min=1 - fmt.bias)
    quantum = _exact_power_of_two(exponent - fmt.mantissa_bits)
    return (torch.round(scaled / quantum) * quantum).clamp(-fmt.max_value, fmt.max_value)


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, fmt: QFormat, *, placeholder: bool = False) -> torch.Tensor:
    """``Q(x / scale) * scale`` in float32, no gradient handling (see :func:`ste`).

    Args:
        x: Values.
        scale: Positive scale, broadcastable to ``x``.
        fmt: The FP8 format.
        placeholder: Emit the E4M3FN Cast chain clipped at ``fmt.max_value`` whatever the format (the
            export placeholder for formats torch cannot cast to; a different function for E3M4).
    """
    scaled = x / scale
    if fmt == E4M3FN or placeholder:
        return cast_e4m3fn(scaled, fmt.max_value) * scale
    return round_minifloat(scaled, fmt) * scale


def ste(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the forward value of ``quantized``, the gradient of the identity."""
    return x + (quantized - x).detach()


class ActivationQuantizer(nn.Module):
    """Per-tensor activation fake quantizer with an amax-tracked scale.

    Modes: ``off`` (identity), ``observe`` (identity; amax = running max of the batch amax),
    ``ema`` (quantize; in training mode amax follows an EMA of the batch amax), ``frozen`` (quantize with
    the stored scale).
    """

    def __init__(self, fmt: QFormat = E4M3FN, momentum: float = 0.9) -> None:
        super().__init__()
        self.fmt = fmt
        self.momentum = momentum
        self.mode: ActivationMode = "off"
        self.placeholder = False
        self.register_buffer("amax", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def _update(self, x: torch.Tensor) -> None:
        batch_amax = x.detach().abs().amax()
        if self.mode == "observe":
            self.amax.copy_(torch.maximum(self.amax, batch_amax))
        else:
            self.amax.mul_(self.momentum).add_((1.0 - self.momentum) * batch_amax)
        self.scale.copy_(self.amax.clamp_min(1e-8) / self.fmt.max_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return x
        if self.training and self.mode in ("observe", "ema"):
            self._update(x)
        if self.mode == "observe":
            return x
        quantized = fake_quantize(x, self.scale, self.fmt, placeholder=self.placeholder)
        return ste(x, quantized) if self.training else quantized

    def extra_repr(self) -> str:
        return f"fmt={self.fmt.name}, mode={self.mode}"


class WeightQuantizer(nn.Module):
    """Per-output-channel weight fake quantizer, ``scale = amax(|w|) / max_value`` per channel.

    In training mode the scale follows the live weights (and is stored); in eval mode the stored scale
    is used, so call :func:`freeze_weight_scales` after the last optimizer step.
    """

    def __init__(self, scale_shape: tuple[int, ...], channel_axis: int, fmt: QFormat = E4M3FN) -> None:
        super().__init__()
        self.fmt = fmt
        self.channel_axis = channel_axis
        self.mode: WeightMode = "off"
        self.placeholder = False
        self.register_buffer("scale", torch.ones(scale_shape))

    def refresh(self, weight: torch.Tensor) -> None:
        """Store ``amax / max_value`` of each output channel of ``weight``."""
        dims = [d for d in range(weight.dim()) if d != self.channel_axis]
        amax = weight.detach().abs().amax(dim=dims, keepdim=True)
        self.scale.copy_(amax.clamp_min(1e-8) / self.fmt.max_value)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return weight
        if self.training:
            self.refresh(weight)
        quantized = fake_quantize(weight, self.scale, self.fmt, placeholder=self.placeholder)
        return ste(weight, quantized) if self.training else quantized

    def extra_repr(self) -> str:
        return f"fmt={self.fmt.name}, mode={self.mode}, axis={self.channel_axis}"


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose input and weight are fake-quantized (weight per output channel, axis 0)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.input_quant = ActivationQuantizer()
        self.weight_quant = WeightQuantizer((self.out_channels, 1, 1, 1), channel_axis=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quant(x), self.weight_quant(self.weight), self.bias)


class QLinear(nn.Module):
    """A linear layer ``x @ W + b`` with W stored as ``[in, out]`` so it exports as a plain MatMul.

    Input fake-quantized per tensor, weight per output column (axis 1 of ``[K, N]``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        reference = nn.Linear(in_features, out_features, bias=bias)  # torch's default initialization
        self.weight = nn.Parameter(reference.weight.detach().t().contiguous())
        self.bias = nn.Parameter(reference.bias.detach().clone()) if bias else None
        self.input_quant = ActivationQuantizer()
        self.weight_quant = WeightQuantizer((1, out_features), channel_axis=1)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> QLinear:
        """A QLinear computing what ``linear`` computes (weights copied, transposed to ``[in, out]``)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.t())
            if linear.bias is not None and layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(self.input_quant(x), self.weight_quant(self.weight))
        return y if self.bias is None else y + self.bias


class ConvBN(nn.Module):
    """``QConv2d`` (no bias) followed by ``BatchNorm2d``; :meth:`fold` merges the BN into the conv."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = QConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fold(self) -> None:
        """Fold the BN statistics and affine parameters into the conv's weight and a new bias."""
        bn = self.bn
        if not isinstance(bn, nn.BatchNorm2d):
            return
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.conv.weight.mul_(factor.reshape(-1, 1, 1, 1))
        conv_bias = self.conv.bias if self.conv.bias is not None else torch.zeros_like(bn.running_mean)
        self.conv.bias = nn.Parameter(bn.bias + (conv_bias - bn.running_mean) * factor)
        self.bn = nn.Identity()


def fold_batchnorms(model: nn.Module) -> None:
    """Fold every :class:`ConvBN` of ``model`` in place."""
    for module in model.modules():
        if isinstance(module, ConvBN):
            module.fold()


def activation_quantizers(model: nn.Module) -> list[ActivationQuantizer]:
    return [m for m in model.modules() if isinstance(m, ActivationQuantizer)]


def weight_quantizers(model: nn.Module) -> list[WeightQuantizer]:
    return [m for m in model.modules() if isinstance(m, WeightQuantizer)]


def set_format(model: nn.Module, fmt: QFormat) -> None:
    """Use ``fmt`` in every quantizer of ``model``."""
    for quantizer in [*activation_quantizers(model), *weight_quantizers(model)]:
        quantizer.fmt = fmt


def set_activation_mode(model: nn.Module, mode: ActivationMode) -> None:
    for quantizer in activation_quantizers(model):
        quantizer.mode = mode


def set_weight_mode(model: nn.Module, mode: WeightMode) -> None:
    for quantizer in weight_quantizers(model):
        quantizer.mode = mode


@torch.no_grad()
def freeze_weight_scales(model: nn.Module) -> None:
    """Store the per-channel scales of the current weights (before evaluation and export)."""
    for module in model.modules():
        if isinstance(module, (QConv2d, QLinear)):
            module.weight_quant.refresh(module.weight)


@contextlib.contextmanager
def placeholder_export(model: nn.Module) -> Iterator[None]:
    """Make every quantizer emit the E4M3FN Cast chain (clipped at its format's max) while active."""
    quantizers = [*activation_quantizers(model), *weight_quantizers(model)]
    for quantizer in quantizers:
        quantizer.placeholder = True
    try:
        yield
    finally:
        for quantizer in quantizers:
            quantizer.placeholder = False


def relu6(x: torch.Tensor) -> torch.Tensor:
    """ReLU6 as an explicit clamp, so that it exports as ``Clip(0, 6)``."""
    return torch.clamp(x, 0.0, 6.0)
