"""Normalize standard FP8 ``QuantizeLinear`` → ``DequantizeLinear`` pairs into the canonical form.

This module also holds the small graph-rewriting helpers that every normalization pass shares
(checking zero points, reading granularity, replacing a matched chain of nodes by one
canonical node while keeping the source tensor names, and opset-import bookkeeping).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx_ir as ir

from fp8conv import fp8
from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.passes.canonical import (
    CANONICAL_DOMAIN,
    CANONICAL_OPSET,
    FP8_DATA_TYPES,
    QuantSpec,
    constant_array,
    constant_tensor,
    make_fake_quantize,
    read_scale,
)
from fp8conv.passes.names import forget_name, names_for, shared_names
from fp8conv.runtime.formats import FORMATS, FloatFormat
from fp8conv.runtime.integer_types import quantize_output_type

__all__ = [
    "QDQ_DOMAINS",
    "ONNX_DOMAINS",
    "NormalizeQdqPass",
    "add_canonical_opset",
    "add_initializer",
    "check_zero_point",
    "constant_dtype",
    "drop_unused_opsets",
    "per_axis_scale",
    "remove_unused_constants",
    "replace_with_fake_quantize",
    "rewrite_chain",
    "same_constant",
    "static_shape",
    "scale_spec",
]

logger = logging.getLogger(__name__)

ONNX_DOMAINS = ("", "ai.onnx")
QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft", "trt")
"""Domains whose ``QuantizeLinear``/``DequantizeLinear`` follow the ONNX definition (ModelOpt's deploy
export keeps ``trt`` after renaming ``TRT_FP8*`` to the standard names, ORT uses ``com.microsoft`` below
opset 21)."""

Shape = tuple[int | None, ...]


# --- reading constants and shapes -------------------------------------------------------------------


def constant_dtype(value: ir.Value | None) -> ir.DataType | None:
    """The element type of a value: that of its constant contents, else its declared type.

    A constant's own type wins over a declaration, which may be stale (``value_info`` written by an
    exporter before it retyped the tensor).
    """
    if value is None:
        return None
    tensor = constant_tensor(value)
    return tensor.dtype if tensor is not None else value.dtype


def static_shape(value: ir.Value | None) -> Shape | None:
    """The value's shape with unknown dimensions as None, or None when even the rank is unknown."""
    if value is None:
        return None
    if value.shape is not None:
        return tuple(dim if isinstance(dim, int) else None for dim in value.shape)
    array = constant_array(value)
    return None if array is None else array.shape


def same_constant(a: ir.Value | None, b: ir.Value | None) -> bool:
    """Whether two values are the same constant: the same value, or constants of equal type, shape and contents."""
    if a is None or b is None:
        return False
    if a is b:
        return True
    array_a, array_b = constant_array(a), constant_array(b)
    return (
        array_a is not None
        and array_b is not None
        and constant_dtype(a) == constant_dtype(b)
        and array_a.shape == array_b.shape
        and bool(np.array_equal(array_a, array_b, equal_nan=False))
    )


# --- validation -------------------------------------------------------------------------------------


def check_zero_point(node: ir.Node, value: ir.Value | None) -> None:
    """Check that an FP8 zero point (if any) decodes to 0 everywhere.

    Raises:
        Fp8ConvError: When the zero point is not a constant or holds a non-zero code.
    """
    if value is None:
        return
    dtype = constant_dtype(value)
    codes = constant_array(value)
    if codes is None or dtype not in FP8_DATA_TYPES:
        raise Fp8ConvError(
            f"node {node.name!r}: FP8 zero point must be 0, but {value.name!r} is not a constant FP8 tensor"
        )
    decoded = fp8.decode(codes, FP8_DATA_TYPES[dtype])
    if not np.all(decoded == 0):
        found = decoded.reshape(-1)[np.argmax(decoded.reshape(-1) != 0)]
        raise Fp8ConvError(f"node {node.name!r}: FP8 zero point must be 0, {value.name!r} holds {found!r}")


def scale_spec(
    node: ir.Node, fmt: FloatFormat, scale: np.ndarray, data_shape: Shape | None, *, saturate: bool
) -> QuantSpec:
    """The granularity that a Q/DQ node's ``axis``/``block_size`` and its scale's shape describe.

    A scale of one element is per-tensor, a 1-D scale per-axis along ``axis`` (default 1), and a
    scale of the data's rank with ``block_size`` > 0 blocked. The checks against the data's shape
    run where that shape is known.

    Raises:
        Fp8ConvError: When the scale's shape does not fit ``axis``/``block_size`` and the data shape.
    """
    block_size = node.attributes.get_int("block_size", 0)
    axis = node.attributes.get_int("axis", 1)
    rank = None if data_shape is None else len(data_shape)
    where = f"node {node.name!r}: scale {node.inputs[1].name if node.inputs[1] else None!r}"
    if block_size < 0:
        raise Fp8ConvError(f"node {node.name!r}: block_size must be >= 0, got {block_size}")
    if block_size == 0 and scale.size == 1 and scale.ndim <= 1:
        return QuantSpec(fmt, saturate=saturate)
    if block_size == 0 and scale.ndim != 1:
        raise Fp8ConvError(
            f"{where} has shape {scale.shape}: a non-scalar scale must be 1-D (per axis) or come with block_size"
        )
    if rank is not None:
        if not -rank <= axis < rank:
            raise Fp8ConvError(f"node {node.name!r}: axis {axis} is out of range for data of rank {rank}")
        axis %= rank
    if block_size == 0:
        length = None if data_shape is None else data_shape[axis]
        if length is not None and scale.shape[0] != length:
            raise Fp8ConvError(f"{where} has {scale.shape[0]} entries but dimension {axis} of the data has {length}")
        return QuantSpec(fmt, axis=axis, saturate=saturate)
    if data_shape is not None:
        expected = tuple(
            (None if dim is None else -(-dim // block_size)) if d == axis else dim for d, dim in enumerate(data_shape)
        )
        fits = scale.ndim == len(expected) and all(
            e is None or e == s for e, s in zip(expected, scale.shape, strict=True)
        )
        if not fits:
            raise Fp8ConvError(
                f"{where} has shape {scale.shape}, but data of shape {data_shape} with axis {axis} and "
                f"block_size {block_size} needs {expected}"
            )
    elif scale.ndim == 0:
        raise Fp8ConvError(f"{where} is a scalar, but block_size {block_size} needs one scale per block")
    return QuantSpec(fmt, axis=axis, block_size=block_size, saturate=saturate)


def per_axis_scale(node: ir.Node, value: ir.Value, scale: np.ndarray, data: ir.Value) -> tuple[ir.Value, int | None]:
    """Turn a broadcastable scale (``[C,1,1,1]``, ``[1,C,1,1]``, ``[1,1]``…) into a canonical one.

    A scale that multiplies ``data`` by NumPy broadcasting is per-tensor when it has one element
    and per-axis when exactly one of its dimensions is longer than 1. The canonical form wants a
    scalar or a 1-D scale with ``axis``; when the given scale has another shape, a new initializer
    with the same type and contents is added (the original, possibly shared, is left as it is).

    Args:
        node: The quantizer (named in error messages; its graph receives any new initializer).
        value: The scale value.
        scale: Its contents.
        data: The quantized tensor (its rank fixes the axis; a negative axis is used when unknown).

    Returns:
        The scale value to use and the axis (None for per-tensor).

    Raises:
        Fp8ConvError: When the scale does not broadcast against the data.
        UnsupportedModelError: When the scale varies along more than one axis.
    """
    if scale.ndim == 0:
        return value, None
    shape = static_shape(data)
    rank = None if shape is None else len(shape)
    if rank is not None and scale.ndim > rank:
        raise Fp8ConvError(
            f"node {node.name!r}: scale {value.name!r} of shape {scale.shape} has more dimensions than "
            f"{data.name!r} (rank {rank})"
        )
    varying = [i for i, dim in enumerate(scale.shape) if dim != 1]
    if len(varying) > 1:
        raise UnsupportedModelError(
            f"node {node.name!r}: scale {value.name!r} of shape {scale.shape} varies along more than one "
            "axis; only per-tensor and per-channel scales are supported"
        )
    if not varying:
        return add_initializer(node, value, scale.reshape(()), "scalar"), None
    axis = varying[0] - scale.ndim
    if shape is not None:
        axis += len(shape)
        length = shape[axis]
        if length is not None and length != scale.shape[varying[0]]:
            raise Fp8ConvError(
                f"node {node.name!r}: scale {value.name!r} of shape {scale.shape} does not broadcast against "
                f"{data.name!r} of shape {shape}"
            )
    if scale.ndim == 1 and axis >= 0:
        return value, axis
    return add_initializer(node, value, scale.reshape(-1), f"axis{axis}"), axis


def add_initializer(node: ir.Node, like: ir.Value, array: np.ndarray, suffix: str) -> ir.Value:
    """Register ``array`` (in ``like``'s element type) as a new initializer of the node's graph.

    The initializer is named ``<like's name>_<suffix>``; an existing initializer of that name with
    equal contents is reused (two quantizers that shared a scale still share the new one), and a
    counter is appended when any value or node of the graph has the name (:func:`~fp8conv.passes.names.names_for`).

    Args:
        node: A node of the graph that receives the initializer.
        like: The value whose name and element type the new initializer takes.
        array: The contents.
        suffix: Appended to ``like``'s name.

    Returns:
        The initializer value.
    """
    graph = node.graph
    assert graph is not None
    dtype = constant_dtype(like)
    tensor = ir.tensor(np.asarray(array, order="C"), dtype=dtype)  # (ascontiguousarray makes 0-d arrays 1-d)

    def equal(name: str) -> bool:
        existing = graph.initializers.get(name)
        return existing is not None and existing.dtype == dtype and np.array_equal(constant_array(existing), array)

    name = names_for(graph).new(f"{like.name}_{suffix}", reuse=equal)
    if name in graph.initializers:
        return graph.initializers[name]
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


# --- rewriting --------------------------------------------------------------------------------------


def rewrite_chain(
    pattern: Sequence[ir.Node], build: Callable[[ir.Value], ir.Node | Sequence[ir.Node]]
) -> ir.Node | Sequence[ir.Node]:
    """Replace a chain of nodes by new nodes whose last produces the chain's result value.

    The result is the single output of the chain's last node; every other output of the chain
    must be read only inside the chain. The result value object is kept, so its name, shape and
    any graph-output position stay as they were (the caller declares its type when the new nodes
    compute another one); the new nodes take the last node's place in the graph order (all of the
    chain's inputs are defined before them).

    Args:
        pattern: The nodes to remove, the one that produces the result last.
        build: Called with the result value; returns the new node (or nodes, in order) whose last
            has that value as its output.

    Returns:
        What ``build`` returned, inserted.
    """
    last = pattern[-1]
    graph = last.graph
    assert graph is not None
    result = last.outputs[0]
    placeholder = ir.Value()
    result.replace_all_uses_with(placeholder, replace_graph_outputs=True)
    last.resize_outputs(0)
    built = build(result)
    graph.insert_before(last, built)
    graph.remove(pattern, safe=True)
    placeholder.replace_all_uses_with(result, replace_graph_outputs=True)
    return built


def replace_with_fake_quantize(
    pattern: Sequence[ir.Node],
    x: ir.Value,
    scale: ir.Value,
    spec: QuantSpec,
    *,
    source: str,
    name: str | None,
    result_type: ir.DataType | None = None,
) -> ir.Node:
    """Replace a matched fake-quant chain by a canonical FakeQuantize (see :func:`rewrite_chain`).

    FakeQuantize computes in ``x``'s type, so the chain's result is declared with ``x``'s type
    (whatever the source declared, which may be stale). A chain that ends in another float type
    (``result_type``: FP8 codes cast back to float16 and rescaled there) becomes FakeQuantize followed by
    ``Cast(to=result_type)``; the caller guarantees that this rounds as the chain did.

    Args:
        pattern: The chain, its dequantizer last.
        x: The tensor the chain quantizes.
        scale: The constant scale of the FakeQuantize.
        spec: Format, granularity, saturation.
        source: The dialect, recorded in the ``source`` attribute.
        name: Name for the new node (the source quantizer's).
        result_type: The element type the chain computes, when it is not ``x``'s.

    Returns:
        The FakeQuantize node.
    """
    name = name or None
    if result_type is None or result_type == x.dtype:

        def build(output: ir.Value) -> ir.Node:
            if x.type is not None:
                output.type = x.type
            return make_fake_quantize(x, scale, spec, source=source, name=name, output=output)

        fake_quantize = rewrite_chain(pattern, build)
        assert isinstance(fake_quantize, ir.Node)
        return fake_quantize

    graph = pattern[-1].graph
    assert graph is not None
    names = names_for(graph)

    def build_with_cast(output: ir.Value) -> list[ir.Node]:
        quantized = make_fake_quantize(x, scale, spec, source=source, name=name)
        quantized.outputs[0].name = names.new(f"{output.name}_{x.dtype.name.lower() if x.dtype else 'source'}")
        quantized.outputs[0].type = x.type
        quantized.outputs[0].shape = x.shape
        output.type = ir.TensorType(result_type)
        cast = ir.node("Cast", [quantized.outputs[0]], attributes={"to": result_type}, outputs=[output])
        cast.name = names.new(f"{name}_cast") if name else None
        return [quantized, cast]

    nodes = rewrite_chain(pattern, build_with_cast)
    assert isinstance(nodes, list)
    return nodes[0]


def remove_unused_constants(values: Iterable[ir.Value | None]) -> None:
    """Drop initializers and ``Constant`` nodes among ``values`` that nothing reads any more."""
    for value in values:
        if value is None or value.uses() or value.is_graph_output() or value.is_graph_input():
            continue
        graph = value.graph
        if value.is_initializer() and graph is not None and value.name is not None:
            graph.initializers.pop(value.name, None)
            forget_name(graph, value.name)
            continue
        producer = value.producer()
        if producer is not None and producer.op_type == "Constant" and producer.graph is not None:
            forget_name(producer.graph, value.name)
            producer.graph.remove(producer, safe=True)


class NodeRewritePass(ir.passes.InPlacePass):
    """A pass that tries ``_rewrite`` on every node of the main graph and its subgraphs.

    The nodes are listed before any rewrite, so rewrites may remove and insert nodes; a listed node that
    an earlier rewrite removed is skipped. ``_after_rewrites`` runs once when anything changed.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Apply ``_rewrite`` everywhere; modified when any call returned True."""
        modified = False
        with shared_names():
            for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
                if node.graph is not None and self._rewrite(node):
                    modified = True
        if modified:
            self._after_rewrites(model)
        return ir.passes.PassResult(model, modified=modified)

    def _rewrite(self, node: ir.Node) -> bool:
        raise NotImplementedError

    def _after_rewrites(self, model: ir.Model) -> None:
        """Hook for model-level tidying after the rewrites (opset imports)."""


def replace_quantize_dequantize(
    quantize: ir.Node, dequantizers: list[ir.Node], x: ir.Value, scale: ir.Value | None, spec: QuantSpec, source: str
) -> None:
    """Replace ``quantize`` and the DQs reading it by one FakeQuantize per DQ (keeping their outputs).

    The FakeQuantize takes the Q's name when there is one DQ, else each DQ's name; constants only the
    removed nodes read are removed too.
    """
    for dequantize in dequantizers:
        name = quantize.name if len(dequantizers) == 1 else dequantize.name
        constants = dequantize.inputs[1:]
        replace_with_fake_quantize([dequantize], x, scale, spec, source=source, name=name)
        remove_unused_constants(constants)
    graph = quantize.graph
    assert graph is not None
    graph.remove(quantize, safe=True)


def add_canonical_opset(model: ir.Model) -> None:
    """Import the ``ai.fp8conv`` domain that FakeQuantize lives in."""
    model.opset_imports.setdefault(CANONICAL_DOMAIN, CANONICAL_OPSET)


def drop_unused_opsets(model: ir.Model, domains: Callable[[str], bool]) -> None:
    """Remove the opset imports selected by ``domains`` that no node of the model uses any more."""
    used = {node.domain for node in ir.traversal.RecursiveGraphIterator(model.graph)}
    for function in model.functions.values():
        used.add(function.domain)
        used.update(node.domain for node in ir.traversal.RecursiveGraphIterator(function))
    for domain in list(model.opset_imports):
        if domains(domain) and domain not in used:
            logger.debug("dropping the unused opset import %r", domain)
            del model.opset_imports[domain]


def _is_trt_or_qonnx(domain: str) -> bool:
    return domain == "trt" or domain.startswith("qonnx")


# --- the pass ---------------------------------------------------------------------------------------


def _quantized_type(node: ir.Node) -> int | None:
    """The element type a ``QuantizeLinear`` produces (:func:`~fp8conv.runtime.integer_types.quantize_output_type`).

    Raises:
        Fp8ConvError: ``output_dtype`` and the zero point's type differ.
    """
    zero_point = node.inputs[2] if len(node.inputs) > 2 else None
    output_dtype = node.attributes.get_int("output_dtype", 0)
    dtype = constant_dtype(zero_point)
    if output_dtype and dtype is not None and dtype != output_dtype:
        raise Fp8ConvError(
            f"node {node.name!r}: output_dtype {ir.DataType(output_dtype).name} differs from the zero point's "
            f"type {dtype.name}"
        )
    return quantize_output_type(has_zero_point=zero_point is not None, zero_point_type=dtype, output_dtype=output_dtype)


class NormalizeQdqPass(NodeRewritePass):
    """Rewrite FP8 ``QuantizeLinear`` → ``DequantizeLinear`` pairs as canonical FakeQuantize nodes.

    ``DequantizeLinear(QuantizeLinear(x, s, zp), s', zp')`` with an FP8 quantized type becomes
    ``ai.fp8conv::FakeQuantize(x, s)``. The FP8 type is the zero point's element type, or Q's
    ``output_dtype`` when there is no zero point. The rewrite is exact: with a zero point of 0
    (checked) the pair computes ``decode(encode(x / s)) · s`` with Q's ``saturate`` (default 1),
    which is FakeQuantize's definition; the granularity is read from the scale's shape and
    ``axis``/``block_size`` exactly as ONNX does (a one-element scale is per-tensor, a zero point of
    shape ``[1]`` beside a scalar scale is accepted). Scales may be float32, float16 or bfloat16.

    Q and DQ may be in the ONNX domain, ``com.microsoft`` or ``trt`` (ModelOpt's deploy export): the
    same definition in each, and the canonical form replaces them. The quantized type is read from the
    zero point (or ``output_dtype``), never from the Q output's declared type, which exporters leave
    stale (ModelOpt declares ``uint8`` for FP8 codes); that value disappears with the pair. A Q read by
    several DQs gives one FakeQuantize per DQ, each producing that DQ's output; the FakeQuantize is
    named after Q when Q has one DQ and after its DQ otherwise. A scale read by other nodes stays
    shared (the pass never modifies a scale).

    Left alone (logged): Q whose output is read by anything but DQs or is a graph output; a DQ
    whose scale is not the same constant as Q's (a re-scaling, not a fake quantization), or whose
    ``axis``/``block_size`` differs for a non-scalar scale; a pair whose DQ produces another type
    than Q's input; a Q with a ``precision`` attribute other than float32; integer Q/DQ.

    Raises (through the pass manager): :class:`Fp8ConvError` for a non-zero FP8 zero point, a scale
    that is <= 0, NaN or Inf, or a scale shape that does not fit ``axis``/``block_size``;
    :class:`UnsupportedModelError` for a non-constant scale.
    """

    def _after_rewrites(self, model: ir.Model) -> None:
        add_canonical_opset(model)
        drop_unused_opsets(model, _is_trt_or_qonnx)

    def _rewrite(self, quantize: ir.Node) -> bool:
        if quantize.op_type != "QuantizeLinear" or quantize.domain not in QDQ_DOMAINS:
            return False
        dtype = _quantized_type(quantize)
        if dtype not in FP8_DATA_TYPES:
            return False
        x, scale_value = quantize.inputs[0], quantize.inputs[1]
        zero_point = quantize.inputs[2] if len(quantize.inputs) > 2 else None
        if x is None:
            return False
        dequantizers = self._dequantizers(quantize)
        if dequantizers is None:
            return False
        precision = quantize.attributes.get_int("precision", 0)
        if precision not in (0, ir.DataType.FLOAT):
            logger.warning(
                "node %r: QuantizeLinear divides in %s, FakeQuantize in float32; left as is",
                quantize.name,
                ir.DataType(precision).name,
            )
            return False
        check_zero_point(quantize, zero_point)
        scale = read_scale(quantize, scale_value)
        spec = scale_spec(
            quantize,
            FORMATS[FP8_DATA_TYPES[dtype]],
            scale,
            static_shape(x),
            saturate=bool(quantize.attributes.get_int("saturate", 1)),
        )
        for dequantize in dequantizers:
            if not self._dequantize_matches(quantize, dequantize, spec):
                return False
        replace_quantize_dequantize(quantize, dequantizers, x, scale_value, spec, source="qdq")
        remove_unused_constants([zero_point])
        logger.debug("node %r: FP8 Q/DQ -> FakeQuantize (%s)", quantize.name, spec)
        return True

    @staticmethod
    def _dequantizers(quantize: ir.Node) -> list[ir.Node] | None:
        """The DQs reading Q's output, or None (logged) when anything else reads it."""
        output = quantize.outputs[0]
        consumers = list(output.consumers())
        if not consumers:
            return None
        dequantizers = [
            node
            for node in consumers
            if node.op_type == "DequantizeLinear"
            and node.domain in QDQ_DOMAINS
            and node.inputs[0] is output
            and output not in node.inputs[1:]
        ]
        if output.is_graph_output() or len(dequantizers) != len(consumers):
            logger.warning(
                "node %r: FP8 QuantizeLinear output %r is also read outside a DequantizeLinear; left as is",
                quantize.name,
                output.name,
            )
            return None
        return dequantizers

    @staticmethod
    def _dequantize_matches(quantize: ir.Node, dequantize: ir.Node, spec: QuantSpec) -> bool:
        """Whether the DQ undoes Q with the same scale and granularity (logged when not)."""
        scale_value = dequantize.inputs[1] if len(dequantize.inputs) > 1 else None
        if not same_constant(quantize.inputs[1], scale_value):
            logger.warning(
                "node %r: DequantizeLinear %r uses another scale than its QuantizeLinear; left as is",
                quantize.name,
                dequantize.name,
            )
            return False
        check_zero_point(dequantize, dequantize.inputs[2] if len(dequantize.inputs) > 2 else None)
        if spec.granularity != "per-tensor":
            axis = dequantize.attributes.get_int("axis", 1)
            shape = static_shape(quantize.inputs[0])
            if shape:
                axis %= len(shape)
            block_size = dequantize.attributes.get_int("block_size", 0)
            if (axis, block_size) != (spec.axis, spec.block_size or 0):
                logger.warning(
                    "node %r: DequantizeLinear %r has axis=%d, block_size=%d; QuantizeLinear axis=%s, block_size=%s; "
                    "left as is",
                    quantize.name,
                    dequantize.name,
                    axis,
                    block_size,
                    spec.axis,
                    spec.block_size or 0,
                )
                return False
        x_type, y_type = quantize.inputs[0].dtype, dequantize.outputs[0].dtype
        if x_type is not None and y_type is not None and x_type != y_type:
            logger.warning(
                "node %r: DequantizeLinear %r returns %s for a %s input; left as is",
                quantize.name,
                dequantize.name,
                y_type.name,
                x_type.name,
            )
            return False
        return True
