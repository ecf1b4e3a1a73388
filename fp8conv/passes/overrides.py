"""Per-layer overrides: which Conv / MatMul / Gemm layers the ``keep_float``, ``int16`` and ``int4`` patterns select.

A layer is known by every name a user can see for it (``fp8conv inspect`` prints them all):

* its **node** name (unique after :func:`fp8conv.load`, which names unnamed and repeated nodes);
* its **weight** names: every tensor on the weight's data path, from the stored tensor (the FP8 or float
  initializer, or a ``Constant``) through its ``DequantizeLinear`` / FP8 quantizer / ``Cast`` /
  ``Transpose`` / ``Reshape`` to the tensor the layer reads. Normalization keeps the stored weight's name
  (a TensorRT weight stored as int8 keeps it too, or gets ``_e4m3fn`` appended where the name is taken),
  so the name in the source file matches;
* its **output** tensor name.

A pattern is a regular expression searched (``re.search``) in each of these names; it selects a layer
when it is found in any of them. Every pattern must select at least one layer, else
:class:`~fp8conv.errors.Fp8ConvError` names the option and the pattern with up to five close names
(``difflib``). ``keep_float`` excludes the other two: a layer selected by ``keep_float`` and by ``int16``
or ``int4`` is an error naming the layer. ``int16`` and ``int4`` combine (INT4 weights, INT16 activations).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence

import onnx_ir as ir

from fp8conv.config import ConversionConfig, LayerPrecision
from fp8conv.errors import Fp8ConvError

__all__ = ["OVERRIDE_OPTIONS", "LayerNames", "layer_names", "select_overrides"]

OVERRIDE_OPTIONS: dict[str, tuple[str, LayerPrecision]] = {
    "keep_float": ("--keep-float", LayerPrecision.FLOAT),
    "int16": ("--int16", LayerPrecision.INT16),
    "int4": ("--int4", LayerPrecision.INT4),
}
"""Config field → (CLI flag, what it asks for)."""

# Ops that pass a constant weight on to the layer (their first input is the data): dequantization, FP8
# quantizers, casts and layout changes.
_WEIGHT_PATH_OPS = frozenset(
    {"DequantizeLinear", "QuantizeLinear", "FakeQuantize", "Cast", "CastLike", "Transpose", "Reshape"}
    | {"Flatten", "Squeeze", "Unsqueeze", "Identity"}
)
_CLOSE_MATCHES = 5


@dataclasses.dataclass(frozen=True)
class LayerNames:
    """The names a layer is known by.

    Attributes:
        node: The node name.
        op_type: Conv, MatMul or Gemm.
        weights: The tensors on the weight's data path, the stored tensor first and the tensor the layer
            reads last; empty when the layer's second input is not computed from a constant.
        output: The layer's output tensor.
    """

    node: str
    op_type: str
    weights: tuple[str, ...]
    output: str

    @property
    def weight(self) -> str | None:
        """The stored weight tensor (an initializer or a ``Constant`` output), if any."""
        return self.weights[0] if self.weights else None

    def all(self) -> tuple[str, ...]:
        """Every name, without repeats or empty names."""
        return tuple(dict.fromkeys(name for name in (self.node, *self.weights, self.output) if name))

    def to_json(self) -> dict[str, object]:
        """JSON view (``fp8conv inspect --json``); ``names`` is :meth:`all`, what the patterns are searched in."""
        return {
            "node": self.node,
            "op_type": self.op_type,
            "weights": list(self.weights),
            "output": self.output,
            "names": list(self.all()),
        }


def layer_names(node: ir.Node) -> LayerNames:
    """The names of a Conv / MatMul / Gemm node (see the module docstring)."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    output = node.outputs[0].name if node.outputs else None
    return LayerNames(node.name or "", node.op_type, _weight_path(weight), output or "")


def _weight_path(value: ir.Value | None) -> tuple[str, ...]:
    """Names from the stored constant to ``value`` along first inputs; empty if no constant starts it."""
    path: list[str] = []
    while value is not None:
        path.append(value.name or "")
        producer = value.producer()
        if producer is None:
            if not (value.is_initializer() or value.const_value is not None):
                return ()  # a graph input: an activation
            break
        if producer.op_type == "Constant":
            break
        if producer.op_type not in _WEIGHT_PATH_OPS or not producer.inputs:
            return ()
        value = producer.inputs[0]
    return tuple(name for name in reversed(path) if name)


def select_overrides(layers: Sequence[LayerNames], config: ConversionConfig) -> list[frozenset[LayerPrecision]]:
    """What the override patterns ask for each layer.

    Args:
        layers: Every layer of the model, in graph order.
        config: The conversion options (``keep_float``, ``int16``, ``int4`` patterns).

    Returns:
        For each layer, the overrides that select it (empty: none).

    Raises:
        Fp8ConvError: A pattern that selects no layer (one line with the option, the pattern and close
            names), or a layer selected by ``keep_float`` and by ``int16`` or ``int4``.
    """
    names = [layer.all() for layer in layers]
    selected: list[set[LayerPrecision]] = [set() for _ in layers]
    first_pattern: list[dict[LayerPrecision, str]] = [{} for _ in layers]
    for field, (flag, precision) in OVERRIDE_OPTIONS.items():
        for pattern in getattr(config, field):
            regex = re.compile(pattern)
            hits = [index for index, known in enumerate(names) if any(regex.search(name) for name in known)]
            if not hits:
                raise Fp8ConvError(_no_match(field, flag, pattern, names))
            for index in hits:
                selected[index].add(precision)
                first_pattern[index].setdefault(precision, pattern)
    for layer, wanted, patterns in zip(layers, selected, first_pattern, strict=True):
        if LayerPrecision.FLOAT in wanted and len(wanted) > 1:
            other = next(p for p in (LayerPrecision.INT16, LayerPrecision.INT4) if p in wanted)
            raise Fp8ConvError(
                f"layer {layer.node} ({layer.op_type}) is selected by keep_float pattern "
                f"{patterns[LayerPrecision.FLOAT]!r} and by {other.value} pattern {patterns[other]!r}: "
                "it cannot be both float and integer"
            )
    return [frozenset(wanted) for wanted in selected]


def _no_match(field: str, flag: str, pattern: str, names: Sequence[tuple[str, ...]]) -> str:
    known = sorted({name for layer in names for name in layer})
    close = difflib.get_close_matches(pattern, known, n=_CLOSE_MATCHES, cutoff=0.5)
    if not close:  # a short pattern against long names: the names that contain most of it
        close = difflib.get_close_matches(pattern, known, n=_CLOSE_MATCHES, cutoff=0.0)
    message = f"{flag} ({field}) pattern {pattern!r} matches no layer's node, weight or output name"
    if not known:
        return message + " (the model has no Conv/MatMul/Gemm)"
    return message + f"; close: {', '.join(close)} (fp8conv inspect lists every layer's names)"
