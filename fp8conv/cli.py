"""The ``fp8conv`` command line: thin click wrappers over the Python API.

Exit codes: 0 success (all gates pass), 1 a gate failed, 2 bad input or usage.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from fp8conv import __version__
from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.formats import FORMATS

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2


class _Fp8ConvGroup(click.Group):
    """A group whose errors from fp8conv become one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Fp8ConvError as error:
            click.echo(f"fp8conv: error: {error}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


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


@cli.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a stable JSON document instead of the table.")
def inspect_command(model: Path, as_json: bool) -> None:
    """Show MODEL's opset, size, FP8 dialects and quantization points.

    The table lists every quantization point: the quantized tensor, its role (weight or activation),
    the op that consumes it, the FP8 format, the granularity and the range of its scales. With --json the
    document has the keys schema_version, opset, ir_version, size_bytes, external_data, dialects,
    quant_points (tensor, role, format, axis, block_size, ...) and integer_qdq.
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fp8conv")
