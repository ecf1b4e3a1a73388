"""The ``fp8conv`` command line: thin click wrappers over the Python API.

Exit codes: 0 success (all gates pass), 1 a gate failed, 2 bad input or usage.
"""

from __future__ import annotations

import logging
import sys

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
    header = f"{'name':<12} {'bits':>4} {'E':>2} {'M':>2} {'bias':>4} {'max':>12} {'min normal':>12} " \
        f"{'min subnormal':>14}  specials"
    click.echo(header)
    for fmt in FORMATS.values():
        click.echo(
            f"{fmt.name:<12} {fmt.bits:>4} {fmt.exponent_bits:>2} {fmt.mantissa_bits:>2} {fmt.bias:>4} "
            f"{fmt.max_value:>12g} {fmt.min_normal:>12g} {fmt.min_subnormal:>14g}  {fmt.style}"
        )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fp8conv")
