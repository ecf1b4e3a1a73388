"""The three small architectures, built from the fake-quantized layers of ``fp8_qat.py``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from fp8_qat import ActivationQuantizer, ConvBN, QLinear, relu6
from torch import nn


class ResidualBlock(nn.Module):
    """ResNet basic block: two 3x3 Conv-BN, ReLU, identity or 1x1 Conv-BN shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride=stride)
        self.conv2 = ConvBN(cout, cout, 3)
        self.shortcut = ConvBN(cin, cout, 1, stride=stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(y + self.shortcut(x))


class DigitsCNN(nn.Module):
    """Small ResNet for 1x8x8 images: stem, two residual blocks (16 and 32 channels), GAP, Linear."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBN(1, 16, 3)
        self.block1 = ResidualBlock(16, 16, stride=1)
        self.block2 = ResidualBlock(16, 32, stride=2)
        self.head = QLinear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.block2(self.block1(x))
        return self.head(x.mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection, residual."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(relu6(self.depthwise(y)))
        return x + y if self.residual else y


class DigitsMobileNet(nn.Module):
    """MobileNetV2-style network for 1x8x8 images."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBN(1, 16, 3)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, expansion=1, stride=1),
            InvertedResidual(16, 24, expansion=4, stride=2),
            InvertedResidual(24, 24, expansion=4, stride=1),
            InvertedResidual(24, 32, expansion=4, stride=1),
        )
        self.last = ConvBN(32, 64, 1)
        self.head = QLinear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(relu6(self.stem(x)))
        x = relu6(self.last(x))
        return self.head(x.mean(dim=(2, 3)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with fake-quantized projections and attention-MatMul inputs."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.query = QLinear(dim, dim)
        self.key = QLinear(dim, dim)
        self.value = QLinear(dim, dim)
        self.out = QLinear(dim, dim)
        self.query_quant = ActivationQuantizer()
        self.key_quant = ActivationQuantizer()
        self.probs_quant = ActivationQuantizer()
        self.value_quant = ActivationQuantizer()

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D] -> [B, H, L, D/H]``."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query_quant(self._split(self.query(x)))
        k = self.key_quant(self._split(self.key(x)))
        v = self.value_quant(self._split(self.value(x)))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        probs = self.probs_quant(torch.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).transpose(1, 2).flatten(2)
        return self.out(context)


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer encoder layer: attention and GELU MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = QLinear(dim, hidden)
        self.fc2 = QLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class SeqTransformer(nn.Module):
    """Transformer encoder classifier over one-hot token sequences ``[B, L, V]``."""

    def __init__(
        self, vocab: int, length: int, classes: int, dim: int = 32, heads: int = 4, hidden: int = 64, layers: int = 2
    ) -> None:
        super().__init__()
        self.embed = QLinear(vocab, dim)
        self.position = nn.Parameter(0.02 * torch.randn(length, dim))
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, hidden) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = QLinear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.position
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h).mean(dim=1))
