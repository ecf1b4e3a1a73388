"""The graph onnxruntime will run: a CPU session that saves its optimized model, loaded without weights.

The model is loaded into an ``onnxruntime.InferenceSession`` (CPU EP) at the requested optimization level
with ``SessionOptions.optimized_model_filepath`` pointing into a temporary directory, so that onnxruntime
writes the graph it will actually execute. The optimized model is always saved in ONNX format, with
initializers of 1 KiB and more in an external data file, and is loaded as an ``onnx_ir`` model *without*
that data (``ir.load`` leaves external tensors unread): no weight is ever read into Python (onnxruntime
loads them anyway). The emitted model is read the same way. The caller removes the temporary directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import onnx
import onnx_ir as ir

from fp8conv.errors import Fp8ConvError, ModelLoadError
from fp8conv.runtime.ort_backend import create_session, external_data_folder, graph_optimization_level

__all__ = ["OrtSource", "optimized_graph", "prepare_model"]

logger = logging.getLogger(__name__)

# Session options this module sets itself; a caller's values for them are overridden.
_OPTIMIZED_DATA_FILE = "optimized.onnx.data"
_FORCED_CONFIG = {
    "session.save_model_format": "ONNX",
    "session.optimized_model_external_initializers_file_name": _OPTIMIZED_DATA_FILE,
    "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
}


@dataclasses.dataclass(frozen=True)
class OrtSource:
    """What onnxruntime loads: serialized bytes (their external data in ``external_data_dir``) or a path."""

    model: str | bytes = dataclasses.field(repr=False)
    external_data_dir: str | None = None


def prepare_model(
    model: str | os.PathLike | onnx.ModelProto | ir.Model, tmp_dir: Path, serialized: bytes | None = None
) -> tuple[ir.Model, OrtSource]:
    """The emitted model as onnx_ir (a file's external data left unread), and what to hand onnxruntime.

    Args:
        model: A path, a ``ModelProto`` or an onnx_ir model.
        tmp_dir: Where a model too large for one protobuf (2 GiB) is saved with external data.
        serialized: The model's bytes when the caller has them (a ``ModelProto`` or onnx_ir model); they
            are what onnxruntime loads, so the model is not serialized again.

    Raises:
        ModelLoadError: The file cannot be read, or the model cannot be read as onnx_ir.
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(os.fspath(model))
        try:
            return ir.load(path), OrtSource(str(path))
        except Exception as exc:  # OSError, protobuf DecodeError, onnx's and onnx_ir's own errors
            raise ModelLoadError(f"{path}: cannot read the model for the kernel audit: {exc}") from exc
    try:
        emitted = model if isinstance(model, ir.Model) else ir.from_proto(model)
    except Exception as exc:  # onnx_ir refuses a malformed graph
        raise ModelLoadError(f"cannot read the model for the kernel audit: {exc}") from exc
    if serialized is not None:
        return emitted, OrtSource(serialized)
    proto = model if isinstance(model, onnx.ModelProto) else ir.to_proto(emitted)
    try:
        return emitted, OrtSource(proto.SerializeToString(), external_data_folder(emitted))
    except ValueError:  # protobuf refuses messages over 2 GiB
        path = tmp_dir / "emitted.onnx"
        ir.save(emitted, path, external_data="emitted.onnx.data")
        return emitted, OrtSource(str(path))


def optimized_graph(source: OrtSource, level: str, config: Mapping[str, str], tmp_dir: Path) -> ir.Model:
    """Creates a CPU session that saves its optimized graph, and loads that graph without weights."""
    out_dir = tmp_dir / "optimized"
    out_dir.mkdir()
    out_path = out_dir / "optimized.onnx"
    attempts = (True, False)  # external initializers first; inline if onnxruntime cannot write them
    first_error: BaseException | None = None
    entries: dict[str, str] = {}
    for key, value in config.items():
        if key in _FORCED_CONFIG and value != _FORCED_CONFIG[key]:
            logger.warning("kernel audit: ignoring session config %s=%s (the audit sets it)", key, value)
            continue
        entries[key] = str(value)
    for external in attempts:
        forced = {k: v for k, v in _FORCED_CONFIG.items() if external or k == "session.save_model_format"}
        try:
            create_session(
                source.model,
                optimization_level=graph_optimization_level(level),
                config={**entries, **forced},
                optimized_model_path=out_path,
                external_data_dir=source.external_data_dir,
            )
        except Fp8ConvError as exc:
            first_error = first_error or exc.__cause__ or exc
            logger.debug("kernel audit: session creation failed (external=%s): %s", external, exc)
            for leftover in out_dir.iterdir():
                leftover.unlink()
            continue
        if not out_path.exists():
            first_error = first_error or Fp8ConvError("onnxruntime did not write the optimized model")
            continue
        try:
            return ir.load(out_path)
        except Exception as exc:
            first_error = first_error or exc
            logger.debug("kernel audit: cannot parse the optimized model (external=%s): %s", external, exc)
    raise ModelLoadError(f"onnxruntime cannot optimize the model for the kernel audit: {first_error}") from first_error
