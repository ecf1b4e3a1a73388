"""Postconditions of a conversion, checked on the emitted graph itself, never on the plan that produced it.

What the summary, the report and the exit code claim about a conversion is read from the written model
(:func:`written_model`) and from what onnxruntime did with it (the kernel audit). :func:`check_written`
then holds the written model to the plan; a violation is a bug in fp8conv, raised as
:class:`~fp8conv.errors.InternalError` naming the layer or tensor, never a silent success.

Postconditions (each an :class:`InternalError` when violated):

1. **No FP8 left.** No float8 (or float4) element type anywhere in the emitted model (initializers,
   ``Constant`` values and other tensor attributes, value types, ``Cast`` targets, ``QuantizeLinear``
   ``output_dtype``, the zero points that fix a ``QuantizeLinear``'s type) and no node of fp8conv's
   canonical domain: onnxruntime runs none of them on an integer kernel. Exempt: what feeds a layer that
   the user kept float (``--keep-float``), which may keep its FP8 weight as the source stored it.
2. **Converted layers have integer weights.** Every layer the plan converts holds, in the file, its weight
   as ``DequantizeLinear`` of an integer constant of the bits its precision says (``int8``: an 8-bit
   type, also for 7-bit weights; ``int4``: a 4-bit type), reached from the layer's weight input through
   data-movement ops only; an activation × activation MatMul reads both inputs from integer
   ``DequantizeLinear``; a layer with integer activations reads its data input from one of that width.

A layer is found in the written model by its node name (the identity the emission uses), the nodes of
one name taken in graph order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import onnx_ir as ir

from fp8conv.errors import InternalError
from fp8conv.passes.canonical import CANONICAL_DOMAIN
from fp8conv.runtime.fusion_rules import FUSABLE_ACTIVATIONS, LAYER_OPS, OUTPUT_PROPAGATION_OPS
from fp8conv.runtime.integer_types import integer_type_of, quantize_output_type

if TYPE_CHECKING:
    from fp8conv.passes.plan import Layer

__all__ = ["LAYER_OPS", "WrittenLayer", "WrittenModel", "check_written", "written_model"]

logger = logging.getLogger(__name__)

_PASS_THROUGH = frozenset({"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"})
"""Ops a weight may pass through between its DequantizeLinear and the layer (they move values, never change them)."""

_FEEDING = _PASS_THROUGH | {"DequantizeLinear", "QuantizeLinear", "Cast", "CastLike", "Constant"}
"""Ops whose inputs belong to the layer they feed, for the keep-float exemption of postcondition 1."""


def _bits(dtype: ir.DataType | None) -> int | None:
    """Width of an integer element type a DequantizeLinear may read (None for any other type)."""
    fmt = integer_type_of(dtype)
    return fmt.bits if fmt is not None else None


def is_low_precision_float(dtype: ir.DataType | None) -> bool:
    """Whether ``dtype`` is a float8 or float4 element type (``FLOAT8E4M3FN``, …, ``FLOAT4E2M1``)."""
    return dtype is not None and dtype.name.startswith(("FLOAT8", "FLOAT4"))


@dataclasses.dataclass(frozen=True)
class WrittenLayer:
    """A Conv / MatMul / Gemm as the written model holds it.

    Attributes:
        node: Its name, or ``<op>(<first output>)`` when it has none (the kernel audit's label).
        op_type: ``Conv``, ``MatMul`` or ``Gemm``.
        weight_type: Element type of the integer constant a ``DequantizeLinear`` turns into its weight
            (``INT8``, ``INT4``, …); ``FLOAT``/``FLOAT16``/``FLOAT8…`` for any other constant weight (an
            FP8 one behind its DequantizeLinear included); None when the weight input is computed.
        input_types: Per data input (the first, and the second when it is computed), the integer type
            of the ``DequantizeLinear`` producing it, or None (a float input).
        planned_integer_kernel: Whether the plan expects onnxruntime to run it on an integer kernel (set by
            :func:`check_written`; False for a written model read on its own).
    """

    node: str
    op_type: str
    weight_type: str | None
    input_types: tuple[str | None, ...]
    planned_integer_kernel: bool = False

    @property
    def weight_bits(self) -> int | None:
        """Bits of the integer weight, None when the weight is not integer."""
        return _bits(_dtype(self.weight_type))

    @property
    def activation_bits(self) -> int | None:
        """Bits of the integer data input, None when it is float."""
        return _bits(_dtype(self.input_types[0])) if self.input_types else None

    @property
    def precision(self) -> str:
        """``int4`` / ``int8`` (the width of the integer weight, 7-bit weights included), else ``float``.

        An activation × activation MatMul is ``int8`` when both inputs are integer.
        """
        if self.weight_bits is not None:
            return "int4" if self.weight_bits <= 4 else "int8"
        computed = self.weight_type is None and len(self.input_types) == 2
        if computed and all(_bits(_dtype(t)) is not None for t in self.input_types):
            return "int8"
        return "float"

    def to_json(self) -> dict[str, object]:
        """JSON view."""
        return dataclasses.asdict(self) | {"input_types": list(self.input_types), "precision": self.precision}


@dataclasses.dataclass(frozen=True)
class WrittenModel:
    """What a converted model holds, read from its graph.

    Attributes:
        layers: Every Conv / MatMul / Gemm of the main graph, in graph order.
    """

    layers: tuple[WrittenLayer, ...]

    @property
    def converted(self) -> tuple[WrittenLayer, ...]:
        """The layers with integer weights (or integer inputs, activation × activation)."""
        return tuple(layer for layer in self.layers if layer.precision != "float")

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions of the converted layers, sorted (``("int4", "int8")``)."""
        return tuple(sorted({layer.precision for layer in self.converted}))

    def to_json(self) -> dict[str, object]:
        """JSON view: the counts and one record per layer."""
        return {
            "converted": len(self.converted),
            "total": len(self.layers),
            "precisions": list(self.precisions),
            "layers": [layer.to_json() for layer in self.layers],
        }


def written_model(model: ir.Model) -> WrittenModel:
    """Read every layer's weight and input types from the model's graph (see :class:`WrittenLayer`)."""
    return WrittenModel(tuple(_written_layer(node) for node in _layer_nodes(model.graph)))


def check_written(model: ir.Model, layers: Sequence[Layer], *, kept_float: Iterable[str] = ()) -> WrittenModel:
    """Check the postconditions (module docstring) of an emitted model against its plan.

    Args:
        model: The emitted model.
        layers: The plan's layers.
        kept_float: Names of the layers the user kept float: their FP8 inputs are exempt from postcondition 1.

    Returns:
        The written model, each layer marked with whether the plan expects an integer kernel for it.

    Raises:
        InternalError: A violated postcondition, naming the layer or tensor.
    """
    from fp8conv.converter.coverage import expects_integer_kernel

    nodes = _layer_nodes(model.graph)
    _check_no_fp8(model, [node for node in nodes if node.name in set(kept_float)])
    by_name: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        by_name.setdefault(node.name or "", []).append(index)
    written = [_written_layer(node) for node in nodes]
    for layer in layers:
        candidates = by_name.get(layer.node, [])
        index = candidates.pop(0) if candidates else None
        if index is None:
            if layer.is_integer:
                raise InternalError(f"layer {_name(layer)}: planned {layer.precision}, not in the written model")
            continue
        _check_layer(layer, written[index])
        expected = expects_integer_kernel(layer, _output_quantizer_bits(nodes[index]), _activation_after(nodes[index]))
        written[index] = dataclasses.replace(written[index], planned_integer_kernel=expected)
    return WrittenModel(tuple(written))


def _output_quantizer_bits(node: ir.Node) -> int | None:
    """Width of the widest integer QuantizeLinear the layer's output reaches, if any.

    Followed through one Relu/Clip (onnxruntime folds it) and through data movement (a Transpose/Reshape
    merging attention heads): the quantizer there is the one onnxruntime's selector sees after its
    propagation of Q/DQ across data movement.
    """
    readers = list(node.outputs[0].consumers())
    if len(readers) == 1 and readers[0].op_type in FUSABLE_ACTIVATIONS and readers[0].domain in ("", "ai.onnx"):
        readers = list(readers[0].outputs[0].consumers())
    widths: list[int] = []
    while readers:
        reader = readers.pop()
        if reader.op_type in OUTPUT_PROPAGATION_OPS and reader.domain in ("", "ai.onnx"):
            readers.extend(reader.outputs[0].consumers())
        elif reader.op_type == "QuantizeLinear" and len(reader.inputs) > 2 and reader.inputs[2] is not None:
            width = _bits(reader.inputs[2].dtype)
            if width is not None:
                widths.append(width)
    return max(widths, default=None)


def _activation_after(node: ir.Node) -> str | None:
    """The op of the only node reading the layer's output, after its constant bias Add if any (no graph output)."""
    value = node.outputs[0]
    readers = value.consumers()
    if (
        len(readers) == 1
        and readers[0].op_type == "Add"
        and not value.is_graph_output()
        and len(readers[0].inputs) == 2
    ):
        other = readers[0].inputs[1] if readers[0].inputs[0] is value else readers[0].inputs[0]
        if _constant_dtype(other) is not None:
            value = readers[0].outputs[0]
            readers = value.consumers()
    if len(readers) != 1 or value.is_graph_output() or readers[0].outputs[0].is_graph_output():
        return None
    return readers[0].op_type


# -- postcondition 2: converted layers -------------------------------------------------------------------------


def _name(layer: Layer) -> str:
    return layer.node or f"<unnamed {layer.op_type} reading {layer.weight or ', '.join(layer.inputs) or '?'}>"


def _check_layer(layer: Layer, written: WrittenLayer) -> None:
    if not layer.is_integer:
        return
    name = _name(layer)
    want = 4 if layer.precision == "int4" else 8
    if layer.has_weight:
        if written.weight_bits != want:
            raise InternalError(
                f"layer {name}: planned {layer.precision} but its weight is written as "
                f"{written.weight_type or 'a computed tensor'}, not a {want}-bit integer behind DequantizeLinear"
            )
    elif written.precision == "float":
        raise InternalError(
            f"layer {name}: planned {layer.precision} (activation x activation) but its inputs are written as "
            f"{', '.join(t or 'float' for t in written.input_types)}"
        )
    if layer.activation_bits is not None and written.activation_bits != layer.activation_bits:
        found = written.input_types[0] if written.input_types and written.input_types[0] else "float"
        raise InternalError(
            f"layer {name}: planned {layer.activation_bits}-bit activations but its input is written as {found}"
        )


def _layer_nodes(graph: ir.Graph) -> list[ir.Node]:
    return [node for node in graph if node.domain in ("", "ai.onnx") and node.op_type in LAYER_OPS]


def _label(node: ir.Node) -> str:
    return node.name or f"{node.op_type}({node.outputs[0].name if node.outputs else ''})"


def _written_layer(node: ir.Node) -> WrittenLayer:
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    weight_type, weight_computed = _stored_type(weight)
    data = [node.inputs[0]] + ([weight] if weight is not None and weight_computed else [])
    input_types = tuple(_dequantized_type(value) for value in data)
    return WrittenLayer(_label(node), node.op_type, weight_type, input_types)


def _through_data_movement(value: ir.Value | None) -> ir.Value | None:
    """The value behind ``value`` after looking back through data-movement ops (first input of each)."""
    while value is not None:
        producer = value.producer()
        if producer is None or producer.op_type not in _PASS_THROUGH or producer.domain not in ("", "ai.onnx"):
            return value
        value = producer.inputs[0]
    return None


def _constant_dtype(value: ir.Value | None) -> ir.DataType | None:
    """The element type of a constant (initializer or ``Constant`` output), None for a computed value."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.dtype
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        attribute = producer.attributes.get("value")
        if attribute is not None and attribute.type == ir.AttributeType.TENSOR:
            return attribute.as_tensor().dtype
        return value.dtype
    return None


def _stored_type(value: ir.Value | None) -> tuple[str | None, bool]:
    """(type the weight is stored in, whether it is computed) — see :attr:`WrittenLayer.weight_type`."""
    source = _through_data_movement(value)
    if source is None:
        return None, value is not None
    dtype = _constant_dtype(source)
    if dtype is not None:
        return dtype.name, False
    producer = source.producer()
    if producer is not None and producer.op_type == "DequantizeLinear" and producer.inputs:
        stored = _constant_dtype(producer.inputs[0])
        if stored is not None:
            return stored.name, False
    return None, True


def _dequantized_type(value: ir.Value | None) -> str | None:
    """The integer type of the ``DequantizeLinear`` producing ``value`` (through data movement), else None."""
    source = _through_data_movement(value)
    producer = source.producer() if source is not None else None
    if producer is None or producer.op_type != "DequantizeLinear" or not producer.inputs:
        return None
    dtype = _quantized_type(producer)
    return dtype.name if dtype is not None and _bits(dtype) is not None else None


def _quantized_type(dequantize: ir.Node) -> ir.DataType | None:
    """The element type a DequantizeLinear reads: its input's type, else its zero point's, else its Q's.

    Values the emission creates carry no type yet (shape inference is onnxruntime's job); ONNX fixes the
    type by the zero point, or by a QuantizeLinear's ``output_dtype`` (uint8 without either).
    """
    quantized = dequantize.inputs[0]
    if quantized is None:
        return None
    dtype = quantized.dtype or _constant_dtype(quantized)
    zero_point = dequantize.inputs[2] if len(dequantize.inputs) > 2 else None
    if dtype is None and zero_point is not None:
        dtype = zero_point.dtype or _constant_dtype(zero_point)
    quantize = quantized.producer()
    if dtype is None and quantize is not None and quantize.op_type == "QuantizeLinear":
        q_zero_point = quantize.inputs[2] if len(quantize.inputs) > 2 else None
        produced = quantize_output_type(
            has_zero_point=q_zero_point is not None,
            zero_point_type=(q_zero_point.dtype or _constant_dtype(q_zero_point)) if q_zero_point is not None else None,
            output_dtype=quantize.attributes.get_int("output_dtype", 0),
        )
        dtype = produced if isinstance(produced, ir.DataType) else None
    return dtype


def _dtype(name: str | None) -> ir.DataType | None:
    return ir.DataType[name] if name is not None and name in ir.DataType.__members__ else None


# -- postcondition 1: no FP8 left ------------------------------------------------------------------------------


def _check_no_fp8(model: ir.Model, kept_float: Sequence[ir.Node]) -> None:
    exempt_nodes, exempt_values = _feeding(kept_float)
    for graph in _graphs(model.graph):
        for value in [*graph.inputs, *graph.outputs, *graph.initializers.values()]:
            if value in exempt_values:
                continue
            if is_low_precision_float(value.dtype) or (
                value.const_value is not None and is_low_precision_float(value.const_value.dtype)
            ):
                raise InternalError(f"tensor {value.name}: {_type_name(value)} is left in the written model")
        for node in graph:
            if node in exempt_nodes:
                continue
            _check_node(node)


def _check_node(node: ir.Node) -> None:
    what = f"node {node.name or _label(node)} ({node.op_type})"
    if node.domain == CANONICAL_DOMAIN:
        raise InternalError(f"{what}: fp8conv's internal domain {CANONICAL_DOMAIN} is left in the written model")
    for output in node.outputs:
        if is_low_precision_float(output.dtype):
            raise InternalError(
                f"tensor {output.name} (from {what}): {_type_name(output)} is left in the written model"
            )
    for name, attribute in node.attributes.items():
        if not isinstance(attribute, ir.Attr):
            continue  # a reference attribute (inside a function) holds no value
        if attribute.type == ir.AttributeType.TENSOR and is_low_precision_float(attribute.as_tensor().dtype):
            raise InternalError(f"{what}: attribute {name} holds a {attribute.as_tensor().dtype.name} tensor")
        if name in ("to", "output_dtype") and attribute.type == ir.AttributeType.INT:
            target = ir.DataType(attribute.as_int()) if attribute.as_int() in _DATA_TYPE_VALUES else None
            if is_low_precision_float(target):
                raise InternalError(f"{what}: {name}={target.name} is left in the written model")  # type: ignore[union-attr]


_DATA_TYPE_VALUES = frozenset(member.value for member in ir.DataType)


def _type_name(value: ir.Value) -> str:
    dtype = value.const_value.dtype if value.const_value is not None else value.dtype
    return dtype.name if dtype is not None else "an unknown type"


def _graphs(graph: ir.Graph) -> Iterator[ir.Graph]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph:
        for attribute in node.attributes.values():
            if attribute.type == ir.AttributeType.GRAPH:
                yield from _graphs(attribute.as_graph())
            elif attribute.type == ir.AttributeType.GRAPHS:
                for subgraph in attribute.as_graphs():
                    yield from _graphs(subgraph)


def _feeding(layers: Sequence[ir.Node]) -> tuple[set[ir.Node], set[ir.Value]]:
    """The nodes and values that feed ``layers`` through DequantizeLinear, Cast and data movement only."""
    nodes: set[ir.Node] = set()
    values: set[ir.Value] = set()
    frontier = [value for layer in layers for value in layer.inputs if value is not None]
    while frontier:
        value = frontier.pop()
        if value in values:
            continue
        values.add(value)
        producer = value.producer()
        if producer is not None and producer.op_type in _FEEDING and producer not in nodes:
            nodes.add(producer)
            frontier.extend(v for v in producer.inputs if v is not None)
    return nodes, values
