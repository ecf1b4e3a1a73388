"""File output: a result is either completely written or not there at all; whether a path can be written."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fp8conv.errors import Fp8ConvError

__all__ = ["atomic_path", "atomic_write", "check_writable"]


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it over ``destination`` on success.

    The temporary file is created empty with the permissions any new file gets (``0o666`` less the umask),
    so the result is as readable as a file written directly. On an exception the temporary file is removed
    and ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary_path = _reserve_beside(destination)
    try:
        yield temporary_path
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)


def _reserve_beside(destination: Path) -> Path:
    """Create a new, empty, uniquely named hidden file in ``destination``'s directory."""
    while True:
        candidate = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(candidate, "xb"):
                return candidate
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_write(destination: Path) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``destination`` only when the block completes."""
    with atomic_path(destination) as temporary, open(temporary, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def check_writable(path: Path, *, directory: bool, what: str) -> None:
    """Raise unless ``path`` (a file, or with ``directory`` a directory) can be created or replaced.

    Raises:
        Fp8ConvError: Something of the wrong kind is in the way, or the first existing ancestor is not a
            writable directory.
    """
    if path.exists():
        if directory and not path.is_dir():
            raise Fp8ConvError(f"{path}: cannot write the {what} there: it is a file, not a directory")
        if not directory and path.is_dir():
            raise Fp8ConvError(f"{path}: cannot write the {what} there: it is a directory")
    parent = path if directory and path.is_dir() else path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise Fp8ConvError(f"{path}: cannot write the {what}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Fp8ConvError(f"{path}: cannot write the {what}: {existing} is not writable")
