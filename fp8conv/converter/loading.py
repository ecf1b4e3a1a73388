"""Read a model from any source users have, validate it, and bring it to canonical form.

Accepted inputs: a path to an ``.onnx`` file (with or without external data), an ``onnx.ModelProto``,
an ``onnx_ir.Model`` or an ``onnx_graphsurgeon.Graph`` (with the ``gs`` extra installed). Files are
parsed without their external data, which stays on disk (memory-mapped by onnx_ir) until a pass reads
it. The caller's object or file is never modified. A file is read once (:func:`parse_model`): the bytes
parsed are the bytes ``onnx.checker`` checks (the checker is given the path only when the model has
external data, which it resolves against the model's directory).

Nodes that no graph output depends on are removed (the converted model would not have them either).

Every problem is an :class:`~fp8conv.errors.Fp8ConvError` with a one-line message that names the file,
node or tensor: not an ONNX file, truncated protobuf, missing or unsafe external data, a graph that fails
``onnx.checker``, an unsupported opset, a cycle.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError, Message
from onnx_ir.passes.common import RemoveUnusedNodesPass

from fp8conv.errors import ModelLoadError, UnsupportedModelError
from fp8conv.passes.canonical import QuantPoint, collect_quant_points
from fp8conv.passes.node_names import UniqueNodeNamesPass

if TYPE_CHECKING:
    import onnx_graphsurgeon as gs

__all__ = ["LoadedModel", "ModelInput", "ParsedModel", "SourceInfo", "load", "parse_model", "read_model"]

logger = logging.getLogger(__name__)

ModelInput = Union[str, os.PathLike, onnx.ModelProto, ir.Model, "gs.Graph"]
"""Anything :func:`load` accepts."""

MIN_OPSET = 13
"""Oldest ai.onnx opset accepted (per-axis Q/DQ appeared in 13; FP8 types need 19)."""


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Facts about the model as it was given.

    Attributes:
        path: The file, when the model came from one.
        opset: The ai.onnx opset imported by the model.
        ir_version: The ONNX IR version.
        producer: ``producer_name producer_version`` as the file states it.
        size_bytes: Size of the ``.onnx`` file plus its external data files (serialized size otherwise).
        external_data: External data files, relative to the model's directory.
    """

    path: Path | None
    opset: int
    ir_version: int
    producer: str
    size_bytes: int
    external_data: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ParsedModel:
    """A model read and parsed, not yet validated: the first step of :func:`read_model`.

    :func:`parse_model` gives it; :func:`read_model` and :func:`load` accept it in place of the input, so a
    caller that looks at the parsed protobuf first (``fp8conv.verification.preflight`` reads the model's
    interface before anything is converted) does not read or parse the file again.

    Attributes:
        proto: The parsed model; a file's external data is not loaded.
        path: The file, when the model came from one.
        serialized: The file's bytes when they are the binary protobuf ``proto`` was parsed from (the checker
            is run on them instead of reading the file again); None otherwise.
    """

    proto: onnx.ModelProto
    path: Path | None = None
    serialized: bytes | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class LoadedModel:
    """A model in canonical form and what was found in it.

    Attributes:
        model: The canonical model (onnx_ir); external data is still lazy.
        source: Facts about the input.
        dialects: Names of the FP8 dialects found (``qdq``, ``dq-weight``, ``trt``, ``qonnx``, ``cast``).
        quant_points: Every FP8 quantization point, in graph order.
        integer_qdq: Names of integer QuantizeLinear/DequantizeLinear nodes kept as they are.
        constant_inputs: Initializers the file also listed as graph inputs (Brevitas, old exporters),
            in input order; the canonical model holds them as plain initializers (see :func:`load`).
    """

    model: ir.Model
    source: SourceInfo
    dialects: tuple[str, ...]
    quant_points: list[QuantPoint]
    integer_qdq: tuple[str, ...]
    constant_inputs: tuple[str, ...] = ()


def load(model: ModelInput | ParsedModel) -> LoadedModel:
    """Load, validate and normalize a model to canonical form.

    Initializers that the model also lists as graph inputs (which ONNX lets a caller override) are
    treated as the constants they hold: the canonical model, and so the converted one, has them as
    plain initializers, which lets the readers see weights and scales and onnxruntime fold them. This
    is logged once per process and file as one warning naming how many. Data cannot override them
    then: sample files that feed one are refused (see :func:`fp8conv.converter.data.load_samples`).

    Args:
        model: A path, ``onnx.ModelProto``, ``onnx_ir.Model``, ``onnx_graphsurgeon.Graph``, or the
            :class:`ParsedModel` that :func:`parse_model` made of one.

    Returns:
        The canonical model with its quantization points.

    Raises:
        ModelLoadError: The input cannot be read or is not a valid ONNX model.
        UnsupportedModelError: The model uses something fp8conv does not support.
        Fp8ConvError: A quantizer is malformed (zero point not 0, bad scale, scale shape).
    """
    ir_model, source = read_model(model)
    constant_inputs = _initializer_inputs_as_constants(ir_model, _label(source))
    from fp8conv.passes.normalize import normalize_fp8

    # Nodes no graph output depends on are dropped, as the written model drops them: the readers see only
    # what computes the outputs (a dead copy of a node is no second reader), and a layer is planned and
    # reported only when it computes something. Again after the readers, for anything they left unread.
    RemoveUnusedNodesPass()(ir_model)
    normalized = normalize_fp8(ir_model)
    RemoveUnusedNodesPass()(normalized.model)
    UniqueNodeNamesPass()(normalized.model)  # nodes the readers added
    points = collect_quant_points(normalized.model)
    logger.info("%s: dialects %s, %d quantization points", _label(source), normalized.dialects, len(points))
    return LoadedModel(
        model=normalized.model,
        source=source,
        dialects=normalized.dialects,
        quant_points=points,
        integer_qdq=normalized.integer_qdq,
        constant_inputs=constant_inputs,
    )


_reported_constant_inputs: set[tuple[str, tuple[str, ...]]] = set()
"""(file, names) pairs already reported by :func:`_initializer_inputs_as_constants` in this process."""


def _initializer_inputs_as_constants(model: ir.Model, label: str) -> tuple[str, ...]:
    """Remove the initializers from the main graph's inputs; their names, in input order.

    Logged as one warning the first time a file is loaded with such inputs (:func:`~fp8conv.convert_file`
    followed by :func:`~fp8conv.verify` loads the source twice).
    """
    graph = model.graph
    constants = [value for value in graph.inputs if value.name in graph.initializers]
    if not constants:
        return ()
    names = tuple(value.name or "" for value in constants)
    graph.inputs[:] = [value for value in graph.inputs if value.name not in graph.initializers]
    if (label, names) not in _reported_constant_inputs:
        _reported_constant_inputs.add((label, names))
        logger.warning(
            "%s: %d initializers were also listed as graph inputs; treated as constants (first: %s)",
            label,
            len(names),
            names[0],
        )
    return names


def parse_model(model: ModelInput) -> ParsedModel:
    """Read and parse a model without validating it (:func:`read_model` validates).

    A file is read once: its bytes are parsed (as the format its extension names, binary protobuf by
    default) and kept for the checker. An ``onnx_ir.Model`` is serialized to a protobuf, an
    ``onnx_graphsurgeon.Graph`` exported; an ``onnx.ModelProto`` is taken as it is.

    Raises:
        ModelLoadError: No such file, a directory, unreadable bytes or not a protobuf; a type that is none
            of the accepted ones; a graphsurgeon graph that cannot be exported.
    """
    if isinstance(model, ParsedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return _parse_file(Path(model))
    if isinstance(model, onnx.ModelProto):
        return ParsedModel(model)
    if isinstance(model, ir.Model):
        return ParsedModel(ir.to_proto(model))
    if _is_graphsurgeon_graph(model):
        return ParsedModel(_export_graphsurgeon(model))
    raise ModelLoadError(
        f"cannot load a {type(model).__name__}: give a path, an onnx.ModelProto, an onnx_ir.Model "
        "or an onnx_graphsurgeon.Graph"
    )


def read_model(model: ModelInput | ParsedModel) -> tuple[ir.Model, SourceInfo]:
    """Read and validate a model without normalizing it.

    Every node of the copy has a name of its own: nodes without a name, or with a name an earlier node
    has, are named as :class:`~fp8conv.passes.node_names.UniqueNodeNamesPass` says (the names reports
    show; nothing identifies a node by its name).

    Args:
        model: What :func:`load` accepts, or the :class:`ParsedModel` of it (not parsed again).

    Returns:
        A private onnx_ir copy of the model (safe to mutate) and facts about the source.

    Raises:
        ModelLoadError: See :func:`load`.
        UnsupportedModelError: For an opset fp8conv does not support.
    """
    parsed = parse_model(model)
    proto, path = parsed.proto, parsed.path
    if path is not None:
        _check_header(proto, path)
    label = str(path) if path else "model"
    base_dir = path.parent if path else None
    external = _check_external_data(proto, base_dir, label) if base_dir is not None else ()
    # The checker resolves external data against the model's directory when given the path; a file without
    # external data is checked on the bytes already read (the same check, without reading the file again).
    checked: onnx.ModelProto | bytes | str = proto
    if path is not None:
        checked = parsed.serialized if parsed.serialized is not None and not external else str(path)
    _check_graph(proto, label, checked)
    opset = _check_opset(proto, label)
    ir_model = ir.serde.deserialize_model(proto)
    UniqueNodeNamesPass()(ir_model)
    if base_dir is not None:
        ir.external_data.set_base_dir(ir_model.graph, str(base_dir))
    size = _source_size(path, base_dir, external) if path else proto.ByteSize()
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
    source = SourceInfo(path, opset, proto.ir_version, producer, size, external)
    return ir_model, source


def _label(source: SourceInfo) -> str:
    return str(source.path) if source.path else "model"


def _parse_file(path: Path) -> ParsedModel:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not an ONNX file")
    # As onnx.load_model(path) reads it (the format from the extension), from bytes read once.
    form = onnx.serialization.registry.get_format_from_file_extension(path.suffix) or "protobuf"
    try:
        data = path.read_bytes()
        proto = onnx.load_model_from_string(data, format=form)
    except DecodeError as error:
        raise ModelLoadError(f"{path}: not a valid ONNX protobuf (truncated, or not an ONNX file): {error}") from error
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{path}: cannot be read as ONNX: {error}") from error
    return ParsedModel(proto, path, data if form == "protobuf" else None)


def _check_header(proto: onnx.ModelProto, path: Path) -> None:
    if not proto.HasField("graph") or proto.ir_version <= 0 or not proto.opset_import:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph, IR version or opset import)")


def _is_graphsurgeon_graph(model: Any) -> bool:
    return type(model).__module__.startswith("onnx_graphsurgeon") and hasattr(model, "nodes")


def _export_graphsurgeon(graph: gs.Graph) -> onnx.ModelProto:
    import onnx_graphsurgeon as gs

    try:
        return gs.export_onnx(graph)
    except Exception as error:
        raise ModelLoadError(f"onnx_graphsurgeon graph could not be exported to ONNX: {error}") from error


def _iter_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of the model: initializers and Constant attributes, subgraphs included."""

    def from_graph(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    yield from from_graph(attribute.g)
                for subgraph in attribute.graphs:
                    yield from from_graph(subgraph)

    yield from from_graph(proto.graph)
    for function in proto.functions:
        for node in function.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t


def _check_external_data(proto: onnx.ModelProto, base_dir: Path, label: str) -> tuple[str, ...]:
    """Refuse external data outside the model's directory, missing or too short; list the files."""
    root = base_dir.resolve()
    files: dict[str, int] = {}
    for tensor in _iter_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if not location:
            raise ModelLoadError(f"{label}: tensor {tensor.name!r} has external data without a location")
        if os.path.isabs(location):
            raise ModelLoadError(
                f"{label}: external data of tensor {tensor.name!r} has an absolute location {location!r}; "
                "refusing to read outside the model's directory"
            )
        resolved = (root / location).resolve()
        if not resolved.is_relative_to(root):
            raise ModelLoadError(
                f"{label}: external data location {location!r} of tensor {tensor.name!r} resolves outside "
                f"the model's directory ({resolved}); refusing to read it"
            )
        if not resolved.is_file():
            raise ModelLoadError(f"{label}: external data file {location!r} of tensor {tensor.name!r} is missing")
        offset = int(entries.get("offset", 0) or 0)
        length = entries.get("length")
        file_size = resolved.stat().st_size
        if length is not None and offset + int(length) > file_size:
            raise ModelLoadError(
                f"{label}: external data file {location!r} is too short for tensor {tensor.name!r} "
                f"(needs {offset + int(length)} bytes, has {file_size})"
            )
        files[location] = file_size
    return tuple(sorted(files))


def _check_graph(proto: onnx.ModelProto, label: str, checked: onnx.ModelProto | bytes | str) -> None:
    """Refuse a cycle, then run ``onnx.checker`` on ``checked`` (the model, its serialized bytes or its path)."""
    cycle = _find_cycle(proto.graph)
    if cycle:
        raise ModelLoadError(f"{label}: the graph has a cycle through nodes {', '.join(cycle)}")
    try:
        onnx.checker.check_model(checked)
    except onnx.checker.ValidationError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{label}: fails onnx.checker: {first_line}") from error
    except UnicodeDecodeError as error:  # the checker's message quotes a name that is not UTF-8
        raise ModelLoadError(f"{label}: fails onnx.checker: a name or string is not UTF-8 ({error})") from error
    if not proto.graph.output:
        raise ModelLoadError(f"{label}: the graph has no outputs")
    _check_names(proto, label)
    _check_attributes(proto.graph, label)
    _check_value_types(proto.graph, label)
    for tensor in _iter_tensors(proto):
        _check_tensor(tensor, label)


_KNOWN_TYPES = frozenset(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}

_TYPE_ATTRIBUTES = {"Cast": "to", "QuantizeLinear": "output_dtype"}
"""ONNX ops whose attribute names an element type (``output_dtype`` is optional: 0 means none)."""

_CUSTOM_DOMAINS = ("trt", "qonnx.custom_op.general", "qonnx.custom_op", "finn.custom_op.general")
_CUSTOM_ATTRIBUTE_TYPES = {
    **dict.fromkeys(
        ("axis", "block_size", "saturate", "precision", "output_dtype", "saturation", "has_inf", "has_nan"),
        onnx.AttributeProto.INT,
    ),
    "has_subnormal": onnx.AttributeProto.INT,
    "rounding_mode": onnx.AttributeProto.STRING,
}
"""Attribute types of the custom-domain ops fp8conv reads (TensorRT, QONNX), which onnx.checker has no schema for."""


def _check_names(proto: onnx.ModelProto, label: str) -> None:
    """Refuse a string field (a name, op type, producer, ...) that is not UTF-8.

    protobuf hands such a field over as bytes, and onnx.checker compares bytes; the first use as text
    would fail. Tensor contents are not read: a tensor's name, doc string and external-data entries are.
    """
    found = _non_utf8(proto, "model")
    if found is not None:
        where, value = found
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        raise ModelLoadError(f"{label}: {where} {shown} is not UTF-8")


def _non_utf8(message: Any, where: str) -> tuple[str, bytes] | None:
    """The first string field of ``message`` (recursively) that protobuf returns as bytes, and its value."""
    if isinstance(message, onnx.TensorProto):
        fields = [("name", message.name), ("doc_string", message.doc_string)]
        fields += [("external_data", text) for entry in message.external_data for text in (entry.key, entry.value)]
        return next(((f"{where}.{name}", value) for name, value in fields if isinstance(value, bytes)), None)
    for field, value in message.ListFields():
        if field.type not in (field.TYPE_STRING, field.TYPE_MESSAGE):
            continue
        items = [value] if isinstance(value, (str, bytes, Message)) else list(value)  # else a repeated field
        if field.type == field.TYPE_STRING:
            bad = next((item for item in items if isinstance(item, bytes)), None)
            if bad is not None:
                return f"{where}.{field.name}", bad
        elif field.type == field.TYPE_MESSAGE:
            for index, item in enumerate(items):
                label = f"{where}.{field.name}" + (f"[{index}]" if len(items) > 1 else "")
                found = _non_utf8(item, label)
                if found is not None:
                    return found
    return None


def _node_label(node: onnx.NodeProto) -> str:
    return f"node {node.name or node.op_type!r} ({node.op_type})"


def _check_attributes(graph: onnx.GraphProto, label: str) -> None:
    """Refuse attributes whose value the readers cannot take.

    An element type that names no ONNX type (the checker does not look at the value); an attribute of a
    TensorRT or QONNX op of the wrong type (the checker has no schema for them).
    """
    for node in graph.node:
        custom = node.domain in _CUSTOM_DOMAINS
        type_attribute = _TYPE_ATTRIBUTES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        for attribute in node.attribute:
            if attribute.name == type_attribute:
                value = onnx.helper.get_attribute_value(attribute)
                optional_unset = attribute.name == "output_dtype" and value == 0
                if not optional_unset and (attribute.type != onnx.AttributeProto.INT or value not in _KNOWN_TYPES):
                    raise ModelLoadError(
                        f"{label}: {_node_label(node)}: attribute {attribute.name}={value!r} is not an ONNX element "
                        "type"
                    )
            expected = _CUSTOM_ATTRIBUTE_TYPES.get(attribute.name) if custom else None
            if expected is not None and attribute.type != expected:
                raise ModelLoadError(
                    f"{label}: {_node_label(node)}: attribute {attribute.name} must be "
                    f"{onnx.AttributeProto.AttributeType.Name(expected)}, not "
                    f"{onnx.AttributeProto.AttributeType.Name(attribute.type)}"
                )


def _check_value_types(graph: onnx.GraphProto, label: str) -> None:
    """Refuse a graph input, output or value_info whose element type is no ONNX type."""
    for where, values in (("graph input", graph.input), ("graph output", graph.output), ("value", graph.value_info)):
        for value in values:
            if value.type.HasField("tensor_type"):
                elem_type = value.type.tensor_type.elem_type
                if elem_type and elem_type not in _KNOWN_TYPES:
                    raise ModelLoadError(f"{label}: {where} {value.name!r} has element type {elem_type}, no ONNX type")


_BITS = {
    **dict.fromkeys(("UINT2", "INT2"), 2),
    **dict.fromkeys(("UINT4", "INT4", "FLOAT4E2M1"), 4),
    **dict.fromkeys(
        ("UINT8", "INT8", "BOOL", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0"), 8
    ),
    **dict.fromkeys(("UINT16", "INT16", "FLOAT16", "BFLOAT16"), 16),
    **dict.fromkeys(("FLOAT", "INT32", "UINT32"), 32),
    **dict.fromkeys(("INT64", "UINT64", "DOUBLE", "COMPLEX64"), 64),
    "COMPLEX128": 128,
}
"""Bits per element in ``raw_data`` (sub-byte types packed, the last byte padded)."""

_TYPED_FIELDS = {
    "FLOAT": ("float_data", 1),
    "COMPLEX64": ("float_data", 2),
    "DOUBLE": ("double_data", 1),
    "COMPLEX128": ("double_data", 2),
    "INT64": ("int64_data", 1),
    "UINT32": ("uint64_data", 1),
    "UINT64": ("uint64_data", 1),
}
"""Where a tensor without ``raw_data`` keeps its values, and how many per element (other types: ``int32_data``)."""


def _check_tensor(tensor: onnx.TensorProto, label: str) -> None:
    """Refuse a stored tensor of no ONNX type, with a negative dimension, or whose data is not its shape's size."""
    what = f"tensor {tensor.name!r}"
    if tensor.data_type not in _KNOWN_TYPES:
        raise ModelLoadError(f"{label}: {what} has data type {tensor.data_type}, no ONNX type")
    if any(dim < 0 for dim in tensor.dims):
        raise ModelLoadError(f"{label}: {what} has a negative dimension {list(tensor.dims)}")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return
    type_name = onnx.TensorProto.DataType.Name(tensor.data_type)
    count = math.prod(tensor.dims)
    if tensor.HasField("raw_data"):
        bits = _BITS.get(type_name)
        expected = -(-count * bits // 8) if bits else None
        if expected is not None and len(tensor.raw_data) != expected:
            raise ModelLoadError(
                f"{label}: {what} ({type_name}, shape {list(tensor.dims)}) needs {expected} bytes of data, "
                f"has {len(tensor.raw_data)}"
            )
        return
    if type_name == "STRING":
        found, expected = len(tensor.string_data), count
    else:
        field, per_element = _TYPED_FIELDS.get(type_name, ("int32_data", 1))
        per_int32 = 32 // _BITS[type_name] if field == "int32_data" and _BITS.get(type_name, 8) < 8 else 1
        found, expected = len(getattr(tensor, field)), -(-count * per_element // per_int32)
    if found != expected:
        raise ModelLoadError(
            f"{label}: {what} ({type_name}, shape {list(tensor.dims)}) holds {found} values, its shape needs {expected}"
        )


def _find_cycle(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes on a cycle (empty when the graph is acyclic). Kahn's algorithm."""
    producers = {output: index for index, node in enumerate(graph.node) for output in node.output if output}
    dependencies = [{producers[name] for name in node.input if name in producers} for node in graph.node]
    users: dict[int, set[int]] = {index: set() for index in range(len(graph.node))}
    for index, deps in enumerate(dependencies):
        for dep in deps:
            users[dep].add(index)
    remaining = [len(deps) for deps in dependencies]
    ready = [index for index, count in enumerate(remaining) if count == 0]
    while ready:
        index = ready.pop()
        for user in users[index]:
            remaining[user] -= 1
            if remaining[user] == 0:
                ready.append(user)
    stuck = [index for index, count in enumerate(remaining) if count > 0]
    return [graph.node[index].name or f"#{index} ({graph.node[index].op_type})" for index in stuck]


def _check_opset(proto: onnx.ModelProto, label: str) -> int:
    versions = {entry.domain: entry.version for entry in proto.opset_import}
    opset = versions.get("", versions.get("ai.onnx"))
    if opset is None:
        raise UnsupportedModelError(f"{label}: imports no ai.onnx opset")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UnsupportedModelError(
            f"{label}: ai.onnx opset {opset} is not supported (supported: {MIN_OPSET}..{newest})"
        )
    # Exporters write older IR versions than their opset's (onnxruntime: IR 8 with opset 19), so only IR
    # versions older than the oldest supported opset are refused: before IR 4 every initializer had to be a
    # graph input, which a converted model does not repeat.
    needed = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", MIN_OPSET)], ignore_unknown=True)
    if proto.ir_version < needed:
        raise UnsupportedModelError(
            f"{label}: IR version {proto.ir_version} is not supported (ai.onnx opset {MIN_OPSET}, the oldest "
            f"supported, needs IR {needed} or newer)"
        )
    return opset


def _source_size(path: Path, base_dir: Path | None, external: tuple[str, ...]) -> int:
    size = path.stat().st_size
    if base_dir is not None:
        size += sum((base_dir / name).stat().st_size for name in external)
    return size
