"""The ``fp8conv`` command line: thin click wrappers over the Python API.

Exit codes: 0 success (all gates pass), 1 a gate failed, 2 bad input or usage, 3 an internal error (a
violated postcondition or any other unexpected exception: one line, the traceback only with ``-v``).
"""

from __future__ import annotations

import dataclasses
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

from fp8conv._version import __version__
from fp8conv.converter.calibration.registry import RANGE_METHODS
from fp8conv.errors import Fp8ConvError, InternalError
from fp8conv.runtime.formats import FORMATS

if TYPE_CHECKING:
    from fp8conv.converter.pipeline import ConversionResult
    from fp8conv.verification.gates import Gates
    from fp8conv.verification.result import VerificationResult

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3

_VERBOSE = re.compile(r"-v+|--verbose")


class _Fp8ConvGroup(click.Group):
    """A group whose errors become one line on stderr: bad input exit code 2, fp8conv's own bugs exit code 3.

    An :class:`InternalError` or any exception that is neither fp8conv's nor click's is a bug: one line
    ``fp8conv: internal error: …`` (with the traceback after it only at ``-v``), never a bare traceback.

    ``fp8conv MODEL.onnx --to int8`` is short for ``fp8conv convert MODEL.onnx --to int8``: a first
    argument (after ``-v``) that is not a command name runs ``convert``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["fp8conv.command"] = shlex.join(["fp8conv", *args])  # for the reports' provenance
        first = next((i for i, arg in enumerate(args) if not _VERBOSE.fullmatch(arg)), len(args))
        if first < len(args) and not args[first].startswith("-") and args[first] not in self.commands:
            args = [*args[:first], "convert", *args[first:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        from fp8conv.verification.provenance import recording_command

        try:
            with recording_command(ctx.meta.get("fp8conv.command", "fp8conv")):
                return super().invoke(ctx)
        except Fp8ConvError as error:
            click.echo(f"fp8conv: error: {error}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
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


@click.group(cls=_Fp8ConvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fp8conv")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Convert FP8 fake-quantized ONNX models to INT8/INT4 models that onnxruntime runs on integer kernels.

    Run `fp8conv COMMAND --help` for the options of each command.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command("formats")
def formats_command() -> None:
    """List the named number formats of the FP8 emulator (fp8conv.fp8) with their facts."""
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


_GATE_HELP = "Global, or per output as OUTPUT:VALUE (repeatable); 'off' disables."


def _default(name: str) -> str:
    from fp8conv.verification.gates import DEFAULT_THRESHOLDS

    value = DEFAULT_THRESHOLDS[name]
    return "default off" if value is None else f"default {value:g}"


def _verification_options(command: Callable[..., object]) -> Callable[..., object]:
    """Options shared by ``convert`` and ``verify``: report directory, gates, optimization level, random inputs.

    They reach the command as keyword arguments ``report_dir``, ``min_sqnr``, ``min_cosine``,
    ``max_top1_drop``, ``max_accuracy_drop``, ``max_abs_err`` (tuples of specs), ``min_layer_sqnr`` and
    ``min_integer_kernels`` (a spec or None), ``optimization_level`` and ``random_inputs``.
    """
    from fp8conv.verification.gates import RATE_GATE_HELP

    options = [
        click.option(
            "--report",
            "report_dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Write report.json, report.md and report.html into this directory (also when a gate fails).",
        ),
        click.option(
            "--min-sqnr",
            multiple=True,
            metavar="[OUTPUT:]DB",
            help=f"Minimum output SQNR in dB ({_default('min_sqnr')}). {_GATE_HELP}",
        ),
        click.option(
            "--min-cosine",
            multiple=True,
            metavar="[OUTPUT:]X",
            help=f"Minimum cosine similarity ({_default('min_cosine')}). {_GATE_HELP}",
        ),
        click.option(
            "--max-top1-drop",
            multiple=True,
            metavar="[OUTPUT:]PP",
            help="Maximum top-1 disagreement with the FP8 model in percentage points, classifier outputs "
            f"({_default('max_top1_drop')}). {RATE_GATE_HELP} {_GATE_HELP}",
        ),
        click.option(
            "--max-accuracy-drop",
            multiple=True,
            metavar="[OUTPUT:]PP",
            help=f"Maximum accuracy drop in percentage points, needs labels in the data "
            f"({_default('max_accuracy_drop')}). {RATE_GATE_HELP} {_GATE_HELP}",
        ),
        click.option(
            "--max-abs-err",
            multiple=True,
            metavar="[OUTPUT:]X",
            help=f"Maximum absolute error ({_default('max_abs_err')}). {_GATE_HELP}",
        ),
        click.option(
            "--min-layer-sqnr",
            "min_layer_sqnr",
            default=None,
            metavar="DB",
            help="Minimum SQNR in dB of every layer compared (the unfused QDQ graph vs the reference; default "
            "off: per-layer numbers are diagnostics that fail nothing). When set, a layer below it fails the run "
            "and is marked in the reports. 'off' disables it.",
        ),
        click.option(
            "--min-integer-kernels",
            "min_integer_kernels",
            default=None,
            metavar="N|plan|off",
            help="Minimum number of layers the deployed session runs on integer kernels. Default 'plan': every "
            "layer the conversion plans on an integer kernel for its target (checked when converting); 'off' "
            "disables it.",
        ),
        click.option(
            "--optimization-level",
            type=click.Choice(["all", "extended", "basic", "disable"]),
            default="all",
            show_default=True,
            help="onnxruntime optimization level the candidate is deployed at.",
        ),
        click.option(
            "--random-inputs",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="Verify on N random inputs instead of data (explicit opt-in; the report warns that they do not "
            "represent the task).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclasses.dataclass(frozen=True)
class _VerifyOptions:
    """The values of :func:`_verification_options`, typed."""

    report_dir: Path | None
    gate_specs: dict[str, tuple[str, ...]]
    optimization_level: str
    random_inputs: int | None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> _VerifyOptions:
        from fp8conv.verification.gates import GATE_NAMES, KERNEL_GATE, LAYER_GATE

        single = {name: (kwargs[name],) if kwargs[name] is not None else () for name in (LAYER_GATE, KERNEL_GATE)}
        return cls(
            report_dir=kwargs["report_dir"],
            gate_specs={name: tuple(kwargs[name]) for name in GATE_NAMES} | single,
            optimization_level=kwargs["optimization_level"],
            random_inputs=kwargs["random_inputs"],
        )

    def gates(self, config_gates: Mapping[str, Any] | None, config_path: Path | None = None) -> Gates:
        """Defaults, then the config file's ``gates`` table, then the gate flags."""
        from fp8conv.verification.gates import Gates

        gates = Gates.default()
        if config_gates is not None:
            try:
                gates = gates.with_mapping(config_gates, source="config")
            except Fp8ConvError as error:
                raise Fp8ConvError(f"{config_path}: {error}") from error
        for name, specs in self.gate_specs.items():
            if specs:
                gates = gates.with_specs(name, specs, source="cli")
        return gates


def _finish(result: VerificationResult, report_dir: Path | None, as_json: bool, prefix: str = "") -> None:
    """Write the reports, print the summary (or JSON), and exit with the result's exit code."""
    from fp8conv.report.terminal import render_terminal
    from fp8conv.report.writer import write_reports

    document = result.to_json()
    if report_dir is not None:
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


@cli.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "target",
    type=click.Choice(["int8", "int4", "w8a16", "w4a16"]),
    default=None,
    help="Default int8. int8: W8A8; int4: INT4 weights, INT8 activations; w8a16: INT16 activations; "
    "w4a16: weight-only INT4 MatMul/Gemm (MatMulNBits).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Output model (default: <stem>.<target>.onnx next to MODEL).",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Calibration data: .npz keyed by input name (first axis = samples) or a directory of "
    ".npz/.npy. Without it, ranges come from the FP8 quantizers (data-free).",
)
@click.option(
    "--weights-range",
    type=click.Choice(["mse", "max"]),
    default=None,
    help="Weight range: mse (clipping search, default) or max.",
)
@click.option(
    "--activations-range",
    type=click.Choice(list(RANGE_METHODS)),
    default=None,
    help="Activation range method (default mse; fp8 = data-free).",
)
@click.option(
    "--activation-type",
    type=click.Choice(["uint8", "int8"]),
    default=None,
    help="8-bit activation type (default uint8 asymmetric, onnxruntime CPU's choice).",
)
@click.option(
    "--full-range-weights",
    is_flag=True,
    default=None,
    help="Use the full int8 weight range [-127,127]. Default: 7-bit weights [-63,63], because "
    "onnxruntime's u8xs8 kernels saturate on x86 CPUs without VNNI.",
)
@click.option(
    "--int4-block-size",
    type=click.Choice(["0", "32", "64", "128"]),
    default=None,
    help="INT4 block length along K for MatMul/Gemm (0: per channel; default 32).",
)
@click.option(
    "--keep-float",
    multiple=True,
    metavar="REGEX",
    help="Keep the layers in float whose node, weight or output name (as `fp8conv inspect` lists them) "
    "contains a match of REGEX (repeatable; a REGEX that selects no layer is an error).",
)
@click.option(
    "--int16",
    "int16_patterns",
    multiple=True,
    metavar="REGEX",
    help="Give INT16 activations to the layers REGEX selects (as --keep-float).",
)
@click.option(
    "--int4",
    "int4_patterns",
    multiple=True,
    metavar="REGEX",
    help="Give INT4 weights to the layers REGEX selects (as --keep-float; blocked by --int4-block-size).",
)
@click.option(
    "--auto-int16",
    "auto_int16",
    type=float,
    default=None,
    metavar="DB",
    help="Mixed precision: give INT16 to activations whose INT8 SQNR on the calibration data is below DB "
    "(outliers; e.g. 25), and to the layers reading them.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML or TOML file with any of these options (flags win).",
)
@click.option(
    "--max-samples", type=click.IntRange(min=1), default=None, help="Use at most this many calibration samples."
)
@click.option(
    "--external-data/--no-external-data",
    default=None,
    help="Save weights as external data (default: only for models over 1 GiB).",
)
@click.option("--no-audit", is_flag=True, help="Skip the onnxruntime integer-kernel audit.")
@click.option(
    "--verify-data",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out data to verify on (default: the calibration data --data, which the report then flags: "
    "numbers measured on the data the ranges were fit to can be optimistic).",
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="Convert only: skip verification and its accuracy gates (the integer-kernel gate still applies).",
)
@_verification_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON: the verification report (its 'conversion' key is the conversion record), or the "
    "conversion record when nothing was verified.",
)
def convert_command(
    model: Path,
    target: str | None,
    output: Path | None,
    data_path: Path | None,
    weights_range: str | None,
    activations_range: str | None,
    activation_type: str | None,
    full_range_weights: bool | None,
    int4_block_size: str | None,
    keep_float: tuple[str, ...],
    int16_patterns: tuple[str, ...],
    int4_patterns: tuple[str, ...],
    auto_int16: float | None,
    config_path: Path | None,
    max_samples: int | None,
    external_data: bool | None,
    no_audit: bool,
    verify_data: Path | None,
    no_verify: bool,
    as_json: bool,
    **verification: Any,
) -> None:
    """Convert an FP8 fake-quantized MODEL to an integer QDQ model for onnxruntime, then verify it.

    Also available as `fp8conv MODEL --to int8`. Reads every FP8 dialect (QDQ with float8, FP8 weights
    behind DequantizeLinear, TensorRT trt:: ops, QONNX FloatQuant, Cast pairs), requantizes the exact FP8
    weights per output channel and calibrates activation ranges on the exact FP8 reference, then checks
    which layers onnxruntime runs on integer kernels.

    Verification (skip with --no-verify) compares the written model with MODEL under exact FP8 numerics
    on --verify-data, else --random-inputs N, else the calibration data --data; with none of them it is
    skipped with a note. The integer-kernel gate (--min-integer-kernels) needs no data: it fails when a
    layer planned on an integer kernel runs in float. Exit codes: 0 all gates pass, 1 a gate failed, 2
    bad input (nothing is written), 3 an internal error. The model and the --report files are written
    in every case but 2 and 3.
    """
    from fp8conv.config import ConversionConfig, load_config_file
    from fp8conv.converter.pipeline import default_output_path
    from fp8conv.verification.convert_and_verify import convert_and_verify
    from fp8conv.verification.preflight import check_before_writing

    checks = _VerifyOptions.from_kwargs(verification)
    if verify_data is not None and checks.random_inputs is not None:
        raise click.UsageError("give --verify-data or --random-inputs, not both")
    options: dict[str, Any] = {}
    if config_path is not None:
        options.update(load_config_file(config_path))
    gates = checks.gates(options.pop("gates", None), config_path)
    flags = {
        "weights_range": weights_range,
        "activations_range": activations_range,
        "activation_type": activation_type,
        "full_range_weights": full_range_weights,
        "max_calibration_samples": max_samples,
        "auto_int16_below_db": auto_int16,
        "int4_block_size": (int(int4_block_size) or None) if int4_block_size is not None else None,
    }
    options.update({key: value for key, value in flags.items() if value is not None})
    if int4_block_size == "0":
        options["int4_block_size"] = None
    for field, patterns in (("keep_float", keep_float), ("int16", int16_patterns), ("int4", int4_patterns)):
        if patterns:
            options[field] = tuple(options.get(field, ())) + patterns
    target = target or str(options.pop("target", "int8"))
    options.pop("target", None)
    destination = output or default_output_path(model, ConversionConfig(target=target).target)
    check_before_writing(None, output=destination, report_dir=checks.report_dir)  # the rest: convert_and_verify
    outcome = convert_and_verify(
        model,
        target,
        data_path,
        output=destination,
        verify_data=verify_data,
        random_inputs=checks.random_inputs,
        verify=not no_verify,
        skip_reason="--no-verify was given",
        gates=gates,
        optimization_level=checks.optimization_level,
        audit=not no_audit,
        external_data=external_data,
        progress=True,
        **options,
    )
    result, verified = outcome.conversion, outcome.verification
    if not verified.verified and checks.report_dir is None:
        _finish_unverified(result, verified, as_json, note=not no_verify)
        return
    _finish(verified, checks.report_dir, as_json, prefix="" if as_json else _conversion_summary(result) + "\n")


def _finish_unverified(result: ConversionResult, skipped: VerificationResult, as_json: bool, note: bool) -> None:
    """Print the conversion summary (or record) and any failed gate, and exit with the result's code."""
    from fp8conv.report.terminal import failed_gate_lines

    document = skipped.to_json()
    if note:
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
    every Conv/MatMul/Gemm layer by the names --keep-float, --int16 and --int4 match: its node, its
    stored weight and its output tensor. With --json the document has the keys schema_version, opset,
    ir_version, size_bytes, external_data, dialects, quant_points (tensor, role, format, axis, block_size,
    ...), integer_qdq and layers (node, op_type, weights: every tensor on the weight's path, output).
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

    written = run_reference(model, data_path, output, batch_size=batch_size)
    click.echo(f"wrote {written.num_samples} samples of {', '.join(written.output_names)} to {output}")


@cli.command("verify")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Inputs: .npz keyed by input name (first axis = samples; optional 'labels'), or a directory of them.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML or TOML file whose 'gates' table sets thresholds (flags win).",
)
@click.option("--no-layers", is_flag=True, help="Compare outputs only (no per-layer captures).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Samples per run (default 16).")
@_verification_options
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the table.")
def verify_command(
    reference: Path,
    candidate: Path,
    data_path: Path | None,
    config_path: Path | None,
    no_layers: bool,
    batch_size: int | None,
    as_json: bool,
    **verification: Any,
) -> None:
    """Compare CANDIDATE with REFERENCE on data and check the accuracy gates.

    REFERENCE runs under exact FP8 numerics (any FP8 dialect; float and integer models run as they are);
    CANDIDATE runs on onnxruntime at --optimization-level and, for the per-layer comparison and to
    separate quantization from kernel error, as its unfused QDQ graph. Tensors are matched by name.
    Works for FP8 vs INT8, float vs INT8 and INT8 vs INT8.

    Exit codes: 0 all gates pass, 1 a gate failed (reports are still written), 2 bad input or usage.
    """
    from fp8conv.config import load_config_file
    from fp8conv.converter.loading import parse_model
    from fp8conv.errors import ModelLoadError
    from fp8conv.verification.preflight import check_before_writing
    from fp8conv.verification.verify import verify

    checks = _VerifyOptions.from_kwargs(verification)
    if data_path is not None and checks.random_inputs is not None:
        raise click.UsageError("give --data or --random-inputs, not both")
    if data_path is None and checks.random_inputs is None:
        raise click.UsageError("give --data DATA.npz (or, explicitly, --random-inputs N)")
    config_gates = load_config_file(config_path).get("gates") if config_path is not None else None
    gates = checks.gates(config_gates, config_path)
    try:
        parsed = parse_model(reference)  # read once: for the checks below and as the reference
    except ModelLoadError:
        parsed = None  # verify() loads it and says why it cannot
    check_before_writing(
        parsed.proto if parsed is not None else None,
        report_dir=checks.report_dir,
        verify_data=data_path,
        random_inputs=checks.random_inputs,
        gates=gates,
    )
    result = verify(
        parsed if parsed is not None else reference,
        candidate,
        data_path,
        gates=gates,
        optimization_level=checks.optimization_level,
        per_layer=not no_layers,
        random_inputs=checks.random_inputs,
        batch_size=batch_size,
        progress=True,
    )
    _finish(result, checks.report_dir, as_json)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fp8conv")
