"""Integer-kernel audit: which Conv / MatMul / Gemm of an emitted QDQ model onnxruntime runs on integers.

fp8conv writes QDQ models (``DequantizeLinear → Conv/MatMul/Gemm → QuantizeLinear``) and relies on
onnxruntime's CPU execution provider to fuse each such group into an integer kernel. Whether it does
depends on details of the graph (types, scale axes, the quantized output, bias type) and on the session's
optimization level, so this module checks it the only reliable way: by asking onnxruntime.

Method:

1. The model is loaded into an ``onnxruntime.InferenceSession`` (CPU EP) at the requested optimization
   level with ``SessionOptions.optimized_model_filepath`` pointing into a temporary directory, so that
   onnxruntime writes the graph it will actually execute. The optimized model is always saved in ONNX
   format, with initializers of 1 KiB and more in an external data file, and is parsed *without* that
   data: no weight is ever read into Python (onnxruntime loads them anyway). The temporary directory is
   removed afterwards.
2. Every Conv / MatMul / Gemm of the emitted model is mapped to the node of the optimized graph that
   replaced it, by a score summed over these kinds of evidence, strongest first:

   * **node name** — onnxruntime's QDQ fusions keep the target node's name (``QLinearConv``,
     ``QLinearMatMul``, ``QGemm``, ``MatMulIntegerToFloat``, ``MatMulNBits`` are all named like the
     Conv/MatMul/Gemm they replace); later passes derive names from it: the NHWC layout transform of
     ``ORT_ENABLE_ALL`` gives ``<name>_token_<n>``, float fusions ``<name>/MatMulAddFusion``,
     ``<name>/MatmulTransposeFusion/``, ``fused <name>`` (FusedGemm);
   * **weight** — fused kernels consume the quantized weight initializer that the weight's
     ``DequantizeLinear`` read, under its own name (also in NHWC form: the NHWC ``com.microsoft``
     ``QLinearConv`` keeps OIHW weights; onnxruntime prepacks them at kernel creation, which the saved
     graph does not show); ``MatMulNBits`` consumes a repacked copy named ``<weight>_T``,
     ``session.x64quantprecision=1`` renames int8 weights ``<weight>_s8_2_u8``; unfused nodes consume
     the ``DequantizeLinear`` output (``/duplicated`` appended when onnxruntime duplicated a shared DQ);
   * **bias** — the int32 bias initializer (fused) or the float bias initializer (float kernels, also
     the NCHWc ``Conv``); a float bias that onnxruntime quantizes becomes ``<node>_bias_int32``;
   * **output tensor** — the node's own output, or that of the ``Relu``/``Clip`` and ``QuantizeLinear``
     after it, possibly behind layout nodes (NHWC ``Transpose``, NCHWc ``ReorderOutput``; the NCHWc float
     ``Conv`` of ``ORT_ENABLE_ALL`` loses both the name and the weight name: it is named
     ``<output tensor>_nchwc`` after the last op it absorbed and consumes a weight called ``reorder…``).

   Pairs are assigned greedily by score, one optimized node per emitted node first; an emitted node left
   over is then allowed to share a node (several MatMuls fused into one attention node). A node with no
   evidence at all is reported as not found (constant-folded or merged away).
3. For every node that does not run as an integer kernel the emitted graph around it is checked against
   the fusion conditions of onnxruntime's QDQ selectors (``qdq_selectors.cc``) as measured with
   onnxruntime 1.32 (see ``shared/reference/fp8-onnx-dialects.md`` §6.4–6.6): optimization level below
   EXTENDED, no ``DequantizeLinear`` on an input, FP8 / 16-bit / 4-bit types, int8 activations with uint8
   weights, weight scale axis, missing or unusable output ``QuantizeLinear``, bias not int32, a Conv bias
   whose scale is not input scale × weight scale (onnxruntime 1.32 rejects more than about 1 % deviation)
   or whose zero point is not 0, Gemm ``beta``, the weight-only ``MatMulNBits`` conditions. Every violated
   condition goes into the reason; when none is, the reason is ``unknown: onnxruntime left it as <op>``.
4. Integer records carry a ``warning: …`` reason for hazards the emitted graph shows: QGemm with a bias
   scale or zero point that QGemm silently ignores (measured: outputs shifted), a Conv weight scale on
   axis ≠ 0, a weight-only MatMulNBits whose activation DequantizeLinear still runs in float.

Only the main graph is audited (nodes inside ``If``/``Loop``/``Scan`` bodies are not).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from fp8conv.errors import Fp8ConvError, ModelLoadError
from fp8conv.runtime.formats import FORMATS
from fp8conv.runtime.integer_types import INTEGER_TYPES, integer_type_of, quantize_output_type
from fp8conv.runtime.ort_backend import OPTIMIZATION_LEVELS
from fp8conv.runtime.ort_backend import optimization_level as optimization_level_key

__all__ = [
    "AUDITED_OPS",
    "INTEGER_KERNELS",
    "OPTIMIZATION_LEVELS",
    "KernelAudit",
    "KernelRecord",
    "audit_integer_kernels",
]

logger = logging.getLogger(__name__)

AUDITED_OPS: frozenset[str] = frozenset({"Conv", "MatMul", "Gemm"})
"""Op types of the emitted model that the audit reports on."""

INTEGER_KERNELS: frozenset[str] = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "MatMulNBits",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "QAttention",
    }
)
"""Optimized-graph op types that compute on integers (any domain)."""

_LEVEL_RANK = {"disable": 0, "basic": 1, "extended": 2, "layout": 3, "all": 99}

# Session options this module sets itself; a caller's values for them are overridden.
_OPTIMIZED_DATA_FILE = "optimized.onnx.data"
_FORCED_CONFIG = {
    "session.save_model_format": "ONNX",
    "session.optimized_model_external_initializers_file_name": _OPTIMIZED_DATA_FILE,
    "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
}

# Optimized-graph ops that only move, reshape or (de)quantize data: never the node a Conv/MatMul became.
_NON_COMPUTE_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "Transpose",
        "ReorderInput",
        "ReorderOutput",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Cast",
        "Shape",
        "Constant",
    }
)
# Ops a Conv/MatMul/Gemm can become; only these may be matched on output-tensor evidence alone.
_COMPUTE_OPS = INTEGER_KERNELS | {
    "Conv",
    "FusedConv",
    "NhwcConv",
    "NhwcFusedConv",
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "FusedGemm",
    "Attention",
    "MultiHeadAttention",
    "GemmFastGelu",
}
# Layout-only ops that may sit between a kernel and the tensor the emitted node produced.
_LAYOUT_OPS = frozenset({"Transpose", "ReorderOutput"})
# Suffixes onnxruntime appends when it derives a name from an existing one (observed with 1.32).
# Name changes onnxruntime makes (observed with 1.32): "<name>/<Transformer>Fusion[/]", "<name>/duplicated",
# "<name>_token_<n>" (unique-name generator), "<w>_T" (MatMulNBits weight), "<w>_s8_2_u8", "<tensor>_nchwc",
# "<node>_bias_int32", and a "fused " prefix (FusedGemm).
_SUFFIXES = r"/(?:[A-Za-z0-9]*Fusion|duplicated)/?|_token_\d+|_T|_s8_2_u8|_nchwc|_bias_int32"
_ONE_SUFFIX = re.compile(rf"(?:{_SUFFIXES})$")

_SCORE_NAME_EXACT = 8
_SCORE_NAME_DERIVED = 6
_SCORE_WEIGHT = 4
_SCORE_WEIGHT_DQ_OUTPUT = 3
_SCORE_BIAS = 3
_SCORE_OUTPUT = 2

_FP8_TYPES = frozenset(fmt.onnx_type for fmt in FORMATS.values() if fmt.onnx_type is not None and fmt.bits == 8)
_INTEGER_TYPES = tuple(INTEGER_TYPES.values())
_16BIT_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits == 16)
_SUBBYTE_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits < 8) | frozenset(
    fmt.onnx_type for fmt in FORMATS.values() if fmt.onnx_type is not None and fmt.bits < 8
)
_8BIT_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits == 8)
_NBITS_INT_TYPES = frozenset(t.data_type for t in _INTEGER_TYPES if t.bits in (2, 4, 8))
_MAX_SMALL_TENSOR = 16  # elements: Q/Clip parameters read as values
_MAX_PARAM_TENSOR = 1 << 20  # elements: scales and zero points read as values; weights never are
_BIAS_SCALE_RTOL = 1e-2  # QLinearConv fusion accepted 1.1 % deviation and rejected 1.3 % (onnxruntime 1.32)


@dataclasses.dataclass(frozen=True)
class KernelRecord:
    """How onnxruntime runs one Conv / MatMul / Gemm of the emitted model.

    Attributes:
        node: The node's name in the emitted model (``<op>(<first output>)`` when it has none).
        op_type: Its op type in the emitted model: ``Conv``, ``MatMul`` or ``Gemm``.
        kernel: The op type it runs as after optimization, e.g. ``QLinearConv``, ``MatMulNBits``, ``Conv``;
            empty when it was not found in the optimized graph.
        integer: Whether ``kernel`` computes on integers.
        reason: For a float kernel, why onnxruntime did not fuse it (every violated condition, separated
            by ``"; "``); for an integer kernel ``None``, or a ``warning: …`` about a known hazard.
        kernel_domain: Domain of the optimized node (``""`` for ai.onnx; ``com.microsoft`` for the NHWC
            ``QLinearConv`` of ``ORT_ENABLE_ALL``, ``com.microsoft.nchwc`` for blocked-layout float Conv).
        optimized_node: Name of the optimized node the record was mapped to (``None`` if not found).
    """

    node: str
    op_type: str
    kernel: str
    integer: bool
    reason: str | None
    kernel_domain: str = ""
    optimized_node: str | None = None


@dataclasses.dataclass(frozen=True)
class KernelAudit:
    """Result of :func:`audit_integer_kernels`: one record per Conv / MatMul / Gemm, in graph order.

    Attributes:
        records: The records.
        optimization_level: The level audited (a key of :data:`OPTIMIZATION_LEVELS`).
    """

    records: tuple[KernelRecord, ...]
    optimization_level: str

    @property
    def integer_count(self) -> int:
        """Number of nodes that run as integer kernels."""
        return sum(1 for r in self.records if r.integer)

    @property
    def float_count(self) -> int:
        """Number of nodes that run in float (or were not found)."""
        return len(self.records) - self.integer_count

    @property
    def fraction_integer(self) -> float:
        """Fraction of audited nodes that run as integer kernels (0.0 when there are none)."""
        return self.integer_count / len(self.records) if self.records else 0.0

    def counts_by_op(self) -> dict[str, dict[str, int]]:
        """Counts per emitted op type.

        Returns:
            ``{op_type: {"integer": n, "float": m}}`` for every op type present.
        """
        counts: dict[str, dict[str, int]] = {}
        for record in self.records:
            entry = counts.setdefault(record.op_type, {"integer": 0, "float": 0})
            entry["integer" if record.integer else "float"] += 1
        return counts

    def float_records(self) -> tuple[KernelRecord, ...]:
        """The records of nodes that do not run as integer kernels."""
        return tuple(r for r in self.records if not r.integer)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable summary with every record.

        Returns:
            A dict with ``optimization_level``, the counts, ``fraction_integer``, ``counts_by_op`` and
            ``records`` (a list of dicts with the :class:`KernelRecord` fields).
        """
        return {
            "optimization_level": self.optimization_level,
            "integer_count": self.integer_count,
            "float_count": self.float_count,
            "fraction_integer": self.fraction_integer,
            "counts_by_op": self.counts_by_op(),
            "records": [dataclasses.asdict(r) for r in self.records],
        }


def audit_integer_kernels(
    model: str | os.PathLike | onnx.ModelProto,
    *,
    optimization_level: str = "all",
    session_options_config: Mapping[str, str] | None = None,
    serialized: bytes | None = None,
) -> KernelAudit:
    """Report, for every Conv / MatMul / Gemm of a QDQ model, whether onnxruntime CPU runs it on integers.

    Args:
        model: The emitted model: a path to an ``.onnx`` file (its external data, if any, next to it as
            the file references it) or an ``onnx.ModelProto`` with its data loaded.
        optimization_level: ``"all"`` (default, ``ORT_ENABLE_ALL``), ``"layout"``, ``"extended"``,
            ``"basic"`` or ``"disable"``; onnxruntime's names (``"ORT_ENABLE_EXTENDED"``) are accepted too.
        session_options_config: Extra session config entries (``SessionOptions.add_session_config_entry``),
            e.g. ``{"session.x64quantprecision": "1"}``. The entries controlling how the optimized model
            is saved are set by this function.
        serialized: ``model.SerializeToString()``, when ``model`` is a ``ModelProto`` and the caller has its
            bytes already (saves serializing it again).

    Returns:
        The audit, one record per node in graph order.

    Raises:
        Fp8ConvError: Unknown optimization level.
        ModelLoadError: The file cannot be read, or onnxruntime cannot create a session for the model.
    """
    level = optimization_level_key(optimization_level)
    config = dict(session_options_config or {})
    with tempfile.TemporaryDirectory(prefix="fp8conv-audit-") as tmp:
        tmp_dir = Path(tmp)
        emitted, ort_source = (
            (model, serialized)
            if serialized is not None and isinstance(model, onnx.ModelProto)
            else _prepare_model(model, tmp_dir)
        )
        optimized = _optimized_graph(ort_source, level, config, tmp_dir)
    base_dir = None if isinstance(model, onnx.ModelProto) else Path(os.fspath(model)).parent
    records = _audit(emitted.graph, optimized.graph, level, config, base_dir)
    audit = KernelAudit(records=tuple(records), optimization_level=level)
    logger.info(
        "integer-kernel audit (%s): %d of %d Conv/MatMul/Gemm nodes run as integer kernels",
        level,
        audit.integer_count,
        len(audit.records),
    )
    return audit


# --------------------------------------------------------------------------------------------------
# Sessions


def _prepare_model(model: str | os.PathLike | onnx.ModelProto, tmp_dir: Path) -> tuple[onnx.ModelProto, str | bytes]:
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


def _optimized_graph(source: str | bytes, level: str, config: Mapping[str, str], tmp_dir: Path) -> onnx.ModelProto:
    """Creates a CPU session that saves its optimized graph, and parses that graph without weights."""
    from fp8conv.runtime.ort_backend import create_session, graph_optimization_level

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


# --------------------------------------------------------------------------------------------------
# Graph index


class _Graph:
    """Name lookups over one ``GraphProto``; only small parameter tensors (scales, zero points) are read."""

    def __init__(self, graph: onnx.GraphProto, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir
        self.nodes = list(graph.node)
        self.initializers: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self.declared_types: dict[str, int] = {}
        for info in (*graph.input, *graph.value_info, *graph.output):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                self.declared_types[info.name] = info.type.tensor_type.elem_type

    def constant(self, name: str) -> TensorProto | None:
        """The initializer or ``Constant`` tensor called ``name`` (data possibly external, not loaded)."""
        if name in self.initializers:
            return self.initializers[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    return attr.t
        return None

    def values(self, name: str, limit: int = _MAX_SMALL_TENSOR) -> np.ndarray | None:
        """The value of a constant with at most ``limit`` elements, else ``None`` (also when unreadable)."""
        tensor = self.constant(name) if name else None
        if tensor is None:
            return None
        size = 1
        for dim in tensor.dims:
            size *= dim
        if size > limit:
            return None
        external = tensor.data_location == TensorProto.EXTERNAL
        if external and self.base_dir is None:
            return None
        try:
            return numpy_helper.to_array(tensor, base_dir=str(self.base_dir) if external else "")
        except Exception:  # an unusual encoding or a missing file: treated as unknown
            return None

    def elem_type(self, name: str) -> int | None:
        """Element type of a tensor, from initializers, declarations or the producing Q/DQ, else ``None``."""
        tensor = self.constant(name)
        if tensor is not None:
            return tensor.data_type
        if name in self.declared_types:
            return self.declared_types[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "QuantizeLinear":
            has_zero_point = len(node.input) > 2 and bool(node.input[2])
            return quantize_output_type(
                has_zero_point=has_zero_point,
                zero_point_type=self.elem_type(node.input[2]) if has_zero_point else None,
                output_dtype=int(_attr(node, "output_dtype", 0)),
            )
        if node is not None and node.op_type == "DequantizeLinear":
            return TensorProto.FLOAT
        return None

    def dq_input_type(self, dq: onnx.NodeProto) -> int | None:
        """Element type of a DequantizeLinear's quantized input (its zero point's type if unknown)."""
        found = self.elem_type(dq.input[0])
        if found is None and len(dq.input) > 2 and dq.input[2]:
            found = self.elem_type(dq.input[2])
        return found

    def producer_op(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The node producing ``name`` if it has op type ``op_type``."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def shape(self, name: str) -> tuple[int, ...] | None:
        """Static shape of a constant, else ``None``."""
        tensor = self.constant(name)
        return tuple(tensor.dims) if tensor is not None else None


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _type_name(elem_type: int | None) -> str:
    if elem_type is None:
        return "unknown type"
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"


def _label(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"


# --------------------------------------------------------------------------------------------------
# Mapping emitted nodes to optimized nodes


@dataclasses.dataclass
class _Anchors:
    name: str
    weights: set[str]
    weight_dq_outputs: set[str]
    biases: set[str]
    outputs: set[str]


def _derives(base: str, name: str) -> bool:
    """Whether ``name`` is ``base`` with onnxruntime's prefix and suffixes (``(fused )?base(suffix)*``)."""
    return bool(base) and base in _bases(name)


@functools.lru_cache(maxsize=65536)
def _bases(name: str) -> frozenset[str]:
    """Every ``base`` with ``name == prefix + base + suffixes`` (prefix ``fused `` or none, any suffixes).

    Stripping one suffix at a time from the end finds them all: no suffix of ``_SUFFIXES`` ends another.
    """
    found = set()
    for current in {name, name.removeprefix("fused ")}:
        while current and current not in found:
            found.add(current)
            current = _ONE_SUFFIX.sub("", current)
    return frozenset(found)


def _anchors(node: onnx.NodeProto, g: _Graph) -> _Anchors:
    weights: set[str] = set()
    dq_outputs: set[str] = set()
    if len(node.input) > 1 and node.input[1]:
        weight = node.input[1]
        dq = g.producer_op(weight, "DequantizeLinear")
        if dq is not None:
            weights.add(dq.input[0])
            dq_outputs.add(weight)
        elif g.constant(weight) is not None:
            weights.add(weight)
    biases: set[str] = set()
    if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2]:
        bias_dq = g.producer_op(node.input[2], "DequantizeLinear")
        biases.add(bias_dq.input[0] if bias_dq is not None else node.input[2])
    outputs = {o for o in node.output if o}
    frontier = list(outputs)
    for _ in range(2):  # node → [Relu/Clip →] QuantizeLinear
        following: list[str] = []
        for tensor in frontier:
            for consumer in g.consumers.get(tensor, []):
                if consumer.op_type in ("Relu", "Clip", "QuantizeLinear"):
                    following.extend(o for o in consumer.output if o)
        outputs.update(following)
        frontier = following
    return _Anchors(node.name, weights, dq_outputs, biases, outputs)


def _effective_outputs(node: onnx.NodeProto, g: _Graph) -> set[str]:
    """A node's outputs plus those of layout-only nodes after it (NHWC Transpose, NCHWc ReorderOutput)."""
    result = {o for o in node.output if o}
    frontier = list(result)
    for _ in range(3):
        following = [
            o
            for tensor in frontier
            for consumer in g.consumers.get(tensor, [])
            if consumer.op_type in _LAYOUT_OPS
            for o in consumer.output
            if o
        ]
        result.update(following)
        frontier = following
    return result


def _score(anchors: _Anchors, node: onnx.NodeProto, effective_outputs: set[str]) -> int:
    score = 0
    if anchors.name:
        if node.name == anchors.name:
            score += _SCORE_NAME_EXACT
        elif _derives(anchors.name, node.name):
            score += _SCORE_NAME_DERIVED
    inputs = [i for i in node.input if i]
    if any(_derives(w, i) for w in anchors.weights for i in inputs):
        score += _SCORE_WEIGHT
    elif any(_derives(d, i) for d in anchors.weight_dq_outputs for i in inputs):
        score += _SCORE_WEIGHT_DQ_OUTPUT
    if anchors.biases.intersection(inputs):
        score += _SCORE_BIAS
    if effective_outputs & anchors.outputs or any(_derives(o, node.name) for o in anchors.outputs):
        score += _SCORE_OUTPUT
    if score == _SCORE_OUTPUT and node.op_type not in _COMPUTE_OPS:
        return 0  # output evidence alone only identifies ops a Conv/MatMul/Gemm can become
    return score


def _match(targets: list[onnx.NodeProto], emitted: _Graph, optimized: _Graph) -> list[onnx.NodeProto | None]:
    """For each target of the emitted graph, the optimized node it became (``None`` if not found)."""
    candidates = [n for n in optimized.nodes if n.op_type not in _NON_COMPUTE_OPS]
    # Index candidates by every name that could identify them, so scoring stays near-linear on big graphs.
    by_key: dict[str, list[int]] = {}

    def index(key: str, j: int) -> None:
        by_key.setdefault(key, []).append(j)

    effective = [_effective_outputs(n, optimized) for n in candidates]
    for j, node in enumerate(candidates):
        for key in _base_names(node.name):
            index(key, j)
        for tensor in node.input:
            for key in _base_names(tensor):
                index(key, j)
        for tensor in effective[j]:
            index(tensor, j)
    pairs: list[tuple[int, int, int]] = []
    for i, target in enumerate(targets):
        anchors = _anchors(target, emitted)
        keys = {anchors.name} | anchors.weights | anchors.weight_dq_outputs | anchors.biases | anchors.outputs
        seen: set[int] = set()
        for key in keys:
            for j in by_key.get(key, []) if key else []:
                if j not in seen:
                    seen.add(j)
                    score = _score(anchors, candidates[j], effective[j])
                    if score > 0:
                        pairs.append((score, i, j))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    result: list[onnx.NodeProto | None] = [None] * len(targets)
    used: set[int] = set()
    for _, i, j in pairs:
        if result[i] is None and j not in used:
            result[i] = candidates[j]
            used.add(j)
    for _, i, j in pairs:  # left-overs may share a node (e.g. several MatMuls merged into one)
        if result[i] is None:
            result[i] = candidates[j]
            logger.debug("kernel audit: %s shares optimized node %s", _label(targets[i]), candidates[j].name)
    return result


def _base_names(name: str) -> Iterator[str]:
    """``name`` and the names it may have been derived from by stripping onnxruntime's suffixes."""
    if not name:
        return
    yield name
    current = name.removeprefix("fused ")
    if current != name:
        yield current
    for _ in range(8):
        stripped = _ONE_SUFFIX.sub("", current)
        if stripped == current or not stripped:
            return
        current = stripped
        yield current


# --------------------------------------------------------------------------------------------------
# Why not


def _audit(
    emitted_graph: onnx.GraphProto,
    optimized_graph: onnx.GraphProto,
    level: str,
    config: Mapping[str, str],
    base_dir: Path | None,
) -> list[KernelRecord]:
    emitted = _Graph(emitted_graph, base_dir)
    optimized = _Graph(optimized_graph)
    targets = [n for n in emitted.nodes if n.op_type in AUDITED_OPS and n.domain in ("", "ai.onnx")]
    matches = _match(targets, emitted, optimized)
    records = []
    for target, found in zip(targets, matches, strict=True):
        label = _label(target)
        if found is None:
            constant = all(not i or emitted.constant(i) is not None for i in target.input)
            reason = (
                "not found in the optimized graph: onnxruntime constant-folded it (all inputs are constant)"
                if constant
                else "not found in the optimized graph: onnxruntime removed it or merged it into another node"
            )
            # A float layer that onnxruntime fused (FusedConv, NCHWc) is expected; a quantized one is news.
            quantized = any(i and emitted.producer_op(i, "DequantizeLinear") is not None for i in target.input)
            logger.log(
                logging.WARNING if quantized else logging.DEBUG, "kernel audit: %s %s %s", target.op_type, label, reason
            )
            records.append(KernelRecord(label, target.op_type, "", False, reason))
            continue
        kernel = found.op_type
        integer = kernel in INTEGER_KERNELS
        if integer:
            reason = _integer_warning(target, emitted, kernel)
        else:
            issues = list(_why_not(target, emitted, level, config))
            if not issues and "MatMulAddFusion" in found.name:
                issues.append(
                    "onnxruntime first fused it with the following Add into a float Gemm (MatMulAddFusion), "
                    "which then had no quantized pattern"
                )
            reason = "; ".join(issues) if issues else f"unknown: onnxruntime left it as {kernel}"
        if reason is not None:
            logger.debug("kernel audit: %s %s → %s: %s", target.op_type, label, kernel, reason)
        records.append(KernelRecord(label, target.op_type, kernel, integer, reason, found.domain, found.name))
    return records


def _integer_warning(node: onnx.NodeProto, g: _Graph, kernel: str) -> str | None:
    """A hazard of a fused node that the emitted graph shows, as ``"warning: …"`` (``None``: none seen)."""
    warnings: list[str] = []
    act_dq = g.producer_op(node.input[0], "DequantizeLinear")
    if kernel == "QGemm" and len(node.input) > 2 and node.input[2] and act_dq is not None:
        w_dq = g.producer_op(node.input[1], "DequantizeLinear")
        bias_dq = g.producer_op(node.input[2], "DequantizeLinear")
        if w_dq is not None and bias_dq is not None:
            deviation, nonzero_zp = _bias_consistency(act_dq, w_dq, bias_dq, g)
            if deviation is not None and deviation > 1e-5:
                warnings.append(
                    f"bias scale differs from input scale x weight scale by up to {deviation:.3g} (relative) and "
                    "QGemm ignores the bias scale: results differ from the QDQ graph"
                )
            if nonzero_zp:
                warnings.append("bias zero point is nonzero and QGemm ignores it: results are shifted")
    if kernel == "MatMulNBits" and act_dq is not None:
        warnings.append(
            f"weight-only fusion: the activation DequantizeLinear ({_type_name(g.dq_input_type(act_dq))}) "
            "still runs in float before MatMulNBits"
        )
    if node.op_type == "Conv" and kernel == "QLinearConv":
        dq = g.producer_op(node.input[1], "DequantizeLinear")
        if dq is not None:
            axis = _per_axis(dq, g)
            if axis is not None and axis != 0:
                warnings.append(
                    f"weight scale on axis {axis}; QLinearConv expects axis 0 and fails at run time "
                    "('filter scale shape invalid')"
                )
    if not warnings:
        return None
    message = "warning: " + "; ".join(warnings)
    logger.info("kernel audit: %s %s → %s: %s", node.op_type, _label(node), kernel, message)
    return message


def _bias_consistency(
    act_dq: onnx.NodeProto, w_dq: onnx.NodeProto, bias_dq: onnx.NodeProto, g: _Graph
) -> tuple[float | None, bool]:
    """Largest relative deviation of the bias scale from x_scale·w_scale (``None``: unknown), nonzero bias zp."""
    zero_point = g.values(bias_dq.input[2], _MAX_PARAM_TENSOR) if len(bias_dq.input) > 2 else None
    nonzero_zp = zero_point is not None and bool(np.any(zero_point != 0))
    x_scale = g.values(act_dq.input[1], 1)
    w_scale = g.values(w_dq.input[1], _MAX_PARAM_TENSOR)
    b_scale = g.values(bias_dq.input[1], _MAX_PARAM_TENSOR)
    if x_scale is None or w_scale is None or b_scale is None:
        return None, nonzero_zp
    expected = float(x_scale.reshape(-1)[0]) * w_scale.astype(np.float64).reshape(-1)
    actual = b_scale.astype(np.float64).reshape(-1)
    if actual.size not in (1, expected.size) and expected.size != 1:
        return None, nonzero_zp
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(actual - expected) / np.abs(expected)
    return float(np.nanmax(deviation)) if deviation.size else None, nonzero_zp


def _per_axis(dq: onnx.NodeProto, g: _Graph) -> int | None:
    """The normalized axis of a per-axis DequantizeLinear (``None``: per-tensor, blocked or unknown)."""
    if _attr(dq, "block_size", 0):
        return None
    scale_shape = g.shape(dq.input[1])
    if scale_shape is None or len(scale_shape) == 0 or all(d == 1 for d in scale_shape):
        return None
    axis = int(_attr(dq, "axis", 1))
    x_shape = g.shape(dq.input[0])
    if axis < 0 and x_shape is not None:
        axis += len(x_shape)
    return axis


def _why_not(node: onnx.NodeProto, g: _Graph, level: str, config: Mapping[str, str]) -> Iterable[str]:
    """Every fusion condition of onnxruntime's QDQ selectors that the emitted node violates."""
    op = node.op_type
    if _LEVEL_RANK[level] < _LEVEL_RANK["extended"]:
        yield f"optimization level '{level}': fusion happens at ORT_ENABLE_EXTENDED and above"
        return
    if str(config.get("session.disable_quant_qdq", "0")) == "1":
        yield "session.disable_quant_qdq=1 turns QDQ fusion off"
        return
    inputs = list(node.input) + [""] * (3 - len(node.input))
    act_dq = g.producer_op(inputs[0], "DequantizeLinear") if inputs[0] else None
    w_dq = g.producer_op(inputs[1], "DequantizeLinear") if inputs[1] else None
    if act_dq is None and w_dq is None:
        yield f"no DequantizeLinear on any input: a float {op} in the emitted model"
        return
    if act_dq is None:
        if op == "Conv":
            yield "no DequantizeLinear on the activation input: QLinearConv needs a quantized input"
        else:
            problems = list(_matmulnbits_issues(node, w_dq, g))
            detail = "; ".join(problems) if problems else "its conditions look met"
            yield (
                "no DequantizeLinear on the activation input (float activations): only the weight-only "
                f"MatMulNBits fusion applies, and {detail}"
            )
        return
    if w_dq is None:
        kind = "a float initializer" if g.constant(inputs[1]) is not None else "a float tensor"
        yield f"no DequantizeLinear on the weight input (it is {kind})"
        return
    yield from _type_issues(op, g.dq_input_type(act_dq), g.dq_input_type(w_dq))
    yield from _scale_issues(node, w_dq, g)
    if op in ("Conv", "Gemm"):
        yield from _bias_issues(node, act_dq, w_dq, inputs[2], g)
    if op == "Gemm":
        beta = float(_attr(node, "beta", 1.0))
        if inputs[2] and beta != 1.0:
            yield f"Gemm beta={beta:g} with a bias: QGemm needs beta 1"
    yield from _output_issues(node, g, g.dq_input_type(act_dq))


def _type_issues(op: str, act: int | None, weight: int | None) -> Iterator[str]:
    kernel = {"Conv": "QLinearConv", "MatMul": "QLinearMatMul", "Gemm": "QGemm"}[op]
    for role, dtype in (("activations", act), ("weights", weight)):
        if dtype in _FP8_TYPES:
            yield f"FP8 {role} ({_type_name(dtype)}): no FP8 integer kernels on CPU"
        elif dtype in _16BIT_TYPES:
            yield f"16-bit {role} ({_type_name(dtype)}): no 16-bit integer kernels on CPU"
        elif dtype in _SUBBYTE_TYPES:
            if role == "weights" and op == "Conv":
                yield f"4-bit weight on Conv ({_type_name(dtype)}): no 4-bit Conv kernel, QLinearConv needs 8-bit"
            elif role == "weights":
                yield (
                    f"4-bit weights ({_type_name(dtype)}) with quantized activations: {kernel} needs 8-bit "
                    "weights, and MatMulNBits needs float activations (no DequantizeLinear on input A)"
                )
            else:
                yield f"sub-byte {role} ({_type_name(dtype)}): no integer kernel takes them on CPU"
        elif dtype is not None and dtype not in _8BIT_TYPES:
            yield f"{role} type {_type_name(dtype)} is not 8-bit"
    if act == TensorProto.INT8 and weight == TensorProto.UINT8:
        yield "int8 activations with uint8 weights: int8 activations require int8 weights"


def _scale_issues(node: onnx.NodeProto, w_dq: onnx.NodeProto, g: _Graph) -> Iterator[str]:
    op = node.op_type
    scale_type = g.elem_type(w_dq.input[1])
    if scale_type is not None and scale_type != TensorProto.FLOAT:
        yield f"weight scale is {_type_name(scale_type)}: the integer kernels take FLOAT scales"
    if int(_attr(w_dq, "block_size", 0)):
        yield (
            "blocked weight quantization (block_size): the 8-bit kernels need per-tensor or per-channel "
            "scales (blocks only fuse into MatMulNBits, with float activations)"
        )
        return
    axis = _per_axis(w_dq, g)
    if axis is None:
        return
    w_shape = g.shape(w_dq.input[0])
    rank = len(w_shape) if w_shape is not None else None
    if op == "Conv" and axis != 0:
        yield f"weight scale on axis {axis}: QLinearConv needs per-tensor or axis-0 (output channel) scales"
    elif op == "MatMul" and rank is not None and axis != rank - 1:
        where = "per-row (axis 0 of [K, N])" if rank == 2 and axis == 0 else f"on axis {axis}"
        yield (
            f"weight scale {where}: QLinearMatMul/MatMulIntegerToFloat need per-tensor or per-column "
            f"(axis {rank - 1}) scales; onnxruntime leaves it unfused"
        )
    elif op == "Gemm" and rank == 2:
        n_axis = 0 if int(_attr(node, "transB", 0)) else 1
        if axis != n_axis:
            yield f"weight scale on axis {axis}, the K axis of B: QGemm needs per-tensor or per-N-channel scales"


def _bias_issues(
    node: onnx.NodeProto, act_dq: onnx.NodeProto, w_dq: onnx.NodeProto, bias: str, g: _Graph
) -> Iterator[str]:
    if not bias:
        return
    bias_dq = g.producer_op(bias, "DequantizeLinear")
    if bias_dq is not None:
        dtype = g.dq_input_type(bias_dq)
        if dtype is not None and dtype != TensorProto.INT32:
            yield f"bias DequantizeLinear is {_type_name(dtype)}, not INT32"
        if node.op_type == "Conv":  # QGemm fuses regardless (see _integer_warning)
            deviation, nonzero_zp = _bias_consistency(act_dq, w_dq, bias_dq, g)
            if deviation is not None and deviation > _BIAS_SCALE_RTOL:
                yield (
                    f"bias scale differs from input scale x weight scale by up to {deviation:.3g} (relative): "
                    "QLinearConv reads the int32 bias at input scale x weight scale, so onnxruntime fuses only "
                    "when they agree (within about 1 %)"
                )
            if nonzero_zp:
                yield "bias zero point is nonzero: QLinearConv takes an int32 bias with zero point 0"
    elif g.constant(bias) is None:
        yield "bias is a computed float tensor: every input needs a DequantizeLinear (bias an int32 one)"
    # A float bias initializer is quantized to int32 by onnxruntime (WeightBiasQuantization): no issue.


def _output_issues(node: onnx.NodeProto, g: _Graph, act_type: int | None) -> Iterator[str]:
    op = node.op_type
    out = node.output[0]
    consumers = g.consumers.get(out, [])
    quantizers = [c for c in consumers if c.op_type == "QuantizeLinear"]
    clip = None
    if len(consumers) == 1 and consumers[0].op_type in ("Relu", "Clip") and out not in g.graph_outputs:
        clip = consumers[0]
        after = g.consumers.get(clip.output[0], [])
        quantizers = [c for c in after if c.op_type == "QuantizeLinear"]
        if quantizers and (len(after) != 1 or clip.output[0] in g.graph_outputs):
            yield f"the {clip.op_type} output feeds other nodes besides QuantizeLinear"
        elif quantizers:
            problem = _clip_not_redundant(clip, quantizers[0], g)
            if problem:
                yield problem
    if not quantizers:
        if op == "Conv":
            where = f" (after the {clip.op_type})" if clip is not None else ""
            yield f"no QuantizeLinear after the Conv{where}: QLinearConv needs a quantized output"
        return
    if clip is None and (len(quantizers) != len(consumers) or out in g.graph_outputs):
        yield f"the {op} output also feeds other nodes or a graph output, not only QuantizeLinear"
    out_type = g.elem_type(quantizers[0].output[0])
    if act_type is not None and out_type is not None and out_type != act_type:
        yield (
            f"output QuantizeLinear type {_type_name(out_type)} differs from the activation type {_type_name(act_type)}"
        )


def _clip_not_redundant(clip: onnx.NodeProto, q: onnx.NodeProto, g: _Graph) -> str | None:
    """Why a Relu/Clip before QuantizeLinear cannot be folded (``None``: foldable or unknown)."""
    q_type = integer_type_of(g.elem_type(q.output[0]))
    zero_point = g.values(q.input[2]) if len(q.input) > 2 and q.input[2] else 0
    scale = g.values(q.input[1])
    if q_type is None or q_type.bits != 8 or zero_point is None or scale is None:
        return None
    if np.size(zero_point) != 1 or np.size(scale) != 1:
        return None
    zero_point, scale = int(np.asarray(zero_point).reshape(-1)[0]), float(np.asarray(scale).reshape(-1)[0])
    q_min, q_max = q_type.qmin, q_type.qmax
    low, high = (q_min - zero_point) * scale, (q_max - zero_point) * scale
    if clip.op_type == "Relu":
        if zero_point != q_min:
            return (
                f"the Relu before QuantizeLinear cannot be folded (zero point {zero_point} is not the "
                f"{_type_name(q_type.data_type)} minimum {q_min}): the fused kernel needs QuantizeLinear right "
                "after the op"
            )
        return None
    clip_min = g.values(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
    clip_max = g.values(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
    if clip_min is None and len(clip.input) > 1 and clip.input[1]:
        return None  # computed bounds: unknown
    if clip_max is None and len(clip.input) > 2 and clip.input[2]:
        return None
    lo = float(np.asarray(clip_min).reshape(-1)[0]) if clip_min is not None else float(_attr(clip, "min", -np.inf))
    hi = float(np.asarray(clip_max).reshape(-1)[0]) if clip_max is not None else float(_attr(clip, "max", np.inf))
    if lo > low + 1e-6 * abs(scale) or hi < high - 1e-6 * abs(scale):
        return (
            f"the Clip [{lo:g}, {hi:g}] before QuantizeLinear cannot be folded (the quantized range is "
            f"[{low:g}, {high:g}]): the fused kernel needs QuantizeLinear right after the op"
        )
    return None


def _matmulnbits_issues(node: onnx.NodeProto, w_dq: onnx.NodeProto | None, g: _Graph) -> Iterator[str]:
    """Conditions of onnxruntime's weight-only ``DQ → MatMul/Gemm ⇒ MatMulNBits`` fusion that fail."""
    if w_dq is None:
        yield "the weight has no DequantizeLinear either"
        return
    if node.op_type == "Gemm":
        if abs(float(_attr(node, "alpha", 1.0)) - 1.0) > 1e-6:
            yield "Gemm alpha is not 1"
        if int(_attr(node, "transA", 0)):
            yield "Gemm transA=1"
        if int(_attr(node, "transB", 0)):
            yield "Gemm transB=1"
        if len(node.input) > 2 and node.input[2] and abs(float(_attr(node, "beta", 1.0)) - 1.0) > 1e-6:
            yield "Gemm beta is not 1"
    weight = g.constant(w_dq.input[0])
    if weight is None:
        yield "the weight is not a constant initializer"
        return
    if weight.data_type not in _NBITS_INT_TYPES:
        yield f"weight type {_type_name(weight.data_type)} is not a 2/4/8-bit integer"
    if len(weight.dims) != 2:
        yield f"the weight is {len(weight.dims)}-D, not 2-D"
        return
    scale_type = g.elem_type(w_dq.input[1])
    if scale_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        yield f"weight scale is {_type_name(scale_type)}, not FLOAT/FLOAT16"
    if g.constant(w_dq.input[1]) is None:
        yield "the weight scale is not constant"
    scale_shape = g.shape(w_dq.input[1]) or ()
    block_size = int(_attr(w_dq, "block_size", 0))
    axis = int(_attr(w_dq, "axis", 1))
    if block_size:
        if axis not in (0, -2):
            yield f"blocked along axis {axis}, not 0"
        if block_size < 16 or block_size & (block_size - 1):
            yield f"block_size {block_size} is not a power of two >= 16"
    elif len(scale_shape) == 1 and scale_shape[0] != 1 and axis not in (1, -1):
        yield f"per-channel scale on axis {axis}: MatMulNBits takes per-N-channel (axis 1) scales"
    elif len(scale_shape) > 1:
        yield "weight scale of rank > 1 without block_size"
