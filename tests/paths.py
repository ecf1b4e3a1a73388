"""Where the tests find the repository's files: tests live in folders that mirror the package, so no
test computes paths from its own ``__file__``."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout's root (``pyproject.toml``, ``models/``, ``benchmarks/``)."""

MODELS = REPO_ROOT / "models"
"""The shipped FP8-trained sample models."""

CORPUS = REPO_ROOT / "tests" / "corpus"
"""FP8 files written by real tools (``tests/corpus/build.py``)."""
