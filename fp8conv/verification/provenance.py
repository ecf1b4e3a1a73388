"""Where a report comes from: versions, CPU, time, command line and the files compared (report.json ``provenance``).

Every report carries it, so a number can be traced to what produced it: the versions of fp8conv and of the
libraries whose arithmetic it depends on (onnxruntime's kernels above all), the CPU model and the ISA
extensions that decide which integer kernels onnxruntime picks (VNNI: u8×s8 without saturation; AMX), the
UTC time, the exact command line (or ``python API``), and the SHA-256 of the reference, candidate and data
files, with their paths relative to one root (the current directory when a file is inside it, else their
common parent; a file outside the root by its absolute path).

The command line is recorded by the CLI around each command (:func:`recording_command`); outside it the
report says ``python API``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import hashlib
import importlib.metadata
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fp8conv._version import __version__

__all__ = [
    "KERNEL_FLAGS",
    "PYTHON_API",
    "collect_provenance",
    "cpu_info",
    "file_digest",
    "parse_cpuinfo",
    "recording_command",
]

PYTHON_API = "python API"
"""The command of a report made without the CLI."""

KERNEL_FLAGS = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    # AArch64 (/proc/cpuinfo "Features")
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)
"""CPU flags that decide onnxruntime's integer and float kernels (x86 and AArch64 names as Linux spells them)."""

_LIBRARIES = (("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("onnx_ir", "onnx-ir"), ("numpy", "numpy"))
_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("fp8conv_command", default=None)
_CHUNK = 1 << 20


@contextlib.contextmanager
def recording_command(command: str) -> Iterator[None]:
    """Reports made inside this block record ``command`` as their command line."""
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def _version(module: str, distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        loaded = sys.modules.get(module)
        return getattr(loaded, "__version__", None)


def versions() -> dict[str, str | None]:
    """fp8conv's version, the libraries' and Python's."""
    found: dict[str, str | None] = {"fp8conv": __version__}
    found.update({module: _version(module, distribution) for module, distribution in _LIBRARIES})
    found["python"] = platform.python_version()
    return found


@functools.cache
def cpu_info() -> dict[str, Any]:
    """``{"model", "machine", "system", "cores", "flags", "flags_source"}``: the CPU and its kernel-relevant flags.

    On Linux the model name and flags come from ``/proc/cpuinfo`` (:func:`parse_cpuinfo`); elsewhere the
    model is :func:`platform.processor` and the flags are unknown (empty, ``flags_source`` ``"unavailable"``).
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """:func:`cpu_info` from the text of ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on AArch64; may be empty)."""
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "cpu model", "hardware"):
            model = value.strip() or None
        elif flags is None and key in ("flags", "features"):
            flags = set(value.split())
    return {
        "model": model or platform.processor() or None,
        "machine": platform.machine() or None,
        "system": platform.system() or None,
        "cores": os.cpu_count(),
        "flags": [flag for flag in KERNEL_FLAGS if flag in (flags or ())],
        "flags_source": "/proc/cpuinfo" if flags is not None else "unavailable",
    }


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (their relative paths and contents, in sorted order)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(item for item in path.rglob("*") if item.is_file()):
            digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
            digest.update(bytes.fromhex(file_digest(file)))
        return digest.hexdigest()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _root(paths: list[Path]) -> Path | None:
    """The current directory when it holds any of the paths, else their common parent (None: only ``/``)."""
    if not paths:
        return None
    cwd = Path.cwd().resolve()
    if any(path.is_relative_to(cwd) for path in paths):
        return cwd
    parents = [path if path.is_dir() else path.parent for path in paths]
    common = Path(os.path.commonpath([str(parent) for parent in parents]))
    return None if common == Path(common.anchor) else common


def collect_provenance(files: Mapping[str, str | None]) -> dict[str, Any]:
    """The ``provenance`` of a report about ``files`` (role → path; missing paths and in-memory models are skipped).

    Returns:
        ``{"versions", "cpu", "created_utc", "command", "root", "files"}``; ``files`` maps each role to
        ``{"path": relative to root (absolute for a file outside it, or when root is None), "sha256"}``.
    """
    existing = {}
    for role, path in files.items():
        if path and Path(path).exists():
            existing[role] = Path(path).resolve()
    root = _root(list(existing.values()))
    listed = {}
    for role, path in existing.items():
        shown = path.relative_to(root).as_posix() if root is not None and path.is_relative_to(root) else str(path)
        try:
            digest = file_digest(path)
        except OSError:
            digest = None
        listed[role] = {"path": shown, "sha256": digest}
    return {
        "versions": versions(),
        "cpu": {**cpu_info(), "flags": list(cpu_info()["flags"])},
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": _COMMAND.get() or PYTHON_API,
        "root": str(root) if root is not None else None,
        "files": listed,
    }
