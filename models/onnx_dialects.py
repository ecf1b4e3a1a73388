"""Rewrite the Cast-pair FP8 dialect exported by torch into the other FP8 ONNX dialects.

Input: a model in which every fake quantizer is the chain that ``torch.onnx.export(dynamo=True)`` emits
for ``(x / s).clamp(-m, m).to(float8).to(float32) * s``::

    Div(x, s) -> [Clip(-m, m)] -> Cast(to=FLOAT8*) -> Cast(to=FLOAT) -> Mul(., s)

with ``s`` a constant (scalar per tensor, or shaped like ``x`` with one non-1 axis per channel).
Outputs, one function per dialect:

* :func:`to_qdq` - standard ``QuantizeLinear -> DequantizeLinear`` with a float8 zero point for
  activations; weights (``x`` is an initializer) become FP8 initializers behind a ``DequantizeLinear``
  with a 1-D per-channel scale and ``axis`` (DQ-only weights, as ModelOpt's ``compress_weights``).
* :func:`to_trt` - activations as ``trt::TRT_FP8QuantizeLinear -> trt::TRT_FP8DequantizeLinear``
  (per-tensor, q typed uint8), weights as in :func:`to_qdq` (TensorRT ops are per-tensor only).
* :func:`to_float_quant` - every chain becomes one QONNX ``FloatQuant`` node.

Plain onnx protobuf, no fp8conv code: these files are the converter's test inputs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP8_DTYPES = {
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
    TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
}
TRT_DOMAIN = "trt"
QONNX_DOMAIN = "qonnx.custom_op.general"


@dataclasses.dataclass(frozen=True)
class CastChain:
    """One fake quantizer in the Cast-pair dialect."""

    nodes: tuple[onnx.NodeProto, ...]  # Div, [Clip], Cast, Cast, Mul in graph order
    source: str  # the tensor being quantized
    output: str  # the Mul's output
    scale_name: str
    scale: np.ndarray
    clip: float | None  # the symmetric Clip bound, None without a Clip
    fp8_type: int  # TensorProto enum of the first Cast

    @property
    def axis(self) -> int | None:
        """The per-channel axis (the one non-1 dimension of the scale), None for a per-tensor scale."""
        if self.scale.size == 1:
            return None
        (axis,) = (d for d, n in enumerate(self.scale.shape) if n != 1)
        return axis

    def scale_vector(self) -> np.ndarray:
        """The scale as ONNX Q/DQ wants it: a scalar, or 1-D along :attr:`axis`."""
        return self.scale.reshape(()) if self.axis is None else self.scale.reshape(-1)


class GraphIndex:
    """Producer, consumer and constant look-ups over one ``GraphProto``."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.graph_outputs = {o.name for o in graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        """Value of an initializer or ``Constant`` node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
        return None

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        consumers = self.consumers.get(name, [])
        if len(consumers) != 1 or name in self.graph_outputs:
            return None
        return consumers[0]


def _attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _match_chain(index: GraphIndex, cast_in: onnx.NodeProto) -> CastChain:
    """The chain around the float8 ``Cast`` ``cast_in``; ValueError if it is not a complete chain."""
    where = f"float8 Cast {cast_in.name!r}"
    back = index.producer.get(cast_in.input[0])
    clip_node, clip = None, None
    if back is not None and back.op_type == "Clip":
        clip_node = back
        low, high = (index.constant(name) for name in back.input[1:3])
        if low is None or high is None or float(low) != -float(high):
            raise ValueError(f"{where}: Clip {back.name!r} needs constant symmetric bounds")
        clip = float(high)
        back = index.producer.get(back.input[0])
    if back is None or back.op_type != "Div" or index.constant(back.input[1]) is None:
        raise ValueError(f"{where}: expected Div(x, constant scale) in front")
    div, scale_name = back, back.input[1]
    scale = index.constant(scale_name)
    cast_out = index.sole_consumer(cast_in.output[0])
    if cast_out is None or cast_out.op_type != "Cast" or _attribute(cast_out, "to") != TensorProto.FLOAT:
        raise ValueError(f"{where}: expected a single Cast(to=FLOAT) after it")
    mul = index.sole_consumer(cast_out.output[0])
    if mul is None or mul.op_type != "Mul":
        raise ValueError(f"{where}: expected Mul by the scale after the Cast pair")
    other = mul.input[1] if mul.input[0] == cast_out.output[0] else mul.input[0]
    other_value = index.constant(other)
    if other_value is None or other_value.shape != scale.shape or not np.array_equal(other_value, scale):
        raise ValueError(f"{where}: the Mul's scale {other!r} differs from the Div's {scale_name!r}")
    nodes = tuple(n for n in (div, clip_node, cast_in, cast_out, mul) if n is not None)
    for node in nodes[:-1]:
        if index.sole_consumer(node.output[0]) is None:
            raise ValueError(f"{where}: intermediate {node.output[0]!r} has other consumers")
    fp8_type = int(_attribute(cast_in, "to"))  # type: ignore[arg-type]
    return CastChain(nodes, div.input[0], mul.output[0], scale_name, scale, clip, fp8_type)


def find_cast_chains(model: onnx.ModelProto) -> list[CastChain]:
    """Every Cast-pair fake quantizer of the main graph, in graph order."""
    index = GraphIndex(model.graph)
    return [
        _match_chain(index, node)
        for node in model.graph.node
        if node.op_type == "Cast" and _attribute(node, "to") in FP8_DTYPES
    ]


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]
    return {v.name: v.type for v in values}


@dataclasses.dataclass
class Rewrite:
    """What a chain is replaced by: nodes, new initializers, and types of new values."""

    nodes: list[onnx.NodeProto] = dataclasses.field(default_factory=list)
    initializers: list[onnx.TensorProto] = dataclasses.field(default_factory=list)
    value_types: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)  # name -> (elem, like)


RewriteFn = Callable[[CastChain, GraphIndex], Rewrite]


def _rewrite(model: onnx.ModelProto, rewrite: RewriteFn, domains: dict[str, int]) -> onnx.ModelProto:
    """Replace every chain by ``rewrite(chain)``, placed where the chain's Div was; prune and retype."""
    types = _value_types(model)
    index = GraphIndex(model.graph)
    # Nodes are identified by their first output (unique in SSA form).
    chains = {chain.nodes[0].output[0]: chain for chain in find_cast_chains(model)}
    removed = {node.output[0] for chain in chains.values() for node in chain.nodes}
    nodes: list[onnx.NodeProto] = []
    initializers = {t.name: t for t in model.graph.initializer}
    new_types: dict[str, tuple[int, str]] = {}
    for node in model.graph.node:
        key = node.output[0]
        if key in chains:
            replacement = rewrite(chains[key], index)
            nodes.extend(replacement.nodes)
            initializers.update((t.name, t) for t in replacement.initializers)
            new_types.update(replacement.value_types)
        elif key not in removed:
            nodes.append(node)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    del graph.initializer[:]
    graph.initializer.extend(t for name, t in initializers.items() if name in used)
    produced = [name for node in nodes for name in node.output]
    io_names = {v.name for v in [*graph.input, *graph.output]}
    del graph.value_info[:]
    for name in produced:
        if name in io_names:
            continue
        if name in new_types:
            elem_type, like = new_types[name]
            value_type = onnx.TypeProto()
            value_type.CopyFrom(types[like])
            value_type.tensor_type.elem_type = elem_type
            graph.value_info.append(helper.make_value_info(name, value_type))
        elif name in types:
            graph.value_info.append(helper.make_value_info(name, types[name]))
    for domain, version in domains.items():
        if all(o.domain != domain for o in out.opset_import):
            out.opset_import.append(helper.make_opsetid(domain, version))
    return out


def _node_name(chain: CastChain, suffix: str) -> str:
    return f"{chain.nodes[0].name}_{suffix}"


def _fp8_weight(chain: CastChain, index: GraphIndex) -> Rewrite:
    """``DequantizeLinear(FP8 initializer, scale[, axis])`` for a chain that quantizes an initializer."""
    weight = index.constant(chain.source)
    assert weight is not None
    bound = chain.clip if chain.clip is not None else np.inf
    codes = np.clip(weight / chain.scale, -bound, bound).astype(np.float32).astype(FP8_DTYPES[chain.fp8_type])
    codes_name, scale_name = f"{chain.source}_fp8", f"{chain.source}_scale"
    attrs = {} if chain.axis is None else {"axis": chain.axis}
    dq = helper.make_node(
        "DequantizeLinear", [codes_name, scale_name], [chain.output], name=_node_name(chain, "dequantize"), **attrs
    )
    return Rewrite(
        nodes=[dq],
        initializers=[
            numpy_helper.from_array(codes, codes_name),
            numpy_helper.from_array(chain.scale_vector().astype(np.float32), scale_name),
        ],
    )


def _zero_point(chain: CastChain) -> onnx.TensorProto:
    shape = chain.scale_vector().shape
    name = "fp8_zero_point" if not shape else f"{chain.scale_name}_zero_point"
    return numpy_helper.from_array(np.zeros(shape, dtype=FP8_DTYPES[chain.fp8_type]), name)


def _qdq_rewrite(chain: CastChain, index: GraphIndex) -> Rewrite:
    if chain.source in index.initializers:
        return _fp8_weight(chain, index)
    scale_name = chain.scale_name if chain.axis is None and chain.scale.ndim == 0 else f"{chain.scale_name}_vector"
    zero_point = _zero_point(chain)
    attrs = {} if chain.axis is None else {"axis": chain.axis}
    q_name = f"{chain.output}_fp8"
    inputs = [scale_name, zero_point.name]
    return Rewrite(
        nodes=[
            helper.make_node(
                "QuantizeLinear", [chain.source, *inputs], [q_name], name=_node_name(chain, "quantize"), **attrs
            ),
            helper.make_node(
                "DequantizeLinear", [q_name, *inputs], [chain.output], name=_node_name(chain, "dequantize"), **attrs
            ),
        ],
        initializers=[zero_point, numpy_helper.from_array(chain.scale_vector().astype(np.float32), scale_name)],
        value_types={q_name: (chain.fp8_type, chain.source)},
    )


def _trt_rewrite(chain: CastChain, index: GraphIndex) -> Rewrite:
    if chain.source in index.initializers:
        return _fp8_weight(chain, index)
    if chain.axis is not None or chain.fp8_type != TensorProto.FLOAT8E4M3FN:
        raise ValueError(f"TRT FP8 ops are per-tensor E4M3FN only; {chain.source!r} is not")
    q_name = f"{chain.output}_fp8"
    return Rewrite(
        nodes=[
            helper.make_node(
                "TRT_FP8QuantizeLinear",
                [chain.source, chain.scale_name],
                [q_name],
                name=_node_name(chain, "quantize"),
                domain=TRT_DOMAIN,
            ),
            helper.make_node(
                "TRT_FP8DequantizeLinear",
                [q_name, chain.scale_name],
                [chain.output],
                name=_node_name(chain, "dequantize"),
                domain=TRT_DOMAIN,
            ),
        ],
        value_types={q_name: (TensorProto.UINT8, chain.source)},
    )


def to_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Standard Q/DQ dialect: Q -> DQ with a float8 zero point; DQ-only FP8 weights."""
    return _rewrite(model, _qdq_rewrite, {})


def to_trt(model: onnx.ModelProto) -> onnx.ModelProto:
    """TensorRT dialect for activations (``trt`` opset 1), DQ-only per-channel FP8 weights."""
    return _rewrite(model, _trt_rewrite, {TRT_DOMAIN: 1})


@dataclasses.dataclass(frozen=True)
class MinifloatSpec:
    """The parameters of a QONNX ``FloatQuant`` node."""

    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_value: float


def to_float_quant(model: onnx.ModelProto, spec: MinifloatSpec) -> onnx.ModelProto:
    """QONNX dialect: each chain (a placeholder whose Clip bound is ``spec.max_value``) -> ``FloatQuant``."""
    constants = {
        "float_quant_exponent_bitwidth": float(spec.exponent_bits),
        "float_quant_mantissa_bitwidth": float(spec.mantissa_bits),
        "float_quant_exponent_bias": float(spec.bias),
        "float_quant_max_val": float(spec.max_value),
    }
    tensors = [numpy_helper.from_array(np.array(v, dtype=np.float32), name) for name, v in constants.items()]

    def rewrite(chain: CastChain, index: GraphIndex) -> Rewrite:
        if chain.clip != spec.max_value:
            raise ValueError(f"placeholder chain on {chain.source!r} clips at {chain.clip}, not {spec.max_value}")
        node = helper.make_node(
            "FloatQuant",
            [chain.source, chain.scale_name, *constants],
            [chain.output],
            name=_node_name(chain, "float_quant"),
            domain=QONNX_DOMAIN,
            has_inf=0,
            has_nan=0,
            has_subnormal=1,
            saturation=1,
            rounding_mode="ROUND",
        )
        return Rewrite(nodes=[node], initializers=tensors)

    return _rewrite(model, rewrite, {QONNX_DOMAIN: 1})


def trt_as_standard(model: onnx.ModelProto) -> onnx.ModelProto:
    """For checking only: the TRT ops as standard Q/DQ (zero point float8 0), runnable by onnxruntime."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    zero = numpy_helper.from_array(np.zeros((), dtype=ml_dtypes.float8_e4m3fn), "trt_check_zero_point")
    out.graph.initializer.append(zero)
    for node in out.graph.node:
        if node.domain == TRT_DOMAIN:
            node.op_type = node.op_type.removeprefix("TRT_FP8")
            node.domain = ""
            node.input.append(zero.name)
    for value in out.graph.value_info:
        if value.type.tensor_type.elem_type == TensorProto.UINT8:
            value.type.tensor_type.elem_type = TensorProto.FLOAT8E4M3FN
    kept = [o for o in out.opset_import if o.domain != TRT_DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    return out


def count_ops(model: onnx.ModelProto) -> dict[str, int]:
    """``{"domain::Op": count}`` over the main graph, sorted by name."""
    counts: dict[str, int] = defaultdict(int)
    for node in model.graph.node:
        counts[f"{node.domain}::{node.op_type}" if node.domain else node.op_type] += 1
    return dict(sorted(counts.items()))
