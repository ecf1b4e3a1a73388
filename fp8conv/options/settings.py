"""Option values from their sources (a config file, the command line, keyword arguments) and the rules between them.

:class:`Settings` layers the sources; :data:`RULES` says which options contradict each other or do nothing
with the others (see :mod:`fp8conv.options`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fp8conv.errors import Fp8ConvError
from fp8conv.options.schema import (
    ACCURACY_GATES,
    API_FUNCTIONS,
    BY_NAME,
    DEPRECATED_NAMES,
    OPTIONS,
    Kind,
    Option,
    close_names,
    for_command,
    for_function,
)

__all__ = [
    "RULES",
    "Layer",
    "Rule",
    "Setting",
    "Settings",
    "command_line_layer",
    "file_layer",
    "keyword_settings",
    "same_path_as",
]

logger = logging.getLogger("fp8conv.options")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One option's value and where it came from.

    Attributes:
        option: The option.
        value: Its checked value.
        source: ``cli``, ``config`` or ``api``.
        label: How messages name it: ``--max-samples``, ``fp8conv.yaml: max_samples``, ``max_samples``.
        origin: The config file it came from (empty for the other sources).
    """

    option: Option
    value: object
    source: str
    label: str
    origin: str = ""


Layer = Mapping[str, Setting]
"""The settings of one source (a config file, the command line, keyword arguments), by option name."""


def command_line_layer(command: str, values: Mapping[str, object]) -> dict[str, Setting]:
    """The options given on the command line (click's values; None or ``()`` for an option not given).

    Raises:
        Fp8ConvError: A value out of range (click checked the types).
    """
    layer: dict[str, Setting] = {}
    for option in for_command(command):
        if not option.on_command_line:
            continue
        value = values.get(option.name)
        if value is None or value == ():
            continue
        layer[option.name] = Setting(option, option.check(value, option.flag), "cli", option.flag)
    return layer


def file_layer(
    command: str, path: Path, document: Mapping[str, object], warn: Callable[[str], object] = logger.warning
) -> dict[str, Setting]:
    """The options of a config file's table (keys snake_case or kebab-case; earlier spellings warned about).

    A key of an option of another command is accepted (one file may serve ``convert`` and ``verify``) and
    left out; relative paths are taken relative to the file's directory.

    Raises:
        Fp8ConvError: ``PATH: ...``: an unknown key (with the close names), a key given twice, a bad value.
    """
    valid = {option.name for option in OPTIONS if option.in_config}
    layer: dict[str, Setting] = {}
    deprecated: list[tuple[str, str]] = []
    for key, value in document.items():
        spelled = str(key)
        name = spelled.replace("-", "_")
        if name in DEPRECATED_NAMES:
            deprecated.append((spelled, DEPRECATED_NAMES[name].name))
            name = DEPRECATED_NAMES[name].name
        if name not in valid:
            close = close_names(name, valid)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise Fp8ConvError(f"{path}: unknown option(s) {spelled}{hint}; valid: {', '.join(sorted(valid))}")
        label = f"{path}: {spelled}"
        if name in layer:
            raise Fp8ConvError(f"{label}: {layer[name].label.rpartition(': ')[2]} sets {name} too: keep one")
        option = BY_NAME[name]
        checked = option.check(value, label)
        if isinstance(checked, Path) and not checked.is_absolute():
            checked = path.parent / checked
        layer[name] = Setting(option, checked, "config", label, str(path))
    for old, new in deprecated:
        warn(f"{path}: the key {old} is deprecated: use {new}")
    return {name: setting for name, setting in layer.items() if command in setting.option.commands}


def keyword_settings(function: str, keywords: Mapping[str, object]) -> Settings:
    """The keyword arguments of a Python API function, checked against the schema.

    ``keywords`` holds the function's schema parameters and its ``**options``; a value equal to the option's
    default counts as not given. Earlier spellings (``auto_int16_below_db=``) give a ``DeprecationWarning``.

    Raises:
        Fp8ConvError: An unknown keyword (with the close names, or the function that takes it), a bad value
            (one line naming the keyword), or options that contradict each other (:data:`RULES`).
    """
    valid = {option.name for option in for_function(function)}
    layer: dict[str, Setting] = {}
    for key, value in keywords.items():
        name = key
        if name in DEPRECATED_NAMES:
            name = DEPRECATED_NAMES[key].name
            warnings.warn(f"{function}(): the keyword {key} is deprecated: use {name}", DeprecationWarning, 4)
            if keywords.get(name, BY_NAME[name].default) != BY_NAME[name].default:
                raise Fp8ConvError(f"{function}(): give {name} or {key}, not both")
        if name not in valid:
            raise Fp8ConvError(_unknown_keyword(function, key, valid))
        option = BY_NAME[name]
        checked = option.check(value, key)
        if not _same(checked, option.check(option.default, name)):
            layer[name] = Setting(option, checked, "api", key)
    settings = Settings(function, "api", [layer])
    settings.check()
    return settings


_PLAIN = (str, int, float, bool, tuple, Path, type(None))


def _same(value: object, default: object) -> bool:
    """Whether a checked value is the default (arrays, readers and tables never are)."""
    return value is default or (isinstance(value, _PLAIN) and isinstance(default, _PLAIN) and value == default)


def _unknown_keyword(function: str, key: str, valid: set[str]) -> str:
    message = f"{function}() got an unknown keyword {key!r}"
    known = BY_NAME.get(key)
    if known is not None:
        takers = [f"{name}()" for name in API_FUNCTIONS if name in known.api]
        if takers:
            return f"{message}: it is a keyword of {', '.join(takers)}"
        if known.kind is Kind.GATE:
            return f"{message}: give gates={{{key!r}: ...}} to convert_and_verify()"
        return f"{message}: {key} is an option of the command line and config files only"
    close = close_names(key, valid | set(DEPRECATED_NAMES))
    return message + (f" (did you mean {' or '.join(close)}?)" if close else f"; valid: {', '.join(sorted(valid))}")


class Settings:
    """The options of one command or call: their sources layered, later over earlier.

    Args:
        context: The command (``convert``, ``verify``) or the Python function.
        interface: ``cli`` or ``api``: how messages spell the options they point to (``--data``, ``data=``).
        layers: The sources, lowest first: a config file, then the command line (or the keyword arguments).
    """

    def __init__(self, context: str, interface: str, layers: Sequence[Layer]) -> None:
        self.context = context
        self.interface = interface
        self.layers = [dict(layer) for layer in layers]

    def given(self, name: str) -> Setting | None:
        """The setting that wins for ``name``, or None when no source gives it."""
        for layer in reversed(self.layers):
            if name in layer:
                return layer[name]
        return None

    def __getitem__(self, name: str) -> object:
        """The value of ``name``: the setting that wins, else the option's default.

        Patterns add up: the command line's ``--keep-float`` patterns join the config file's ``keep_float``.
        """
        if BY_NAME[name].kind is Kind.PATTERNS and self.every(name):
            return tuple(pattern for setting in self.every(name) for pattern in setting.value)  # type: ignore[attr-defined]
        setting = self.given(name)
        if setting is not None:
            return setting.value
        option = BY_NAME[name]
        return option.check(option.default, name)

    def every(self, name: str) -> list[Setting]:
        """Every source's setting of ``name``, lowest first (gates layer per output)."""
        return [layer[name] for layer in self.layers if name in layer]

    def spell(self, name: str) -> str:
        """How this interface writes the option: ``--max-samples`` or ``max_samples=...``."""
        return BY_NAME[name].flag if self.interface == "cli" else f"{name}=..."

    def show(self, name: str, value: object = None) -> str:
        """The option with a value (its own by default): ``--to int8``, ``--no-verify``; ``to='int8'``."""
        value = self[name] if value is None else value
        option = BY_NAME[name]
        if self.interface != "cli":
            return f"{name}={value!r}"
        if option.kind is Kind.FLAG:
            return option.flag if value else f"--no-{option.flag[2:]}"
        return f"{option.flag} {value}"

    def _set_aside(self, rule: Rule, setting: Setting) -> None:
        """Forget a config file's setting a rule voids (keep what ``rule.remainder`` keeps of it)."""
        for layer in self.layers:
            if layer.get(rule.option) is setting:
                remainder = rule.remainder(setting.value) if rule.remainder is not None else None
                if remainder:
                    layer[rule.option] = dataclasses.replace(setting, value=remainder)
                else:
                    del layer[rule.option]

    def conversion_options(self) -> dict[str, object]:
        """The given options that set :class:`~fp8conv.config.ConversionConfig` fields, by option name."""
        return {name: self[name] for name, option in BY_NAME.items() if option.field and self.given(name)}

    def check(self, warn: Callable[[str], object] = logger.warning) -> list[str]:
        """Apply :data:`RULES`: refuse contradictions, warn about the rest.

        A config file's option that the command line voids is dropped with a warning; a tuning option the target
        does not use (``warn_only``) is kept, with a warning (the model's metadata records it).

        Returns:
            The warnings given.

        Raises:
            Fp8ConvError: One line naming the option and why it does nothing or contradicts another.
        """
        said: list[str] = []
        for rule in RULES:
            setting = self.given(rule.option)
            if setting is None or (rule.contexts and self.context not in rule.contexts):
                continue
            why = rule.why(self)
            if why is None:
                continue
            causes = [self.given(cause) for cause in rule.causes]
            overridden = setting.source == "config" and any(cause and cause.source == "cli" for cause in causes)
            if rule.warn_only or overridden:
                message = f"{setting.label} is ignored: it {why}"
                warn(message)
                said.append(message)
                if overridden:
                    self._set_aside(rule, setting)
                continue
            raise Fp8ConvError(f"{setting.label} {why}")
        return said


# -- rules: what contradicts what -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """When a given option does nothing, or contradicts another.

    Attributes:
        option: The option the rule is about (checked only when it is given).
        causes: The options whose values make it do nothing (for the config-file exception).
        why: ``why(settings)``: the end of the message (``needs calibration data: give --data``), or None
            when the option does something.
        contexts: The commands and functions it applies to (empty: all).
        remainder: What is kept of a config file's value the rule sets aside (the integer-kernel gate of a
            ``gates`` table); None: nothing.
        warn_only: A warning, not an error: a tuning option the target has nothing to tune with
            (``--activation-type`` with ``--to w8a16``), which a sweep over the targets passes to each.
    """

    option: str
    causes: tuple[str, ...]
    why: Callable[[Settings], str | None]
    contexts: tuple[str, ...] = ()
    remainder: Callable[[object], object] | None = None
    warn_only: bool = False


def _needs_data(purpose: str) -> Callable[[Settings], str | None]:
    def why(settings: Settings) -> str | None:
        if settings["data"] is not None:
            return None
        return f"needs calibration data ({purpose}): give {settings.spell('data')}"

    return why


def _int16_target(option_name: str) -> Callable[[Settings], str | None]:
    """INT16 activations by pattern or by measurement exist only for ``--to int8``."""

    def why(settings: Settings) -> str | None:
        to, spell = settings["to"], settings.spell
        if to == "int8":
            return None
        if to == "int4":
            return (
                f"contradicts {settings.show('to')}, whose activations are INT8 by definition (W4A8); for INT4 "
                f"weights with INT16 activations give {settings.show('to', 'int8')} with {spell('int4')} and "
                f"{spell(option_name)}"
            )
        detail = "every activation is INT16 already" if to == "w8a16" else "it is weight-only: activations stay float"
        return f"does nothing with {settings.show('to')}: {detail}"

    return why


def _activation_type(settings: Settings) -> str | None:
    to = settings["to"]
    if to in ("int8", "int4"):
        return None
    detail = "every activation is INT16" if to == "w8a16" else "it is weight-only: activations stay float"
    return f"does nothing with {settings.show('to')}: {detail} (it sets the type of 8-bit activations)"


def _full_range(settings: Settings) -> str | None:
    if settings["full_range_weights"] is not True or settings["to"] in ("int8", "w8a16"):
        return None
    return f"does nothing with {settings.show('to')}: every weight is INT4"


def _int4_patterns(settings: Settings) -> str | None:
    if settings["to"] not in ("int4", "w4a16"):
        return None
    return f"does nothing with {settings.show('to')}: every weight is INT4 already"


def _block_size(settings: Settings) -> str | None:
    if settings["to"] in ("int4", "w4a16") or settings["int4"]:
        return None
    return (
        f"does nothing with {settings.show('to')} and no {settings.spell('int4')} pattern: it is the block length "
        "of INT4 weights"
    )


def _weight_only(settings: Settings) -> str | None:
    if settings["to"] != "w4a16":
        return None
    return f"does nothing with {settings.show('to')}: it is weight-only, activations stay float"


def _gptq_data(settings: Settings) -> str | None:
    if settings["weight_rounding"] != "gptq" or settings["data"] is not None:
        return None
    return (
        f"{settings['weight_rounding']} needs calibration data (H = 2XᵀX/n of each layer's inputs is measured on "
        f"it): give {settings.spell('data')}, or {settings.show('weight_rounding', 'rtn')}"
    )


def _unsharded_statistics(settings: Settings) -> str | None:
    """GPTQ's H and bias correction's E[x] are counted in one process: shards would need their merge (not built)."""
    sharded = settings["jobs"] != 1 or settings["executor"] != "local"
    methods = [
        settings.show(name)
        for name, active in (
            ("weight_rounding", settings["weight_rounding"] == "gptq"),
            ("bias_correction", bool(settings["bias_correction"])),
        )
        if active
    ]
    if not sharded or not methods:
        return None
    return f"cannot shard the layer-input statistics of {' and '.join(methods)} (counted in one process)"


def _bias_correction_data(settings: Settings) -> str | None:
    if not settings["bias_correction"] or settings["data"] is not None:
        return None
    return f"needs calibration data (E[x] of each layer's inputs is measured on it): give {settings.spell('data')}"


def _needs_gptq(settings: Settings) -> str | None:
    if settings["weight_rounding"] == "gptq":
        return None
    return f"does nothing without {settings.show('weight_rounding', 'gptq')}"


def _calibrated_ranges(settings: Settings) -> str | None:
    if settings["activations_range"] == "fp8" or settings["data"] is not None:
        return None
    return (
        f"{settings['activations_range']} needs calibration data: give {settings.spell('data')}, or "
        f"{settings.show('activations_range', 'fp8')} for the data-free ranges of the FP8 quantizers"
    )


def _percentile(settings: Settings) -> str | None:
    if settings["activations_range"] == "percentile":
        return None
    return f"does nothing without {settings.show('activations_range', 'percentile')}"


def _needs_verification(settings: Settings) -> str | None:
    if settings["verify"]:
        return None
    return (
        f"does nothing with {settings.show('verify')}: nothing is verified (a gate that never runs can neither pass "
        "nor fail)"
    )


def _gates_table(settings: Settings) -> str | None:
    table = settings["gates"]
    if settings["verify"] or not isinstance(table, Mapping):
        return None
    accuracy = [str(key) for key in table if str(key).replace("-", "_") in ACCURACY_GATES]
    if not accuracy:
        return None
    return (
        f"holds accuracy gates ({', '.join(accuracy)}), which do nothing with {settings.show('verify')}: nothing "
        "is verified (only min_integer_kernels applies)"
    )


def _kernel_gate_only(table: object) -> object:
    """The integer-kernel entry of a gates table (it needs no verification)."""
    if not isinstance(table, Mapping):
        return None
    return {key: value for key, value in table.items() if str(key).replace("-", "_") not in ACCURACY_GATES}


def _needs_random_inputs(settings: Settings) -> str | None:
    if settings["random_inputs"] is not None:
        return None
    return f"does nothing without {settings.spell('random_inputs')}: it only shapes random inputs"


_RANDOM_OPTIONS = ("seed", "val_range", "input_shapes")


def _excludes(other: str) -> Callable[[Settings], str | None]:
    def why(settings: Settings) -> str | None:
        return (
            f"and {settings.spell(other)} are two inputs to verify on: give one, not both"
            if settings.given(other)
            else None
        )

    return why


def _save_and_load(settings: Settings) -> str | None:
    if not settings.given("load_outputs"):
        return None
    return (
        f"and {settings.spell('load_outputs')} exclude each other: the reference either runs (and its outputs are "
        "saved) or is loaded"
    )


def _ray_installed(settings: Settings) -> str | None:
    if settings["executor"] != "ray" or _importable("ray"):
        return None
    return "ray needs Ray, which is not installed: pip install fp8conv[ray]"


def _importable(module: str) -> bool:
    """Whether ``import module`` would find it (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a None entry in sys.modules, a broken parent package
        return False


_INPUTS_AND_OUTPUTS = ("model", "reference", "candidate", "data", "verify_data", "output", "config", "report")
"""The paths an option may not write over."""


def same_path_as(path: object, others: Mapping[str, object]) -> str | None:
    """The first key of ``others`` whose value is the same file as ``path`` (paths only; None when none is)."""
    if not isinstance(path, (str, Path)):
        return None
    mine = Path(path).resolve()
    for name, other in others.items():
        if isinstance(other, (str, Path)) and Path(other).resolve() == mine:
            return name
    return None


def _save_over_an_input(settings: Settings) -> str | None:
    clash = same_path_as(settings["save_outputs"], {name: settings[name] for name in _INPUTS_AND_OUTPUTS})
    if clash is None:
        return None
    what = BY_NAME[clash].flag if BY_NAME[clash].positional else settings.spell(clash)
    return f"{settings['save_outputs']} is the path of {what}: the golden outputs would overwrite it"


RULES: tuple[Rule, ...] = (
    Rule("auto_int16", ("data",), _needs_data("the INT8 SQNR of each activation is measured on it")),
    Rule("auto_int16", ("to",), _int16_target("auto_int16")),
    Rule("int16", ("to",), _int16_target("int16")),
    Rule("int4", ("to",), _int4_patterns),
    Rule("int4_block_size", ("to", "int4"), _block_size),
    Rule("activation_type", ("to",), _activation_type, warn_only=True),
    Rule("full_range_weights", ("to",), _full_range, warn_only=True),
    Rule("activations_range", ("to",), _weight_only, warn_only=True),
    Rule("activations_range", ("data",), _calibrated_ranges),
    Rule("percentile", ("activations_range",), _percentile),
    Rule("weight_rounding", ("data",), _gptq_data),
    Rule("bias_correction", ("data",), _bias_correction_data),
    Rule("gptq_damp", ("weight_rounding",), _needs_gptq),
    Rule("gptq_act_order", ("weight_rounding",), _needs_gptq),
    Rule("max_samples", ("data",), _needs_data("it limits the calibration samples")),
    Rule("calibration_batch_size", ("data",), _needs_data("it batches the calibration runs")),
    Rule("calibration_workers", ("data",), _needs_data("it runs calibration in parallel")),
    Rule("jobs", ("data",), _needs_data("it splits the calibration samples into shards")),
    Rule("executor", ("data",), _needs_data("it runs the calibration shards")),
    Rule("executor", (), _ray_installed),
    Rule("jobs", ("weight_rounding", "bias_correction"), _unsharded_statistics),
    Rule("executor", ("weight_rounding", "bias_correction"), _unsharded_statistics),
    *(
        Rule(name, ("verify",), _needs_verification, ("convert", "convert_and_verify"))
        for name in (
            "verify_data",
            "random_inputs",
            *_RANDOM_OPTIONS,
            "per_layer",
            "optimization_level",
            "save_outputs",
            "load_outputs",
            "providers",
            *ACCURACY_GATES,
        )
    ),
    *(Rule(name, ("random_inputs",), _needs_random_inputs) for name in _RANDOM_OPTIONS),
    Rule("gates", ("verify",), _gates_table, ("convert", "convert_and_verify"), _kernel_gate_only),
    Rule("random_inputs", ("verify_data",), _excludes("verify_data"), ("convert", "convert_and_verify")),
    Rule("random_inputs", ("data",), _excludes("data"), ("verify",)),
    Rule("save_outputs", ("load_outputs",), _save_and_load),
    Rule("save_outputs", _INPUTS_AND_OUTPUTS, _save_over_an_input),
)
"""Every refusal of an option given with others; :meth:`Settings.check` applies them in this order."""
