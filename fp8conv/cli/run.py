"""``fp8conv run``: the flags → :func:`~fp8conv.converter.reference_run.run_reference` → one line."""

from __future__ import annotations

from pathlib import Path

import click

from fp8conv.cli.output import quiet

__all__ = ["run_command"]


@click.command("run")
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
    from fp8conv.converter import reference_run  # looked up when called (tests replace run_reference)

    written = reference_run.run_reference(model, data_path, output, batch_size=batch_size, progress=not quiet())
    click.echo(f"wrote {written.num_samples} samples of {', '.join(written.output_names)} to {output}")
