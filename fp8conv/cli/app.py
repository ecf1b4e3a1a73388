"""The ``fp8conv`` group: global flags, the ``fp8conv MODEL`` shorthand, one-line errors and the exit codes.

Exit codes: 0 success (all gates pass), 1 a gate failed, 2 bad input or usage, 3 an internal error (a
violated postcondition or any other unexpected exception: one line, the traceback only with ``-v``).

The commands are registered on :data:`cli` by :mod:`fp8conv.cli` (one module each); this module imports
click and fp8conv's light modules only.
"""

from __future__ import annotations

import difflib
import logging
import re
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from fp8conv._version import __version__
from fp8conv.errors import Fp8ConvError, InternalError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL_ERROR", "cli", "main"]

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fp8conv")
