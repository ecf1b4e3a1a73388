"""Data sets: scikit-learn's bundled digits, and a synthetic majority-token sequence task."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """Train and held-out arrays: inputs float32, labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str


def digits(seed: int, test_size: int = 360) -> Split:
    """``sklearn.datasets.load_digits`` (1797 8x8 images, 16 grey levels) as ``[N, 1, 8, 8]`` in [0, 1].

    Stratified split with ``random_state=seed``: 1437 training and 360 held-out images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    description = (
        f"scikit-learn `load_digits` (1797 8x8 grey images of digits 0-9, pixel values /16 → [0, 1]), "
        f"stratified split `train_test_split(test_size={test_size}, random_state={seed})`: "
        f"{len(y_train)} train / {len(y_test)} held-out"
    )
    return Split(x_train, y_train, x_test, y_test, description)


def _majority_sequences(rng: np.random.Generator, count: int, length: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random token sequences whose most frequent token is unique (ties are redrawn)."""
    tokens = np.empty((0, length), dtype=np.int64)
    while len(tokens) < count:
        draw = rng.integers(0, vocab, size=(2 * count, length))
        counts = np.stack([(draw == v).sum(axis=1) for v in range(vocab)], axis=1)
        top = counts.max(axis=1, keepdims=True)
        unique_top = (counts == top).sum(axis=1) == 1
        tokens = np.concatenate([tokens, draw[unique_top]])
    tokens = tokens[:count]
    counts = np.stack([(tokens == v).sum(axis=1) for v in range(vocab)], axis=1)
    return tokens, counts.argmax(axis=1).astype(np.int64)


def majority_token(seed: int, n_train: int = 6000, n_test: int = 1000, length: int = 16, vocab: int = 8) -> Split:
    """Which of ``vocab`` tokens occurs most often in a random sequence (one-hot ``[N, length, vocab]``)."""
    rng = np.random.default_rng(seed)
    tokens, labels = _majority_sequences(rng, n_train + n_test, length, vocab)
    one_hot = np.eye(vocab, dtype=np.float32)[tokens]
    description = (
        f"synthetic majority-token task: sequences of {length} tokens drawn uniformly from {vocab}, "
        f"label = the most frequent token (sequences with a tie for the top count are redrawn), "
        f"one-hot input `[N, {length}, {vocab}]`, `numpy.random.default_rng({seed})`: "
        f"{n_train} train / {n_test} held-out"
    )
    return Split(one_hot[:n_train], labels[:n_train], one_hot[n_train:], labels[n_train:], description)
