"""What the commands print: results on stdout, warnings and notes on stderr (none at ``-q``), the exit code.

Every command prints through these, so that ``-q`` means the same everywhere: errors only on stderr, no
progress bars. The reports are written and rendered by :mod:`fp8conv.report`; this module only prints them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from fp8conv.converter.pipeline import ConversionResult
    from fp8conv.verification.result import VerificationResult

__all__ = ["finish", "finish_unverified", "print_json", "quiet", "warn"]


def quiet() -> bool:
    """Whether ``-q`` was given: no warnings, notes or progress bars, only errors on stderr."""
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.find_root().params.get("quiet"))


def warn(message: str) -> None:
    """``fp8conv: warning: MESSAGE`` on stderr, unless ``-q``."""
    if not quiet():
        click.echo(f"fp8conv: warning: {message}", err=True)


def print_json(document: Any, *, allow_nan: bool = True) -> None:
    """``document`` as indented JSON on stdout (``allow_nan`` False: a NaN or Inf is an error, not ``NaN``)."""
    click.echo(json.dumps(document, indent=2, allow_nan=allow_nan))


def _exit(code: int) -> None:
    """End the command with ``code`` (0: return normally)."""
    if code:
        click.get_current_context().exit(code)


def finish(result: VerificationResult, report_dir: Path | None, as_json: bool, prefix: str = "") -> None:
    """Write the reports, print the summary (or JSON), and exit with the result's exit code."""
    from fp8conv.report.terminal import render_terminal

    document = result.to_json()
    if report_dir is not None:
        from fp8conv.report.writer import write_reports  # jinja2 and matplotlib: only when a report is written

        write_reports(result, report_dir)
    if as_json:
        print_json(document, allow_nan=False)
    else:
        text = render_terminal(document)
        if report_dir is not None:
            text += f"\nreports: {report_dir / 'report.html'} (also report.md, report.json)"
        click.echo(prefix + text)
    _exit(result.exit_code)


def finish_unverified(result: ConversionResult, skipped: VerificationResult, as_json: bool, note: bool) -> None:
    """Print the conversion summary (or record) and any failed gate, and exit with the result's code.

    ``note``: say on stderr why verification was skipped (its first warning), unless ``-q``.
    """
    from fp8conv.converter.summary import conversion_summary
    from fp8conv.report.terminal import failed_gate_lines

    document = skipped.to_json()
    if note and not quiet():
        click.echo(f"note: verification skipped: {skipped.warnings[0]}", err=True)
    if as_json:
        print_json(result.to_json())
        for line in failed_gate_lines(document):
            click.echo(line.strip(), err=True)
    else:
        click.echo("\n".join([conversion_summary(result), *failed_gate_lines(document)]))
    _exit(skipped.exit_code)
