"""Saving a model atomically, with (sharded) external data staged beside it and moved in.

A model is written to a temporary name beside ``destination`` and renamed into place, so a reader sees
the old file or the new one, never a part. A model whose initializers exceed
:data:`EXTERNAL_DATA_THRESHOLD_BYTES` (1 GiB; or any model when asked) is saved with external data: the
``.onnx`` and its ``<name>.data`` shards are staged in a temporary directory beside ``destination`` and
moved in, the shards first and the ``.onnx`` last.

A model saved without external data holds every tensor in the file (:func:`self_contained_proto`), those
still read lazily from the source model's external data included: a written model never points at the
file it was converted from.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir

from fp8conv.converter.files import atomic_write

__all__ = [
    "EXTERNAL_DATA_THRESHOLD_BYTES",
    "needs_external_data",
    "remove_written_model",
    "save_model",
    "self_contained_proto",
    "write_atomically",
]

EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30
"""Models whose initializers exceed this are saved with (sharded) external data."""


def save_model(model: ir.Model, destination: str | os.PathLike, *, external_data: bool | None = None) -> int:
    """Save atomically: files are written in a temporary directory beside ``destination`` and moved in.

    Args:
        model: The model.
        destination: ``.onnx`` path; external data (if any) goes to ``<name>.data`` beside it, sharded.
        external_data: Force (True) or forbid (False) external data; None decides by size (1 GiB).

    Returns:
        Total bytes written.
    """
    destination = Path(destination)
    if external_data is None:
        external_data = needs_external_data(model)
    if not external_data:
        return write_atomically(self_contained_proto(model).SerializeToString(), destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        staged = staging / destination.name
        ir.save(
            model,
            staged,
            external_data=f"{destination.name}.data",
            size_threshold_bytes=1024,
            max_shard_size_bytes=EXTERNAL_DATA_THRESHOLD_BYTES,
        )
        written = 0
        extra = sorted(path for path in staging.iterdir() if path != staged)
        for path in [*extra, staged]:
            written += path.stat().st_size
            os.replace(path, destination.parent / path.name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def self_contained_proto(model: ir.Model) -> onnx.ModelProto:
    """``ir.to_proto(model)`` with the data of every external tensor inline (read from its file, as it is).

    A tensor still on the source model's external data serializes as a reference to that file (relative to
    the source's directory). Inline, its ``TensorProto`` is the one an in-memory tensor of the same bytes
    serializes to: ``raw_data`` set, no ``external_data`` entries and no ``data_location``. The model is not
    changed.
    """
    external = {
        (tensor.location, tensor.offset or 0, tensor.length): tensor
        for graph in (model.graph, *model.graph.subgraphs())
        for value in graph.initializers.values()
        if isinstance(tensor := value.const_value, ir.ExternalTensor)
    }
    proto = ir.to_proto(model)
    if not external:
        return proto
    for tensor_proto in _initializer_protos(proto.graph):
        if tensor_proto.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor_proto.external_data}
        length = entries.get("length")
        key = (entries.get("location"), int(entries.get("offset") or 0), None if length is None else int(length))
        tensor_proto.raw_data = external[key].tobytes()
        tensor_proto.ClearField("external_data")
        tensor_proto.ClearField("data_location")
    return proto


def _initializer_protos(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """The initializers of ``graph`` and of its subgraphs."""
    found = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                found += _initializer_protos(subgraph)
    return found


def remove_written_model(destination: str | os.PathLike) -> None:
    """Remove a model :func:`save_model` wrote, with its external data files (``<name>.data*`` beside it)."""
    destination = Path(destination)
    destination.unlink(missing_ok=True)
    for path in destination.parent.glob(f"{glob.escape(destination.name)}.data*"):
        path.unlink(missing_ok=True)


def needs_external_data(model: ir.Model) -> bool:
    """Whether the initializers exceed :data:`EXTERNAL_DATA_THRESHOLD_BYTES` (a protobuf holds 2 GiB at most)."""
    total = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    return total > EXTERNAL_DATA_THRESHOLD_BYTES


def write_atomically(data: bytes, destination: Path) -> int:
    """Write ``data`` to ``destination`` atomically (:func:`~fp8conv.converter.files.atomic_write`); its size."""
    with atomic_write(destination) as handle:
        handle.write(data)
    return len(data)
