"""Typed, frozen configuration of a conversion: target, range methods, per-layer overrides.

A configuration comes from keyword arguments (Python API), CLI flags, or a YAML/TOML file; all three
end in :class:`ConversionConfig`, validated once in ``__post_init__``.

Targets (weights / activations):

=========  =====================================  ==========================================
target     weights                                activations
=========  =====================================  ==========================================
``int8``   INT8 symmetric per output channel      INT8 per tensor (uint8 asymmetric default)
``int4``   INT4 symmetric per channel or blocked  INT8 per tensor
``w8a16``  INT8 symmetric per output channel      INT16 per tensor (symmetric)
``w4a16``  INT4 blocked along K (MatMul/Gemm)     float (weight-only; runs as MatMulNBits)
=========  =====================================  ==========================================
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fp8conv.errors import Fp8ConvError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "ActivationRange",
    "ActivationType",
    "ConversionConfig",
    "IntegerType",
    "LayerPrecision",
    "Target",
    "WeightRange",
    "load_config_file",
]

logger = logging.getLogger(__name__)

_PATTERN_FIELDS = ("keep_float", "int16", "int4")


class Target(str, enum.Enum):
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


class WeightRange(str, enum.Enum):
    """How the weight range is chosen: MSE-optimal clipping (paper §6) or the max."""

    MSE = "mse"
    MAX = "max"


class ActivationRange(str, enum.Enum):
    """How activation ranges are chosen from calibration statistics (``fp8``: data-free)."""

    MSE = "mse"
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    FP8 = "fp8"


class ActivationType(str, enum.Enum):
    """Integer type of 8-bit activations: uint8 asymmetric (onnxruntime CPU's choice) or int8 symmetric."""

    UINT8 = "uint8"
    INT8 = "int8"


class LayerPrecision(str, enum.Enum):
    """A layer's precision: as planned (``Layer.precision``: float, INT8 or INT4 weights) and as overridden.

    The per-layer overrides of the target are float, INT16 activations and INT4 weights.

    ``str()`` and f-strings give the value (``int8``), as in messages and reports.
    """

    FLOAT = "float"
    INT8 = "int8"
    INT4 = "int4"
    INT16 = "int16"

    def __str__(self) -> str:
        return self.value


class IntegerType(str, enum.Enum):
    """Integer type of a quantized activation tensor (what its ``QuantizeLinear`` produces), by name.

    The facts about each type (bits, range, ONNX type) are in one table,
    :func:`fp8conv.runtime.integer_types.integer_type` (which takes a member). ``str()`` and f-strings give
    the value (``uint8``).
    """

    UINT8 = "uint8"
    INT8 = "int8"
    UINT16 = "uint16"
    INT16 = "int16"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def for_activations(cls, bits: int, activation_type: ActivationType) -> IntegerType:
        """The type of activations of ``bits`` bits: ``int16`` for 16, else the configured 8-bit type."""
        return cls.INT16 if bits == 16 else cls(activation_type.value)


@dataclasses.dataclass(frozen=True)
class ConversionConfig:
    """Every option of a conversion.

    Attributes:
        target: See :class:`Target`.
        weights_range: Weight range method.
        activations_range: Activation range method (``fp8`` needs no data).
        activation_type: 8-bit activation type.
        full_range_weights: Use the full int8 weight range [-127, 127]. Off by default: on x86 CPUs
            without VNNI, onnxruntime's u8×s8 kernels saturate with full-range weights (24-29 output
            LSB wrong), so weights are kept within 7 bits ([-63, 63]) unless the deployment CPU has VNNI
            (or ARM) or sets ``session.x64quantprecision=1``.
        int4_block_size: INT4 block length along K (32, 64 or 128); None for per-channel INT4.
        keep_float: Regexes selecting layers that stay float. A layer is selected when a pattern is found
            in its node name, a weight name or its output name (:mod:`fp8conv.passes.overrides`); a
            pattern that selects no layer is an error.
        int16: Regexes selecting layers whose activations get INT16 (as ``keep_float``).
        int4: Regexes selecting layers whose weights get INT4 (as ``keep_float``; blocked along K for
            MatMul/Gemm by ``int4_block_size``, per channel for Conv).
        auto_int16_below_db: Mixed precision by measurement: an activation group whose INT8 quantization
            SQNR on the calibration data falls below this many dB (outliers, as in transformer FFN and
            LayerNorm inputs) gets INT16 instead, and so do the layers reading it. None: off.
        percentile: Percentile for the ``percentile`` range method.
        calibration_batch_size: Samples per reference run during calibration (2: small batches keep the
            workers' last runs short, so neither waits long for the other; the statistics do not depend on it).
        calibration_workers: Reference runs in flight at once (threads sharing one session; at most this
            many batches in memory). None: 2 on a machine with 2 or more CPUs, else 1. The statistics do not
            depend on it.
        max_calibration_samples: Use at most this many calibration samples (None: all).
    """

    target: Target = Target.INT8
    weights_range: WeightRange = WeightRange.MSE
    activations_range: ActivationRange = ActivationRange.MSE
    activation_type: ActivationType = ActivationType.UINT8
    full_range_weights: bool = False
    int4_block_size: int | None = 32
    keep_float: tuple[str, ...] = ()
    int16: tuple[str, ...] = ()
    int4: tuple[str, ...] = ()
    auto_int16_below_db: float | None = None
    percentile: float = 99.999
    calibration_batch_size: int = 2
    calibration_workers: int | None = None
    max_calibration_samples: int | None = None

    def __post_init__(self) -> None:
        for name, kind in (
            ("target", Target),
            ("weights_range", WeightRange),
            ("activations_range", ActivationRange),
            ("activation_type", ActivationType),
        ):
            value = getattr(self, name)
            if not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, kind(value))
                except ValueError:
                    valid = ", ".join(member.value for member in kind)
                    raise Fp8ConvError(f"{name} must be one of {valid}, got {value!r}") from None
        _check_types(self)
        if self.int4_block_size is not None and self.int4_block_size not in (16, 32, 64, 128, 256):
            raise Fp8ConvError(f"int4_block_size must be 16, 32, 64, 128 or 256 (or None), got {self.int4_block_size}")
        if not 50.0 < self.percentile <= 100.0:
            raise Fp8ConvError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.calibration_batch_size < 1:
            raise Fp8ConvError(f"calibration_batch_size must be >= 1, got {self.calibration_batch_size}")
        if self.calibration_workers is not None and self.calibration_workers < 1:
            raise Fp8ConvError(f"calibration_workers must be >= 1 (or None), got {self.calibration_workers}")
        for field in _PATTERN_FIELDS:
            value = getattr(self, field)
            patterns = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            object.__setattr__(self, field, patterns)
            for pattern in patterns:
                if not isinstance(pattern, str):
                    raise Fp8ConvError(f"{field} patterns must be strings, got {pattern!r}")
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise Fp8ConvError(f"{field} pattern {pattern!r} is not a valid regex: {error}") from error

    @property
    def weight_bits(self) -> int:
        """Integer weight range actually used: 4, 7 (AVX2-safe default) or 8."""
        if self.target.weight_bits == 4:
            return 4
        return 8 if self.full_range_weights else 7

    def replace(self, **changes: Any) -> ConversionConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable view (recorded in reports and model metadata)."""
        return {
            field.name: (
                value.value if isinstance(value, enum.Enum) else list(value) if isinstance(value, tuple) else value
            )
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }


_CONFIG_KEYS = {field.name for field in dataclasses.fields(ConversionConfig)}

_NUMBER_FIELDS = {"percentile": False, "auto_int16_below_db": True}  # name: None allowed
_INTEGER_FIELDS = {
    "int4_block_size": True,
    "calibration_batch_size": False,
    "calibration_workers": True,
    "max_calibration_samples": True,
}


def _check_types(config: ConversionConfig) -> None:
    """Raise :class:`Fp8ConvError` for a field of the wrong type (a config file can hold any YAML value)."""
    if not isinstance(config.full_range_weights, bool):
        raise Fp8ConvError(f"full_range_weights must be true or false, got {config.full_range_weights!r}")
    for name, optional in _NUMBER_FIELDS.items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Fp8ConvError(f"{name} must be a number{' (or None)' if optional else ''}, got {value!r}")
    for name, optional in _INTEGER_FIELDS.items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise Fp8ConvError(f"{name} must be an integer{' (or None)' if optional else ''}, got {value!r}")
    if config.max_calibration_samples is not None and config.max_calibration_samples < 1:
        raise Fp8ConvError(f"max_calibration_samples must be >= 1 (or None), got {config.max_calibration_samples}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read conversion options from a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file.

    The file holds the same keys as :class:`ConversionConfig` (``target``, ``weights_range``,
    ``activations_range``, ``keep_float: [regex, ...]``, ``int16: [regex, ...]``, ``int4: [regex, ...]``,
    …), optionally under a top-level ``fp8conv`` table, plus a ``gates`` table read by verification.

    Returns:
        The options as a dict (validated when a :class:`ConversionConfig` is built from them).

    Raises:
        Fp8ConvError: Missing file, syntax error (``PATH:LINE:COLUMN: …``), unknown keys (listed with the
            valid ones), or an option value that is not valid.
    """
    path = Path(path)
    if not path.is_file():
        raise Fp8ConvError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Fp8ConvError(f"{path}: cannot read the config file: {error}") from error
    if path.suffix in (".yaml", ".yml"):
        document = _parse_yaml(path, text)
    elif path.suffix == ".toml":
        document = _parse_toml(path, text)
    else:
        raise Fp8ConvError(f"{path}: config files must be .yaml, .yml or .toml")
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise Fp8ConvError(f"{path}: the config must be a mapping of options, not {type(document).__name__}")
    options = document.get("fp8conv", document)
    if not isinstance(options, Mapping):
        raise Fp8ConvError(f"{path}: 'fp8conv' must be a table of options, not {type(options).__name__}")
    options = dict(options)
    gates = options.pop("gates", None)
    unknown = sorted(set(options) - _CONFIG_KEYS)
    if unknown:
        raise Fp8ConvError(f"{path}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(_CONFIG_KEYS))}")
    for key in _PATTERN_FIELDS:
        if key in options:
            value = options[key]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
                raise Fp8ConvError(f"{path}: {key} must be a regex or a list of regexes, got {value!r}")
            options[key] = tuple(value)
    try:
        ConversionConfig(**options)
    except Fp8ConvError as error:
        raise Fp8ConvError(f"{path}: {error}") from error
    if gates is not None:
        options["gates"] = gates
    return options


def _parse_yaml(path: Path, text: str) -> object:
    """The YAML document; a syntax error is one line ``PATH:LINE:COLUMN: …`` (1-based)."""
    try:
        import yaml
    except ImportError as error:
        raise Fp8ConvError(f"{path}: YAML config needs PyYAML (pip install pyyaml)") from error
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
        raise Fp8ConvError(f"{where}: YAML syntax error: {problem}") from error


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _parse_toml(path: Path, text: str) -> object:
    """The TOML document; a syntax error is one line ``PATH:LINE:COLUMN: …`` (the end: the line after the last)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else "invalid TOML"
        position = _TOML_POSITION.search(message)
        if position is None:
            raise Fp8ConvError(f"{path}: TOML syntax error: {message}") from error
        line, column = (position[1], position[2]) if position[1] else (text.count("\n") + 1, 1)
        raise Fp8ConvError(f"{path}:{line}:{column}: TOML syntax error: {message[: position.start()]}") from error
