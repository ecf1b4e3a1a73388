"""What the emission passes share: the frozen plan, the integer quantizations, one name allocator.

Every pass of :func:`fp8conv.passes.emit_qdq.emission_pipeline` gets one :class:`EmissionContext` in its
constructor and keeps no state of its own between runs. The context's name allocator is made from the
names the graph holds when the first pass asks for it (before anything is emitted) and hands out each
name once across all passes, as one pass rewriting the whole model would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from fp8conv.config import IntegerType
from fp8conv.passes.canonical import is_fake_quantize, is_fp8_weight_dequantize
from fp8conv.passes.names import NameAllocator
from fp8conv.passes.plan import QuantizationPlan
from fp8conv.passes.values import take_over
from fp8conv.runtime.integer_quantization import weight_storage_type
from fp8conv.runtime.integer_types import IntegerFormat, integer_type

__all__ = [
    "ActivationQuantization",
    "EmissionContext",
    "EmissionPass",
    "WeightQuantization",
    "insert_after_producer",
    "is_fp8_quantizer",
    "reads_integer_weight",
    "swap_producer",
]


@dataclasses.dataclass(frozen=True)
class ActivationQuantization:
    """Integer quantization of one activation group.

    Attributes:
        scale: float32 scale.
        zero_point: Zero point (0 for symmetric types).
        dtype: The integer type (a plain name such as ``"uint8"`` is accepted and converted).
    """

    scale: float
    zero_point: int
    dtype: IntegerType

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", IntegerType(self.dtype))

    @property
    def format(self) -> IntegerFormat:
        """The facts about ``dtype`` (bits, range, ONNX type)."""
        return integer_type(self.dtype)


@dataclasses.dataclass(frozen=True)
class WeightQuantization:
    """Integer weights of one layer, ready for ``DequantizeLinear``.

    Attributes:
        q: Integer values (int8 storage; INT4 values in [-8, 7]).
        scale: float32 scales shaped for DequantizeLinear (scalar, 1-D per axis, or blocked).
        axis: Per-channel or block axis; None per tensor.
        block_size: INT4 block length; None otherwise.
        bits: 4 or 8 (7-bit weights are stored as int8).
    """

    q: np.ndarray
    scale: np.ndarray
    axis: int | None
    block_size: int | None
    bits: int

    @property
    def data_type(self) -> ir.DataType:
        """The ONNX type ``q`` is stored as: INT4 or INT8."""
        return weight_storage_type(self.bits).data_type


@dataclasses.dataclass(frozen=True)
class EmissionContext:
    """The inputs every emission pass reads (the passes hold nothing else).

    Nodes are identified by object: the plan's ``Layer.graph_node`` (and ``bias_add``) are nodes of the
    model the passes rewrite, and ``weights`` is keyed by them; no node is looked up by its name.

    Attributes:
        plan: Where the integer quantizers go.
        weights: Integer weights per converted layer (by the layer's node).
        activations: Quantization per activation group (by group name).
        bias_corrections: Corrected float biases per layer (by the layer's node), for
            :class:`~fp8conv.passes.correct_biases.CorrectBiasesPass` (bias correction; empty: none).
    """

    plan: QuantizationPlan
    weights: Mapping[ir.Node, WeightQuantization]
    activations: Mapping[str, ActivationQuantization]
    bias_corrections: Mapping[ir.Node, np.ndarray] = dataclasses.field(default_factory=dict)
    _allocators: dict[ir.Graph, NameAllocator] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def names(self, graph: ir.Graph) -> NameAllocator:
        """The emission's one name allocator for ``graph``, made from its names the first time it is asked for.

        Each pass asks for it before changing the graph, so the first pass makes it from the graph as planned.
        """
        allocator = self._allocators.get(graph)
        if allocator is None:
            allocator = self._allocators[graph] = NameAllocator(graph)
        return allocator

    def initializer(self, graph: ir.Graph, name: str, tensor: ir.TensorProtocol) -> ir.Value:
        """Register ``tensor`` as an initializer of ``graph`` under a new name made from ``name``."""
        value = ir.Value(
            name=self.names(graph).new(name), const_value=tensor, shape=tensor.shape, type=ir.TensorType(tensor.dtype)
        )
        graph.register_initializer(value)
        return value

    @property
    def needs_opset_21(self) -> bool:
        """Whether the emitted Q/DQ need ai.onnx 21: 16-bit activations, INT4 or blocked weights."""
        wide = any(quantization.format.bits == 16 for quantization in self.activations.values())
        return wide or any(weight.bits == 4 or weight.block_size for weight in self.weights.values())


class EmissionPass(ir.passes.InPlacePass):
    """An in-place emission pass over a model planned by ``context.plan``.

    Its ``requires`` checks at least that the plan was made for the model: every layer's node is a node
    of its main graph. Its ``call`` asks for the name allocator, then rewrites the main graph
    (:meth:`rewrite`, what each pass defines).

    Attributes:
        context: The plan, the quantizations and the name allocator.
    """

    def __init__(self, context: EmissionContext) -> None:
        super().__init__()
        self.context = context

    def requires(self, model: ir.Model) -> None:
        """The plan was made for this model (every layer's node is a node of its main graph).

        Raises:
            ir.passes.PreconditionError: A layer's node is not in the model's main graph.
        """
        for layer in self.context.plan.layers:
            if layer.graph_node.graph is not model.graph:
                raise ir.passes.PreconditionError(f"layer {layer.node}: its node is not in the model being rewritten")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite the model's main graph in place (:meth:`rewrite`), with the name allocator made first.

        Asking for the allocator before changing the graph is what makes the first pass's allocator know the
        graph as planned (:meth:`EmissionContext.names`).
        """
        graph = model.graph
        self.context.names(graph)
        return ir.passes.PassResult(model, modified=self.rewrite(graph))

    def rewrite(self, graph: ir.Graph) -> bool:
        """Rewrite ``graph`` in place and say whether it changed (a pass defines this or overrides ``call``)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither rewrite nor call")


def is_fp8_quantizer(node: ir.Node | None) -> bool:
    """Whether ``node`` is an FP8 quantizer: a canonical FakeQuantize or a DequantizeLinear of FP8 codes."""
    return node is not None and (is_fake_quantize(node) or is_fp8_weight_dequantize(node))


def reads_integer_weight(node: ir.Node, weight: WeightQuantization) -> bool:
    """Whether ``node`` reads its weight (input 1) from a DequantizeLinear of an initializer of ``weight``'s type."""
    value = node.inputs[1] if len(node.inputs) > 1 else None
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "DequantizeLinear" or producer.domain not in ("", "ai.onnx"):
        return False
    stored = producer.inputs[0]
    return stored is not None and stored.is_initializer() and stored.dtype == weight.data_type


def swap_producer(graph: ir.Graph, old: ir.Node, new: ir.Node) -> None:
    """Let ``new`` (already in the graph) take over ``old``'s output (name, declared type and shape) and node name.

    ``old`` is removed.
    """
    node_name = old.name
    take_over(old.outputs[0], new.outputs[0])
    graph.remove(old, safe=True)
    new.name = node_name


def insert_after_producer(graph: ir.Graph, value: ir.Value, node: ir.Node) -> None:
    """Insert ``node`` right after the producer of ``value`` (first in the graph for a graph input)."""
    producer = value.producer()
    if producer is None:
        first = next(iter(graph), None)
        if first is None:
            graph.append(node)
        else:
            graph.insert_before(first, node)
    else:
        graph.insert_after(producer, node)
