"""Typed, frozen configuration of a conversion (:class:`ConversionConfig`), and config files.

The options themselves, their names, types, defaults and ranges, are the schema :data:`fp8conv.options.OPTIONS`;
:class:`ConversionConfig` is the record of the conversion options (its field names are those of the model's
``fp8conv.config`` metadata), validated field by field by the schema. A configuration comes from keyword
arguments (Python API: :func:`checked_call`), CLI flags, or a YAML/TOML file (:func:`load_config_file`).

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fp8conv.errors import Fp8ConvError
from fp8conv.options import (
    FIELD_OPTIONS,
    ActivationRange,
    ActivationType,
    Placement,
    Setting,
    Settings,
    ShardExecutor,
    Target,
    WeightRange,
    WeightRounding,
    file_layer,
    keyword_settings,
)
from fp8conv.str_enum import StrEnum

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "ActivationRange",
    "ActivationType",
    "Placement",
    "ConversionConfig",
    "ShardExecutor",
    "IntegerType",
    "LayerPrecision",
    "Target",
    "WeightRange",
    "WeightRounding",
    "checked_call",
    "load_config_file",
]

logger = logging.getLogger(__name__)


class LayerPrecision(StrEnum):
    """A layer's precision: as planned (``Layer.precision``: float, INT8 or INT4 weights) and as overridden.

    The per-layer overrides of the target are float, INT16 activations and INT4 weights.

    ``str()`` and f-strings give the value (``int8``), as in messages and reports.
    """

    FLOAT = "float"
    INT8 = "int8"
    INT4 = "int4"
    INT16 = "int16"


class IntegerType(StrEnum):
    """Integer type of a quantized activation tensor (what its ``QuantizeLinear`` produces), by name.

    The facts about each type (bits, range, ONNX type) are in one table,
    :func:`fp8conv.runtime.integer_types.integer_type` (which takes a member). ``str()`` and f-strings give
    the value (``uint8``).
    """

    UINT8 = "uint8"
    INT8 = "int8"
    UINT16 = "uint16"
    INT16 = "int16"

    @classmethod
    def for_activations(cls, bits: int, activation_type: ActivationType) -> IntegerType:
        """The type of activations of ``bits`` bits: ``int16`` for 16, else the configured 8-bit type."""
        return cls.INT16 if bits == 16 else cls(activation_type.value)


@dataclasses.dataclass(frozen=True)
class ConversionConfig:
    """Every option of a conversion, validated by the schema (:data:`fp8conv.options.FIELD_OPTIONS`).

    The fields are named as in the ``fp8conv.config`` metadata of converted models; three options spell
    theirs differently: ``to`` sets ``target``, ``auto_int16`` sets ``auto_int16_below_db`` and ``max_samples``
    sets ``max_calibration_samples``.

    Attributes:
        target: See :class:`Target`.
        weights_range: Weight range method.
        weight_rounding: How weights are rounded onto their grid (:class:`WeightRounding`): ``rtn`` (round to
            nearest, default) or ``gptq`` (GPTQ on the calibration inputs, MatMul/Gemm; needs data).
        gptq_damp: GPTQ's dampening, λ as a fraction of ``mean(diag H)``.
        gptq_act_order: GPTQ in decreasing ``diag H`` order.
        bias_correction: Subtract ``(W_q − W)·E[x]`` from the biases of the integer layers (needs data).
        activations_range: Activation range method (``fp8`` needs no data).
        activation_type: 8-bit activation type.
        placement: Where activation Q/DQ goes (:class:`Placement`): ``target`` (default) only where an integer
            kernel of onnxruntime CPU reads the tensor; ``source`` wherever the FP8 model quantized an activation.
        full_range_weights: Use the full int8 weight range [-127, 127]. Off by default: on x86 CPUs
            without VNNI, onnxruntime's u8×s8 kernels saturate with full-range weights (24-29 output
            LSB wrong), so weights are kept within 7 bits ([-63, 63]) unless the deployment CPU has VNNI
            (or ARM) or sets ``session.x64quantprecision=1``.
        int4_block_size: INT4 block length along K (16, 32, 64, 128 or 256); None (option value 0) per channel.
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
        jobs: Calibration shards at once (1: in this process). The statistics do not depend on it.
        executor: What runs the shards (:class:`ShardExecutor`): local processes or Ray tasks.
    """

    target: Target = Target.INT8
    weights_range: WeightRange = WeightRange.MSE
    weight_rounding: WeightRounding = WeightRounding.RTN
    gptq_damp: float = 0.01
    gptq_act_order: bool = False
    bias_correction: bool = False
    activations_range: ActivationRange = ActivationRange.MSE
    activation_type: ActivationType = ActivationType.UINT8
    placement: Placement = Placement.TARGET
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
    jobs: int = 1
    executor: ShardExecutor = ShardExecutor.LOCAL

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            option = FIELD_OPTIONS[field.name]
            value = option.check(getattr(self, field.name), field.name)
            object.__setattr__(self, field.name, option.field_value(value))

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


_DEFAULT = ConversionConfig()


def checked_call(
    function: str, keywords: Mapping[str, object], config: ConversionConfig | None = None
) -> tuple[ConversionConfig, Settings]:
    """The configuration of a Python API call, its keyword arguments checked against the schema.

    Args:
        function: ``convert``, ``convert_file`` or ``convert_and_verify``.
        keywords: Its schema keywords (``to``, ``data``, ...) and its ``**options``, by the names the caller used
            (``to=None``: ``config``'s target, else ``int8``).
        config: A full configuration the keywords override (its fields that differ from the defaults count
            as given, for the rules of :data:`fp8conv.options.RULES`).

    Returns:
        The configuration, and the checked settings (their values by option name).

    Raises:
        Fp8ConvError: An unknown keyword (with close names), a bad value, or a contradiction, in one line.
    """
    base = config or ConversionConfig()
    keywords = {key: value for key, value in keywords.items() if not (key == "to" and value is None)}
    given = {
        option.name: option.check(getattr(base, field))
        for field, option in FIELD_OPTIONS.items()
        if getattr(base, field) != getattr(_DEFAULT, field)
    }
    settings = keyword_settings(function, {**given, **keywords})
    fields = {option.field: option.field_value(settings[option.name]) for option in FIELD_OPTIONS.values()}
    return ConversionConfig(**fields), settings  # type: ignore[arg-type]


def load_config_file(
    path: str | Path, command: str = "convert", warn: Callable[[str], object] = logger.warning
) -> dict[str, Setting]:
    """Read the options of a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file.

    The file holds option keys (:data:`fp8conv.options.OPTIONS`: ``to``, ``data``, ``keep_float: [regex,
    ...]``, ``min_sqnr``, a ``gates`` table, ...), optionally under a top-level ``fp8conv`` table. Keys may be
    written ``snake_case`` or ``kebab-case``; the earlier spellings ``target``, ``max_calibration_samples`` and
    ``auto_int16_below_db`` are read with a deprecation warning. Keys of another command's options are read and
    checked, and left out.

    Args:
        path: The file.
        command: The command reading it (``convert`` or ``verify``).
        warn: Says the deprecation warnings (default: the ``fp8conv.config`` log).

    Returns:
        The settings of ``command`` the file gives, by option name (relative paths resolved against the file's
        directory).

    Raises:
        Fp8ConvError: Missing file, syntax error (``PATH:LINE:COLUMN: …``), unknown keys (with the close and the
            valid ones), or an option value that is not valid (``PATH: key must be ...``).
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
    return file_layer(command, path, options, warn)


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
