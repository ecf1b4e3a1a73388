"""Which node of onnxruntime's optimized graph each Conv / MatMul / Gemm of the emitted model became.

Every Conv / MatMul / Gemm of the emitted model is mapped to the node of the optimized graph that replaced
it, by a score summed over these kinds of evidence, strongest first:

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
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Iterable, Iterator

import onnx_ir as ir

from fp8conv.runtime.audit.ir_queries import dequantizer, label, readers
from fp8conv.runtime.fusion_rules import FUSABLE_ACTIVATIONS, INTEGER_KERNELS
from fp8conv.runtime.ir_constants import constant_tensor

__all__ = ["SUFFIXES", "derives", "match_nodes"]

logger = logging.getLogger(__name__)

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
SUFFIXES = r"/(?:[A-Za-z0-9]*Fusion|duplicated)/?|_token_\d+|_T|_s8_2_u8|_nchwc|_bias_int32"
_ONE_SUFFIX = re.compile(rf"(?:{SUFFIXES})$")

_SCORE_NAME_EXACT = 8
_SCORE_NAME_DERIVED = 6
_SCORE_WEIGHT = 4
_SCORE_WEIGHT_DQ_OUTPUT = 3
_SCORE_BIAS = 3
_SCORE_OUTPUT = 2


@dataclasses.dataclass
class _Anchors:
    name: str
    weights: set[str]
    weight_dq_outputs: set[str]
    biases: set[str]
    outputs: set[str]


def derives(base: str, name: str) -> bool:
    """Whether ``name`` is ``base`` with onnxruntime's prefix and suffixes (``(fused )?base(suffix)*``)."""
    return bool(base) and base in _bases(name)


@functools.lru_cache(maxsize=65536)
def _bases(name: str) -> frozenset[str]:
    """Every ``base`` with ``name == prefix + base + suffixes`` (prefix ``fused `` or none, any suffixes).

    Stripping one suffix at a time from the end finds them all: no suffix of ``SUFFIXES`` ends another.
    """
    found = set()
    for current in {name, name.removeprefix("fused ")}:
        while current and current not in found:
            found.add(current)
            current = _ONE_SUFFIX.sub("", current)
    return frozenset(found)


def _names(values: Iterable[ir.Value | None]) -> list[str]:
    """The names of the values that are there and named."""
    return [value.name for value in values if value is not None and value.name]


def _anchors(node: ir.Node) -> _Anchors:
    weights: set[str] = set()
    dq_outputs: set[str] = set()
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    dq = dequantizer(weight)
    if dq is not None:
        weights.update(_names(dq.inputs[:1]))
        dq_outputs.update(_names([weight]))
    elif constant_tensor(weight) is not None:
        weights.update(_names([weight]))
    biases: set[str] = set()
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if node.op_type in ("Conv", "Gemm") and bias is not None:
        bias_dq = dequantizer(bias)
        biases.update(_names(bias_dq.inputs[:1] if bias_dq is not None else [bias]))
    following = list(node.outputs)
    outputs = set(_names(following))
    for _ in range(2):  # node → [Relu/Clip →] QuantizeLinear
        following = [
            o
            for value in following
            for consumer in readers(value)
            if consumer.op_type in FUSABLE_ACTIVATIONS or consumer.op_type == "QuantizeLinear"
            for o in consumer.outputs
        ]
        outputs.update(_names(following))
    return _Anchors(node.name or "", weights, dq_outputs, biases, outputs)


def _effective_outputs(node: ir.Node) -> set[str]:
    """A node's outputs plus those of layout-only nodes after it (NHWC Transpose, NCHWc ReorderOutput)."""
    following = list(node.outputs)
    result = set(_names(following))
    for _ in range(3):
        following = [
            o
            for value in following
            for consumer in readers(value)
            if consumer.op_type in _LAYOUT_OPS
            for o in consumer.outputs
        ]
        result.update(_names(following))
    return result


def _score(anchors: _Anchors, node: ir.Node, effective_outputs: set[str]) -> int:
    score = 0
    name = node.name or ""
    if anchors.name:
        if name == anchors.name:
            score += _SCORE_NAME_EXACT
        elif derives(anchors.name, name):
            score += _SCORE_NAME_DERIVED
    inputs = _names(node.inputs)
    if any(derives(w, i) for w in anchors.weights for i in inputs):
        score += _SCORE_WEIGHT
    elif any(derives(d, i) for d in anchors.weight_dq_outputs for i in inputs):
        score += _SCORE_WEIGHT_DQ_OUTPUT
    if anchors.biases.intersection(inputs):
        score += _SCORE_BIAS
    if effective_outputs & anchors.outputs or any(derives(o, name) for o in anchors.outputs):
        score += _SCORE_OUTPUT
    if score == _SCORE_OUTPUT and node.op_type not in _COMPUTE_OPS:
        return 0  # output evidence alone only identifies ops a Conv/MatMul/Gemm can become
    return score


def match_nodes(targets: list[ir.Node], optimized: ir.Graph) -> list[ir.Node | None]:
    """For each target of the emitted graph, the optimized node it became (``None`` if not found)."""
    candidates = [n for n in optimized if n.op_type not in _NON_COMPUTE_OPS]
    # Index candidates by every name that could identify them, so scoring stays near-linear on big graphs.
    by_key: dict[str, list[int]] = {}

    def index(key: str, j: int) -> None:
        by_key.setdefault(key, []).append(j)

    effective = [_effective_outputs(n) for n in candidates]
    for j, node in enumerate(candidates):
        for key in _base_names(node.name or ""):
            index(key, j)
        for tensor in _names(node.inputs):
            for key in _base_names(tensor):
                index(key, j)
        for tensor in effective[j]:
            index(tensor, j)
    pairs: list[tuple[int, int, int]] = []
    for i, target in enumerate(targets):
        anchors = _anchors(target)
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
    result: list[ir.Node | None] = [None] * len(targets)
    used: set[int] = set()
    for _, i, j in pairs:
        if result[i] is None and j not in used:
            result[i] = candidates[j]
            used.add(j)
    for _, i, j in pairs:  # left-overs may share a node (e.g. several MatMuls merged into one)
        if result[i] is None:
            result[i] = candidates[j]
            logger.debug("kernel audit: %s shares optimized node %s", label(targets[i]), candidates[j].name)
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
