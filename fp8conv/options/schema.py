"""The option schema: :class:`Option`, the value checks, and :data:`OPTIONS` (every option once).

See :mod:`fp8conv.options` for the naming rules and what is derived from the schema.

The module is longer than the project's ~600-line guide on purpose: :data:`OPTIONS` is one table of about
300 lines (every option's declaration), and the point of the schema is that the table is one place.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from fp8conv.errors import Fp8ConvError
from fp8conv.str_enum import StrEnum

__all__ = [
    "ACCURACY_GATES",
    "API_FUNCTIONS",
    "COMMANDS",
    "DEPRECATED_NAMES",
    "FIELD_OPTIONS",
    "GATE_OPTIONS",
    "OPTIONS",
    "BY_NAME",
    "ActivationRange",
    "ActivationType",
    "Kind",
    "Option",
    "Placement",
    "ShardExecutor",
    "Target",
    "Task",
    "WeightRange",
    "WeightRounding",
    "close_names",
    "for_command",
    "for_function",
    "option",
    "range_text",
]


class Target(StrEnum):
    """What the converted model computes in."""

    INT8 = "int8"
    INT4 = "int4"
    W8A16 = "w8a16"
    W4A16 = "w4a16"

    @property
    def weight_bits(self) -> int:
        """Bits of the integer weights."""
        return 4 if self in (Target.INT4, Target.W4A16) else 8

    @property
    def activation_bits(self) -> int | None:
        """Bits of the integer activations; None for weight-only targets."""
        return {Target.INT8: 8, Target.INT4: 8, Target.W8A16: 16, Target.W4A16: None}[self]


class WeightRange(StrEnum):
    """How the weight range is chosen: MSE-optimal clipping (paper §6) or the max."""

    MSE = "mse"
    MAX = "max"


class WeightRounding(StrEnum):
    """How weights are rounded onto their integer grid: to nearest, or by GPTQ on the calibration inputs."""

    RTN = "rtn"
    GPTQ = "gptq"


class ActivationRange(StrEnum):
    """How activation ranges are chosen from calibration statistics (``fp8``: data-free)."""

    MSE = "mse"
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    FP8 = "fp8"


class ActivationType(StrEnum):
    """Integer type of 8-bit activations: uint8 asymmetric (onnxruntime CPU's choice) or int8 symmetric."""

    UINT8 = "uint8"
    INT8 = "int8"


class Placement(StrEnum):
    """Where activation Q/DQ goes: where the target's integer kernels read it, or wherever the FP8 source quantized."""

    TARGET = "target"
    SOURCE = "source"


class ShardExecutor(StrEnum):
    """What runs calibration shards: processes of this machine, or Ray tasks."""

    LOCAL = "local"
    RAY = "ray"


class Task(StrEnum):
    """What an output is, for the gates: classifier scores (top-1 gates), an embedding or a regression (SQNR/cosine)."""

    CLASSIFICATION = "classification"
    EMBEDDING = "embedding"
    REGRESSION = "regression"


class Kind(StrEnum):
    """The type of an option's value."""

    PATH = "path"
    DATA = "data"  # a path; in Python also arrays, a sample set or a reader of feeds
    CHOICE = "choice"
    INTEGER = "integer"
    NUMBER = "number"
    FLAG = "flag"
    PATTERNS = "patterns"
    GATE = "gate"  # [OUTPUT:]VALUE specs; in a config file also a number or a table {output: value}
    GATES = "gates"  # a table of gates (config file ``gates:``, Python ``gates=``)
    VALUE_RANGE = "value_range"  # [NAME:]LOW,HIGH specs of random inputs
    SHAPES = "shapes"  # NAME:D0xD1x... (or NAME:[d0,d1]) specs of random inputs
    NAMES = "names"  # P1,P2: comma-separated names (a list in a file or in Python)


COMMANDS = ("convert", "verify", "inspect", "run")
"""The commands whose options come from the schema (``formats`` has only ``--json``, its own)."""

API_FUNCTIONS = ("convert", "convert_file", "convert_and_verify")
"""The Python functions whose keyword arguments the schema checks."""

_CONVERSION_API = API_FUNCTIONS
_WRITING_API = ("convert_file", "convert_and_verify")
_VERIFYING_API = ("convert_and_verify",)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its name, type, default, help and where it applies.

    Attributes:
        name: The snake_case name: config key and Python keyword; the flag is ``--kebab-case``.
        kind: The type of its value.
        help: What it does (``--help``, the README table). A mapping gives a text per command.
        default: The value when it is not given (None: off, automatic, or required; ``default_text`` says which).
        commands: The commands that have it.
        api: The Python functions that take it as a keyword.
        section: Its heading in ``--help`` (a mapping gives one per command).
        choices: The allowed values (an enum's values, or integers).
        enum: The enum of a choice whose :class:`~fp8conv.config.ConversionConfig` field holds a member.
        minimum: The smallest allowed number (``exclusive_minimum``: larger than it).
        maximum: The largest allowed number.
        exclusive_minimum: Whether ``minimum`` itself is refused.
        field: The :class:`~fp8conv.config.ConversionConfig` field it sets, if any.
        none_value: The option value a ``None`` field stands for (``int4_block_size`` 0: per channel).
        deprecated: Earlier spellings of the config key and keyword, still read with a warning.
        short: A one-letter flag (``-o``).
        metavar: The value's name in ``--help``.
        default_text: How the docs describe the default, when not by its value (a mapping: per command).
        positional: A command-line argument rather than a flag.
        in_config: Whether a config file may set it.
        on_command_line: Whether the command line has it (a ``gates`` table is for files and Python).
        one_value: A gate with one value for the model (``min_integer_kernels``, ``min_layer_sqnr``), not per output.
        flag_aliases: Extra hidden flags setting a value (``--no-layers`` sets ``per_layer`` False).
    """

    name: str
    kind: Kind
    help: str | Mapping[str, str]
    default: object = None
    commands: tuple[str, ...] = ("convert",)
    api: tuple[str, ...] = ()
    section: str | Mapping[str, str] = "Options"
    choices: tuple[object, ...] = ()
    enum: type[enum.Enum] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    field: str | None = None
    none_value: object = None
    deprecated: tuple[str, ...] = ()
    short: str | None = None
    metavar: str | None = None
    default_text: str | Mapping[str, str] | None = None
    positional: bool = False
    in_config: bool = True
    on_command_line: bool = True
    one_value: bool = False
    flag_aliases: tuple[tuple[str, object], ...] = ()

    @property
    def flag(self) -> str:
        """The command-line spelling: ``--max-samples`` (``MODEL`` for an argument)."""
        return self.name.upper() if self.positional else "--" + self.name.replace("_", "-")

    @property
    def multiple(self) -> bool:
        """Whether the flag may be repeated (patterns, and the specs of a per-output gate)."""
        if self.kind in (Kind.PATTERNS, Kind.VALUE_RANGE, Kind.SHAPES):
            return True
        return self.kind is Kind.GATE and not self.one_value

    def help_for(self, command: str | None = None) -> str:
        """The help text for ``command`` (None: every command's, when they differ)."""
        if isinstance(self.help, str):
            return self.help
        if command is None:
            return " ".join(f"{name}: {text}" for name, text in self.help.items())
        return self.help[command]

    def section_for(self, command: str) -> str:
        """The ``--help`` heading of the option in ``command``."""
        return self.section if isinstance(self.section, str) else self.section[command]

    def check(self, value: object, label: str | None = None) -> object:
        """``value`` validated and normalized (a tuple of patterns, a ``Path``, an enum's value, ...).

        None is accepted where the default is None (or ``none_value`` says what it stands for).

        Raises:
            Fp8ConvError: One line: ``{label} must be ..., got {value!r}``.
        """
        label = label or self.name
        if value is None:
            if self.default is None or self.none_value is not None:
                return self.none_value
            raise Fp8ConvError(f"{label} must be {self._expected()}, got None")
        check = _CHECKS[self.kind]
        return check(self, value, label)

    def field_value(self, value: object) -> object:
        """The :class:`~fp8conv.config.ConversionConfig` field value for a checked option value."""
        if self.none_value is not None and value == self.none_value:
            return None
        if self.enum is not None and value is not None:
            return self.enum(value)
        return value

    def _expected(self) -> str:
        if self.kind is Kind.CHOICE or self.choices:
            return "one of " + ", ".join(str(choice) for choice in self.choices)
        if self.kind in (Kind.INTEGER, Kind.NUMBER):
            noun = "an integer" if self.kind is Kind.INTEGER else "a number"
            return noun + range_text(self)
        return {
            Kind.PATH: "a path",
            Kind.DATA: "a path to data",
            Kind.FLAG: "true or false",
            Kind.PATTERNS: "a regex or a list of regexes",
            Kind.GATE: "a number, 'off', OUTPUT:VALUE or a table of them",
            Kind.GATES: "a table of gates",
            Kind.VALUE_RANGE: "LOW,HIGH or NAME:LOW,HIGH (LOW <= HIGH, finite), or a list of them",
            Kind.SHAPES: "NAME:D0xD1x... or NAME:[D0,D1,...] (positive integers), or a list of them",
            Kind.NAMES: "comma-separated names (NAME1,NAME2) or a list of names",
        }[self.kind]


def range_text(option: Option) -> str:
    """`` >= 1``, `` in (50, 100]`` or nothing: the allowed range of a number."""
    low, high = option.minimum, option.maximum
    if low is not None and high is not None:
        return f" in {'(' if option.exclusive_minimum else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if option.exclusive_minimum else '>='} {low:g}"
    return ""


def _bad(option: Option, value: object, label: str) -> Fp8ConvError:
    return Fp8ConvError(f"{label} must be {option._expected()}, got {value!r}")


def _check_path(option: Option, value: object, label: str) -> object:
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise _bad(option, value, label)


def _check_data(option: Option, value: object, label: str) -> object:
    if isinstance(value, (str, os.PathLike)):
        return _check_path(option, value, label)
    if isinstance(value, (bool, int, float, complex, bytes)):
        raise Fp8ConvError(
            f"{label} must be a data file or directory, {{input: array}}, an array (one-input model), a sample set, "
            f"or a reader / iterable of {{input: array}} feeds, got {value!r}"
        )
    return value  # arrays, readers, sample sets: opened (and checked) against the model's inputs


def _check_choice(option: Option, value: object, label: str) -> object:
    text = value.value if isinstance(value, enum.Enum) else value
    if text not in option.choices or not isinstance(text, str):
        raise _bad(option, value, label)
    return text


def _check_integer(option: Option, value: object, label: str) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(option, value, label)
    if option.choices and value not in option.choices:
        raise _bad(option, value, label)
    return _check_range(option, value, label)


def _check_number(option: Option, value: object, label: str) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(option, value, label)
    return _check_range(option, float(value), label)


def _check_range(option: Option, value: float, label: str) -> object:
    low, high = option.minimum, option.maximum
    too_low = low is not None and (value <= low if option.exclusive_minimum else value < low)
    if too_low or (high is not None and value > high):
        raise _bad(option, value, label)
    return value


def _check_flag(option: Option, value: object, label: str) -> object:
    if not isinstance(value, bool):
        raise _bad(option, value, label)
    return value


def _check_patterns(option: Option, value: object, label: str) -> object:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise _bad(option, value, label)
    for pattern in value:
        if not isinstance(pattern, str):
            raise Fp8ConvError(f"{label} patterns must be strings, got {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as error:
            raise Fp8ConvError(f"{label} pattern {pattern!r} is not a valid regex: {error}") from error
    return tuple(value)


def _check_gate(option: Option, value: object, label: str) -> object:
    """The shape of a gate value; the values themselves are checked by :class:`~fp8conv.Gates`."""
    if isinstance(value, (str, int, float, Mapping)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(item, (str, int, float)) for item in value):
        return tuple(value)
    raise _bad(option, value, label)


def _check_gates(option: Option, value: object, label: str) -> object:
    """A table of gates; in Python also a :class:`~fp8conv.Gates` (which :meth:`~fp8conv.Gates.coerce` checks)."""
    if isinstance(value, Mapping) or hasattr(value, "with_mapping"):
        return value
    raise _bad(option, value, label)


def _specs(option: Option, value: object, label: str) -> list[str]:
    """The text specs of a repeatable spec option: one string or a list of them."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _bad(option, value, label)
    specs: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise _bad(option, item, label)
        specs.append(item.strip())
    if not all(specs):
        raise _bad(option, value, label)
    return specs


def _check_value_range(option: Option, value: object, label: str) -> object:
    """``((name or None, low, high), ...)``; in Python also a ``(low, high)`` pair of numbers."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(bound, (int, float)) and not isinstance(bound, bool) for bound in value)
    ):
        value = [f"{float(value[0])!r},{float(value[1])!r}"]
    if isinstance(value, (list, tuple)):  # checked values again: (name or None, low, high)
        value = [_range_text(item) if isinstance(item, tuple) and len(item) == 3 else item for item in value]
    ranges: list[tuple[str | None, float, float]] = []
    for spec in _specs(option, value, label):
        name, _, bounds = spec.rpartition(":")
        parts = bounds.strip("[]()").split(",")
        try:
            low, high = (float(part) for part in parts)
        except ValueError:
            raise _bad(option, spec, label) from None
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise _bad(option, spec, label)
        key = name or None
        if any(existing == key for existing, _, _ in ranges):
            raise Fp8ConvError(f"{label} gives the range of {key or 'every input'} twice, got {spec!r}")
        ranges.append((key, low, high))
    return tuple(ranges)


def _range_text(item: tuple) -> object:
    """The spec of a checked range ``(name or None, low, high)``."""
    name, low, high = item
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return item
    return f"{name + ':' if name else ''}{float(low)!r},{float(high)!r}"


def _shape_text(item: tuple) -> object:
    """The spec of a checked shape ``(name, dims)``."""
    name, dims = item
    if not isinstance(name, str) or not isinstance(dims, (list, tuple)):
        return item
    return f"{name}:[{','.join(str(dim) for dim in dims)}]"


_SHAPE = re.compile(r"^(?P<name>.+):(?:\[(?P<list>[0-9, ]*)\]|(?P<dims>[0-9]+(?:x[0-9]+)*))$")


def _check_shapes(option: Option, value: object, label: str) -> object:
    """``((name, (d0, d1, ...)), ...)``."""
    if isinstance(value, (list, tuple)):  # checked values again: (name, dims)
        value = [_shape_text(item) if isinstance(item, tuple) and len(item) == 2 else item for item in value]
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for spec in _specs(option, value, label):
        match = _SHAPE.match(spec)
        if match is None:
            raise _bad(option, spec, label)
        text = match["list"] if match["list"] is not None else match["dims"].replace("x", ",")
        try:
            dims = tuple(int(dim) for dim in text.split(","))
        except ValueError:
            raise _bad(option, spec, label) from None
        if not dims or any(dim < 1 for dim in dims):
            raise _bad(option, spec, label)
        if any(existing == match["name"] for existing, _ in shapes):
            raise Fp8ConvError(f"{label} gives the shape of {match['name']!r} twice, got {spec!r}")
        shapes.append((match["name"], dims))
    return tuple(shapes)


def _check_names(option: Option, value: object, label: str) -> object:
    """``(name, ...)`` from ``"A,B"`` or ``["A", "B"]``: no empty name, none twice."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or not parts or not all(isinstance(part, str) for part in parts):
        raise _bad(option, value, label)
    names = tuple(part.strip() for part in parts)
    if not all(names):
        raise _bad(option, value, label)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise Fp8ConvError(f"{label} names {twice[0]} twice, got {value!r}")
    return names


_CHECKS: Mapping[Kind, Callable[[Option, object, str], object]] = {
    Kind.PATH: _check_path,
    Kind.DATA: _check_data,
    Kind.CHOICE: _check_choice,
    Kind.INTEGER: _check_integer,
    Kind.NUMBER: _check_number,
    Kind.FLAG: _check_flag,
    Kind.PATTERNS: _check_patterns,
    Kind.GATE: _check_gate,
    Kind.GATES: _check_gates,
    Kind.VALUE_RANGE: _check_value_range,
    Kind.SHAPES: _check_shapes,
    Kind.NAMES: _check_names,
}

_GATE_HELP = "Global, or per output as OUTPUT:VALUE (repeatable); 'off' disables."
_PATTERN_HELP = (
    "(repeatable; matched with re.search against each layer's node, weight and output names as `fp8conv inspect` "
    "lists them; a REGEX that selects no layer is an error)"
)
_MODEL, _CONVERSION, _CALIBRATION, _WRITING = "Input and output", "Conversion", "Calibration", "Writing"
_VERIFICATION, _GATES, _PRINTING = "Verification", "Gates", "Output"
_BOTH = ("convert", "verify")
_EVERY_COMMAND = COMMANDS


def _conversion(name: str, kind: Kind, text: str, section: str = _CONVERSION, **more: object) -> Option:
    """A conversion option: a keyword of every API function, setting the ConversionConfig field of its name."""
    return Option(name, kind, text, api=_CONVERSION_API, section=section, **{"field": name, **more})  # type: ignore[arg-type]


def _enum(members: type[enum.Enum]) -> dict[str, object]:
    """The choices of an enum option, its first member the default."""
    values = tuple(member.value for member in members)
    return {"choices": values, "enum": members, "default": values[0]}


def _verification(name: str, kind: Kind, text: str, **more: object) -> Option:
    """An option of verification: ``convert`` and ``verify``, a keyword of ``convert_and_verify``."""
    return Option(name, kind, text, **{"commands": _BOTH, "api": _VERIFYING_API, "section": _VERIFICATION, **more})  # type: ignore[arg-type]


def _gate(name: str, text: str, default: float | None, metavar: str, **more: object) -> Option:
    """A gate (``gates.py`` owns the defaults; ``tests/options/test_options.py`` checks that these are the same)."""
    return Option(name, Kind.GATE, text, default, _BOTH, section=_GATES, metavar=metavar, **more)  # type: ignore[arg-type]


def _model(name: str, text: str | Mapping[str, str], *commands: str) -> Option:
    return Option(name, Kind.PATH, text, commands=commands, positional=True, section=_MODEL, default_text="required")


OPTIONS: tuple[Option, ...] = (
    # -- input and output ---------------------------------------------------------------------------------------
    _model(
        "model",
        {
            "convert": "The FP8 fake-quantized model to convert (an argument, or `model` in the config file).",
            "inspect": "The model to describe (an argument, or `model` in the config file).",
            "run": "The model to run under exact FP8 numerics (an argument, or `model` in the config file).",
        },
        "convert",
        "inspect",
        "run",
    ),
    _model(
        "reference", "The reference, run under exact FP8 numerics (an argument, or `reference` in the file).", "verify"
    ),
    _model(
        "candidate", "The model under test, run on onnxruntime (an argument, or `candidate` in the file).", "verify"
    ),
    Option(
        "config",
        Kind.PATH,
        "YAML (.yaml/.yml) or TOML (.toml) file of options: every option's key, optionally under a top-level "
        "`fp8conv` table; relative paths in it are relative to the file. Command-line flags override it.",
        commands=_EVERY_COMMAND,
        section=_MODEL,
        in_config=False,
        default_text="none",
    ),
    Option(
        "output",
        Kind.PATH,
        {"convert": "Output model.", "run": "Where to write the outputs (.npz keyed by graph output name)."},
        commands=("convert", "run"),
        api=_VERIFYING_API,
        section=_MODEL,
        short="-o",
        default_text={"convert": "`<stem>.<to>.onnx` beside the model", "run": "required"},
    ),
    # -- conversion ---------------------------------------------------------------------------------------------
    _conversion(
        "to",
        Kind.CHOICE,
        "Target. int8: W8A8; int4: INT4 weights, INT8 activations (W4A8); w8a16: INT16 activations; "
        "w4a16: weight-only INT4 MatMul/Gemm (MatMulNBits).",
        field="target",
        deprecated=("target",),
        **_enum(Target),
    ),
    _conversion(
        "weights_range",
        Kind.CHOICE,
        "Weight range: mse (a clipping search that includes ratios above 1) or max.",
        **_enum(WeightRange),
    ),
    _conversion(
        "weight_rounding",
        Kind.CHOICE,
        "Weight rounding onto the integer grid: rtn (round to nearest) or gptq (GPTQ: each MatMul/Gemm weight's "
        "rounding errors are moved onto the input channels not yet quantized, minimizing the layer-output error on "
        "the calibration inputs, H = 2XᵀX/n; the same grid, scales and nodes as rtn, new integers; Conv stays "
        "rtn). gptq needs --data.",
        _CALIBRATION,
        **_enum(WeightRounding),
    ),
    _conversion(
        "gptq_damp",
        Kind.NUMBER,
        "GPTQ dampening: λ = DAMP · mean(diag H) is added to the diagonal of H (--weight-rounding gptq).",
        _CALIBRATION,
        default=0.01,
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        metavar="DAMP",
    ),
    _conversion(
        "gptq_act_order",
        Kind.FLAG,
        "GPTQ in act-order: quantize the input channels in decreasing diag H (--weight-rounding gptq; the scales "
        "are fixed before GPTQ, so the grid does not change).",
        _CALIBRATION,
        default=False,
    ),
    _conversion(
        "bias_correction",
        Kind.FLAG,
        "Bias correction: subtract the mean output shift of the integer weights, (W_q − W)·E[x] per output channel "
        "on the calibration inputs, from each integer layer's bias (a Conv/Gemm bias, or the constant of the "
        "MatMul's bias Add); a layer without a bias is left as it is (the report names them). Needs --data.",
        _CALIBRATION,
        default=False,
    ),
    _conversion(
        "activation_type",
        Kind.CHOICE,
        "8-bit activation type: uint8 asymmetric (onnxruntime CPU's choice) or int8 symmetric.",
        **_enum(ActivationType),
    ),
    _conversion(
        "placement",
        Kind.CHOICE,
        "Activation Q/DQ placement. target: only where an onnxruntime CPU integer kernel reads the tensor (a "
        "converted layer's input, a quantized output a QLinear kernel needs, integer data movement between "
        "them); an FP8 quantizer read only by float ops (LayerNorm, Softmax, Gelu, a residual Add) is dropped "
        "and the value flows in float. source: an integer Q/DQ wherever the FP8 model had an activation "
        "quantizer (for comparison).",
        **_enum(Placement),
    ),
    _conversion(
        "full_range_weights",
        Kind.FLAG,
        "Use the full int8 weight range [-127, 127]. Default: 7-bit "
        "weights [-63, 63], because onnxruntime's u8xs8 kernels saturate on x86 CPUs without VNNI.",
        default=False,
    ),
    _conversion(
        "int4_block_size",
        Kind.INTEGER,
        "INT4 block length along K for MatMul/Gemm (0: per output channel; Conv is always per channel).",
        default=32,
        choices=(0, 16, 32, 64, 128, 256),
        none_value=0,
    ),
    _conversion(
        "keep_float",
        Kind.PATTERNS,
        f"Keep the layers REGEX selects in float {_PATTERN_HELP}.",
        default=(),
        metavar="REGEX",
        default_text="none",
    ),
    _conversion(
        "int16",
        Kind.PATTERNS,
        "Give INT16 activations to the layers REGEX selects (as --keep-float).",
        default=(),
        metavar="REGEX",
        default_text="none",
    ),
    _conversion(
        "int4",
        Kind.PATTERNS,
        "Give INT4 weights to the layers REGEX selects (as --keep-float; blocked by --int4-block-size).",
        default=(),
        metavar="REGEX",
        default_text="none",
    ),
    # -- calibration --------------------------------------------------------------------------------------------
    Option(
        "data",
        Kind.DATA,
        {
            "convert": "Calibration data: .npz keyed by input name (first axis = samples) or a directory of "
            ".npz/.npy; in Python also {input: array}, an array (one-input model) or a reader of feed dicts. "
            "Without it, ranges come from the FP8 quantizers (data-free). Also the verification data, unless "
            "--verify-data or --random-inputs is given.",
            "verify": "Inputs: .npz keyed by input name (first axis = samples; optional 'labels'), or a directory "
            "of them.",
            "run": "Inputs: .npz keyed by graph input name (first axis = samples), or a directory of them.",
        },
        commands=("convert", "verify", "run"),
        api=_CONVERSION_API,
        section={"convert": _CALIBRATION, "verify": _VERIFICATION, "run": _MODEL},
        default_text={
            "convert": "none (data-free)",
            "verify": "none (then --random-inputs is needed)",
            "run": "required",
        },
    ),
    _conversion(
        "activations_range",
        Kind.CHOICE,
        "Activation range method (fp8: data-free, from the FP8 quantizers; the others need --data).",
        _CALIBRATION,
        default_text="`mse` (`fp8` without data)",
        **_enum(ActivationRange),
    ),
    _conversion(
        "percentile",
        Kind.NUMBER,
        "Percentile of the percentile range method (--activations-range percentile).",
        _CALIBRATION,
        default=99.999,
        minimum=50.0,
        maximum=100.0,
        exclusive_minimum=True,
    ),
    _conversion(
        "auto_int16",
        Kind.NUMBER,
        "Mixed precision: give INT16 to activations whose INT8 SQNR on the calibration data is below DB "
        "(outliers; e.g. 25), and to the layers reading them. Needs --data and --to int8.",
        _CALIBRATION,
        metavar="DB",
        field="auto_int16_below_db",
        deprecated=("auto_int16_below_db",),
        default_text="off",
    ),
    _conversion(
        "max_samples",
        Kind.INTEGER,
        "Use at most this many calibration samples.",
        _CALIBRATION,
        minimum=1,
        metavar="N",
        field="max_calibration_samples",
        deprecated=("max_calibration_samples",),
        default_text="all",
    ),
    _conversion(
        "calibration_batch_size",
        Kind.INTEGER,
        "Samples per reference run during calibration (the statistics do not depend on it).",
        _CALIBRATION,
        default=2,
        minimum=1,
        metavar="N",
    ),
    _conversion(
        "calibration_workers",
        Kind.INTEGER,
        "Reference runs in flight at once, threads sharing one session (the statistics do not depend on it).",
        _CALIBRATION,
        minimum=1,
        metavar="N",
        default_text="2 on 2+ CPUs, else 1",
    ),
    _conversion(
        "jobs",
        Kind.INTEGER,
        "Calibration shards at once: the samples split into N contiguous shards of whole batches, each "
        "calibrated by its own process (--executor local: spawned worker processes) or Ray task (--executor "
        "ray), their statistics merged exactly in shard order: the same file as --jobs 1, which calibrates in "
        "this process.",
        _CALIBRATION,
        default=1,
        minimum=1,
        metavar="N",
    ),
    _conversion(
        "executor",
        Kind.CHOICE,
        "What runs the calibration shards: local (processes of this machine) or ray (Ray tasks on the Ray "
        "instance this process is connected to, else ray.init(): the cluster RAY_ADDRESS names, or a local one "
        "started for the run; needs pip install fp8conv[ray]; data files must be at the same path on every node).",
        _CALIBRATION,
        **_enum(ShardExecutor),
    ),
    # -- writing ------------------------------------------------------------------------------------------------
    Option(
        "external_data",
        Kind.FLAG,
        "Save weights as external data beside the model.",
        api=_WRITING_API,
        section=_WRITING,
        default_text="only for models over 1 GiB",
    ),
    Option(
        "audit",
        Kind.FLAG,
        "Run the onnxruntime integer-kernel audit of the written model (--no-audit skips it).",
        default=True,
        api=_WRITING_API,
        section=_WRITING,
    ),
    # -- verification -------------------------------------------------------------------------------------------
    _verification(
        "verify",
        Kind.FLAG,
        "Verify the written model against MODEL (--no-verify: convert only; the integer-kernel gate still "
        "applies). Verification options and accuracy gates with --no-verify are an error, so that a CI job never "
        "passes on gates that did not run; those of a --config file are skipped with a warning.",
        default=True,
        commands=("convert",),
    ),
    _verification(
        "verify_data",
        Kind.DATA,
        "Held-out data to verify on (without it, the calibration data, which the report flags: numbers measured "
        "on the data the ranges were fit to can be optimistic).",
        commands=("convert",),
        default_text="the calibration data",
    ),
    _verification(
        "random_inputs",
        Kind.INTEGER,
        "Verify on N random inputs instead of data (explicit opt-in; the "
        "report warns that they do not represent the task).",
        minimum=1,
        metavar="N",
        default_text="off",
    ),
    _verification(
        "seed",
        Kind.INTEGER,
        "Seed of the random inputs (--random-inputs): the same seed gives the same inputs on every run and machine.",
        default=0,
        minimum=0,
        metavar="N",
    ),
    _verification(
        "val_range",
        Kind.VALUE_RANGE,
        "Draw the random inputs (--random-inputs) uniformly from [LOW, HIGH]: for every input (LOW,HIGH) or per "
        "input (NAME:LOW,HIGH; repeatable, a per-input range wins). Integer inputs get the integers in it; "
        "booleans stay uniform.",
        default=(),
        metavar="[NAME:]LOW,HIGH",
        default_text="standard normal floats, integers 0 or 1",
    ),
    _verification(
        "input_shapes",
        Kind.SHAPES,
        "Shapes of the random inputs (--random-inputs) with dynamic dimensions: NAME:D0xD1x... or NAME:[D0,D1,...] "
        "(repeatable), the full shape; its first dimension is the batch axis, which the batch size sets (a static "
        "one must match), the others set the dynamic ones (static ones must match).",
        default=(),
        metavar="NAME:SHAPE",
        default_text="the model's shapes (only the batch axis may be dynamic)",
    ),
    _verification(
        "save_outputs",
        Kind.PATH,
        "Write the FP8 reference's graph outputs over the verification samples, and the intermediate tensors the "
        "per-layer comparison uses (unless --no-per-layer), to PATH.npz with the SHA-256 of the reference model and "
        "of the inputs: golden outputs that --load-outputs compares later candidates against without running the "
        "reference again. Written atomically, also when a gate fails.",
        metavar="PATH.npz",
        default_text="none",
    ),
    _verification(
        "load_outputs",
        Kind.PATH,
        "Compare the candidate with the reference outputs --save-outputs stored in PATH.npz instead of running the "
        "FP8 reference. The reference model is still read (for its SHA-256, its output names and the tensors to "
        "match): a file made for another reference model, other inputs (the --random-inputs of the same seed, "
        "range and shapes are the same inputs), another sample count, or lacking tensors the per-layer comparison "
        "needs (then give --no-per-layer) is an error.",
        metavar="PATH.npz",
        default_text="none (the reference runs)",
    ),
    _verification(
        "providers",
        Kind.NAMES,
        "onnxruntime execution providers the candidate's verification runs (deployed and unfused) use, in "
        "priority order: P1,P2 (a list in a file); each must be one of onnxruntime.get_available_providers(). "
        "The FP8 reference, the integer-kernel audit and its gate stay on CPUExecutionProvider: the fusion rules "
        "they check are the CPU provider's.",
        metavar="P1,P2",
        default_text="`CPUExecutionProvider`",
    ),
    _verification(
        "per_layer",
        Kind.FLAG,
        "Compare the intermediate tensors both models have, matched by name "
        "(--no-per-layer, or --no-layers: outputs only).",
        default=True,
        flag_aliases=(("--no-layers", False),),
    ),
    _verification(
        "task",
        Kind.CHOICE,
        "What the outputs are, for the gates: classification (top-1 and accuracy gates apply), embedding or "
        "regression (judged by SQNR and cosine only, never top-1). Inferred per output: classification for an "
        "[N, C] output (C >= 2) when the data has labels, or when its rows are not unit-norm and its name does not "
        "say embedding (embed, pool, hidden, feature, sentence); embedding for a unit-norm or so-named one; "
        "regression for any other output.",
        choices=tuple(task.value for task in Task),
        default_text="inferred per output",
    ),
    _verification(
        "batch_size",
        Kind.INTEGER,
        {"verify": "Samples per verification run.", "run": "Samples per run."},
        commands=("verify", "run"),
        api=(),
        section={"verify": _VERIFICATION, "run": _MODEL},
        minimum=1,
        metavar="N",
        default_text={
            "verify": "16, or the models' static batch size",
            "run": "the model's static batch size, else 32",
        },
    ),
    _verification(
        "optimization_level",
        Kind.CHOICE,
        "onnxruntime optimization level the candidate is deployed at.",
        default="all",
        choices=("all", "layout", "extended", "basic", "disable"),
    ),
    _verification(
        "report",
        Kind.PATH,
        "Write report.json, report.md and report.html into this directory (also when a gate fails).",
        api=(),
        metavar="DIR",
        default_text="none",
    ),
    # -- gates --------------------------------------------------------------------------------------------------
    _verification(
        "gates",
        Kind.GATES,
        "A table of gates: {gate: value, {output: value} or [specs]} (as the gate keys below).",
        section=_GATES,
        default_text="the defaults below",
        on_command_line=False,
    ),
    _gate("min_sqnr", f"Minimum output SQNR in dB. {_GATE_HELP}", 20.0, "[OUTPUT:]DB"),
    _gate("min_cosine", f"Minimum cosine similarity. {_GATE_HELP}", 0.99, "[OUTPUT:]X"),
    _gate(
        "max_top1_drop",
        f"Maximum top-1 disagreement with the FP8 model in percentage points, classifier outputs. {_GATE_HELP}",
        2.0,
        "[OUTPUT:]PP",
    ),
    _gate(
        "max_accuracy_drop",
        f"Maximum accuracy drop in percentage points, needs labels in the data. {_GATE_HELP}",
        1.0,
        "[OUTPUT:]PP",
    ),
    _gate("max_abs_err", f"Maximum absolute error. {_GATE_HELP}", None, "[OUTPUT:]X", default_text="off"),
    _gate(
        "min_layer_sqnr",
        "Minimum SQNR in dB of every layer compared (the unfused QDQ graph vs the reference; default off: "
        "per-layer numbers are diagnostics that fail nothing). When set, a layer below it fails the run and is "
        "marked in the reports. 'off' disables it.",
        None,
        "DB",
        default_text="off",
        one_value=True,
    ),
    _gate(
        "min_integer_kernels",
        "Minimum number of layers the deployed session runs on integer kernels. 'plan': every layer the "
        "conversion plans on an integer kernel for its target (checked when converting; needs no data, so it "
        "applies with --no-verify too); 'off' disables it.",
        None,
        "N|plan|off",
        default_text="`plan`",
        one_value=True,
    ),
    # -- what is printed ----------------------------------------------------------------------------------------
    Option(
        "json",
        Kind.FLAG,
        {
            "convert": "Print JSON: the verification report (its 'conversion' key is the conversion record), or "
            "the conversion record when nothing was verified.",
            "verify": "Print report.json to stdout instead of the table.",
            "inspect": "Print a stable JSON document instead of the table.",
        },
        default=False,
        commands=("convert", "verify", "inspect"),
        section=_PRINTING,
    ),
)
"""The schema: every option once, in the order of ``--help`` and the README table."""

BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}
"""Every option by name."""
DEPRECATED_NAMES: Mapping[str, Option] = {old: option for option in OPTIONS for old in option.deprecated}
"""The option each earlier spelling stands for."""
FIELD_OPTIONS: Mapping[str, Option] = {option.field: option for option in OPTIONS if option.field}
"""The option of each :class:`~fp8conv.config.ConversionConfig` field."""

GATE_OPTIONS: tuple[str, ...] = tuple(option.name for option in OPTIONS if option.kind is Kind.GATE)
"""The gates, by option name (each is a key of ``gates`` tables too)."""

ACCURACY_GATES: tuple[str, ...] = tuple(name for name in GATE_OPTIONS if name != "min_integer_kernels")
"""The gates verification checks (``min_integer_kernels`` needs none)."""


def option(name: str) -> Option:
    """The option named ``name`` (snake_case).

    Raises:
        KeyError: No such option.
    """
    return BY_NAME[name]


def close_names(name: str, names: Iterable[str]) -> list[str]:
    """Up to three names close to ``name`` (``difflib``), closest first."""
    return difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)


def for_command(command: str) -> tuple[Option, ...]:
    """The options of ``command``, in schema order."""
    return tuple(option for option in OPTIONS if command in option.commands)


def for_function(function: str) -> tuple[Option, ...]:
    """The options a Python API function takes as keywords."""
    return tuple(option for option in OPTIONS if function in option.api)
