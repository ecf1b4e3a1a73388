"""What each output is, for the gates: classifier scores, an embedding, or a regression (any other tensor).

Top-1 agreement and label accuracy mean something only for classifier scores; an embedding (a sentence
encoder's pooled output) or a regression output is judged by SQNR and cosine, never top-1. ``--task`` declares
the task of every output; without it, each output's task is inferred from its shape, the data and its values in
the first batch:

1. an output that is not ``[N, C]`` with ``N`` the batch's samples and ``C >= 2`` cannot be classifier scores:
   ``embedding`` when its name says so (``embed``, ``pool``, ``hidden``, ``feature``, ``sentence``), else
   ``regression``;
2. an ``[N, C]`` output is ``classification`` when the data has labels;
3. without labels, an ``[N, C]`` output whose reference rows all have unit L2 norm (within 1e-3: a normalized
   embedding, as sentence encoders return) or whose name says embedding is ``embedding``;
4. any other ``[N, C]`` output is ``classification`` (logits or probabilities).
"""

from __future__ import annotations

import re

import numpy as np

from fp8conv.options import Task
from fp8conv.verification.metrics import is_classifier

__all__ = ["UNIT_NORM_TOLERANCE", "infer_task"]

UNIT_NORM_TOLERANCE = 1e-3
"""How far from 1 every reference row's L2 norm may be for an ``[N, C]`` output to be a normalized embedding."""

_EMBEDDING_NAME = re.compile(r"embed|pool|hidden|feature|sentence", re.IGNORECASE)


def infer_task(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    samples: int,
    *,
    declared: str | None = None,
    has_labels: bool = False,
) -> tuple[Task, str]:
    """The task of one output and why (see the module docstring for the rule).

    Args:
        name: The output's name.
        reference: Its reference values in the first batch.
        candidate: The candidate's values in the first batch.
        samples: The batch's sample count.
        declared: ``--task`` (None: infer).
        has_labels: Whether the data has labels.

    Returns:
        ``(task, reason)``; the reason is what report.json's ``task_reason`` says.
    """
    scores = is_classifier(reference, samples) and is_classifier(candidate, samples)
    if declared is not None:
        task = Task(declared)
        if task is Task.CLASSIFICATION and not scores:
            return task, "--task classification, but the output is not [N, C] scores: no top-1 measured"
        return task, f"--task {task.value}"
    named = _EMBEDDING_NAME.search(name) is not None
    if not scores:
        if named:
            return Task.EMBEDDING, "not [N, C] scores; the name says embedding"
        return Task.REGRESSION, "not [N, C] scores (C >= 2)"
    if has_labels:
        return Task.CLASSIFICATION, "[N, C] scores and the data has labels"
    if _unit_rows(reference):
        return Task.EMBEDDING, "[N, C] with unit-norm rows (a normalized embedding)"
    if named:
        return Task.EMBEDDING, "[N, C]; the name says embedding"
    return Task.CLASSIFICATION, "[N, C] scores"


def _unit_rows(reference: np.ndarray) -> bool:
    """Whether every row of a 2-D array has L2 norm 1 within :data:`UNIT_NORM_TOLERANCE`."""
    norms = np.linalg.norm(reference.astype(np.float64).reshape(len(reference), -1), axis=1)
    return bool(norms.size) and bool(np.all(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE))
