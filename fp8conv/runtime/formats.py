"""One table of facts about every low-precision float format fp8conv knows.

A format is described by :class:`FloatFormat`: its bit layout (sign, exponent, mantissa), exponent bias,
largest finite value, and how it encodes the special values. The four *special styles* cover every
format in use:

``ieee``
    The top exponent field is reserved: mantissa 0 is ±Inf, any other mantissa is NaN
    (``e5m2``, ``e4m3``, ``e3m4``).
``fn``
    Finite only, except that the all-ones magnitude ``S.11…1.11…1`` is NaN (``e4m3fn``, and
    ``e8m0fnu``'s 0xFF).
``fnuz``
    Finite only, no negative zero: the code 0x80 (sign bit alone) is the single NaN
    (``e4m3fnuz``, ``e5m2fnuz``, ``e4m3b11fnuz``).
``none``
    Every code is a finite number (``e2m1fn``, ``e2m3fn``, ``e3m2fn``, and :func:`minifloat` formats
    without Inf or NaN).

Codes are stored in the low ``bits`` bits of a ``uint8``: ``sign | exponent | mantissa`` from the most
significant end, exactly as ``ml_dtypes`` lays them out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Literal

SpecialStyle = Literal["ieee", "fn", "fnuz", "none"]

__all__ = [
    "FORMATS",
    "FORMATS_SCHEMA_VERSION",
    "FloatFormat",
    "SpecialStyle",
    "formats_document",
    "formats_table",
    "minifloat",
    "resolve_format",
]


@dataclasses.dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format of at most 8 bits (or wider, for fake quantization only).

    Attributes:
        name: Short name (``e4m3fn``) or a generated one for :func:`minifloat` formats.
        exponent_bits: Width E of the exponent field.
        mantissa_bits: Width M of the stored mantissa (fraction) field.
        bias: Exponent bias b: a normal code with exponent field e is ``(1 + f/2^M) * 2^(e - b)``.
        max_value: Largest finite magnitude. Values that round above it overflow.
        style: How Inf and NaN are encoded (see the module docstring).
        has_sign: False only for unsigned scale formats (``e8m0fnu``).
        has_subnormal: Whether exponent field 0 encodes subnormals ``f/2^M * 2^(1 - b)``. When False,
            field 0 encodes only ±0 (the smallest normal is ``2^(1 - b)``), except in formats without a
            zero (``has_zero`` False, ``e8m0fnu``), where it is an ordinary normal binade.
        has_zero: False only for ``e8m0fnu``, whose smallest code is ``2^-127``.
        onnx_type: The ``onnx.TensorProto`` data type enum, where ONNX has the type.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_value: float
    style: SpecialStyle
    has_sign: bool = True
    has_subnormal: bool = True
    has_zero: bool = True
    onnx_type: int | None = None

    @property
    def bits(self) -> int:
        """Total width of a code in bits."""
        return int(self.has_sign) + self.exponent_bits + self.mantissa_bits

    @property
    def has_inf(self) -> bool:
        """Whether the format encodes ±Inf."""
        return self.style == "ieee"

    @property
    def has_nan(self) -> bool:
        """Whether the format encodes NaN."""
        return self.style != "none"

    @property
    def min_exponent(self) -> int:
        """Exponent of the smallest normal binade: ``1 - bias`` (``-bias`` without subnormals and zero)."""
        return (1 - self.bias) if (self.has_subnormal or self.has_zero) else -self.bias

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value."""
        return math.ldexp(1.0, self.min_exponent)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (equal to :attr:`min_normal` when there are no subnormals)."""
        if not self.has_subnormal:
            return self.min_normal
        return math.ldexp(1.0, self.min_exponent - self.mantissa_bits)

    @property
    def fits_code(self) -> bool:
        """Whether codes fit a ``uint8`` (needed by :func:`~fp8conv.fp8.encode`/``decode``)."""
        return self.bits <= 8

    def to_json(self) -> dict[str, object]:
        """The facts as JSON (``fp8conv formats --json``): the fields and properties by their names.

        ``style`` is how Inf and NaN are encoded (``ieee``, ``fn``, ``fnuz``, ``none``: see the module
        docstring); ``has_inf`` and ``has_nan`` say what it implies. The floats are exact (``repr``).
        """
        return {
            "name": self.name,
            "bits": self.bits,
            "exponent_bits": self.exponent_bits,
            "mantissa_bits": self.mantissa_bits,
            "bias": self.bias,
            "max_value": self.max_value,
            "min_normal": self.min_normal,
            "min_subnormal": self.min_subnormal,
            "style": self.style,
            "has_inf": self.has_inf,
            "has_nan": self.has_nan,
            "has_sign": self.has_sign,
            "has_subnormal": self.has_subnormal,
            "has_zero": self.has_zero,
            "onnx_type": self.onnx_type,
        }

    def describe(self) -> str:
        """One line that states the format's facts, for messages and ``fp8conv formats``."""
        return (
            f"{self.name}: {self.bits} bits (E{self.exponent_bits}M{self.mantissa_bits}, bias {self.bias}), "
            f"max {self.max_value:g}, min normal {self.min_normal:g}, min subnormal {self.min_subnormal:g}, "
            f"specials {self.style}"
        )


def _ieee_max(exponent_bits: int, mantissa_bits: int, bias: int) -> float:
    """Largest finite value when the top exponent field is reserved for Inf/NaN."""
    top = (1 << exponent_bits) - 2 - bias
    return math.ldexp(2.0 - math.ldexp(1.0, -mantissa_bits), top)


def _full_max(exponent_bits: int, mantissa_bits: int, bias: int, mantissa_codes_lost: int = 0) -> float:
    """Largest value with every exponent field finite, minus the top ``mantissa_codes_lost`` codes."""
    top = (1 << exponent_bits) - 1 - bias
    fraction = (1 << mantissa_bits) - 1 - mantissa_codes_lost
    return math.ldexp(1.0 + fraction / (1 << mantissa_bits), top)


def _named_formats() -> dict[str, FloatFormat]:
    f = FloatFormat
    formats = [
        f("e4m3fn", 4, 3, 7, _full_max(4, 3, 7, 1), "fn", onnx_type=17),
        f("e4m3fnuz", 4, 3, 8, _full_max(4, 3, 8), "fnuz", onnx_type=18),
        f("e5m2", 5, 2, 15, _ieee_max(5, 2, 15), "ieee", onnx_type=19),
        f("e5m2fnuz", 5, 2, 16, _full_max(5, 2, 16), "fnuz", onnx_type=20),
        f("e4m3", 4, 3, 7, _ieee_max(4, 3, 7), "ieee"),
        f("e3m4", 3, 4, 3, _ieee_max(3, 4, 3), "ieee"),
        f("e4m3b11fnuz", 4, 3, 11, _full_max(4, 3, 11), "fnuz"),
        f(
            "e8m0fnu",
            8,
            0,
            127,
            math.ldexp(1.0, 127),
            "fn",
            has_sign=False,
            has_subnormal=False,
            has_zero=False,
            onnx_type=24,
        ),
        f("e2m3fn", 2, 3, 1, _full_max(2, 3, 1), "none", onnx_type=27),
        f("e3m2fn", 3, 2, 3, _full_max(3, 2, 3), "none", onnx_type=28),
        f("e2m1fn", 2, 1, 1, _full_max(2, 1, 1), "none", onnx_type=23),
    ]
    return {fmt.name: fmt for fmt in formats}


FORMATS: Mapping[str, FloatFormat] = _named_formats()
"""Every named format, keyed by the name ``ml_dtypes`` uses (without its ``float8_`` prefix)."""

FORMATS_SCHEMA_VERSION = "1.0"
"""Version of the :func:`formats_document` (``fp8conv formats --json``; a string, as report.json's and inspect's)."""


def formats_document() -> dict[str, object]:
    """``{schema_version, formats: [FloatFormat.to_json() of each of FORMATS]}``: ``fp8conv formats --json``."""
    return {"schema_version": FORMATS_SCHEMA_VERSION, "formats": [fmt.to_json() for fmt in FORMATS.values()]}


def formats_table() -> str:
    """The table ``fp8conv formats`` prints: a header, then a row per format of :data:`FORMATS`."""
    lines = [
        f"{'name':<12} {'bits':>4} {'E':>2} {'M':>2} {'bias':>4} {'max':>12} {'min normal':>12} "
        f"{'min subnormal':>14}  specials"
    ]
    lines += [
        f"{fmt.name:<12} {fmt.bits:>4} {fmt.exponent_bits:>2} {fmt.mantissa_bits:>2} {fmt.bias:>4} "
        f"{fmt.max_value:>12g} {fmt.min_normal:>12g} {fmt.min_subnormal:>14g}  {fmt.style}"
        for fmt in FORMATS.values()
    ]
    return "\n".join(lines)


_ALIASES = {
    "float8_e4m3fn": "e4m3fn",
    "float8_e4m3fnuz": "e4m3fnuz",
    "float8_e5m2": "e5m2",
    "float8_e5m2fnuz": "e5m2fnuz",
    "float8_e4m3": "e4m3",
    "float8_e3m4": "e3m4",
    "float8_e4m3b11fnuz": "e4m3b11fnuz",
    "float8_e8m0fnu": "e8m0fnu",
    "float6_e2m3fn": "e2m3fn",
    "float6_e3m2fn": "e3m2fn",
    "float4_e2m1fn": "e2m1fn",
}


def minifloat(
    exponent_bits: int,
    mantissa_bits: int,
    *,
    bias: int | None = None,
    max_value: float | None = None,
    has_inf: bool = False,
    has_nan: bool = False,
    has_subnormal: bool = True,
) -> FloatFormat:
    """Build a custom minifloat format with the semantics of QONNX ``FloatQuant``.

    The grid: normal values ``(1 + f/2^M) * 2^(e - bias)`` for every exponent field ``e >= 1`` and,
    with ``has_subnormal``, subnormals ``f/2^M * 2^(1 - bias)``. Without subnormals the values between
    0 and ``2^(1 - bias)`` are not representable and round to 0 or to ``2^(1 - bias)``.
    ``max_value`` clips the grid (default: the largest value of the grid, with the top exponent field
    given up to Inf/NaN when ``has_inf`` is set). Values that round above ``max_value`` saturate to
    ``±max_value``, or become ±Inf (``has_inf``) or NaN (``has_nan``) when not saturating.

    The whitepaper's FP8 formats are ``minifloat(2, 5)``, ``minifloat(3, 4)``, ``minifloat(4, 3)`` and
    ``minifloat(5, 2)`` (subnormals, no Inf, saturating; the scale absorbs any real-valued bias).

    Args:
        exponent_bits: Exponent width E (1..8).
        mantissa_bits: Mantissa width M (0..23).
        bias: Exponent bias; default ``2^(E-1) - 1``.
        max_value: Largest finite magnitude; must lie on the grid's range.
        has_inf: Whether the format has ±Inf (top exponent field reserved, IEEE style).
        has_nan: Whether the format has NaN (all-ones magnitude if there is no Inf).
        has_subnormal: Whether exponent field 0 holds subnormals.

    Returns:
        The format.

    Raises:
        ValueError: For widths out of range or a ``max_value`` that is not positive and finite.
    """
    if not 1 <= exponent_bits <= 8:
        raise ValueError(f"exponent_bits must be in 1..8, got {exponent_bits}")
    if not 0 <= mantissa_bits <= 23:
        raise ValueError(f"mantissa_bits must be in 0..23, got {mantissa_bits}")
    if bias is None:
        bias = (1 << (exponent_bits - 1)) - 1
    style: SpecialStyle = "ieee" if has_inf else ("fn" if has_nan else "none")
    if style == "ieee":
        if exponent_bits < 2:
            raise ValueError("has_inf needs at least 2 exponent bits (the top field is reserved)")
        grid_max = _ieee_max(exponent_bits, mantissa_bits, bias)
    elif style == "fn":
        if exponent_bits + mantissa_bits < 2:
            raise ValueError("has_nan needs at least 2 magnitude bits")
        grid_max = (
            _full_max(exponent_bits, mantissa_bits, bias, 1)
            if mantissa_bits
            else math.ldexp(1.0, (1 << exponent_bits) - 2 - bias)
        )
    else:
        grid_max = _full_max(exponent_bits, mantissa_bits, bias)
    if max_value is None:
        max_value = grid_max
    elif not (math.isfinite(max_value) and max_value > 0):
        raise ValueError(f"max_value must be positive and finite, got {max_value}")
    else:
        max_value = min(float(max_value), grid_max)
        _check_on_grid(max_value, exponent_bits, mantissa_bits, bias)
    name = f"minifloat_e{exponent_bits}m{mantissa_bits}"
    if bias != (1 << (exponent_bits - 1)) - 1:
        name += f"b{bias}"
    if max_value != grid_max:
        name += f"max{max_value:g}"
    if not has_subnormal:
        name += "nosub"
    name += {"ieee": "_inf", "fn": "_nan", "none": ""}[style]
    return FloatFormat(
        name=name,
        exponent_bits=exponent_bits,
        mantissa_bits=mantissa_bits,
        bias=bias,
        max_value=max_value,
        style=style,
        has_subnormal=has_subnormal,
    )


def _check_on_grid(value: float, exponent_bits: int, mantissa_bits: int, bias: int) -> None:
    """Refuse a ``max_value`` between grid values: saturating to it would not be a grid value.

    (QONNX clips *after* rounding, so an off-grid max would produce a value the format cannot encode.)
    """
    exponent = max(math.frexp(value)[1] - 1, 1 - bias)
    quantum = math.ldexp(1.0, exponent - mantissa_bits)
    if value % quantum:
        below = math.floor(value / quantum) * quantum
        raise ValueError(
            f"max_value {value:g} is not a value of the E{exponent_bits}M{mantissa_bits} grid "
            f"(nearest below: {below:g}, above: {below + quantum:g}); use one of those"
        )


def resolve_format(fmt: str | FloatFormat) -> FloatFormat:
    """Return the :class:`FloatFormat` for a name (``e4m3fn``, ``float8_e4m3fn``) or a format object.

    Raises:
        ValueError: For an unknown name; the message lists the valid names.
        TypeError: For anything that is neither a string nor a :class:`FloatFormat`.
    """
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str):
        key = _ALIASES.get(fmt.lower(), fmt.lower())
        try:
            return FORMATS[key]
        except KeyError:
            valid = ", ".join(FORMATS)
            raise ValueError(
                f"unknown float format {fmt!r}; valid names are: {valid} "
                "(or build one with fp8conv.fp8.minifloat(exponent_bits, mantissa_bits, ...))"
            ) from None
    raise TypeError(f"fmt must be a format name or a FloatFormat, got {type(fmt).__name__}")
