"""Lower canonical ``ai.fp8conv::FakeQuantize`` nodes to standard ONNX ops, bit for bit.

After this pass a canonical model runs on any ONNX runtime and computes, at every quantization point,
exactly :func:`fp8conv.fp8.fake_quantize` (see :mod:`fp8conv.passes.canonical` for the contract)::

    y = x / s                      float32 division
    q = round_to_grid(y)           round half to even; saturate or not; the format's specials
    out = q * s                    float32 multiplication

Two lowerings, chosen per node:

**Native** (``QuantizeLinear`` → ``DequantizeLinear`` with a float8 zero point of 0), for the formats
that are ONNX float8 types (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz) when the model's ai.onnx opset has the
ops (19; 21 for blocked scales) and onnxruntime's kernel agrees with the emulator: every saturating
case and the non-saturating FNUZ types. onnxruntime's non-saturating e4m3fn/e5m2 conversion is off
just above the largest value (reference §6.2: [480, 496) → 448 instead of NaN, [61440, 65536) → NaN
instead of Inf), so those two take the float lowering. ``native=False`` takes the float lowering for
every node: onnxruntime's float8 ``QuantizeLinear`` is not multi-threaded (same time on 1 and 2 threads,
about 60 M elements/s), and the float ops below run 2-7× faster on the CPU EP (ResNet-18 activation
shapes; ``benchmarks/RESULTS.md``).

**Float ops**, for every other format (e4m3, e3m4, e4m3b11fnuz, e2m3fn, e3m2fn, e2m1fn,
:func:`~fp8conv.fp8.minifloat`), with ``M`` mantissa bits, binade exponents clamped to
``[e_lo, e_hi]`` (``e_lo = max(e_min, M - 149)``: below ``2^(M-149)`` every float32 is already on the
grid; ``e_hi = min(floor(log2 max) + 1, 127)``: every magnitude from ``2^e_hi`` up overflows)::

    y  = x / s
    y  = Clip(y, -max, max)                          saturate only (NaN passes, ±Inf → ±max)
    c  = Clip(|y|, 2^e_lo, 2^e_hi)
    u  = ufp(c) · 2^-M                               the grid spacing (quantum) at |y|
       = t - (1 - 2^-24) t,  t = (φ 2^-M) c,  φ = 2^23 + 1
    u  = Where(|y| < 2^e_min, 2^e_min, u)            formats without subnormals
    q  = Round(y / u) · u

``ufp`` ("unit in the first place", Rump 2009) is the largest power of two not above ``c``, computed
exactly by ``φc - (1 - 2^-24)(φc)``; it is correct for every positive finite float32 whose ``φc`` does
not overflow (checked exhaustively), hence ``c < 2^104``; above, it is evaluated on ``c · 2^-64``.
Folding ``2^-M`` into ``φ`` computes ``ufp(c · 2^-M)``, exact while ``c · 2^-M`` is a normal float32
(``e_lo - M >= -126``); otherwise ``2^-M`` is a separate multiplication.
Clipping before rounding saturates exactly because ``max`` is a grid value (``minifloat`` refuses
others). Dividing and multiplying by a power of two is exact, and ``Round`` is round half to even, so ``q``
is ``y`` rounded to the grid; rounding ``y`` rather than ``|y|`` keeps the sign of zero. Without
subnormals the spacing below the smallest normal is the smallest normal itself, so those values round
half-even to 0 or to it (the emulator's rule). Then the format's special values::

    not saturating, |q| > max:  ±Inf (ieee formats), NaN (fn, fnuz), ±max (no specials)
    fnuz:                       -0 → +0
    no NaN in the format:       NaN → +0 (see below)
    out = q · s

NaN in formats without NaN: the emulator follows ``ml_dtypes`` for the formats it evaluates through
its code tables (at most 8 bits and 5 mantissa bits), which gives a zero whose sign is the opposite of
the NaN's sign bit, and keeps NaN for wider formats. ONNX float ops cannot read the sign of a NaN,
so the lowering returns +0.0 for the former: equal to the emulator for NaNs with the sign bit set (the
NaN that x86 arithmetic produces), -0.0 versus +0.0 for positive NaNs (``np.nan``).

A ``DequantizeLinear`` over a stored FP8 weight is already standard and is left alone, except in a
model whose opset predates float8 ``DequantizeLinear`` (19; 21 when blocked): there the weight is
dequantized now, ``decode(codes) · scale`` in float32 rounded to the scale's type, which is what the
kernel computes (the product of an FP8 value and a float16/bfloat16/float32 scale is exact in float32).
Non-float32 inputs of FakeQuantize are cast to float32 first (the emulator's definition) and the result
cast back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection

import ml_dtypes
import numpy as np
import onnx_ir as ir

from fp8conv.errors import Fp8ConvError, UnsupportedModelError
from fp8conv.passes.canonical import (
    CANONICAL_DOMAIN,
    FP8_DATA_TYPES,
    QuantSpec,
    constant_array,
    is_fake_quantize,
    is_fp8_weight_dequantize,
    read_fake_quantize,
    read_scale,
)
from fp8conv.passes.names import NameAllocator
from fp8conv.runtime.emulator import decode, float16_codes
from fp8conv.runtime.formats import FORMATS, FloatFormat

__all__ = ["NATIVE_MIN_OPSET", "LowerFakeQuantizePass", "stored_weight_values", "uses_native_lowering"]

logger = logging.getLogger(__name__)

NATIVE_MIN_OPSET = 19
"""ai.onnx opset from which QuantizeLinear/DequantizeLinear take float8 (21 for blocked scales)."""

_BLOCKED_MIN_OPSET = 21
_FLOAT_MIN_OPSET = 11  # Clip with min/max inputs, Round
_DEFAULT_OPSET = 21  # for a model that imports no ai.onnx opset at all

_NATIVE_TYPES: dict[int, type] = {
    17: ml_dtypes.float8_e4m3fn,
    18: ml_dtypes.float8_e4m3fnuz,
    19: ml_dtypes.float8_e5m2,
    20: ml_dtypes.float8_e5m2fnuz,
}

# The emulator's code tables cover formats of at most 8 bits with at most this many mantissa bits;
# there, NaN in a format without NaN follows ml_dtypes (a zero), elsewhere it stays NaN.
_TABLE_MANTISSA_BITS = 5

_PHI = float(2**23 + 1)
_ONE_MINUS_ULP = 1.0 - 2.0**-24
_UFP_LIMIT_EXPONENT = 103  # ufp(c) needs (2^23 + 1) c < FLT_MAX
_UFP_SHIFT = 64
_FLOAT32_MIN_EXPONENT = -149  # the smallest float32 is 2^-149
_FLOAT32_MIN_NORMAL_EXPONENT = -126
_FLOAT32_MAX_BINADE = 127


def uses_native_lowering(spec: QuantSpec, opset: int) -> bool:
    """Whether a FakeQuantize with ``spec`` lowers to ``QuantizeLinear``/``DequantizeLinear``.

    Args:
        spec: The quantization point's format, granularity and saturation.
        opset: The model's ai.onnx opset.

    Returns:
        True for ONNX float8 formats when ``opset`` has the Q/DQ versions needed (19, or 21 for blocked
        scales) and onnxruntime's conversion equals the emulator (saturating, or FNUZ).
    """
    fmt = spec.format
    if fmt.onnx_type not in _NATIVE_TYPES:
        return False
    if not (spec.saturate or fmt.style == "fnuz"):
        return False
    return opset >= (_BLOCKED_MIN_OPSET if spec.block_size else NATIVE_MIN_OPSET)


class LowerFakeQuantizePass(ir.passes.InPlacePass):
    """Replace every canonical FakeQuantize by standard ops that compute it bit for bit.

    Cases (see the module docstring for the algebra):

    * ONNX float8 format, opset ≥ 19 (≥ 21 when blocked), saturating or FNUZ, ``native`` True:
      ``QuantizeLinear`` → ``DequantizeLinear`` with a float8 zero point of 0.
    * Any other format, a non-saturating e4m3fn/e5m2, an opset too old for float8 Q/DQ, or ``native``
      False: the float op lowering (opset ≥ 11).
    * Per-tensor, per-axis and blocked scales; per-axis/blocked scales are reshaped (and repeated along
      the axis) for broadcasting, with shape ops when the input's rank or length is unknown.
    * FakeQuantize nodes inside subgraphs (If/Loop/Scan bodies).

    Left alone: ``DequantizeLinear`` over stored FP8 weights (already standard), unless the opset is
    too old for it; then it becomes a float initializer. The ``ai.fp8conv`` opset import is removed
    once no node uses it; a model without an ai.onnx import gets opset 21.

    Raises (from ``__call__``):
        Fp8ConvError: A scale that is not a positive, finite constant, or whose shape does not fit the
            input (message names the node).
        UnsupportedModelError: e8m0fnu (no sign, no zero), a ``max_value`` beyond float32, or an
            ai.onnx opset below 11 where the float lowering is needed.

    Grid outputs: for the FakeQuantize outputs named in ``grid``, a float-lowered node also computes
    ``Cast(q, FLOAT16)``, the FP8 grid value before the scale, when every value of the format is a float16
    (all 8-bit formats but e8m0fnu and wide-exponent minifloats): exact, and it names the FP8 code in two
    bytes, so calibration can count codes without reading the float32 tensor. :attr:`grid_outputs` maps
    each such FakeQuantize output to its float16 tensor (nodes of subgraphs and nodes taking the native
    lowering get none).

    Args:
        native: Lower ONNX float8 formats to QuantizeLinear/DequantizeLinear where that is exact; False
            lowers every node to float ops.
        grid: FakeQuantize output names that should also give their grid values (see above).
    """

    def __init__(self, native: bool = True, grid: Collection[str] = ()) -> None:
        super().__init__()
        self.native = native
        self.grid = frozenset(grid)
        self.grid_outputs: dict[str, str] = {}
        """FakeQuantize output name → name of its float16 grid-value tensor (filled by a run)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Lower every FakeQuantize of ``model`` in place."""
        opset = model.opset_imports.get("", _DEFAULT_OPSET)
        nodes = [node for node in ir.traversal.RecursiveGraphIterator(model.graph) if is_fake_quantize(node)]
        stored = [
            node
            for node in ir.traversal.RecursiveGraphIterator(model.graph)
            if is_fp8_weight_dequantize(node)
            and opset < (_BLOCKED_MIN_OPSET if node.attributes.get_int("block_size", 0) else NATIVE_MIN_OPSET)
        ]
        if not nodes and not stored:
            return ir.passes.PassResult(model, modified=False)
        model.opset_imports[""] = opset
        lowering = _Lowering(model, self.native, self.grid)
        native = 0
        constants = {value for node in [*nodes, *stored] for value in node.inputs if value is not None}
        for node in nodes:
            native += lowering.lower(node)
        for node in stored:
            lowering.fold_stored_weight(node)
        for value in constants:
            _remove_if_unused(value)
        self.grid_outputs = dict(lowering.grid_outputs)
        if not any(n.domain == CANONICAL_DOMAIN for n in ir.traversal.RecursiveGraphIterator(model.graph)):
            model.opset_imports.pop(CANONICAL_DOMAIN, None)
        logger.info(
            "lowered %d FakeQuantize nodes: %d to QuantizeLinear/DequantizeLinear, %d to float ops; "
            "%d stored FP8 weights dequantized for opset %d",
            len(nodes),
            native,
            len(nodes) - native,
            len(stored),
            opset,
        )
        return ir.passes.PassResult(model, modified=True)


def _remove_if_unused(value: ir.Value) -> None:
    """Drop a source scale constant (initializer or ``Constant``) that no node reads any more."""
    if value.uses() or value.is_graph_output() or value.is_graph_input():
        return
    producer = value.producer()
    if value.is_initializer() and value.graph is not None and value.name is not None:
        del value.graph.initializers[value.name]
    elif producer is not None and producer.op_type == "Constant" and producer.graph is not None:
        producer.graph.remove(producer, safe=True)


class _Lowering:
    """State of one pass run: unique names and shared scalar constants (in the main graph)."""

    def __init__(self, model: ir.Model, native: bool, grid: frozenset[str] = frozenset()) -> None:
        self.model = model
        self.native = native
        self.grid = grid
        self.grid_outputs: dict[str, str] = {}
        self.opset = model.opset_imports[""]
        self._names = NameAllocator(model.graph)
        self._scalars: dict[bytes, ir.Value] = {}

    # -- naming and constants ----------------------------------------------------------------------

    def unique_name(self, base: str) -> str:
        """A name not used anywhere in the model yet, derived from ``base``."""
        return self._names.new(base)

    def constant(self, array: np.ndarray, base: str) -> ir.Value:
        """A new initializer of the main graph (visible to subgraphs as an outer-scope value)."""
        name = self.unique_name(base)
        value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
        self.model.graph.register_initializer(value)
        return value

    def scalar(self, number: float) -> ir.Value:
        """A float32 scalar initializer, shared by every node that needs the same value."""
        array = np.array(number, dtype=np.float32)
        key = array.tobytes()
        if key not in self._scalars:
            self._scalars[key] = self.constant(array, "fp8conv_const")
        return self._scalars[key]

    # -- one node ----------------------------------------------------------------------------------

    def lower(self, node: ir.Node) -> bool:
        """Replace ``node``; returns True when it took the native Q/DQ lowering."""
        spec = read_fake_quantize(node)
        fmt = spec.format
        x, scale_value = node.inputs[0], node.inputs[1]
        assert x is not None
        scale = _checked_scale(node, scale_value, spec, x.shape)
        output = node.outputs[0]
        graph = node.graph
        assert graph is not None
        builder = _Builder(self, output.name or node.name or "fq")
        source_type = x.dtype
        cast = source_type not in (ir.DataType.FLOAT, None)
        x32 = builder.op("Cast", x, to=ir.DataType.FLOAT) if cast else x
        native = self.native and uses_native_lowering(spec, self.opset)
        if native:
            result = self._native(builder, x32, scale, spec)
        else:
            _check_float_lowering(node, fmt, self.opset)
            q, result = self._float_ops(builder, x32, self._broadcast_scale(builder, x, scale, spec), spec)
            if output.name in self.grid and graph is self.model.graph and float16_codes(fmt) is not None:
                grid = builder.op("Cast", q, to=ir.DataType.FLOAT16)
                grid.name = self.unique_name(f"{output.name}/grid")
                self.grid_outputs[output.name] = grid.name
        if cast:
            result = builder.op("Cast", result, to=source_type)
        ir.convenience.replace_nodes_and_values(graph, node, [node], builder.nodes, [output], [result])
        logger.debug("%s: %s %s -> %s", node.name, fmt.name, spec.granularity, "Q/DQ" if native else "float ops")
        return native

    def fold_stored_weight(self, node: ir.Node) -> None:
        """Replace ``DequantizeLinear(fp8 weight, scale)`` by the float initializer it computes."""
        values = stored_weight_values(node)()
        output = node.outputs[0]
        folded = ir.Value(name=self.unique_name(f"{output.name}_folded"), const_value=ir.tensor(values))
        self.model.graph.register_initializer(folded)
        output.replace_all_uses_with(folded, replace_graph_outputs=True)
        name = output.name
        assert node.graph is not None
        node.graph.remove(node, safe=True)
        folded.name = name
        folded.const_value.name = name

    def _native(self, builder: _Builder, x: ir.Value, scale: np.ndarray, spec: QuantSpec) -> ir.Value:
        fmt = spec.format
        assert fmt.onnx_type is not None
        if not spec.block_size and spec.axis is None:
            scale = scale.reshape(())
        s = self.constant(scale, f"{builder.prefix}_scale")
        zero = self.constant(np.zeros(scale.shape, dtype=_NATIVE_TYPES[fmt.onnx_type]), f"{builder.prefix}_zero_point")
        granularity: dict[str, int] = {}
        if spec.axis is not None:
            granularity["axis"] = spec.axis
        if spec.block_size:
            granularity["block_size"] = spec.block_size
        q = builder.op("QuantizeLinear", x, s, zero, saturate=int(spec.saturate), **granularity)
        return builder.op("DequantizeLinear", q, s, zero, **granularity)

    def _broadcast_scale(self, builder: _Builder, x: ir.Value, scale: np.ndarray, spec: QuantSpec) -> ir.Value:
        """The scale as a constant (or small shape computation) that broadcasts against ``x``."""
        rank = x.shape.rank() if x.shape is not None else None
        if spec.block_size:
            axis = (1 if spec.axis is None else spec.axis) % scale.ndim
            repeated = np.repeat(scale, spec.block_size, axis=axis)
            length = x.shape[axis] if x.shape is not None else None
            if isinstance(length, int):
                return self.constant(repeated[(slice(None),) * axis + (slice(0, length),)], f"{builder.prefix}_scale")
            full = self.constant(repeated, f"{builder.prefix}_scale_blocks")
            shape = builder.op("Shape", x)
            end = builder.op("Gather", shape, self.constant(np.array([axis], np.int64), f"{builder.prefix}_axis"))
            begin = self.constant(np.array([0], np.int64), f"{builder.prefix}_begin")
            return builder.op(
                "Slice", full, begin, end, self.constant(np.array([axis], np.int64), f"{builder.prefix}_axes")
            )
        if spec.axis is None:
            return self.scalar(float(scale.reshape(())))
        trailing = -spec.axis - 1 if spec.axis < 0 else (rank - spec.axis - 1 if rank is not None else None)
        if trailing is not None:
            return self.constant(scale.reshape((-1,) + (1,) * trailing), f"{builder.prefix}_scale")
        # Unknown rank and a non-negative axis: reshape to [D, 1, ..., 1] at run time.
        channels = self.constant(scale, f"{builder.prefix}_scale")
        rank_value = builder.op("Size", builder.op("Shape", x))
        count = builder.op("Sub", rank_value, self.constant(np.array(spec.axis + 1, np.int64), f"{builder.prefix}_n"))
        ones = builder.op(
            "ConstantOfShape",
            builder.op("Reshape", count, self.constant(np.array([1], np.int64), f"{builder.prefix}_one")),
            value=ir.tensor(np.array([1], np.int64)),
        )
        length = self.constant(np.array([scale.size], np.int64), f"{builder.prefix}_length")
        return builder.op("Reshape", channels, builder.op("Concat", length, ones, axis=0))

    def _float_ops(self, builder: _Builder, x: ir.Value, s: ir.Value, spec: QuantSpec) -> tuple[ir.Value, ir.Value]:
        """``(q, q * s)``: the grid value and the fake-quantized output."""
        fmt = spec.format
        m = fmt.mantissa_bits
        top = float(fmt.max_value)
        e_min = fmt.min_exponent
        e_lo = max(e_min, m + _FLOAT32_MIN_EXPONENT)
        e_hi = max(min(math.frexp(top)[1], _FLOAT32_MAX_BINADE), e_lo)  # frexp: top = f 2^k, 0.5 <= f < 1
        c = self.scalar
        y = builder.op("Div", x, s)
        if spec.saturate:
            y = builder.op("Clip", y, c(-top), c(top))
        magnitude = builder.op("Abs", y)
        clamped = builder.op("Clip", magnitude, c(2.0**e_lo), c(2.0**e_hi))
        if e_hi <= _UFP_LIMIT_EXPONENT and e_lo - m >= _FLOAT32_MIN_NORMAL_EXPONENT:
            quantum = self._ufp(builder, clamped, 2.0**-m)
        else:
            if e_hi <= _UFP_LIMIT_EXPONENT:
                power = self._ufp(builder, clamped, 1.0)
            else:
                high = self._ufp(builder, builder.op("Mul", clamped, c(2.0**-_UFP_SHIFT)), 1.0)
                small = builder.op("Less", clamped, c(2.0**_UFP_SHIFT))
                power = builder.op(
                    "Where", small, self._ufp(builder, clamped, 1.0), builder.op("Mul", high, c(2.0**_UFP_SHIFT))
                )
            quantum = builder.op("Mul", power, c(2.0**-m)) if m else power
        if not fmt.has_subnormal and e_min >= _FLOAT32_MIN_EXPONENT:
            below = builder.op("Less", magnitude, c(2.0**e_min))
            quantum = builder.op("Where", below, c(2.0**e_min), quantum)
        q = builder.op("Mul", builder.op("Round", builder.op("Div", y, quantum)), quantum)
        if not spec.saturate:
            q = self._overflow(builder, q, fmt)
        if fmt.style == "fnuz":
            q = builder.op("Where", builder.op("Equal", q, c(0.0)), c(0.0), q)
        if fmt.style == "none" and fmt.fits_code and m <= _TABLE_MANTISSA_BITS:
            q = builder.op("Where", builder.op("IsNaN", y), c(0.0), q)
        return q, builder.op("Mul", q, s)

    def _ufp(self, builder: _Builder, value: ir.Value, factor: float) -> ir.Value:
        """``factor`` times the largest power of two <= value, for a power-of-two ``factor``.

        Exact when ``value > 0``, ``value · factor`` is a normal float32 (or ``factor`` is 1) and
        ``(2^23 + 1) value < FLT_MAX``.
        """
        scaled = builder.op("Mul", value, self.scalar(_PHI * factor))
        return builder.op("Sub", scaled, builder.op("Mul", scaled, self.scalar(_ONE_MINUS_ULP)))

    def _overflow(self, builder: _Builder, q: ir.Value, fmt: FloatFormat) -> ir.Value:
        c = self.scalar
        top = float(fmt.max_value)
        if fmt.style == "none":
            return builder.op("Clip", q, c(-top), c(top))
        over = builder.op("Greater", builder.op("Abs", q), c(top))
        special = builder.op("Mul", q, c(math.inf)) if fmt.style == "ieee" else c(math.nan)
        return builder.op("Where", over, special, q)


class _Builder:
    """Collects the nodes of one lowering, naming their outputs after the FakeQuantize output."""

    def __init__(self, lowering: _Lowering, prefix: str) -> None:
        self._lowering = lowering
        self.prefix = prefix
        self.nodes: list[ir.Node] = []

    def op(self, op_type: str, *inputs: ir.Value, **attributes: object) -> ir.Value:
        name = self._lowering.unique_name(f"{self.prefix}/{op_type}")
        output = ir.Value(name=name)
        node = ir.node(op_type, list(inputs), attributes or None, outputs=[output], name=name)
        self.nodes.append(node)
        return output


def stored_weight_values(node: ir.Node) -> Callable[[], np.ndarray]:
    """What ``DequantizeLinear(fp8 weight, scale)`` computes, as a function that computes it (checked now).

    ``decode(codes) · scale`` in float32, rounded to the scale's type: the kernel's result (the product of an
    FP8 value and a float16/bfloat16/float32 scale is exact in float32).

    Raises:
        Fp8ConvError: The scale is not a constant, or does not fit the weight.
    """
    codes_value, scale_value = node.inputs[0], node.inputs[1]
    assert codes_value is not None
    scale = constant_array(scale_value)
    if scale is None:
        raise Fp8ConvError(f"node {node.name!r}: the scale is not a constant; fp8conv needs constant FP8 scales")
    block_size = node.attributes.get_int("block_size", 0) or None
    axis = node.attributes.get_int("axis", 1) if (scale.size > 1 or block_size) else None
    spec = QuantSpec(FORMATS[FP8_DATA_TYPES[codes_value.dtype]], axis=axis, block_size=block_size)
    scale32 = _checked_scale(node, scale_value, spec, codes_value.shape)

    def values() -> np.ndarray:
        codes = constant_array(codes_value)
        assert codes is not None
        factor = scale32
        if block_size:
            assert axis is not None
            at = axis % codes.ndim
            factor = np.repeat(factor, block_size, axis=at)[(slice(None),) * at + (slice(0, codes.shape[at]),)]
        elif axis is not None:
            factor = factor.reshape((-1,) + (1,) * (codes.ndim - axis % codes.ndim - 1))
        return (decode(codes, spec.format) * factor).astype(scale.dtype)

    return values


def _checked_scale(node: ir.Node, value: ir.Value | None, spec: QuantSpec, shape: ir.Shape | None) -> np.ndarray:
    """The node's scale as float32 (:func:`~fp8conv.passes.canonical.read_scale`), its shape checked where known."""
    scale = read_scale(node, value)
    dims = tuple(shape) if shape is not None else ()
    if spec.block_size:
        axis = 1 if spec.axis is None else spec.axis
        if not -scale.ndim <= axis < scale.ndim or (dims and len(dims) != scale.ndim):
            raise Fp8ConvError(f"node {node.name!r}: blocked scale of shape {scale.shape} does not fit axis {axis}")
        length = dims[axis] if dims else None
        if isinstance(length, int) and scale.shape[axis] != -(-length // spec.block_size):
            raise Fp8ConvError(
                f"node {node.name!r}: blocked scale has {scale.shape[axis]} blocks on axis {axis}, "
                f"the input needs ceil({length}/{spec.block_size})"
            )
        return scale
    if spec.axis is None:
        if scale.size != 1:
            raise Fp8ConvError(f"node {node.name!r}: scale of shape {scale.shape} needs an axis attribute")
        return scale
    if scale.ndim != 1:
        raise Fp8ConvError(f"node {node.name!r}: per-axis scale must be 1-D, got shape {scale.shape}")
    if dims:
        if not -len(dims) <= spec.axis < len(dims):
            raise Fp8ConvError(f"node {node.name!r}: axis {spec.axis} is out of range for rank {len(dims)}")
        length = dims[spec.axis]
        if isinstance(length, int) and length != scale.size:
            raise Fp8ConvError(
                f"node {node.name!r}: per-axis scale has {scale.size} entries, axis {spec.axis} has {length}"
            )
    return scale


def _check_float_lowering(node: ir.Node, fmt: FloatFormat, opset: int) -> None:
    """Reject what the float-op lowering cannot express exactly."""
    if not (fmt.has_sign and fmt.has_zero):
        raise UnsupportedModelError(
            f"node {node.name!r}: format {fmt.name} has no sign or no zero; it is a scale format, not an "
            "FP8 fake-quantization format"
        )
    top = fmt.max_value
    if top >= 2.0**128 or float(np.float32(top)) != top:
        raise UnsupportedModelError(
            f"node {node.name!r}: format {fmt.name}: max {top:g} is not a float32 value (its grid exceeds float32)"
        )
    if opset < _FLOAT_MIN_OPSET:
        raise UnsupportedModelError(
            f"node {node.name!r}: ai.onnx opset {opset} is too old to lower {fmt.name} "
            f"(needs {_FLOAT_MIN_OPSET}; float8 QuantizeLinear needs {NATIVE_MIN_OPSET})"
        )
