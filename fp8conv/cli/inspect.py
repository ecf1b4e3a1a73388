"""``fp8conv inspect``: MODEL → :func:`~fp8conv.inspect` → its table or JSON."""

from __future__ import annotations

from typing import Any

import click

from fp8conv.cli.output import print_json
from fp8conv.cli.schema_options import SchemaCommand, required, schema_options, settings

__all__ = ["inspect_command"]


@click.command("inspect", cls=SchemaCommand)
@schema_options("inspect")
def inspect_command(**values: Any) -> None:
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
    from fp8conv.converter import inspection  # looked up when called (tests replace inspection.inspect)

    given = settings("inspect", values)
    result = inspection.inspect(required(given, "model"))
    if given["json"]:
        print_json(result.to_json())
    else:
        click.echo(result.to_text())
