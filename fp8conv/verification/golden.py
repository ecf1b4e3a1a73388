"""Golden outputs: the FP8 reference's results stored (``--save-outputs``) and compared against (``--load-outputs``).

Running the exact FP8 reference is the slow part of verification. A deployment CI that checks candidate after
candidate against the same reference on the same data can store the reference's results once and load them:
:class:`GoldenOutputs` decides, for one verification, whether the reference runs, runs and is recorded
(:class:`~fp8conv.verification.runners.RecordingRunner`) or is replaced by the stored arrays
(:class:`~fp8conv.verification.runners.LoadedOutputsRunner`).

The file is a plain ``.npz`` (what ``np.savez`` writes, uncompressed; read with ``allow_pickle=False``):

* ``metadata``: a one-element string array holding a JSON object: ``format`` (:data:`FORMAT`),
  ``format_version`` (:data:`FORMAT_VERSION`), ``fp8conv_version``; ``reference``: ``{"sha256", "of"}``, the
  SHA-256 of the reference model file (``of``: ``file``; its external data is not included) or, for a model
  given in memory, of the deterministic protobuf serialization of its canonical form (``of``: ``canonical
  serialization``); ``inputs``: ``{"sha256", "names", "samples"}``, the SHA-256 of the verification inputs
  (:func:`inputs_digest`: every sample of every input, in order, with its dtype and per-sample shape; labels
  are not included, they do not change the reference) and how many samples the data has; ``samples``: how
  many samples were verified and stored (a static batch size drops trailing ones); ``outputs``: the
  reference's graph output names; ``tensors``: the intermediate tensors the per-layer comparison used
  (empty with ``--no-per-layer``); ``per_layer``.
* ``output_<i>``: graph output ``outputs[i]``, ``tensor_<i>``: intermediate tensor ``tensors[i]``, each with
  the samples along the first axis.

The file holds no time and no path, its entries are written in a fixed order with a fixed timestamp and the
JSON with sorted keys, so two runs on the same reference and inputs write the same bytes. It is written
atomically (a temporary file renamed into place), after the run, also when a gate fails.

Loading refuses, in one line naming the file and what differs (exit 2, before the candidate runs;
:func:`~fp8conv.convert_and_verify` checks the reference's hash before converting), a file of
another reference model, of other inputs (random inputs of the same count, seed, range and shapes are the same
inputs), with another sample count or other output names, and a file that lacks intermediate tensors the
per-layer comparison of this candidate needs: loaded outputs never quietly compare fewer layers than asked
(give ``--no-per-layer`` to compare outputs only, or save the file again with this candidate). Tensors the
file holds beyond those are not read. The stored arrays the comparison uses are held in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from fp8conv._version import __version__
from fp8conv.converter.data import LABELS_KEY, SampleSet
from fp8conv.converter.files import atomic_write
from fp8conv.converter.loading import LoadedModel
from fp8conv.errors import Fp8ConvError
from fp8conv.verification.provenance import file_digest
from fp8conv.verification.runners import Fp8ReferenceRunner, LoadedOutputsRunner, RecordingRunner, Runner

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "GoldenOutputs",
    "golden_paths",
    "inputs_digest",
    "read_metadata",
    "reference_digest",
    "write_golden",
]

logger = logging.getLogger(__name__)

FORMAT = "fp8conv golden outputs"
"""The ``format`` of a golden-outputs file's metadata."""

FORMAT_VERSION = 1
"""The ``format_version`` fp8conv writes and reads."""

METADATA_KEY = "metadata"
"""The ``.npz`` entry holding the JSON metadata."""

_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_SHOWN = 16  # hex digits of a SHA-256 in messages
_LISTED = 3  # names listed in a message


def reference_digest(loaded: LoadedModel) -> dict[str, str]:
    """``{"sha256", "of"}`` of the reference: of its file, else of its canonical form's deterministic serialization."""
    path = loaded.source.path
    if path is not None:
        return {"sha256": file_digest(Path(path)), "of": "file"}
    serialized = ir.to_proto(loaded.model).SerializeToString(deterministic=True)
    return {"sha256": hashlib.sha256(serialized).hexdigest(), "of": "canonical serialization"}


def inputs_digest(samples: SampleSet, size: int, static: int | None) -> tuple[dict[str, Any], int]:
    """The SHA-256 of the verification inputs, and how many samples verification runs.

    The digest is ``sha256`` of the JSON of ``[{name, dtype, shape, sha256}]`` (one per input, in the model's
    input order; ``shape`` per sample, ``sha256`` of every sample's bytes in order) and the sample count: it
    does not depend on the batch size or on how the data is split into files.

    Args:
        samples: The verification samples.
        size: The batch size verification runs.
        static: The static batch size (batches of another size are dropped), or None.

    Returns:
        ``({"sha256", "names", "samples"}, samples verified)``.
    """
    names = list(samples.input_names)
    hashers = {name: hashlib.sha256() for name in names}
    layout: dict[str, tuple[str, list[int]]] = {}
    total = verified = 0
    for feeds in samples.batches(size):
        feeds.pop(LABELS_KEY, None)
        count = len(next(iter(feeds.values())))
        for name in names:
            array = np.ascontiguousarray(feeds[name])
            layout.setdefault(name, (array.dtype.str, list(array.shape[1:])))
            hashers[name].update(memoryview(array).cast("B"))
        total += count
        verified += 0 if static is not None and count != static else count
    described = [
        {"name": name, "dtype": layout.get(name, ("", []))[0], "shape": layout.get(name, ("", []))[1]}
        | {"sha256": hashers[name].hexdigest()}
        for name in names
    ]
    text = json.dumps({"inputs": described, "samples": total}, sort_keys=True)
    return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "names": names, "samples": total}, verified


def write_golden(
    path: Path, metadata: Mapping[str, Any], outputs: Sequence[np.ndarray], tensors: Sequence[np.ndarray]
) -> None:
    """Write a golden-outputs file atomically and deterministically (see the module docstring).

    Raises:
        Fp8ConvError: An array NumPy cannot store without pickling (object dtype), or the file cannot be written.
    """
    text = json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
    entries = [(METADATA_KEY, np.array([text]))]
    entries += [(f"output_{index}", array) for index, array in enumerate(outputs)]
    entries += [(f"tensor_{index}", array) for index, array in enumerate(tensors)]
    try:
        with atomic_write(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, array in entries:
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_TIMESTAMP)
                info.external_attr = 0o600 << 16
                with zf.open(info, "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
    except ValueError as error:  # object arrays: NumPy would pickle them
        raise Fp8ConvError(f"{path}: cannot store the golden outputs: {error}") from error
    except OSError as error:
        raise Fp8ConvError(f"{path}: cannot write the golden outputs: {error.strerror or error}") from error


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a golden-outputs file.

    Raises:
        Fp8ConvError: No such file, not an ``.npz``, no metadata entry, or metadata of another format or version.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            if METADATA_KEY not in archive.files:
                raise Fp8ConvError(f"{path}: not an fp8conv golden-outputs file (no {METADATA_KEY!r} entry)")
            stored = archive[METADATA_KEY]
    except FileNotFoundError as error:
        raise Fp8ConvError(f"{path}: no such file") from error
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise Fp8ConvError(f"{path}: not an fp8conv golden-outputs file ({error})") from error
    try:
        metadata = json.loads(str(stored.reshape(-1)[0]))
    except (IndexError, ValueError) as error:
        raise Fp8ConvError(f"{path}: not an fp8conv golden-outputs file (unreadable metadata)") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise Fp8ConvError(f"{path}: not an fp8conv golden-outputs file (metadata of another format)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise Fp8ConvError(
            f"{path}: golden outputs of format version {metadata.get('format_version')!r}; this fp8conv reads "
            f"version {FORMAT_VERSION} (save them again with --save-outputs)"
        )
    expected = {"reference": dict, "inputs": dict, "samples": int, "outputs": list, "tensors": list}
    for key, kind in expected.items():
        if not isinstance(metadata.get(key), kind):
            raise Fp8ConvError(f"{path}: not an fp8conv golden-outputs file (metadata without {key!r})")
    return metadata


def _arrays(path: Path, keys: Mapping[str, str]) -> dict[str, np.ndarray]:
    """``{name: the array of entry key}`` for ``keys`` (name → entry)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[key] for name, key in keys.items()}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise Fp8ConvError(f"{path}: unreadable golden outputs ({error})") from error


def _short(digest: object) -> str:
    return f"{str(digest)[:_SHOWN]}…"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


@dataclasses.dataclass
class GoldenOutputs:
    """What one verification does with golden outputs: nothing, save them, or load them.

    Attributes:
        save: Where ``--save-outputs`` writes, or None.
        load: What ``--load-outputs`` reads, or None (not both).
    """

    save: Path | None = None
    load: Path | None = None
    _reference: dict[str, str] | None = dataclasses.field(default=None, repr=False)
    _metadata: dict[str, Any] | None = dataclasses.field(default=None, repr=False)
    _inputs: dict[str, Any] | None = dataclasses.field(default=None, repr=False)
    _names: tuple[list[str], list[str]] = dataclasses.field(default=([], []), repr=False)

    def __post_init__(self) -> None:
        if self.save is not None and self.load is not None:
            raise Fp8ConvError(
                "save_outputs and load_outputs exclude each other: the reference either runs (and its outputs are "
                "saved) or is loaded"
            )

    def refuse_overwriting(self, paths: Mapping[str, object]) -> None:
        """Raise when ``save`` is one of ``paths`` (role → path; other values are ignored)."""
        from fp8conv.options import same_path_as

        clash = same_path_as(self.save, paths) if self.save is not None else None
        if clash is not None:
            raise Fp8ConvError(
                f"{self.save}: --save-outputs is the {clash} path: the golden outputs would overwrite it"
            )

    def check_reference(self, loaded: LoadedModel) -> None:
        """With ``load``: raise unless the file holds golden outputs of this reference model."""
        if self.load is None:
            return
        self._metadata = self._metadata or read_metadata(self.load)
        self._reference = self._reference or reference_digest(loaded)
        stored, actual = self._metadata["reference"], self._reference
        if stored.get("sha256") != actual["sha256"]:
            raise Fp8ConvError(
                f"{self.load}: golden outputs of another reference model: the file's has sha256 "
                f"{_short(stored.get('sha256'))} ({stored.get('of')}), this one {_short(actual['sha256'])} "
                f"({actual['of']}); save them again with --save-outputs"
            )

    def reference_runner(self, loaded: LoadedModel, captures: Sequence[str]) -> Runner:
        """The runner of the reference: the FP8 reference (recorded with ``save``) or the stored arrays (``load``).

        Raises:
            Fp8ConvError: With ``load``: another reference model, other output names, or tensors of
                ``captures`` the file lacks.
        """
        outputs = [value.name or "" for value in loaded.model.graph.outputs]
        self._names = (outputs, list(captures))
        if self.load is None:
            runner = Fp8ReferenceRunner(loaded.model, capture=captures)
            if self.save is None:
                return runner
            self._reference = reference_digest(loaded)
            return RecordingRunner(runner)
        self.check_reference(loaded)
        metadata = self._metadata
        assert metadata is not None
        if metadata["outputs"] != outputs:
            raise Fp8ConvError(
                f"{self.load}: stores the outputs {', '.join(map(str, metadata['outputs']))}; the reference has "
                f"{', '.join(outputs)}"
            )
        stored = {name: index for index, name in enumerate(metadata["tensors"])}
        missing = [name for name in captures if name not in stored]
        if missing:
            how = (
                "holds no intermediate tensors (saved with --no-per-layer)"
                if not stored
                else f"lacks {len(missing)} intermediate tensor(s) the per-layer comparison of this candidate needs "
                f"({_listed(missing)})"
            )
            raise Fp8ConvError(
                f"{self.load}: {how}: give --no-per-layer to compare outputs only, or save the golden outputs "
                "again with this candidate"
            )
        keys = {name: f"output_{index}" for index, name in enumerate(outputs)}
        keys |= {name: f"tensor_{stored[name]}" for name in captures}
        inputs = [value for value in loaded.model.graph.inputs if not value.is_initializer()]
        leading = {value.shape[0] if value.shape is not None and len(value.shape) else None for value in inputs}
        static = leading.pop() if len(leading) == 1 else None
        static = static if isinstance(static, int) and static > 0 else None
        names = [value.name or "" for value in inputs]
        return LoadedOutputsRunner(_arrays(self.load, keys), names, static, str(self.load))

    def check_inputs(self, samples: SampleSet, size: int, static: int | None) -> None:
        """Digest the verification inputs; with ``load``, raise unless they and the sample count are the file's."""
        if self.save is None and self.load is None:
            return
        self._inputs, verified = inputs_digest(samples, size, static)
        self._inputs["verified"] = verified
        if self.load is None:
            return
        assert self._metadata is not None
        stored, actual = self._metadata["inputs"], self._inputs
        if stored.get("names") != actual["names"]:
            raise Fp8ConvError(
                f"{self.load}: golden outputs of the inputs {', '.join(map(str, stored.get('names') or []))}; "
                f"the model's are {', '.join(actual['names'])}"
            )
        if stored.get("sha256") != actual["sha256"]:
            raise Fp8ConvError(
                f"{self.load}: golden outputs of other inputs: the file's {stored.get('samples')} samples have "
                f"sha256 {_short(stored.get('sha256'))}, the {actual['samples']} of {samples.source} "
                f"{_short(actual['sha256'])}"
            )
        if self._metadata["samples"] != verified:
            raise Fp8ConvError(
                f"{self.load}: holds {self._metadata['samples']} verified samples, this verification runs {verified} "
                f"(batches of {size})"
            )

    def finish(self, runner: Runner, per_layer: bool) -> dict[str, Any] | None:
        """Write the recorded outputs (with ``save``); the record of what was done for report.json.

        Returns:
            ``{"mode": "saved" | "loaded", "path", "samples", "outputs", "tensors", "reference_sha256",
            "inputs_sha256", "fp8conv_version"}``, or None when golden outputs were not used.
        """
        if self.save is None and self.load is None:
            return None
        assert self._inputs is not None
        if self.load is not None:
            assert self._metadata is not None
            metadata = self._metadata
            path, mode = self.load, "loaded"
            used = self._names[1]
        else:
            assert isinstance(runner, RecordingRunner)
            outputs, tensors = self._names
            recorded = runner.recorded()
            metadata = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "fp8conv_version": __version__,
                "reference": self._reference or {},
                "inputs": {key: self._inputs[key] for key in ("sha256", "names", "samples")},
                "samples": self._inputs["verified"],
                "outputs": outputs,
                "tensors": tensors,
                "per_layer": per_layer,
            }
            write_golden(self.save, metadata, [recorded[name] for name in outputs], [recorded[n] for n in tensors])
            logger.info("golden outputs: %d outputs, %d tensors written to %s", len(outputs), len(tensors), self.save)
            path, mode, used = self.save, "saved", tensors
        return {
            "mode": mode,
            "path": str(path),
            "samples": metadata["samples"],
            "outputs": list(metadata["outputs"]),
            "tensors": len(used),
            "reference_sha256": metadata["reference"].get("sha256"),
            "inputs_sha256": metadata["inputs"].get("sha256"),
            "fp8conv_version": metadata.get("fp8conv_version"),
        }


def golden_paths(save_outputs: object, load_outputs: object) -> GoldenOutputs:
    """:class:`GoldenOutputs` of option values (checked by the option schema).

    Raises:
        Fp8ConvError: A bad value, or both given.
    """
    from fp8conv.options import option

    save = option("save_outputs").check(save_outputs, "save_outputs")
    load = option("load_outputs").check(load_outputs, "load_outputs")
    return GoldenOutputs(save, load)  # type: ignore[arg-type]
