"""``fp8conv run``: the exact FP8 reference over a data set, outputs saved by name."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fp8conv.converter.data import load_samples, save_arrays
from fp8conv.converter.files import check_writable
from fp8conv.converter.loading import ModelInput, load
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.reference_runner import ReferenceRunner

__all__ = ["ReferenceRunResult", "run_reference"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


@dataclasses.dataclass(frozen=True)
class ReferenceRunResult:
    """What :func:`run_reference` wrote.

    Attributes:
        output_names: Graph outputs saved.
        num_samples: Samples run.
    """

    output_names: tuple[str, ...]
    num_samples: int


def run_reference(
    model: ModelInput,
    data: str | Path,
    output: str | Path,
    *,
    batch_size: int | None = None,
    progress: bool = True,
) -> ReferenceRunResult:
    """Run the exact FP8 reference of ``model`` over ``data`` and write the outputs to ``output`` (.npz).

    Args:
        model: Model in any dialect fp8conv reads.
        data: ``.npz`` file or directory of samples (see :mod:`fp8conv.converter.data`).
        output: Destination ``.npz``; written atomically.
        batch_size: Samples per onnxruntime call; default the model's static batch size, else 32.
        progress: Show a progress bar on stderr (when stderr is a terminal).

    Returns:
        What was written.

    Raises:
        Fp8ConvError: Bad model or data, or an output path that cannot be written or is one of the inputs.
    """
    output = Path(output)
    for given, what in ((model, "model"), (data, "data")):
        if isinstance(given, (str, os.PathLike)) and output.resolve() == Path(given).resolve():
            raise Fp8ConvError(f"{output}: the outputs would overwrite the input {what}")
    check_writable(output, directory=False, what="outputs")
    loaded = load(model)
    runner = ReferenceRunner(loaded.model)
    samples = load_samples(data, runner.input_names, constants=loaded.constant_inputs)
    size = batch_size or runner.static_batch_size or DEFAULT_BATCH_SIZE
    collected: dict[str, list[np.ndarray]] = {name: [] for name in runner.output_names}
    with tqdm(
        total=samples.num_samples, unit="sample", desc="fp8 reference", disable=None if progress else True
    ) as bar:
        for feeds in samples.batches(size):
            feeds.pop("labels", None)
            for name, value in runner.run(feeds).items():
                collected[name].append(value)
            bar.update(len(next(iter(feeds.values()))))
    save_arrays(output, {name: np.concatenate(parts) for name, parts in collected.items()})
    return ReferenceRunResult(tuple(runner.output_names), samples.num_samples)
