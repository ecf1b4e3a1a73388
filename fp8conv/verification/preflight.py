"""Inputs checked before anything is written: a bad input never leaves a model or report behind.

The CLI calls these before converting (``fp8conv MODEL --to …``) or verifying (``fp8conv verify``). What
they check, and what is left to the steps that follow (which also run before anything is written):

* **output paths**: the model file, the report directory and the golden-outputs file can be created (no
  file where a directory must go, a writable directory);
* **verification data** (``--verify-data``, or ``--data`` when it is verified on): present for every model
  input, labels as many as the samples, and the first samples of the dtype and shape the model wants
  (every sample is checked again when it is run); random inputs (``--random-inputs``) can be generated;
* **gates**: per-output thresholds name outputs the model has; rate gates (top-1, accuracy) apply to
  outputs that can be classifier outputs (``[N, C]``, ``C >= 2`` where static);
* the config file and the options are checked when they are read (:func:`~fp8conv.config.load_config_file`,
  :class:`~fp8conv.config.ConversionConfig`); the calibration data when the conversion opens it, before it
  writes.

The model's interface is read without its external data (from a file, or from the protobuf
:func:`fp8conv.converter.loading.parse_model` parsed, which the conversion then loads without reading the
file again); a model that cannot be read is left to the loader, whose error is the precise one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from fp8conv.converter.data import load_samples
from fp8conv.converter.files import check_writable
from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.ort_backend import TensorInfo
from fp8conv.verification.gates import Gates

__all__ = [
    "ModelInterface",
    "check_before_writing",
    "check_data",
    "check_gates",
    "check_random_inputs",
    "model_interface",
]

logger = logging.getLogger(__name__)

_RATE_GATES = ("max_top1_drop", "max_accuracy_drop")


@dataclasses.dataclass(frozen=True)
class ModelInterface:
    """A model's graph inputs (initializers excluded) and outputs, as onnxruntime would report them.

    Attributes:
        inputs: The inputs.
        outputs: The outputs.
        unranked: Names of the tensors whose shape the model does not state (only their dtype is known).
    """

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    unranked: frozenset[str] = frozenset()


def model_interface(model: str | os.PathLike | onnx.ModelProto) -> ModelInterface | None:
    """The inputs and outputs of the model (a file, or its parsed protobuf), or None when the file cannot be read.

    The loader will say why a file cannot be read.
    """
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        try:
            proto = onnx.load(os.fspath(model), load_external_data=False)
        except Exception as error:  # any unreadable file: the loader reports it precisely
            logger.debug("%s: interface not read (%s)", model, error)
            return None
    constants = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in constants]
    values = [*inputs, *proto.graph.output]
    unranked = frozenset(
        v.name for v in values if not v.type.HasField("tensor_type") or not v.type.tensor_type.HasField("shape")
    )
    return ModelInterface(tuple(map(_info, inputs)), tuple(map(_info, proto.graph.output)), unranked)


def check_data(path: str | os.PathLike, interface: ModelInterface) -> None:
    """Open verification data for the model's inputs and check its first samples' dtype and shape.

    Raises:
        Fp8ConvError: Missing file or input, labels or inputs with different sample counts, a dtype or
            shape the model does not take (the message names the file).
    """
    from fp8conv.runtime.reference import check_feed

    samples = load_samples(path, [info.name for info in interface.inputs])
    first = next(samples.batches(1), None)
    if first is None:
        raise Fp8ConvError(f"{path}: no samples")
    try:
        for info in interface.inputs:
            if info.name in interface.unranked:
                info = dataclasses.replace(info, shape=tuple(None for _ in range(first[info.name].ndim)))
            check_feed(info, first[info.name])
    except Fp8ConvError as error:
        raise Fp8ConvError(f"{path}: {error}") from error


def check_random_inputs(count: int, interface: ModelInterface, random: Mapping[str, Any] | None = None) -> None:
    """Raise when random inputs cannot be generated for the model (symbolic dimensions, odd types, bad shapes)."""
    from fp8conv.verification.inputs import random_options, random_samples

    random_samples(list(interface.inputs), count, **random_options(**(random or {})))


def check_gates(gates: Gates, interface: ModelInterface) -> None:
    """Per-output thresholds must name outputs the model has; rate gates outputs that can be classifiers.

    Raises:
        Fp8ConvError: As :func:`~fp8conv.verification.gates.evaluate_gates` would after the run.
    """
    names = {info.name for info in interface.outputs}
    unknown = sorted(gates.per_output_names() - names)
    if unknown:
        raise Fp8ConvError(
            f"gates name output(s) {', '.join(unknown)} that the models do not have; "
            f"outputs: {', '.join(sorted(names))}"
        )
    by_name = {info.name: info for info in interface.outputs}
    for gate in _RATE_GATES:
        for output, setting in gates.settings.get(gate, {}).items():
            if output is None or setting.value is None or output in interface.unranked:
                continue
            shape = by_name[output].shape
            if not _may_be_classifier(shape):
                raise Fp8ConvError(
                    f"gate {gate} is set for output {output!r}, which is not a classifier output ([N, C] with "
                    f"C >= 2; its shape is {list(shape)})"
                )


def _may_be_classifier(shape: Sequence[int | str | None]) -> bool:
    if len(shape) != 2:
        return False
    classes = shape[1]
    return not isinstance(classes, int) or classes >= 2


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    """A graph input/output as :class:`TensorInfo` (the type string as onnxruntime writes it)."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorInfo(value.name, None, f"{kind or 'unknown'}", ())
    tensor = value.type.tensor_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    except (KeyError, ValueError):
        dtype = None
    known = tensor.elem_type in onnx.TensorProto.DataType.values()  # the loader refuses other types, naming them
    type_name = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if known else "undefined"
    if dtype is not None and dtype.kind == "V":  # bfloat16, float8: NumPy has no such dtype
        dtype = None
    if dtype is not None and dtype.kind not in "fiub":  # strings, complex: nothing fp8conv feeds
        dtype = None
    shape = (
        tuple(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in tensor.shape.dim)
        if tensor.HasField("shape")
        else ()
    )
    return TensorInfo(value.name, dtype, f"tensor({type_name})", shape)


def check_before_writing(
    model: str | os.PathLike | onnx.ModelProto | None,
    *,
    output: Path | None = None,
    report_dir: Path | None = None,
    verify_data: str | os.PathLike | None = None,
    random_inputs: int | None = None,
    random: Mapping[str, Any] | None = None,
    gates: Gates | None = None,
    golden_output: Path | None = None,
) -> None:
    """Every check of this module that applies (see the module docstring), in the order a user fixes them.

    Args:
        model: The source model (its inputs and outputs are those of the converted model too): its file,
            its parsed protobuf, or None when it could not be parsed (the checks that need it are left out).
        output: The model file to be written, if any.
        report_dir: The report directory to be written, if any.
        verify_data: The data verification will run on, if any.
        random_inputs: The number of random inputs verification will run on, if any.
        random: ``seed``, ``val_range`` and ``input_shapes`` of the random inputs
            (:func:`~fp8conv.verification.inputs.random_options`).
        gates: The gates verification will check, if any.
        golden_output: The golden-outputs file (``--save-outputs``) to be written, if any.

    Raises:
        Fp8ConvError: The first problem found.
    """
    if output is not None:
        check_writable(output, directory=False, what="model")
    if report_dir is not None:
        check_writable(report_dir, directory=True, what="reports")
    if golden_output is not None:
        check_writable(golden_output, directory=False, what="golden outputs")
    interface = model_interface(model) if model is not None else None
    if interface is None:
        return
    if verify_data is not None:
        check_data(verify_data, interface)
    if random_inputs is not None:
        check_random_inputs(random_inputs, interface, random)
    if gates is not None:
        check_gates(gates, interface)
