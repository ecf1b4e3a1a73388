"""The click options of a command, one per option of the schema, and their values as :class:`~fp8conv.options.Settings`.

Flags → settings: :func:`schema_options` declares a command's arguments and options from
:data:`fp8conv.options.OPTIONS` (types, ranges, choices, help, ``--help`` sections); :func:`settings` layers
the ``--config`` file under the command line and checks the schema's rules. The commands read the
settings and call the Python API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from fp8conv import options
from fp8conv.cli.output import warn

__all__ = ["REFERENCE", "SchemaCommand", "keywords", "required", "schema_options", "settings"]

REFERENCE = ("save_outputs", "load_outputs", "providers")
"""The options of golden outputs and the candidate's providers (keywords of ``verify`` and ``convert_and_verify``)."""


class SchemaCommand(click.Command):
    """A command whose ``--help`` lists its options under the schema's sections (Conversion, Calibration, ...)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The options under their sections' titles, in schema order; those without a section under "Other"."""
        sections: dict[str, list[tuple[str, str]]] = {}
        others: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                section = getattr(param, "section", None)
                (sections.setdefault(section, []) if section else others).append(record)
        for title, rows in [*sections.items(), ("Other", others)]:
            with formatter.section(title):
                formatter.write_dl(rows)


def schema_options(command: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """The click arguments and options of ``command``, one per option of the schema (:data:`fp8conv.options.OPTIONS`).

    Every option's value is None (or ``()``) when it is not given, so that a config file fills it in.
    """

    def decorate(function: Callable[..., object]) -> Callable[..., object]:
        for option in reversed(options.for_command(command)):
            if option.on_command_line:
                for param in reversed(_click_params(option, command)):
                    function = param(function)
        return function

    return decorate


def _click_params(option: options.Option, command: str) -> list[Callable[[Callable[..., object]], object]]:
    """The click parameter of one option (and its hidden aliases)."""
    if option.positional:
        return [click.argument(option.name, type=click.Path(path_type=Path), required=False)]
    kind = option.kind
    decls = [option.flag, *([option.short] if option.short else [])]
    if kind is options.Kind.FLAG:
        decls = [f"{option.flag}/--no-{option.flag[2:]}"]
    low, high, open_low = option.minimum, option.maximum, option.exclusive_minimum
    types: dict[options.Kind, click.ParamType] = {
        options.Kind.PATH: click.Path(path_type=Path),
        options.Kind.DATA: click.Path(path_type=Path),
        options.Kind.INTEGER: click.IntRange(low, high) if low is not None or high is not None else click.INT,  # type: ignore[arg-type]
        options.Kind.NUMBER: click.FloatRange(low, high, min_open=open_low) if low is not None else click.FLOAT,
    }
    if kind is options.Kind.CHOICE:
        types[kind] = click.Choice([str(choice) for choice in option.choices])
    metavar = option.metavar
    if option.choices and kind is options.Kind.INTEGER:
        metavar = "[" + "|".join(str(choice) for choice in option.choices) + "]"
    params = [
        click.option(
            *decls,
            option.name,
            cls=_SectionOption,
            section=option.section_for(command),
            type=types.get(kind),
            multiple=option.multiple,
            default=None,
            metavar=metavar,
            help=_help(option, command),
        )
    ]
    for flag, value in option.flag_aliases:
        alias = _alias_name(option, flag)
        params.append(click.option(flag, alias, is_flag=True, flag_value=value, default=None, hidden=True))
    return params


def _alias_name(option: options.Option, flag: str) -> str:
    """The parameter name of a hidden alias flag (``per_layer_no_layers`` for ``--no-layers``)."""
    return f"{option.name}_{flag.strip('-').replace('-', '_')}"


class _SectionOption(click.Option):
    """A click option that knows its ``--help`` section."""

    def __init__(self, *args: Any, section: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


_RATE_GATES = ("max_top1_drop", "max_accuracy_drop")
"""The gates on rates, judged with the Wilson bound (their --help says how: gates.RATE_GATE_HELP)."""


def _help(option: options.Option, command: str) -> str:
    text = option.help_for(command)
    if option.name in _RATE_GATES:
        from fp8conv.verification.gates import RATE_GATE_HELP

        text = text.replace(" Global, or per output", f" {RATE_GATE_HELP} Global, or per output", 1)
    if option.kind is options.Kind.FLAG or (option.default is None and option.default_text is None):
        return text
    default = options.default_text(option, command).replace("`", "")
    if default == "required" and not option.positional:
        return f"{text} [required]"
    if default in ("required", "none"):
        return text
    return f"{text} [default: {default}]"


def settings(command: str, values: Mapping[str, Any]) -> options.Settings:
    """The command's options: the ``--config`` file's, then the command line's over them; the rules checked."""
    from fp8conv.config import load_config_file

    values = dict(values)
    for option in options.for_command(command):
        for flag, value in option.flag_aliases:
            if values.pop(_alias_name(option, flag), None) is not None:
                values[option.name] = value
    command_line = options.command_line_layer(command, values)
    config = command_line.get("config")
    layers = [load_config_file(config.value, command, warn)] if config is not None else []  # type: ignore[arg-type]
    checked = options.Settings(command, "cli", [*layers, command_line])
    checked.check(warn)
    return checked


def keywords(values: options.Settings, names: tuple[str, ...]) -> dict[str, Any]:
    """``{name: value}`` of the options ``names``: the keyword arguments of an API call."""
    return {name: values[name] for name in names}


def required(values: options.Settings, name: str) -> Path:
    """The path option ``name`` (MODEL, or ``--data`` of ``run``), which the command line or config must give."""
    value = values[name]
    if value is None:
        option = options.option(name)
        what = f"argument '{option.flag}'" if option.positional else f"option '{option.flag}'"
        raise click.UsageError(f"missing {what} (or '{name}' in a --config file)")
    return value  # type: ignore[return-value]
