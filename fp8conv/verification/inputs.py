"""Inputs for verification: a data file or directory, in-memory arrays, or (opted into) random inputs.

Random inputs are generated lazily in chunks of :data:`RANDOM_CHUNK` samples from a fixed seed, so the
same ``N`` gives the same inputs on every run and machine: float inputs are standard normal, integer
inputs 0 or 1, booleans uniform. They exercise every kernel but do not represent a task, which the
report says in a warning. As in Polygraphy, ``--seed`` changes the seed, ``--val-range`` draws them
uniformly from a range (per input or for all) and ``--input-shapes`` gives the shapes of inputs with
dynamic dimensions besides the batch axis; report.json's ``verification_data`` records all three.

:func:`data_role` tells whether the verification data is the calibration data itself (the convert
command's ``--data`` without ``--verify-data``): the ranges were fit to those samples, so the numbers can
be optimistic, and the report says so.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fp8conv.converter.data import DataSource, SampleSet, open_samples
from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.ort_backend import TensorInfo

__all__ = [
    "RANDOM_CHUNK",
    "RANDOM_SEED",
    "DataInput",
    "data_role",
    "open_data",
    "random_description",
    "random_options",
    "random_samples",
]

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


def random_samples(
    inputs: Sequence[TensorInfo],
    count: int,
    *,
    seed: int = RANDOM_SEED,
    val_range: Sequence[tuple[str | None, float, float]] = (),
    input_shapes: Sequence[tuple[str, Sequence[int]]] = (),
) -> SampleSet:
    """``count`` deterministic random samples for the model's inputs (see the module docstring).

    Args:
        inputs: The model's inputs.
        count: The number of samples.
        seed: The seed (chunk ``i`` uses ``[seed, i]``).
        val_range: ``(name, low, high)``: draw input ``name`` (None: every input without its own range)
            uniformly from ``[low, high]`` (integer inputs: the integers in it; booleans stay uniform).
        input_shapes: ``(name, shape)``: the full shape of an input with dynamic dimensions; its first
            dimension is the batch axis (a static one must match), the others replace the dynamic ones
            (static ones must match).

    Raises:
        Fp8ConvError: ``count`` < 1, an input with a symbolic dimension other than the first (and no shape
            for it), a type that cannot be generated, a range or shape naming no input, a shape that
            contradicts the model's, an integer range holding no integer.
    """
    if count < 1:
        raise Fp8ConvError(f"random inputs: need at least 1 sample, got {count}")
    names = tuple(info.name for info in inputs)
    named = (("--val-range", [name for name, _, _ in val_range]), ("--input-shapes", [n for n, _ in input_shapes]))
    for label, given in named:
        unknown = [name for name in given if name is not None and name not in names]
        if unknown:
            raise Fp8ConvError(f"{label}: the model has no input {unknown[0]!r} (inputs: {', '.join(names)})")
    shapes = {name: tuple(int(dim) for dim in shape) for name, shape in input_shapes}
    ranges = {name: (float(low), float(high)) for name, low, high in val_range}
    sample_shapes: dict[str, tuple[int, ...]] = {}
    for info in inputs:
        if info.dtype is None:
            raise Fp8ConvError(f"random inputs: cannot generate input {info.name!r} of type {info.onnx_type}")
        if not info.shape:
            raise Fp8ConvError(f"random inputs: input {info.name!r} is a scalar; give real data with --data")
        if info.name in shapes:
            sample_shapes[info.name] = _given_shape(info, shapes[info.name])
            continue
        symbolic = [axis for axis, dim in enumerate(info.shape) if axis > 0 and not isinstance(dim, int)]
        if symbolic:
            raise Fp8ConvError(
                f"random inputs: input {info.name!r} has symbolic dimension(s) {symbolic} besides the batch "
                f"axis (shape {list(info.shape)}); give its shape with --input-shapes {info.name}:D0xD1x... "
                "or real data with --data"
            )
        sample_shapes[info.name] = tuple(int(dim) for dim in info.shape[1:])
    bounds = {info.name: ranges.get(info.name, ranges.get(None)) for info in inputs}
    for info in inputs:
        bound = bounds[info.name]
        integer = bound is not None and not np.issubdtype(info.dtype, np.floating) and info.dtype != np.bool_
        if integer and math.floor(bound[1]) < math.ceil(bound[0]):  # type: ignore[index]
            raise Fp8ConvError(
                f"--val-range: [{bound[0]:g}, {bound[1]:g}] holds no integer for the integer input {info.name!r}"  # type: ignore[index]
            )

    def chunk(index: int, size: int):
        def generate() -> dict[str, np.ndarray]:
            rng = np.random.default_rng([seed, index])
            arrays = {}
            for info in inputs:
                shape = (size, *sample_shapes[info.name])
                bound = bounds[info.name]
                if np.issubdtype(info.dtype, np.floating):
                    values = rng.standard_normal(shape) if bound is None else rng.uniform(bound[0], bound[1], shape)
                    arrays[info.name] = values.astype(info.dtype)
                    if bound is not None:  # rounding to a narrow type must not leave the range
                        np.clip(arrays[info.name], bound[0], bound[1], out=arrays[info.name])
                elif info.dtype == np.bool_:
                    arrays[info.name] = rng.integers(0, 2, shape).astype(np.bool_)
                elif bound is None:
                    arrays[info.name] = rng.integers(0, 2, shape).astype(info.dtype)
                else:
                    low, high = math.ceil(bound[0]), math.floor(bound[1])
                    arrays[info.name] = rng.integers(low, high, shape, endpoint=True).astype(info.dtype)
            return arrays

        return generate

    sizes = [min(RANDOM_CHUNK, count - start) for start in range(0, count, RANDOM_CHUNK)]
    chunks = tuple(chunk(index, size) for index, size in enumerate(sizes))
    return SampleSet(f"{count} random inputs (seed {seed})", names, count, False, chunks)


def _given_shape(info: TensorInfo, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The sample shape (without the batch axis) of an input given ``--input-shapes``."""
    if len(shape) != len(info.shape):
        raise Fp8ConvError(
            f"--input-shapes: {info.name!r} has {len(info.shape)} dimensions (shape {list(info.shape)}), "
            f"got {len(shape)} ({'x'.join(map(str, shape))})"
        )
    for axis, (dim, given) in enumerate(zip(info.shape, shape, strict=True)):
        if isinstance(dim, int) and dim != given:
            raise Fp8ConvError(
                f"--input-shapes: dimension {axis} of {info.name!r} is static ({dim}), got {given} "
                f"(shape {list(info.shape)})"
            )
    return shape[1:]


def random_options(seed: object = RANDOM_SEED, val_range: object = (), input_shapes: object = ()) -> dict[str, Any]:
    """The keywords of :func:`random_samples` from option values (specs checked by the option schema).

    Raises:
        Fp8ConvError: A bad value, one line naming the option.
    """
    from fp8conv.options import option

    return {
        "seed": option("seed").check(seed, "seed"),
        "val_range": option("val_range").check(val_range, "val_range") if val_range else (),
        "input_shapes": option("input_shapes").check(input_shapes, "input_shapes") if input_shapes else (),
    }


def random_description(
    seed: int, val_range: Sequence[tuple[str | None, float, float]], input_shapes: Sequence[tuple[str, Sequence[int]]]
) -> dict[str, Any]:
    """How random inputs were made, for report.json's ``verification_data``."""
    return {
        "seed": seed,
        "val_range": {name or "*": [low, high] for name, low, high in val_range} or None,
        "input_shapes": {name: list(shape) for name, shape in input_shapes} or None,
    }


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
