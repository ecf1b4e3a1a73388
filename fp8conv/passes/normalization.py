"""What the normalization passes share: reading constants and scales, rewriting a matched chain, opset imports.

Every pass of :func:`fp8conv.passes.normalize.normalize` turns one FP8 dialect into the canonical form
(:mod:`fp8conv.passes.canonical`: ``ai.fp8conv::FakeQuantize(x, s)`` and FP8 weights behind a
``DequantizeLinear``) with these helpers:

* constants: their element type, static shape, equality (:func:`constant_dtype`, :func:`static_shape`,
  :func:`same_constant`); an FP8 zero point checked to be 0 (:func:`check_zero_point`);
* scales: the granularity a scale's shape and ``axis``/``block_size`` give, as ONNX reads them
  (:func:`scale_spec`), a broadcast scale made 1-D per axis (:func:`per_axis_scale`), new initializers
  named after the values they stand beside (:func:`add_initializer`);
* rewriting: a matched chain of nodes replaced by one canonical node that keeps the source tensor names
  (:func:`rewrite_chain`, :func:`replace_with_fake_quantize`, :func:`replace_quantize_dequantize`), which
  remove the constants only the removed nodes read (:func:`remove_unused_constants`), a pass that tries a
  rewrite on every node (:class:`NodeRewritePass`);
* opset imports: ``ai.fp8conv`` imported, a dialect's imports dropped once no node uses them.
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
)
from fp8conv.passes.names import forget_name, names_for, shared_names
from fp8conv.runtime.formats import FloatFormat

__all__ = [
    "QDQ_DOMAINS",
    "ONNX_DOMAINS",
    "NodeRewritePass",
    "add_canonical_opset",
    "add_initializer",
    "check_zero_point",
    "constant_dtype",
    "drop_unused_opsets",
    "per_axis_scale",
    "remove_unused_constants",
    "replace_quantize_dequantize",
    "replace_with_fake_quantize",
    "rewrite_chain",
    "same_constant",
    "scale_spec",
    "static_shape",
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
    chain's inputs are defined before them). The constants that only the chain read (its scales, zero
    points, clip bounds, a replaced weight) are removed with it.

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
    inputs = [value for node in pattern for value in node.inputs]
    built = build(result)
    graph.insert_before(last, built)
    graph.remove(pattern, safe=True)
    placeholder.replace_all_uses_with(result, replace_graph_outputs=True)
    remove_unused_constants(inputs)
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
    an earlier rewrite removed is skipped. ``_after_rewrites`` runs once when anything changed: the model
    imports the canonical domain, and the imports of the dialect's domains (:meth:`_dialect_domain`) that
    no node uses any more go.
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

    def _dialect_domain(self, domain: str) -> bool:
        """Whether ``domain`` is one of the dialect's: its opset import goes once no node uses it (none here)."""
        return False

    def _after_rewrites(self, model: ir.Model) -> None:
        """The opset imports after the rewrites: the canonical domain in, the dialect's unused domains out."""
        add_canonical_opset(model)
        drop_unused_opsets(model, self._dialect_domain)


def replace_quantize_dequantize(
    quantize: ir.Node, dequantizers: list[ir.Node], x: ir.Value, scale: ir.Value | None, spec: QuantSpec, source: str
) -> None:
    """Replace ``quantize`` and the DQs reading it by one FakeQuantize per DQ (keeping their outputs).

    The FakeQuantize takes the Q's name when there is one DQ, else each DQ's name; constants only the
    removed nodes read (scales, zero points) are removed too.
    """
    for dequantize in dequantizers:
        name = quantize.name if len(dequantizers) == 1 else dequantize.name
        replace_with_fake_quantize([dequantize], x, scale, spec, source=source, name=name)
    graph = quantize.graph
    assert graph is not None
    constants = quantize.inputs[1:]
    graph.remove(quantize, safe=True)
    remove_unused_constants(constants)


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
