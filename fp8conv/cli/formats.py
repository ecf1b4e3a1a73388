"""``fp8conv formats``: the table (or JSON) of the FP8 emulator's named formats (:mod:`fp8conv.runtime.formats`)."""

from __future__ import annotations

import click

from fp8conv.cli.output import print_json

__all__ = ["formats_command"]


@click.command("formats")
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
    from fp8conv.runtime.formats import formats_document, formats_table

    if as_json:
        print_json(formats_document(), allow_nan=False)
    else:
        click.echo(formats_table())
