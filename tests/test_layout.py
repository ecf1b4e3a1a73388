"""The tests mirror the package: ``tests/<path>/test_*.py`` tests ``fp8conv/<path>/`` (or ``fp8conv/<path>.py``).

Tests of the package as a whole (layering, the corpus, end-to-end properties) and of the benchmark
scripts stay at the top; shared helpers (``helpers.py``, ``paths.py``, model builders) live there too and
are importable from every folder (``pythonpath = ["tests"]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import collections

from paths import REPO_ROOT

TESTS = REPO_ROOT / "tests"
PACKAGE = REPO_ROOT / "fp8conv"
NOT_TESTS = {"corpus", "__pycache__"}
"""Folders of data, not of tests."""


def test_every_test_folder_is_a_package_folder() -> None:
    folders = [
        path.relative_to(TESTS)
        for path in TESTS.rglob("*")
        if path.is_dir() and not NOT_TESTS.intersection(path.relative_to(TESTS).parts)
    ]
    assert folders, "the tests are expected in folders that mirror the package"
    stray = [
        str(folder)
        for folder in folders
        if not (PACKAGE / folder).is_dir() and not (PACKAGE / folder).with_suffix(".py").is_file()
    ]
    assert not stray, f"test folders without a package folder or module of the same path: {stray}"


def test_test_folders_hold_only_tests() -> None:
    stray = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path.parent != TESTS
        and not NOT_TESTS.intersection(path.relative_to(TESTS).parts)
        and not path.name.startswith("test_")
    ]
    assert not stray, f"helpers belong at the top of tests/, importable everywhere: {stray}"


def test_test_file_names_are_unique() -> None:
    """pytest imports test files by basename (``rootdir``-relative ``prepend`` mode without ``__init__.py``)."""
    names = collections.Counter(
        path.name for path in TESTS.rglob("test_*.py") if not NOT_TESTS.intersection(path.relative_to(TESTS).parts)
    )
    assert not [name for name, count in names.items() if count > 1]
