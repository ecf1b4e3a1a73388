"""The graph onnxruntime will run: a CPU session that saves its optimized model, parsed without weights.

The model is loaded into an ``onnxruntime.InferenceSession`` (CPU EP) at the requested optimization level
with ``SessionOptions.optimized_model_filepath`` pointing into a temporary directory, so that onnxruntime
writes the graph it will actually execute. The optimized model is always saved in ONNX format, with
initializers of 1 KiB and more in an external data file, and is parsed *without* that data: no weight is
ever read into Python (onnxruntime loads them anyway). The caller removes the temporary directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import onnx

from fp8conv.errors import Fp8ConvError, ModelLoadError
from fp8conv.runtime.ort_backend import create_session, graph_optimization_level

__all__ = ["optimized_graph", "prepare_model"]

logger = logging.getLogger(__name__)

# Session options this module sets itself; a caller's values for them are overridden.
_OPTIMIZED_DATA_FILE = "optimized.onnx.data"
_FORCED_CONFIG = {
    "session.save_model_format": "ONNX",
    "session.optimized_model_external_initializers_file_name": _OPTIMIZED_DATA_FILE,
    "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
}


def prepare_model(model: str | os.PathLike | onnx.ModelProto, tmp_dir: Path) -> tuple[onnx.ModelProto, str | bytes]:
    """Returns the emitted model's proto (without external data) and what to hand onnxruntime."""
    if isinstance(model, onnx.ModelProto):
        try:
            return model, model.SerializeToString()
        except ValueError:  # protobuf refuses messages over 2 GiB
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            path = tmp_dir / "emitted.onnx"
            onnx.save_model(copy, path, save_as_external_data=True, location="emitted.onnx.data")
            return model, str(path)
    path = Path(os.fspath(model))
    try:
        proto = onnx.load_model(path, load_external_data=False)
    except Exception as exc:  # OSError, protobuf DecodeError, onnx's own errors
        raise ModelLoadError(f"{path}: cannot read the model for the kernel audit: {exc}") from exc
    return proto, str(path)


def optimized_graph(source: str | bytes, level: str, config: Mapping[str, str], tmp_dir: Path) -> onnx.ModelProto:
    """Creates a CPU session that saves its optimized graph, and parses that graph without weights."""
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
                source,
                optimization_level=graph_optimization_level(level),
                config={**entries, **forced},
                optimized_model_path=out_path,
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
            return onnx.load_model(out_path, load_external_data=False)
        except Exception as exc:
            first_error = first_error or exc
            logger.debug("kernel audit: cannot parse the optimized model (external=%s): %s", external, exc)
    raise ModelLoadError(f"onnxruntime cannot optimize the model for the kernel audit: {first_error}") from first_error
