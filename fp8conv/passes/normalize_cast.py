"""Normalize ``Div → [clamp] → Cast(FP8) → Cast(float) → Mul`` chains (PyTorch's export of FP8 casts)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from fp8conv.passes.canonical import FP8_DATA_TYPES, QuantSpec, constant_array, read_scale
from fp8conv.passes.normalization import (
    NodeRewritePass,
    add_initializer,
    constant_dtype,
    per_axis_scale,
    replace_with_fake_quantize,
)
from fp8conv.runtime.clip_bounds import clip_bounds
from fp8conv.runtime.formats import FORMATS, FloatFormat

__all__ = ["NormalizeCastPairPass"]

logger = logging.getLogger(__name__)

_BACK_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16)


@dataclasses.dataclass(frozen=True)
class _Scaling:
    """A ``Div(data, constant)`` or ``Mul(data, constant)`` node."""

    node: ir.Node
    data: ir.Value
    constant: ir.Value

    @property
    def divides(self) -> bool:
        return self.node.op_type == "Div"

    @property
    def scale(self) -> np.ndarray:
        """The constant, as float64."""
        return np.asarray(constant_array(self.constant), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class _Chain:
    """A matched chain: ``front → clamps… → to_fp8 → back_cast → back`` (no, one or several clamps)."""

    front: _Scaling
    clamps: tuple[ir.Node, ...]
    to_fp8: ir.Node
    back_cast: ir.Node
    back: _Scaling

    @property
    def nodes(self) -> list[ir.Node]:
        return [self.front.node, *self.clamps, self.to_fp8, self.back_cast, self.back.node]


def _scaling(node: ir.Node | None, data: ir.Value | None = None) -> _Scaling | None:
    """Read ``node`` as a Div or Mul by a constant (of ``data`` when given), else None.

    For a Mul whose operands are both constant and ``data`` is not given, the second is the scale.
    """
    if node is None or node.domain != "" or node.op_type not in ("Div", "Mul") or len(node.inputs) != 2:
        return None
    first, second = node.inputs
    if first is None or second is None:
        return None
    if data is None:
        if constant_array(second) is not None:
            return _Scaling(node, first, second)
        if node.op_type == "Mul" and constant_array(first) is not None:
            return _Scaling(node, second, first)
        return None
    if first is data and second is not data and constant_array(second) is not None:
        return _Scaling(node, first, second)
    if node.op_type == "Mul" and second is data and first is not data and constant_array(first) is not None:
        return _Scaling(node, second, first)
    return None


def _only_consumer(value: ir.Value) -> ir.Node | None:
    """The single node that reads ``value`` once, when it is not also a graph output."""
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0].node


def _is_power_of_two(array: np.ndarray) -> bool:
    mantissa, _ = np.frexp(array)
    return bool(np.all(mantissa == 0.5))


def _clip_bounds(clip: ir.Node) -> tuple[float, float] | None:
    """A Clip's bounds (a missing bound is ±Inf), or None when a bound is not a constant scalar."""
    low, high = clip_bounds(clip)
    return None if low is None or high is None else (low, high)


def _scalar(value: ir.Value | None) -> float | None:
    array = constant_array(value)
    return None if array is None or array.size != 1 else float(array.reshape(()))


def _clamp(node: ir.Node | None) -> tuple[ir.Value, tuple[float, float] | None] | None:
    """Read ``node`` as a clamp of one tensor: ``Clip(t, lo, hi)``, ``Max(t, lo)`` or ``Min(t, hi)``.

    Returns the clamped tensor and the bounds (None when a Clip bound is not a constant scalar), or
    None when ``node`` is no such clamp. ``Max``/``Min`` take the constant scalar on either side
    (PyTorch's dynamo exporter without optimization writes ``clamp`` as ``Min(Max(t, lo), hi)``).
    """
    if node is None or node.domain != "" or not node.inputs or node.inputs[0] is None:
        return None
    if node.op_type == "Clip":
        return node.inputs[0], _clip_bounds(node)
    if node.op_type not in ("Max", "Min") or len(node.inputs) != 2 or None in node.inputs:
        return None
    first, second = node.inputs
    for data, bound_value in ((first, second), (second, first)):
        bound = _scalar(bound_value)
        if bound is not None and _scalar(data) is None and data is not None:
            return data, (bound, np.inf) if node.op_type == "Max" else (-np.inf, bound)
    return None


class NormalizeCastPairPass(NodeRewritePass):
    """Rewrite scaled FP8 ``Cast`` pairs as canonical FakeQuantize nodes.

    ``Mul(Cast(Cast(Div(x, s), to=FP8, saturate), to=float), s)``, as the PyTorch dynamo exporter
    writes ``(x / s).to(torch.float8_*).to(torch.float32) * s``, becomes
    ``ai.fp8conv::FakeQuantize(x, s)`` with the format of the first Cast's ``to`` and its
    ``saturate`` (default 1). This is exact: the Div rounds ``x / s`` to float32, the Cast rounds it
    to the FP8 grid with round-half-to-even and the saturate rule, the second Cast is exact (every
    FP8 value is a float32 and a float16) and the Mul rounds ``fp8 · s`` once, which is
    FakeQuantize's definition. The scalar or broadcastable per-channel scale ``s`` must be the same
    float32 constant on both sides; after ``Cast(to=FLOAT16)`` the float16 Mul needs a scale of the
    same value and the chain becomes ``Cast(FakeQuantize(x, s), to=FLOAT16)`` (an FP8 value times a
    float16 scale is exact in float32, so the product rounds once, to float16, either way). A
    per-channel scale such as ``[C,1,1,1]`` becomes a new 1-D initializer with ``axis``.

    Clamps between the Div and the first Cast (a ``Clip``, or ``Max``/``Min`` by a constant scalar as
    PyTorch's dynamo exporter writes ``clamp`` without optimization: ``Min(Max(t, lo), hi)``; constant
    bounds spelled ``CastLike(Constant, t)`` were folded by
    :class:`~fp8conv.passes.fold_constant_casts.FoldConstantCastsPass`) are absorbed when they cannot
    change the result. With ``[lo, hi]`` the intersection of their intervals: with ``saturate=1``
    when ``lo <= -max`` and ``hi >= max`` (the cast saturates to ±max anyway); with ``saturate=0``
    when they are exactly ±max (the chain then is the saturating FakeQuantize). NaN passes every
    clamp (ONNX Clip/Max/Min propagate NaN). ``Mul(x, 1/s)`` in place of the Div and ``Div(·, 1/s)`` in place of the
    Mul are accepted when every scale involved is a power of two and the two are exact reciprocals
    (multiplying by ``1/s`` and dividing by ``s`` then round identically).

    The FakeQuantize keeps the final node's output (name, type, graph-output position) and takes
    the name of the FP8 Cast. Left alone (logged): a clamp that could change the result; a scaling
    computed in float16 or bfloat16 before the cast (two roundings, not one); scales that differ or
    are not exact reciprocal powers of two; intermediates read outside the chain. In those cases, and
    for bare Cast pairs without the scaling Div and Mul, the Cast pair alone becomes a FakeQuantize with
    scale 1 (exact), so no FP8 Cast is left.

    Raises (through the pass manager): :class:`~fp8conv.errors.Fp8ConvError` for a scale that is
    <= 0, NaN or Inf or does not broadcast; :class:`~fp8conv.errors.UnsupportedModelError` for a
    scale varying along several axes.
    """

    def _rewrite(self, to_fp8: ir.Node) -> bool:
        if to_fp8.op_type != "Cast" or to_fp8.domain != "" or not to_fp8.inputs or to_fp8.inputs[0] is None:
            return False
        target = to_fp8.attributes.get_int("to", 0)
        if target not in FP8_DATA_TYPES:
            return False
        chain = self._match(to_fp8)
        if chain is None:
            return self._rewrite_bare_pair(to_fp8, target)
        fmt = FORMATS[FP8_DATA_TYPES[ir.DataType(target)]]
        saturate = self._absorbed_saturate(chain, fmt)
        scale_value = None if saturate is None else self._scale(chain)
        if saturate is None or scale_value is None:  # the chain is left as is (logged); its Cast pair is not
            return self._rewrite_bare_pair(to_fp8, target)
        x = chain.front.data
        scale_value, axis = per_axis_scale(to_fp8, scale_value, read_scale(to_fp8, scale_value), x)
        spec = QuantSpec(fmt, axis=axis, saturate=saturate)
        result_type = ir.DataType(chain.back_cast.attributes.get_int("to"))
        if x.dtype is None and chain.front.constant.dtype is not None:
            # Div(x, s) types x as s (an exporter's custom op upstream can leave x untyped).
            x.type = ir.TensorType(chain.front.constant.dtype)
        replace_with_fake_quantize(
            chain.nodes, x, scale_value, spec, source="cast", name=to_fp8.name, result_type=result_type
        )
        logger.debug("node %r: FP8 Cast pair -> FakeQuantize (%s)", to_fp8.name, spec)
        return True

    @staticmethod
    def _rewrite_bare_pair(to_fp8: ir.Node, target: int) -> bool:
        """``Cast(Cast(v, to=FP8), to=float)`` alone is ``FakeQuantize(v, 1)``: exact, whatever surrounds it.

        The first Cast rounds ``v`` to the FP8 grid (round half to even, its saturate rule), the second
        is exact, so the pair is the FakeQuantize with scale 1. Used where the full chain does not match
        (no scaling, or an intermediate read outside it): the scaling ops stay as float ops, and no
        FP8 Cast is left behind.
        """
        back_cast = _only_consumer(to_fp8.outputs[0])
        if back_cast is None or back_cast.op_type != "Cast" or back_cast.domain != "":
            return False
        result_type = back_cast.attributes.get_int("to", 0)
        x = to_fp8.inputs[0]
        if result_type not in _BACK_TYPES or x is None or x.dtype not in _BACK_TYPES:
            return False
        fmt = FORMATS[FP8_DATA_TYPES[ir.DataType(target)]]
        spec = QuantSpec(fmt, saturate=bool(to_fp8.attributes.get_int("saturate", 1)))
        one = add_initializer(to_fp8, x, np.ones((), np.float32), "fp8_unit_scale")
        replace_with_fake_quantize(
            [to_fp8, back_cast], x, one, spec, source="cast", name=to_fp8.name, result_type=ir.DataType(result_type)
        )
        logger.info("node %r: bare FP8 Cast pair -> FakeQuantize with scale 1 (%s)", to_fp8.name, spec)
        return True

    @staticmethod
    def _match(to_fp8: ir.Node) -> _Chain | None:
        """Find the scaling, optional Clip, second Cast and rescaling around an FP8 Cast."""
        back_cast = _only_consumer(to_fp8.outputs[0])
        if (
            back_cast is None
            or back_cast.op_type != "Cast"
            or back_cast.domain != ""
            or back_cast.attributes.get_int("to", 0) not in _BACK_TYPES
        ):
            return None
        back = _scaling(_only_consumer(back_cast.outputs[0]), back_cast.outputs[0])
        clamps: list[ir.Node] = []
        data, producer = to_fp8.inputs[0], to_fp8.inputs[0].producer()
        while (clamp := _clamp(producer)) is not None:
            assert producer is not None
            clamps.insert(0, producer)
            data = clamp[0]
            producer = data.producer()
        front = _scaling(producer)
        if back is None or front is None:
            logger.debug("node %r: FP8 Cast pair without a scaling Div/Mul on both sides; left as is", to_fp8.name)
            return None
        for node in (front.node, *clamps):
            value = node.outputs[0]
            if _only_consumer(value) is None:
                logger.warning(
                    "node %r: the intermediate %r of the FP8 Cast chain is read outside it; left as is",
                    to_fp8.name,
                    value.name,
                )
                return None
        return _Chain(front, tuple(clamps), to_fp8, back_cast, back)

    @staticmethod
    def _absorbed_saturate(chain: _Chain, fmt: FloatFormat) -> bool | None:
        """The chain's saturate mode once its clamps (if any) are absorbed; None (logged) when they cannot be.

        Clamps applied in turn whose intervals overlap clamp to their intersection; the absorption
        conditions below need both bounds beyond ±max, so the intervals overlap whenever they hold.
        """
        saturate = bool(chain.to_fp8.attributes.get_int("saturate", 1))
        if not chain.clamps:
            return saturate
        readings = [_clamp(node) for node in chain.clamps]
        bounds = None
        if all(reading is not None and reading[1] is not None for reading in readings):
            low = max(reading[1][0] for reading in readings)  # type: ignore[index]
            high = min(reading[1][1] for reading in readings)  # type: ignore[index]
            bounds = (low, high)
        limit = fmt.max_value
        if bounds is not None:
            low, high = bounds
            if (saturate and low <= -limit and high >= limit) or (low == -limit and high == limit):
                return True
        logger.warning(
            "node %r: clamp %s with bounds %s may change the result of the cast to %s (max %g, saturate=%d); "
            "left as is",
            chain.to_fp8.name,
            ", ".join(repr(node.name) for node in chain.clamps),
            bounds,
            fmt.name,
            limit,
            saturate,
        )
        return None

    @staticmethod
    def _scale(chain: _Chain) -> ir.Value | None:
        """The constant ``s`` with ``front = x / s`` and ``back = · s`` exactly; None (logged) when unproven."""
        name = chain.to_fp8.name
        front_type = constant_dtype(chain.front.constant)
        back_type = constant_dtype(chain.back.constant)
        if front_type != ir.DataType.FLOAT:
            logger.warning(
                "node %r: the scaling before the FP8 cast is computed in %s, not float32; left as is",
                name,
                front_type.name if front_type is not None else "an unknown type",
            )
            return None
        if back_type != chain.back_cast.attributes.get_int("to"):
            logger.warning("node %r: the rescaling after the FP8 cast has a mismatched type; left as is", name)
            return None
        front, back = chain.front.scale, chain.back.scale
        if front.shape != back.shape:
            logger.warning("node %r: the scales before and after the FP8 cast differ in shape; left as is", name)
            return None
        if chain.front.divides and not chain.back.divides:
            if chain.front.constant is not chain.back.constant and not np.array_equal(front, back):
                logger.warning("node %r: the scales before and after the FP8 cast differ; left as is", name)
                return None
            return chain.front.constant
        with np.errstate(divide="ignore"):
            front_scale = front if chain.front.divides else 1.0 / front
            back_scale = 1.0 / back if chain.back.divides else back
        if not (_is_power_of_two(front) and _is_power_of_two(back) and np.array_equal(front_scale, back_scale)):
            logger.warning(
                "node %r: the FP8 Cast chain scales by a reciprocal that is not an exact power of two, so the "
                "rewrite is not provably exact; left as is",
                name,
            )
            return None
        if chain.front.divides:
            return chain.front.constant
        if not chain.back.divides and back_type == ir.DataType.FLOAT:
            return chain.back.constant
        return add_initializer(chain.to_fp8, chain.front.constant, front_scale.astype(np.float32), "reciprocal")
