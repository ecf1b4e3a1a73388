"""The ``fp8conv`` command line: each command translates its flags into an API call and prints the result.

* :mod:`~fp8conv.cli.app`: the ``fp8conv`` group: ``-v``/``-q``, the ``fp8conv MODEL`` shorthand, "did you
  mean" for a misspelt command, one-line errors and the exit codes (0 success, 1 a gate failed, 2 bad
  input or usage, 3 an internal error);
* :mod:`~fp8conv.cli.schema_options`: the click options of ``convert`` and ``verify`` from the option schema
  (:mod:`fp8conv.options`), and their values layered over a ``--config`` file;
* :mod:`~fp8conv.cli.output`: what is printed where (``-q``: errors only), reports written and exit codes;
* one module per command: :mod:`~fp8conv.cli.convert`, :mod:`~fp8conv.cli.verify`,
  :mod:`~fp8conv.cli.inspect`, :mod:`~fp8conv.cli.run`, :mod:`~fp8conv.cli.formats`; :data:`COMMANDS` is the
  registry (a new command is one module and one line there).

Importing this package imports click and fp8conv's light modules only (errors, the version, the option
schema): each command imports its implementation when it runs, so ``fp8conv --version`` and ``fp8conv --help``
load neither onnx, onnx_ir, onnxruntime nor NumPy (``tests/cli/test_cli_app.py`` checks it).
"""

from __future__ import annotations

import click

from fp8conv.cli.app import cli, main
from fp8conv.cli.convert import convert_command
from fp8conv.cli.formats import formats_command
from fp8conv.cli.inspect import inspect_command
from fp8conv.cli.run import run_command
from fp8conv.cli.verify import verify_command

__all__ = ["COMMANDS", "cli", "main"]

COMMANDS: tuple[click.Command, ...] = (convert_command, verify_command, inspect_command, run_command, formats_command)
"""Every subcommand of :data:`cli`."""

for _command in COMMANDS:
    cli.add_command(_command)
