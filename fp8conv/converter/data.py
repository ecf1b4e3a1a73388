"""Sample data for calibration, reference runs and verification.

A data source is either one ``.npz`` file whose keys are graph input names (first axis = samples), or
a directory of such ``.npz`` files (each a chunk of samples, read one at a time) or of ``<input>.npy``
files. An optional ``labels`` key holds task labels. Files are read with ``allow_pickle=False``; ``.npy``
files are memory-mapped, so a data set never has to fit in memory.

In Python, :func:`open_samples` also takes the samples themselves: ``{input name: array}`` (plus
``labels``), one array for a model with one input, or a reader of feeds: an object with ``get_next()``
returning ``{input name: array}`` and then None (onnxruntime's ``CalibrationDataReader``), or any iterable
or generator of such dicts. Each feed is a batch (first axis = samples). A reader is read once, into
memory, so that calibration and verification see the same samples; for data that does not fit, write
``.npz`` chunks into a directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fp8conv.errors import Fp8ConvError

__all__ = [
    "LABELS_KEY",
    "DataSource",
    "SampleSet",
    "load_samples",
    "open_samples",
    "refuse_constant_input_data",
    "save_arrays",
]

logger = logging.getLogger(__name__)

LABELS_KEY = "labels"

_Chunk = Callable[[], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class SampleSet:
    """Samples for a model's inputs, read lazily chunk by chunk.

    Attributes:
        source: Where the samples come from (for messages and reports).
        input_names: The graph inputs the samples feed.
        num_samples: Number of samples.
        has_labels: Whether a ``labels`` array is present.
    """

    source: str
    input_names: tuple[str, ...]
    num_samples: int
    has_labels: bool
    _chunks: tuple[_Chunk, ...] = dataclasses.field(repr=False)
    _sizes: tuple[int, ...] | None = dataclasses.field(default=None, repr=False)

    def batches(self, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Yield feeds of at most ``batch_size`` samples (a ``labels`` entry rides along when present)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for load_chunk in self._chunks:
            chunk = load_chunk()
            count = len(next(iter(chunk.values())))
            for start in range(0, count, batch_size):
                yield {name: np.asarray(array[start : start + batch_size]) for name, array in chunk.items()}

    def chunk_sizes(self) -> tuple[int, ...]:
        """The number of samples of each chunk, in order (the chunks are read when the set does not know them)."""
        if self._sizes is not None:
            return self._sizes
        return tuple(len(next(iter(load_chunk().values()))) for load_chunk in self._chunks)

    def select(self, start: int, stop: int) -> SampleSet:
        """The samples ``[start, stop)`` (positions in :meth:`batches` order) as a set another process can read.

        Each chunk overlapping the range becomes a window on it: a file's chunk is read again, by its absolute
        path, in the process that iterates the selection; samples in memory are sliced, and the slices travel
        with the selection when it is pickled. :meth:`batches` of the selection cuts each window from its own
        start, so a ``start`` at a batch boundary of this set (a multiple of ``batch_size`` inside its chunk)
        gives exactly the batches this set gives between ``start`` and ``stop``.

        Raises:
            ValueError: For a range outside ``[0, num_samples]`` or an empty one.
        """
        if not 0 <= start < stop <= self.num_samples:
            raise ValueError(f"select: [{start}, {stop}) is not a non-empty range of the {self.num_samples} samples")
        chunks: list[_Chunk] = []
        sizes: list[int] = []
        offset = 0
        for load_chunk, size in zip(self._chunks, self.chunk_sizes(), strict=True):
            low, high = max(start, offset) - offset, min(stop, offset + size) - offset
            offset += size
            if low >= high:
                continue
            chunks.append(_window(load_chunk, low, high, size))
            sizes.append(high - low)
        return SampleSet(
            f"{self.source} [{start}:{stop}]", self.input_names, stop - start, self.has_labels, (*chunks,), (*sizes,)
        )

    def labels(self) -> np.ndarray | None:
        """All labels, or None."""
        if not self.has_labels:
            return None
        return np.concatenate([np.asarray(chunk()[LABELS_KEY]) for chunk in self._chunks])


@dataclasses.dataclass(frozen=True)
class _Arrays:
    """A chunk of samples in memory (pickled with the set)."""

    feed: Mapping[str, np.ndarray]

    def __call__(self) -> Mapping[str, np.ndarray]:
        return self.feed


@dataclasses.dataclass(frozen=True)
class _NpzFile:
    """A chunk read from an ``.npz`` file: the model inputs and the labels."""

    path: Path
    names: tuple[str, ...]

    def __call__(self) -> Mapping[str, np.ndarray]:
        arrays = _open_npz(self.path)
        return {key: arrays[key] for key in (*self.names, LABELS_KEY) if key in arrays}


@dataclasses.dataclass(frozen=True)
class _NpyFiles:
    """A chunk of memory-mapped ``.npy`` files, one per input (and the labels)."""

    files: Mapping[str, Path]

    def __call__(self) -> Mapping[str, np.ndarray]:
        return {name: _open_npy(file) for name, file in self.files.items()}


@dataclasses.dataclass(frozen=True)
class _Window:
    """The samples ``[start, stop)`` of a file's chunk, read when called."""

    chunk: _NpzFile | _NpyFiles
    start: int
    stop: int

    def __call__(self) -> Mapping[str, np.ndarray]:
        return {name: array[self.start : self.stop] for name, array in self.chunk().items()}


def _window(load_chunk: _Chunk, start: int, stop: int, size: int) -> _Chunk:
    """Samples ``[start, stop)`` of a chunk of ``size`` samples, as a chunk that pickles (see :meth:`SampleSet.select`).

    Files are windows read again where the selection is iterated; anything else (samples in memory, generated
    ones) is sliced here.
    """
    if isinstance(load_chunk, (_NpzFile, _NpyFiles)):
        return load_chunk if (start, stop) == (0, size) else _Window(load_chunk, start, stop)
    if isinstance(load_chunk, _Window):
        return _Window(load_chunk.chunk, load_chunk.start + start, load_chunk.start + stop)
    return _Arrays({name: np.asarray(array[start:stop]) for name, array in load_chunk().items()})


DataSource = Any
"""What :func:`open_samples` accepts: a path, a :class:`SampleSet`, ``{input: array}``, an array, or feeds."""

_DATA_TYPES = (
    "a data file or directory, {input: array}, an array (one-input model), a SampleSet, or a reader / iterable of "
    "{input: array} feeds"
)


def open_samples(
    data: DataSource, input_names: Sequence[str], *, constants: Collection[str] = (), label: str = "data"
) -> SampleSet:
    """Samples for the model inputs ``input_names`` from any data source (see the module docstring).

    Args:
        data: A path (:func:`load_samples`), a :class:`SampleSet`, ``{input name: array}`` (optionally
            ``labels``), an array (a model with one input), or a reader of feeds (``get_next()`` or iteration).
        input_names: The graph inputs that need data.
        constants: Initializers the model also lists as graph inputs: data for them is refused.
        label: How messages name the data (``data``, ``verify_data``).

    Returns:
        The sample set.

    Raises:
        Fp8ConvError: Not a data source, missing inputs, data for one of ``constants``, inconsistent sample
            counts, an empty reader, a feed that is not ``{input name: array}``.
    """
    names = tuple(input_names)
    if isinstance(data, SampleSet):
        missing = [name for name in names if name not in data.input_names]
        if missing:
            raise Fp8ConvError(f"{data.source}: no data for model input(s) {', '.join(missing)}")
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_samples(data, names, constants=constants)
    if isinstance(data, Mapping) or _is_array(data):
        arrays = _as_feed(label, data, names)
        refuse_constant_input_data(label, arrays, constants)
        count = _check_chunk(label, arrays, names)
        source = f"{label} (arrays in memory)"
        return SampleSet(source, names, count, LABELS_KEY in arrays, (_Arrays(_inputs(arrays, names)),), (count,))
    feeds = _read_feeds(label, data, names)
    for feed in feeds:
        refuse_constant_input_data(label, feed, constants)
    if len({LABELS_KEY in feed for feed in feeds}) > 1:
        raise Fp8ConvError(f"{label}: some feeds have labels and some do not")
    counts = [_check_chunk(f"{label}: feed {index}", feed, names) for index, feed in enumerate(feeds)]
    chunks = tuple(_Arrays(_inputs(feed, names)) for feed in feeds)
    source = f"{label} ({len(feeds)} feeds in memory)"
    return SampleSet(source, names, sum(counts), LABELS_KEY in feeds[0], chunks, tuple(counts))


def _inputs(arrays: Mapping[str, np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays of the model inputs and the labels (the others were warned about)."""
    return {key: arrays[key] for key in (*names, LABELS_KEY) if key in arrays}


def _is_array(data: object) -> bool:
    return isinstance(data, np.ndarray) or (hasattr(data, "__array__") and hasattr(data, "shape"))


def _as_feed(label: str, data: object, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``{name: array}`` of one mapping, or of one array for a one-input model."""
    if isinstance(data, Mapping):
        feed = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise Fp8ConvError(f"{label}: keys must be input names (strings), got {key!r}")
            feed[key] = _as_array(f"{label}[{key!r}]", value)
        return feed
    if _is_array(data):
        if len(names) != 1:
            raise Fp8ConvError(
                f"{label}: a single array can only feed a model with one input, not {len(names)} "
                f"({', '.join(names)}): give {{input name: array}}"
            )
        return {names[0]: _as_array(label, data)}
    raise Fp8ConvError(f"{label} must be {_DATA_TYPES}, got {type(data).__name__}")


def _as_array(label: str, value: object) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise Fp8ConvError(f"{label}: not an array: {error}") from error
    if array.dtype == object:
        raise Fp8ConvError(f"{label}: not a numeric array (dtype object)")
    return array


def _read_feeds(label: str, data: object, names: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """Every feed of a reader (``get_next()`` until None) or an iterable, each as ``{name: array}``."""
    get_next = getattr(data, "get_next", None)
    if callable(get_next):
        items: Iterable[object] = iter(get_next, None)
    elif isinstance(data, Iterable) and not isinstance(data, (bytes, bytearray)):
        items = data
    else:
        raise Fp8ConvError(f"{label} must be {_DATA_TYPES}, got {type(data).__name__}")
    feeds = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) and not _is_array(item):
            raise Fp8ConvError(f"{label}: feed {index} is a {type(item).__name__}, not {{input name: array}}")
        feeds.append(_as_feed(f"{label}: feed {index}", item, names))
    if not feeds:
        raise Fp8ConvError(f"{label}: the reader gave no feeds")
    return feeds


def load_samples(path: str | Path, input_names: Sequence[str], *, constants: Collection[str] = ()) -> SampleSet:
    """Open a data file or directory for the given graph inputs.

    Args:
        path: ``.npz`` file, or directory of ``.npz`` chunks or ``<input>.npy`` files.
        input_names: The graph inputs that need data.
        constants: Initializers the model also listed as graph inputs, which fp8conv treats as the
            constants they hold (:func:`fp8conv.converter.loading.load`). Data for one of them is
            refused rather than silently ignored: the conversion uses the initializer's values and the
            converted model has no such input, so no result could honour it.

    Returns:
        The sample set.

    Raises:
        Fp8ConvError: Missing file, missing input, data for one of ``constants``, inconsistent sample
            counts, pickled data.
    """
    path = Path(path)
    if not path.exists():
        raise Fp8ConvError(f"{path}: no such data file or directory")
    names = tuple(input_names)
    if path.is_dir():
        npz_files = sorted(path.glob("*.npz"))
        if npz_files:
            return _from_npz_files(str(path), npz_files, names, constants)
        refuse_constant_input_data(str(path), [file.stem for file in path.glob("*.npy")], constants)
        return _from_npy_directory(path, names)
    if path.suffix == ".npy":
        if len(names) != 1:
            raise Fp8ConvError(f"{path}: a single .npy file can only feed a model with one input, not {names}")
        array = _open_npy(path)
        chunk = _NpyFiles({names[0]: Path(os.path.abspath(path))})
        return SampleSet(str(path), names, len(array), False, (chunk,), (len(array),))
    return _from_npz_files(str(path), [path], names, constants)


def refuse_constant_input_data(label: str, arrays: Iterable[str], constants: Collection[str]) -> None:
    """Refuse data arrays named like one of ``constants`` (see :func:`load_samples`).

    Raises:
        Fp8ConvError: Naming the first such array.
    """
    fed = sorted(set(arrays) & set(constants))
    if fed:
        raise Fp8ConvError(
            f"{label}: array {fed[0]!r} would override the initializer {fed[0]!r}, which the model also lists as a "
            "graph input; fp8conv converts such inputs as the constants they hold, so data for them is refused: "
            "remove the array"
        )


_UNREADABLE = (OSError, EOFError, zipfile.BadZipFile, zlib.error)
"""What NumPy raises for a file that is not the archive or array it claims to be (truncated, not a zip)."""


def _open_npz(path: Path) -> Mapping[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise Fp8ConvError(f"{path}: cannot be read without pickle (object arrays are refused): {error}") from error
    except _UNREADABLE as error:
        raise Fp8ConvError(f"{path}: not a readable .npz file: {error}") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise Fp8ConvError(f"{path}: not an .npz archive but a single .npy array (name the file .npy)")
    try:
        with loaded as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:
        raise Fp8ConvError(f"{path}: cannot be read without pickle (object arrays are refused): {error}") from error
    except _UNREADABLE as error:
        raise Fp8ConvError(f"{path}: not a readable .npz file: {error}") from error


def _open_npy(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as error:
        raise Fp8ConvError(f"{path}: cannot be read without pickle (object arrays are refused): {error}") from error
    except _UNREADABLE as error:
        raise Fp8ConvError(f"{path}: not a readable .npy file: {error}") from error
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise Fp8ConvError(f"{path}: not an .npy array but an .npz archive (name the file .npz)")
    return loaded


def _check_chunk(label: str, arrays: Mapping[str, np.ndarray], names: tuple[str, ...]) -> int:
    missing = [name for name in names if name not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise Fp8ConvError(f"{label}: no data for model input(s) {', '.join(missing)} (found: {found})")
    counts = {
        name: len(np.asarray(arrays[name])) if np.ndim(arrays[name]) else 0
        for name in (*names, LABELS_KEY)
        if name in arrays
    }
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise Fp8ConvError(
            f"{label}: inputs must share the first (sample) axis; sample counts: "
            + ", ".join(f"{name}={count}" for name, count in counts.items())
        )
    if LABELS_KEY in arrays:
        labels = arrays[LABELS_KEY]
        if labels.dtype.kind not in "biuf" or labels.ndim not in (1, 2):
            raise Fp8ConvError(
                f"{label}: labels must be class indices [N] or one-hot/scores [N, C] of numbers, "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
    extra = sorted(set(arrays) - set(names) - {LABELS_KEY})
    if extra:
        logger.warning("%s: ignoring arrays that are not model inputs: %s", label, ", ".join(extra))
    return next(iter(counts.values()))


def _from_npz_files(
    label: str, files: Sequence[Path], names: tuple[str, ...], constants: Collection[str] = ()
) -> SampleSet:
    sizes: list[int] = []
    has_labels: set[bool] = set()
    for file in files:
        arrays = _open_npz(file)
        refuse_constant_input_data(str(file), arrays, constants)
        sizes.append(_check_chunk(str(file), arrays, names))
        has_labels.add(LABELS_KEY in arrays)
    if len(has_labels) > 1:
        raise Fp8ConvError(f"{label}: some .npz chunks have labels and some do not")
    chunks = tuple(_NpzFile(Path(os.path.abspath(file)), names) for file in files)
    return SampleSet(label, names, sum(sizes), has_labels == {True}, chunks, tuple(sizes))


def _from_npy_directory(path: Path, names: tuple[str, ...]) -> SampleSet:
    files = {name: path / f"{name}.npy" for name in names}
    labels_file = path / f"{LABELS_KEY}.npy"
    missing = [name for name, file in files.items() if not file.is_file()]
    if missing:
        raise Fp8ConvError(f"{path}: no .npz files and no <input>.npy for model input(s) {', '.join(missing)}")
    if labels_file.is_file():
        files[LABELS_KEY] = labels_file
    arrays = {name: _open_npy(file) for name, file in files.items()}
    count = _check_chunk(str(path), arrays, names)
    absolute = {name: Path(os.path.abspath(file)) for name, file in files.items()}
    return SampleSet(str(path), names, count, LABELS_KEY in files, (_NpyFiles(absolute),), (count,))


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays to an ``.npz`` file atomically (a temporary file renamed into place)."""
    from fp8conv.converter.files import atomic_write

    with atomic_write(Path(path)) as handle:
        np.savez(handle, **{name: np.asarray(array) for name, array in arrays.items()})
