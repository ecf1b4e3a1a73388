"""Inputs for verification: a data file or directory, in-memory arrays, or (opted into) random inputs.

Random inputs are generated lazily in chunks of :data:`RANDOM_CHUNK` samples from a fixed seed, so the
same ``N`` gives the same inputs on every run and machine: float inputs are standard normal, integer
inputs 0 or 1, booleans uniform. They exercise every kernel but do not represent a task, which the
report says in a warning.

:func:`data_role` tells whether the verification data is the calibration data itself (the convert
command's ``--data`` without ``--verify-data``): the ranges were fit to those samples, so the numbers can
be optimistic, and the report says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fp8conv.converter.data import DataSource, SampleSet, open_samples
from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.ort_backend import TensorInfo

__all__ = ["RANDOM_CHUNK", "RANDOM_SEED", "DataInput", "data_role", "open_data", "random_samples"]

logger = logging.getLogger(__name__)

RANDOM_SEED = 0
"""Seed of the random inputs (chunk ``i`` uses ``[RANDOM_SEED, i]``)."""

RANDOM_CHUNK = 64
"""Random samples generated at a time."""

DataInput = DataSource
"""What :func:`open_data` accepts: what :func:`fp8conv.converter.data.open_samples` does (a path, a
:class:`SampleSet`, ``{input name: array}`` (+ ``labels``), an array, or a reader of feeds)."""


def open_data(data: DataInput, inputs: Sequence[TensorInfo], *, constants: Sequence[str] = ()) -> SampleSet:
    """Open verification data for the model's inputs.

    Args:
        data: ``.npz`` file or directory (see :func:`fp8conv.converter.data.load_samples`), a sample set,
            arrays keyed by input name with the samples on the first axis (optionally ``labels``), an array for
            a one-input model, or a reader of feeds (:func:`~fp8conv.converter.data.open_samples`).
        inputs: The model's inputs.
        constants: Initializers the reference also listed as graph inputs; data for them is refused.

    Returns:
        The samples.

    Raises:
        Fp8ConvError: Missing inputs, data for one of ``constants``, inconsistent sample counts,
            unreadable files.
    """
    return open_samples(data, [info.name for info in inputs], constants=constants)


def random_samples(inputs: Sequence[TensorInfo], count: int) -> SampleSet:
    """``count`` deterministic random samples for the model's inputs (see the module docstring).

    Raises:
        Fp8ConvError: ``count`` < 1, an input with a symbolic dimension other than the first, or a type
            that cannot be generated.
    """
    if count < 1:
        raise Fp8ConvError(f"random inputs: need at least 1 sample, got {count}")
    for info in inputs:
        if info.dtype is None:
            raise Fp8ConvError(f"random inputs: cannot generate input {info.name!r} of type {info.onnx_type}")
        symbolic = [axis for axis, dim in enumerate(info.shape) if axis > 0 and not isinstance(dim, int)]
        if symbolic:
            raise Fp8ConvError(
                f"random inputs: input {info.name!r} has symbolic dimension(s) {symbolic} besides the batch "
                f"axis (shape {list(info.shape)}); give real data with --data"
            )
        if not info.shape:
            raise Fp8ConvError(f"random inputs: input {info.name!r} is a scalar; give real data with --data")

    def chunk(index: int, size: int):
        def generate() -> dict[str, np.ndarray]:
            rng = np.random.default_rng([RANDOM_SEED, index])
            arrays = {}
            for info in inputs:
                shape = (size, *(int(dim) for dim in info.shape[1:]))
                if np.issubdtype(info.dtype, np.floating):
                    arrays[info.name] = rng.standard_normal(shape).astype(info.dtype)
                elif info.dtype == np.bool_:
                    arrays[info.name] = rng.integers(0, 2, shape).astype(np.bool_)
                else:
                    arrays[info.name] = rng.integers(0, 2, shape).astype(info.dtype)
            return arrays

        return generate

    sizes = [min(RANDOM_CHUNK, count - start) for start in range(0, count, RANDOM_CHUNK)]
    chunks = tuple(chunk(index, size) for index, size in enumerate(sizes))
    names = tuple(info.name for info in inputs)
    return SampleSet(f"{count} random inputs (seed {RANDOM_SEED})", names, count, False, chunks)


def data_role(source: str, random: bool, conversion: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the verification data is to the conversion: report.json's ``verification_data``.

    Args:
        source: The samples' source (:attr:`SampleSet.source`: a path for files and directories).
        random: Whether they are random inputs.
        conversion: ``ConversionResult.to_json()`` when the candidate was converted in the same run.

    Returns:
        ``{"source": kind, "path": source, "warning": text or None}``; ``kind`` is ``random``,
        ``calibration`` (the same file or directory the conversion calibrated on: the warning says so and
        recommends ``--verify-data``), ``separate`` (other data than the calibration's, or a data-free
        conversion) or ``unknown`` (no conversion record, or in-memory data).
    """
    if random:
        return {"source": "random", "path": None, "warning": None}
    if conversion is None:
        return {"source": "unknown", "path": source, "warning": None}
    calibration = conversion.get("calibration_source")
    if calibration is None:
        return {"source": "separate", "path": source, "warning": None}
    same = _same_path(source, calibration)
    if same is None:
        return {"source": "unknown", "path": source, "warning": None}
    if not same:
        return {"source": "separate", "path": source, "warning": None}
    warning = (
        f"verified on the calibration data itself ({source}): the activation ranges were fit to these samples, "
        "so the numbers can be optimistic; pass held-out data with --verify-data"
    )
    return {"source": "calibration", "path": source, "warning": warning}


def _same_path(first: str, second: str) -> bool | None:
    """Whether two sample sources are the same file or directory (None: one of them is not on disk)."""
    try:
        a, b = Path(first), Path(second)
        if not (a.exists() and b.exists()):
            return None
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except (OSError, ValueError):
        return None
