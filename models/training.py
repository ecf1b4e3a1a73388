"""Deterministic training loops: float training, then FP8 QAT (calibrate, EMA ranges, frozen ranges)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import fp8_qat
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One training phase: AdamW with a cosine learning-rate decay to 1 % over ``epochs``."""

    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 1e-4


@dataclasses.dataclass(frozen=True)
class QatSchedule:
    """QAT fine-tune: calibrate activation ranges on ``calibration_batches``, train ``ema_epochs`` with
    EMA-tracked ranges, then ``frozen_epochs`` with frozen activation ranges."""

    ema_epochs: int
    frozen_epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 0.0
    calibration_batches: int = 8

    @property
    def epochs(self) -> int:
        return self.ema_epochs + self.frozen_epochs


def shift_augment(max_shift: int) -> Augment:
    """Random translation of ``[N, C, H, W]`` images by up to ``max_shift`` pixels (zero fill)."""

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        padded = F.pad(x, (max_shift,) * 4)
        offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
        rows = (offsets[:, 0, None] + torch.arange(h)).reshape(n, 1, h, 1)
        cols = (offsets[:, 1, None] + torch.arange(w)).reshape(n, 1, 1, w)
        batch = torch.arange(n).reshape(n, 1, 1, 1)
        return padded[batch, torch.arange(x.shape[1]).reshape(1, -1, 1, 1), rows, cols]

    return augment


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return list(order.split(batch_size))


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    schedule: Schedule | QatSchedule,
    *,
    generator: torch.Generator,
    augment: Augment | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """Minimize cross-entropy with AdamW and a per-step cosine decay of the learning rate to 1 %."""
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    steps = schedule.epochs * math.ceil(len(labels) / schedule.batch_size)
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    for epoch in range(schedule.epochs):
        if on_epoch is not None:
            on_epoch(epoch)
        model.train()
        for index in _batches(len(labels), schedule.batch_size, generator):
            batch = inputs[index]
            if augment is not None:
                batch = augment(batch, generator)
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decay.step()


def train_float(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    generator: torch.Generator,
    augment: Augment | None,
) -> None:
    fp8_qat.set_activation_mode(model, "off")
    fp8_qat.set_weight_mode(model, "off")
    train(model, x, y, schedule, generator=generator, augment=augment)


@torch.no_grad()
def calibrate(model: nn.Module, x: np.ndarray, batches: int, batch_size: int, generator: torch.Generator) -> None:
    """Initialize activation ranges with the running max over ``batches`` training batches."""
    fp8_qat.set_activation_mode(model, "observe")
    model.train()  # quantizers observe only in training mode; BN is folded away, no other train-time state
    inputs = torch.from_numpy(x)
    for index in _batches(len(inputs), batch_size, generator)[:batches]:
        model(inputs[index])


def train_qat(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    schedule: QatSchedule,
    generator: torch.Generator,
    augment: Augment | None,
) -> None:
    """Calibrate, fine-tune with EMA activation ranges, then with frozen ranges; freeze weight scales."""
    fp8_qat.set_weight_mode(model, "on")
    calibrate(model, x, schedule.calibration_batches, schedule.batch_size, generator)
    fp8_qat.set_activation_mode(model, "ema")

    def on_epoch(epoch: int) -> None:
        if epoch == schedule.ema_epochs:
            fp8_qat.set_activation_mode(model, "frozen")

    train(model, x, y, schedule, generator=generator, augment=augment, on_epoch=on_epoch)
    fp8_qat.set_activation_mode(model, "frozen")
    fp8_qat.freeze_weight_scales(model)
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` in eval mode, float32 ``[N, classes]``."""
    model.eval()
    inputs = torch.from_numpy(x)
    return torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())
