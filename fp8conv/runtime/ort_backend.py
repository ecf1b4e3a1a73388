"""onnxruntime sessions from onnx_ir models: options, CPU provider, input/output metadata.

Thin helpers shared by the reference runner, verification and the kernel audit: every session fp8conv
opens is built here, from an onnx_ir model's serialized bytes (models up to protobuf's 2 GB limit) or a
file, on the CPU execution provider unless a caller names others (verification's candidate runs, with
``--providers``; :func:`check_providers` checks the names), logging at fp8conv's own verbosity, with an explicit graph
optimization level, optional ``disabled_optimizers`` (names of graph transformers and
rewrite rules, passed to ``InferenceSession``) and session config entries
(``SessionOptions.add_session_config_entry``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from fp8conv.errors import Fp8ConvError

__all__ = [
    "CPU_PROVIDER",
    "OPTIMIZATION_LEVELS",
    "TensorInfo",
    "check_providers",
    "create_session",
    "external_data_folder",
    "graph_optimization_level",
    "optimization_level",
    "ort_log_severity",
    "session_inputs",
    "session_outputs",
]

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"

OPTIMIZATION_LEVELS: Mapping[str, str] = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
"""The ``optimization_level`` names fp8conv accepts, and the onnxruntime level each selects, lowest first."""

_LEVEL_ALIASES = {
    "": "all",
    "none": "disable",
    "disabled": "disable",
    "disable_all": "disable",
    "enable_basic": "basic",
    "enable_extended": "extended",
    "enable_layout": "layout",
    "enable_all": "all",
}

_ORT_TYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A session input or output as onnxruntime reports it.

    Attributes:
        name: Tensor name.
        dtype: NumPy dtype, or None for types NumPy cannot hold (bfloat16, float8, strings, sequences).
        onnx_type: onnxruntime's type string, e.g. ``tensor(float)``.
        shape: Dimensions: ints for static ones, strings or None for symbolic ones.
    """

    name: str
    dtype: np.dtype | None
    onnx_type: str
    shape: tuple[int | str | None, ...]

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)


def ort_log_severity() -> int:
    """Onnxruntime's log severity for fp8conv's own verbosity (the ``fp8conv`` logger's level).

    The default (warnings and above) shows onnxruntime's errors only (severity 3), ``-v`` (info) its
    warnings too (2), ``-vv`` (debug) its info messages (1), ``-q`` (errors only) nothing below fatal (4):
    an onnxruntime error fails the call that fp8conv reports as its one error line. onnxruntime otherwise
    prints multi-line warnings on every session it opens (one per initializer that is also a graph input,
    for instance), which fp8conv reports itself once where they matter.
    """
    level = logging.getLogger("fp8conv").getEffectiveLevel()
    if level <= logging.DEBUG:
        return 1
    if level <= logging.INFO:
        return 2
    return 3 if level <= logging.WARNING else 4


def optimization_level(level: str) -> str:
    """The key of :data:`OPTIMIZATION_LEVELS` that ``level`` names: the one parser of optimization levels.

    Accepted, in any case and with surrounding spaces: the keys, onnxruntime's names (``ORT_ENABLE_EXTENDED``,
    ``ORT_DISABLE_ALL``; the ``ORT_`` prefix optional), ``disabled`` and ``none`` for ``disable``, and the empty
    string for the default, ``all``.

    Raises:
        Fp8ConvError: For any other value; the message lists the keys.
    """
    key = str(level).strip().lower().removeprefix("ort_")
    key = _LEVEL_ALIASES.get(key, key)
    if key not in OPTIMIZATION_LEVELS:
        raise Fp8ConvError(f"unknown optimization level {level!r}; expected one of {', '.join(OPTIMIZATION_LEVELS)}")
    return key


def graph_optimization_level(level: str) -> ort.GraphOptimizationLevel:
    """The onnxruntime ``GraphOptimizationLevel`` for ``level`` (anything :func:`optimization_level` accepts)."""
    return getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization_level(level)])


_EXTERNAL_FOLDER = "session.model_external_initializers_file_folder_path"


def external_data_folder(model: ir.Model) -> str | None:
    """The directory the model's external data is read from (None: no external data, or several directories)."""
    folders = {
        os.fspath(tensor.base_dir)
        for value in model.graph.initializers.values()
        if isinstance(tensor := value.const_value, ir.ExternalTensor) and tensor.base_dir
    }
    return folders.pop() if len(folders) == 1 else None


def check_providers(names: Iterable[str] | None) -> tuple[str, ...]:
    """The execution providers ``names`` asks for, each available in this onnxruntime (None: the CPU provider).

    Raises:
        Fp8ConvError: A name that is not among ``onnxruntime.get_available_providers()`` (unknown, or not in
            this build), one line listing those.
    """
    wanted = tuple(names) if names is not None else (CPU_PROVIDER,)
    available = ort.get_available_providers()
    missing = [name for name in wanted if name not in available]
    if missing:
        known = "unknown to onnxruntime" if missing[0] not in ort.get_all_providers() else "not available here"
        raise Fp8ConvError(
            f"--providers: {missing[0]} is {known}; onnxruntime {ort.__version__} has {', '.join(available)}"
        )
    return wanted


def create_session(
    model: ir.Model | bytes | str | os.PathLike,
    *,
    optimization_level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    disabled_optimizers: Iterable[str] = (),
    config: Mapping[str, str] | None = None,
    intra_op_threads: int = 0,
    optimized_model_path: str | os.PathLike | None = None,
    external_data_dir: str | os.PathLike | None = None,
    providers: Iterable[str] = (CPU_PROVIDER,),
) -> ort.InferenceSession:
    """Create an ``InferenceSession`` (CPU by default): the one place fp8conv opens onnxruntime sessions.

    The session logs at :func:`ort_log_severity`.

    Args:
        model: An onnx_ir model (serialized with ``ir.to_proto``; the caller's object is not changed; its
            external data is read from the directory it was loaded from), serialized model bytes or the
            path of an ``.onnx`` file (external data beside it).
        optimization_level: onnxruntime graph optimization level.
        disabled_optimizers: Graph transformer or rewrite-rule names onnxruntime must not run
            (e.g. ``ReluQuantFusion``).
        config: Session config entries (e.g. ``{"session.disable_quant_qdq": "1"}``).
        intra_op_threads: Threads one run may use (0: onnxruntime's default, one per physical core).
        optimized_model_path: Where onnxruntime writes the optimized graph, if anywhere.
        external_data_dir: The directory the external data of a model given as bytes is in (a file's
            external data is found beside the file, an onnx_ir model's where it was loaded from).
        providers: Execution providers in priority order (checked by :func:`check_providers`; onnxruntime
            runs on the CPU provider what the others do not take).

    Returns:
        The session.

    Raises:
        Fp8ConvError: onnxruntime rejects the model; the message is onnxruntime's first line.
    """
    disabled = sorted(disabled_optimizers)
    providers = list(providers)
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization_level
    options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = ort_log_severity()
    if optimized_model_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_model_path)
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if external_data_dir is not None:
        options.add_session_config_entry(_EXTERNAL_FOLDER, os.fspath(external_data_dir))
    if isinstance(model, ir.Model):
        source: bytes | str = ir.to_proto(model).SerializeToString()
        folder = external_data_folder(model)
        if folder is not None and _EXTERNAL_FOLDER not in (config or {}) and external_data_dir is None:
            # From bytes, onnxruntime would look for the external data in the working directory.
            options.add_session_config_entry(_EXTERNAL_FOLDER, folder)
    else:
        source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        session = ort.InferenceSession(source, options, providers=providers, disabled_optimizers=disabled)
    except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Fp8ConvError(f"onnxruntime cannot load the model: {first_line}") from error
    logger.debug(
        "session: level %s, disabled %s, config %s, providers %s", optimization_level, disabled, config, providers
    )
    return session


def _info(arg: ort.NodeArg) -> TensorInfo:
    shape = tuple(arg.shape) if isinstance(arg.shape, (list, tuple)) else ()
    return TensorInfo(name=arg.name, dtype=_ORT_TYPES.get(arg.type), onnx_type=arg.type, shape=shape)


def session_inputs(session: ort.InferenceSession) -> list[TensorInfo]:
    """The session's inputs (initializers excluded), in order."""
    return [_info(arg) for arg in session.get_inputs()]


def session_outputs(session: ort.InferenceSession) -> list[TensorInfo]:
    """The session's outputs, in order."""
    return [_info(arg) for arg in session.get_outputs()]
