"""``fp8conv run``: the flags → :func:`~fp8conv.converter.reference_run.run_reference` → one line."""

from __future__ import annotations

from typing import Any

import click

from fp8conv.cli.output import quiet
from fp8conv.cli.schema_options import SchemaCommand, required, schema_options, settings

__all__ = ["run_command"]


@click.command("run", cls=SchemaCommand)
@schema_options("run")
def run_command(**values: Any) -> None:
    """Run MODEL with exact FP8 numerics at every quantization point and save its outputs.

    Works for every dialect fp8conv reads, including TensorRT `trt::` ops and QONNX FloatQuant that
    onnxruntime cannot load: the model is brought to canonical form and each quantizer is lowered to
    operations onnxruntime computes bit-exactly as fp8conv.fp8.fake_quantize defines.
    """
    from fp8conv.converter import reference_run  # looked up when called (tests replace run_reference)

    given = settings("run", values)
    model, data, output = (required(given, name) for name in ("model", "data", "output"))
    written = reference_run.run_reference(model, data, output, batch_size=given["batch_size"], progress=not quiet())
    click.echo(f"wrote {written.num_samples} samples of {', '.join(written.output_names)} to {output}")
