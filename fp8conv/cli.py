"""The ``fp8conv`` command line: thin click wrappers over the Python API.

Exit codes: 0 success (all gates pass), 1 a gate failed, 2 bad input or usage, 3 an internal error (a
violated postcondition or any other unexpected exception: one line, the traceback only with ``-v``).

Importing this module imports click and fp8conv's light modules only (errors, the version): each command
imports its implementation when it runs, so ``fp8conv --version`` and ``fp8conv --help`` load neither
onnx, onnx_ir, onnxruntime nor NumPy (``tests/cli/test_cli_conventions.py`` checks it).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fp8conv import options
from fp8conv._version import __version__
from fp8conv.errors import Fp8ConvError, InternalError

if TYPE_CHECKING:
    from fp8conv.converter.pipeline import ConversionResult
    from fp8conv.verification.gates import Gates
    from fp8conv.verification.result import VerificationResult

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3

_GLOBAL_FLAG = re.compile(r"-v+|--verbose|-q|--quiet")
"""The top-level flags that may come before the MODEL of the ``fp8conv MODEL`` shorthand."""


_COMMAND_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
"""A first argument of this form that is no file may be a misspelt command (no suffix, no directory)."""


class _OneLineError(click.ClickException):
    """A click error (usage, bad option, bad choice) shown as fp8conv shows its own errors: one line."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        """Print the line on stderr (no ``Usage:`` block)."""
        click.echo(self.message, file=file, err=file is None)


def _one_line(error: click.ClickException, command_path: str) -> _OneLineError:
    """``fp8conv: error: MESSAGE (try 'fp8conv COMMAND --help')``: click's message in one line.

    The message starts lower case, as fp8conv's own do; a usage error ends with the ``--help`` of the
    command it is about (its context's, else ``command_path``), on the same line.
    """
    message = " ".join(error.format_message().split()).removesuffix(".")
    if isinstance(error, click.NoSuchOption):  # click's "(Did you mean one of: …?)" in fp8conv's words
        message = f"no such option '{error.option_name}'"
        if error.possibilities:
            message += f"; did you mean {' or '.join(repr(name) for name in error.possibilities)}?"
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    if isinstance(error, click.UsageError):
        message += f" (try '{error.ctx.command_path if error.ctx is not None else command_path} --help')"
    return _OneLineError(f"fp8conv: error: {message}", error.exit_code)


def _quiet() -> bool:
    """Whether ``-q`` was given: no warnings, notes or progress bars, only errors on stderr."""
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.find_root().params.get("quiet"))


def _warn(message: str) -> None:
    """``fp8conv: warning: MESSAGE`` on stderr, unless ``-q``."""
    if not _quiet():
        click.echo(f"fp8conv: warning: {message}", err=True)


class _Fp8ConvGroup(click.Group):
    """A group whose errors become one line on stderr: bad input exit code 2, fp8conv's own bugs exit code 3.

    An :class:`InternalError` or any exception that is neither fp8conv's nor click's is a bug: one line
    ``fp8conv: internal error: …`` (with the traceback after it only at ``-v``), never a bare traceback.
    click's usage errors (a missing argument, an unknown option, a bad choice) are one line too,
    ``fp8conv: error: … (try 'fp8conv COMMAND --help')``, exit code 2, without click's ``Usage:`` block.

    ``fp8conv MODEL.onnx --to int8`` is short for ``fp8conv convert MODEL.onnx --to int8``: a first
    argument (after ``-v``/``-q``) that is not a command name runs ``convert``, unless it is no file and
    close to a command name (``fp8conv convrt``: "no such command 'convrt'; did you mean 'convert'?"); so
    does a first option other than ``--help``/``--version`` (``fp8conv --config fp8conv.yaml``: the file
    names the model).
    """

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Both forms: ``fp8conv [OPTIONS] COMMAND [ARGS]...`` and the ``fp8conv MODEL`` shorthand."""
        formatter.write_usage(ctx.command_path, "[OPTIONS] COMMAND [ARGS]...")
        formatter.write_usage(ctx.command_path, "[OPTIONS] MODEL [CONVERT OPTIONS]...", prefix="   or: ")

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a bare ``fp8conv``: the help, as click prints it
        except click.ClickException as error:
            raise _one_line(error, info_name or "fp8conv") from None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["fp8conv.command"] = shlex.join(["fp8conv", *args])  # for the reports' provenance
        first = next((i for i, arg in enumerate(args) if not _GLOBAL_FLAG.fullmatch(arg)), len(args))
        if first < len(args) and args[first] not in self.commands and self._starts_convert(args[first]):
            if not args[first].startswith("-"):
                self._refuse_a_misspelt_command(ctx, args[first])
            args = [*args[:first], "convert", *args[first:]]  # also `fp8conv --config FILE`: the file names MODEL
        return super().parse_args(ctx, args)

    def _starts_convert(self, arg: str) -> bool:
        """Whether a first argument starts the shorthand: a MODEL, or a long flag of ``convert`` (``--config``)."""
        if not arg.startswith("-"):
            return True
        flags = {flag for param in self.commands["convert"].params for flag in (*param.opts, *param.secondary_opts)}
        return arg.startswith("--") and arg.partition("=")[0] in flags - {"--help"}

    def _refuse_a_misspelt_command(self, ctx: click.Context, name: str) -> None:
        if not _COMMAND_LIKE.fullmatch(name) or Path(name).exists():
            return
        close = difflib.get_close_matches(name, list(self.commands), n=1, cutoff=0.6)
        if close:
            raise click.UsageError(f"no such command '{name}'; did you mean '{close[0]}'?", ctx)

    def invoke(self, ctx: click.Context) -> object:
        from fp8conv.verification.provenance import recording_command

        try:
            with recording_command(ctx.meta.get("fp8conv.command", "fp8conv")):
                return super().invoke(ctx)
        except Fp8ConvError as error:
            click.echo(f"fp8conv: error: {error}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except _OneLineError:
            raise
        except click.exceptions.ClickException as error:
            command = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
            raise _one_line(error, command) from None
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:  # a bug: one line, exit 3 (the traceback at -v)
            what = str(error) if isinstance(error, InternalError) else f"{type(error).__name__}: {error}"
            first_line = what.strip().splitlines()[0] if what.strip() else type(error).__name__
            verbose = bool(ctx.params.get("verbose"))
            hint = "" if verbose else " (a bug in fp8conv: please report it; -v shows the traceback)"
            click.echo(f"fp8conv: internal error: {first_line}{hint}", err=True)
            if verbose:
                click.echo(traceback.format_exc().rstrip(), err=True)
            ctx.exit(EXIT_INTERNAL_ERROR)


@click.group("fp8conv", cls=_Fp8ConvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fp8conv")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Errors only on stderr: no warnings, notes or progress bars, and onnxruntime logs nothing below "
    "fatal (its errors reach fp8conv's one error line). Not with -v.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Convert FP8 fake-quantized ONNX models to INT8/INT4 models that onnxruntime runs on integer kernels.

    `fp8conv MODEL.onnx [OPTIONS]` is short for `fp8conv convert MODEL.onnx [OPTIONS]`: a first argument
    that is not a command name is the MODEL to convert (`fp8conv convert --help` lists its options).
    Run `fp8conv COMMAND --help` for the options of each command.

    Errors are one line on stderr (`fp8conv: error: ...`). Exit codes: 0 success, 1 a gate failed, 2 bad
    input or usage, 3 an internal error (a bug in fp8conv; -v shows the traceback).
    """
    if verbose and quiet:
        raise click.UsageError("-q/--quiet and -v/--verbose exclude each other", ctx)
    level = (
        logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    package_logger = logging.getLogger("fp8conv")  # also when logging was configured before (tests, embedding)
    previous = package_logger.level
    package_logger.setLevel(level)
    ctx.call_on_close(lambda: package_logger.setLevel(previous))


FORMATS_SCHEMA_VERSION = "1.0"
"""Version of the ``fp8conv formats --json`` document (a string, as report.json's and inspect's)."""


@cli.command("formats")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON: {schema_version, formats: [{name, bits, exponent_bits, mantissa_bits, bias, max_value, "
    "min_normal, min_subnormal, style, has_inf, has_nan, has_sign, has_subnormal, has_zero, onnx_type}]}.",
)
def formats_command(as_json: bool) -> None:
    """List the named number formats of the FP8 emulator (fp8conv.fp8) with their facts.

    specials (JSON: style) is how Inf and NaN are encoded: ieee (the top exponent is Inf and NaN), fn
    (finite; the all-ones magnitude is NaN), fnuz (finite, no negative zero; 0x80 is the NaN), none (every
    code is a number).
    """
    from fp8conv.runtime.formats import FORMATS

    if as_json:
        document = {"schema_version": FORMATS_SCHEMA_VERSION, "formats": [fmt.to_json() for fmt in FORMATS.values()]}
        click.echo(json.dumps(document, indent=2, allow_nan=False))
        return
    header = (
        f"{'name':<12} {'bits':>4} {'E':>2} {'M':>2} {'bias':>4} {'max':>12} {'min normal':>12} "
        f"{'min subnormal':>14}  specials"
    )
    click.echo(header)
    for fmt in FORMATS.values():
        click.echo(
            f"{fmt.name:<12} {fmt.bits:>4} {fmt.exponent_bits:>2} {fmt.mantissa_bits:>2} {fmt.bias:>4} "
            f"{fmt.max_value:>12g} {fmt.min_normal:>12g} {fmt.min_subnormal:>14g}  {fmt.style}"
        )


class _SchemaCommand(click.Command):
    """A command whose ``--help`` lists its options under the schema's sections (Conversion, Calibration, ...)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
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


def _schema_options(command: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
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
    if default in ("required", "none"):
        return text
    return f"{text} [default: {default}]"


def _settings(command: str, values: Mapping[str, Any]) -> options.Settings:
    """The command's options: the ``--config`` file's, then the command line's over them; the rules checked."""
    from fp8conv.config import load_config_file

    values = dict(values)
    for option in options.for_command(command):
        for flag, value in option.flag_aliases:
            if values.pop(_alias_name(option, flag), None) is not None:
                values[option.name] = value
    command_line = options.command_line_layer(command, values)
    config = command_line.get("config")
    layers = [load_config_file(config.value, command, _warn)] if config is not None else []  # type: ignore[arg-type]
    settings = options.Settings(command, "cli", [*layers, command_line])
    settings.check(_warn)
    return settings


def _random_settings(settings: options.Settings) -> dict[str, Any]:
    """``seed``, ``val_range`` and ``input_shapes``: how random inputs are made."""
    return {name: settings[name] for name in ("seed", "val_range", "input_shapes")}


def _reference_settings(settings: options.Settings) -> dict[str, Any]:
    """``save_outputs``, ``load_outputs`` and ``providers``: golden outputs and the candidate's providers."""
    return {name: settings[name] for name in ("save_outputs", "load_outputs", "providers")}


def _required(settings: options.Settings, name: str) -> Path:
    value = settings[name]
    if value is None:
        raise click.UsageError(f"missing argument '{name.upper()}' (or '{name}' in a --config file)")
    return value  # type: ignore[return-value]


def _gates(settings: options.Settings) -> Gates:
    """Defaults, then the config file's ``gates`` table and gate keys, then the gate flags (per output)."""
    from fp8conv.verification.gates import Gates

    gates = Gates.default()
    for name in ("gates", *options.GATE_OPTIONS):
        for setting in settings.every(name):
            try:
                if setting.source == "cli":
                    specs = setting.value if isinstance(setting.value, tuple) else (setting.value,)
                    gates = gates.with_specs(name, specs, source="cli")
                else:
                    table = setting.value if name == "gates" else {name: setting.value}
                    gates = gates.with_mapping(table, source="config")  # type: ignore[arg-type]
            except Fp8ConvError as error:
                raise Fp8ConvError(f"{setting.origin}: {error}" if setting.origin else str(error)) from error
    return gates


def _finish(result: VerificationResult, report_dir: Path | None, as_json: bool, prefix: str = "") -> None:
    """Write the reports, print the summary (or JSON), and exit with the result's exit code."""
    from fp8conv.report.terminal import render_terminal

    document = result.to_json()
    if report_dir is not None:
        from fp8conv.report.writer import write_reports  # jinja2 and matplotlib: only when a report is written

        write_reports(result, report_dir)
    if as_json:
        click.echo(json.dumps(document, indent=2, allow_nan=False))
    else:
        text = render_terminal(document)
        if report_dir is not None:
            text += f"\nreports: {report_dir / 'report.html'} (also report.md, report.json)"
        click.echo(prefix + text)
    code = result.exit_code
    if code:
        click.get_current_context().exit(code)


@cli.command("convert", cls=_SchemaCommand)
@_schema_options("convert")
def convert_command(**values: Any) -> None:
    """Convert an FP8 fake-quantized MODEL to an integer QDQ model for onnxruntime, then verify it.

    Also available as `fp8conv MODEL --to int8`. Reads every FP8 dialect (QDQ with float8, FP8 weights
    behind DequantizeLinear, TensorRT trt:: ops, QONNX FloatQuant, Cast pairs), requantizes the exact FP8
    weights per output channel and calibrates activation ranges on the exact FP8 reference, then checks
    which layers onnxruntime runs on integer kernels.

    Verification (skip with --no-verify) compares the written model with MODEL under exact FP8 numerics
    on --verify-data, else --random-inputs N, else the calibration data --data; with none of them it is
    skipped with a note. The integer-kernel gate (--min-integer-kernels) needs no data: it fails when a
    layer planned on an integer kernel runs in float.

    Every option can also be set in a --config file, under the name of its flag (`max_samples: 64` or
    `max-samples: 64`; MODEL as `model`); flags override the file. An option that contradicts another
    or does nothing with the others (--auto-int16 without --data, --int4-block-size with --to int8, gates
    with --no-verify, ...) is an error.

    Exit codes: 0 all gates pass, 1 a gate failed, 2 bad input or options (nothing is written), 3 an
    internal error. The model and the --report files are written in every case but 2 and 3.

    An existing output file is replaced without asking, as compilers' -o, Polygraphy and onnxsim do, so
    that a rerun (CI, make) works; the new file takes its place atomically, so a run that ends with 2 or 3
    leaves it as it was. MODEL itself is never overwritten (exit 2). An -o without the .onnx suffix is
    written all the same, with a warning.
    """
    from fp8conv.converter.pipeline import default_output_path
    from fp8conv.options import Target
    from fp8conv.verification.convert_and_verify import convert_and_verify
    from fp8conv.verification.golden import golden_paths
    from fp8conv.verification.preflight import check_before_writing

    settings = _settings("convert", values)
    model = _required(settings, "model")
    gates = _gates(settings)
    report_dir = settings["report"]
    verify = bool(settings["verify"])
    _warn_unless_onnx_suffix(settings["output"])  # type: ignore[arg-type]
    destination = settings["output"] or default_output_path(model, Target(settings["to"]))
    golden_output = settings["save_outputs"] if verify else None
    golden_paths(golden_output, None).refuse_overwriting({"output": destination})  # the default output too
    check_before_writing(None, output=destination, report_dir=report_dir, golden_output=golden_output)  # type: ignore[arg-type]
    conversion = settings.conversion_options()
    conversion.pop("to", None)
    outcome = convert_and_verify(
        model,
        settings["to"],  # type: ignore[arg-type]
        settings["data"],
        output=destination,  # type: ignore[arg-type]
        verify_data=settings["verify_data"],
        random_inputs=settings["random_inputs"],  # type: ignore[arg-type]
        **_random_settings(settings),
        **_reference_settings(settings),
        verify=verify,
        skip_reason="--no-verify was given",
        gates=gates,
        optimization_level=settings["optimization_level"],  # type: ignore[arg-type]
        per_layer=bool(settings["per_layer"]),
        task=settings["task"],  # type: ignore[arg-type]
        audit=bool(settings["audit"]),
        external_data=settings["external_data"],  # type: ignore[arg-type]
        progress=not _quiet(),
        **conversion,
    )
    result, verified = outcome.conversion, outcome.verification
    as_json = bool(settings["json"])
    if not verified.verified and report_dir is None:
        _finish_unverified(result, verified, as_json, note=verify)
        return
    _finish(verified, report_dir, as_json, prefix="" if as_json else _conversion_summary(result) + "\n")  # type: ignore[arg-type]


def _warn_unless_onnx_suffix(output: Path | None) -> None:
    """A warning for an ``-o`` whose name does not end in ``.onnx`` (onnxruntime and viewers go by it)."""
    if output is not None and output.suffix.lower() != ".onnx":
        what = f"suffix {output.suffix!r}" if output.suffix else "no suffix"
        _warn(f"{output}: the output has {what}, not '.onnx'; writing an ONNX model there all the same")


def _finish_unverified(result: ConversionResult, skipped: VerificationResult, as_json: bool, note: bool) -> None:
    """Print the conversion summary (or record) and any failed gate, and exit with the result's code."""
    from fp8conv.report.terminal import failed_gate_lines

    document = skipped.to_json()
    if note and not _quiet():
        click.echo(f"note: verification skipped: {skipped.warnings[0]}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        for line in failed_gate_lines(document):
            click.echo(line.strip(), err=True)
    else:
        click.echo("\n".join([_conversion_summary(result), *failed_gate_lines(document)]))
    if skipped.exit_code:
        click.get_current_context().exit(skipped.exit_code)


def _conversion_summary(result: object) -> str:
    from fp8conv.converter.summary import conversion_summary

    return conversion_summary(result)


@cli.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON document instead of the table.")
def inspect_command(model: Path, as_json: bool) -> None:
    """Show MODEL's opset, size, FP8 dialects, quantization points and layers.

    The first table lists every quantization point: the quantized tensor, its role (weight or activation),
    the op that consumes it, the FP8 format, the granularity and the range of its scales. The second lists
    every Conv/MatMul/Gemm layer by every name --keep-float, --int16 and --int4 search: its node, its
    stored weight, its output tensor and the other tensors on the weight's path to the layer (a
    DequantizeLinear, Transpose or Cast output). With --json the document has the keys schema_version,
    opset, ir_version, size_bytes, external_data, dialects, quant_points (tensor, role, format, axis,
    block_size, ...), integer_qdq and layers (node, op_type, weights: every tensor on the weight's path,
    stored first, output, names: all of them, what the patterns are searched in).
    """
    from fp8conv.converter.inspection import inspect

    inspection = inspect(model)
    if as_json:
        click.echo(json.dumps(inspection.to_json(), indent=2))
    else:
        click.echo(inspection.to_text())


@cli.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Inputs: .npz keyed by graph input name (first axis = samples), or a directory of them.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the outputs (.npz keyed by graph output name).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per run (default: the model's static batch size, else 32).",
)
def run_command(model: Path, data_path: Path, output: Path, batch_size: int | None) -> None:
    """Run MODEL with exact FP8 numerics at every quantization point and save its outputs.

    Works for every dialect fp8conv reads, including TensorRT `trt::` ops and QONNX FloatQuant that
    onnxruntime cannot load: the model is brought to canonical form and each quantizer is lowered to
    operations onnxruntime computes bit-exactly as fp8conv.fp8.fake_quantize defines.
    """
    from fp8conv.converter.reference_run import run_reference

    written = run_reference(model, data_path, output, batch_size=batch_size, progress=not _quiet())
    click.echo(f"wrote {written.num_samples} samples of {', '.join(written.output_names)} to {output}")


@cli.command("verify", cls=_SchemaCommand)
@_schema_options("verify")
def verify_command(**values: Any) -> None:
    """Compare CANDIDATE with REFERENCE on data and check the accuracy gates.

    REFERENCE runs under exact FP8 numerics (any FP8 dialect; float and integer models run as they are);
    CANDIDATE runs on onnxruntime at --optimization-level and, for the per-layer comparison and to
    separate quantization from kernel error, as its unfused QDQ graph. Tensors are matched by name.
    Works for FP8 vs INT8, float vs INT8 and INT8 vs INT8. Options can be set in a --config file too
    (REFERENCE and CANDIDATE as `reference` and `candidate`); flags override the file.

    Exit codes: 0 all gates pass, 1 a gate failed (reports are still written), 2 bad input or usage.
    """
    from fp8conv.converter.loading import parse_model
    from fp8conv.errors import ModelLoadError
    from fp8conv.verification.preflight import check_before_writing
    from fp8conv.verification.verify import verify

    settings = _settings("verify", values)
    reference, candidate = _required(settings, "reference"), _required(settings, "candidate")
    data, random_inputs, report_dir = settings["data"], settings["random_inputs"], settings["report"]
    if data is None and random_inputs is None:
        raise click.UsageError("give --data DATA.npz (or, explicitly, --random-inputs N)")
    gates = _gates(settings)
    try:
        parsed = parse_model(reference)  # read once: for the checks below and as the reference
    except ModelLoadError:
        parsed = None  # verify() loads it and says why it cannot
    check_before_writing(
        parsed.proto if parsed is not None else None,
        report_dir=report_dir,  # type: ignore[arg-type]
        verify_data=data,  # type: ignore[arg-type]
        random_inputs=random_inputs,  # type: ignore[arg-type]
        random=_random_settings(settings),
        gates=gates,
        golden_output=settings["save_outputs"],  # type: ignore[arg-type]
    )
    result = verify(
        parsed if parsed is not None else reference,
        candidate,
        data,
        gates=gates,
        optimization_level=settings["optimization_level"],  # type: ignore[arg-type]
        per_layer=bool(settings["per_layer"]),
        task=settings["task"],  # type: ignore[arg-type]
        random_inputs=random_inputs,  # type: ignore[arg-type]
        **_random_settings(settings),
        **_reference_settings(settings),
        batch_size=settings["batch_size"],  # type: ignore[arg-type]
        progress=not _quiet(),
    )
    _finish(result, report_dir, bool(settings["json"]))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fp8conv")
