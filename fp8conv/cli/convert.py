"""``fp8conv convert`` (and its shorthand ``fp8conv MODEL``): the flags → :func:`~fp8conv.convert_and_verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fp8conv.cli.output import finish, finish_unverified, quiet, warn
from fp8conv.cli.schema_options import REFERENCE, SchemaCommand, keywords, required, schema_options, settings

__all__ = ["convert_command"]


@click.command("convert", cls=SchemaCommand)
@schema_options("convert")
def convert_command(**values: Any) -> None:
    """Convert an FP8 fake-quantized MODEL to an integer QDQ model for onnxruntime, then verify it.

    Also available as `fp8conv MODEL --to int8`. Reads every FP8 dialect (QDQ with float8, FP8 weights
    behind DequantizeLinear, TensorRT trt:: ops, QONNX FloatQuant, Cast pairs), requantizes the exact FP8
    weights per output channel and calibrates activation ranges on the exact FP8 reference, then checks
    which layers onnxruntime runs on integer kernels.

    Verification (skip with --no-verify) compares the written model with MODEL under exact FP8 numerics
    on --verify-data, else --random-inputs N, else the calibration data --data; with none of them it is
    skipped with a note. The integer-kernel gate (--min-integer-kernels) needs no data: it fails when a
    layer planned on an integer kernel runs in float.

    Every option can also be set in a --config file, under the name of its flag (`max_samples: 64` or
    `max-samples: 64`; MODEL as `model`); flags override the file. An option that contradicts another
    or does nothing with the others (--auto-int16 without --data, --int4-block-size with --to int8, gates
    with --no-verify, ...) is an error.

    Exit codes: 0 all gates pass, 1 a gate failed, 2 bad input or options (nothing is written), 3 an
    internal error. The model and the --report files are written in every case but 2 and 3.

    An existing output file is replaced without asking, as compilers' -o, Polygraphy and onnxsim do, so
    that a rerun (CI, make) works; the new file takes its place atomically, so a run that ends with 2 or 3
    leaves it as it was. MODEL itself is never overwritten (exit 2). An -o without the .onnx suffix is
    written all the same, with a warning.
    """
    from fp8conv.converter.summary import conversion_summary
    from fp8conv.options import Target
    from fp8conv.verification.convert_and_verify import convert_and_verify, output_path
    from fp8conv.verification.gates import Gates
    from fp8conv.verification.golden import golden_paths
    from fp8conv.verification.preflight import check_before_writing
    from fp8conv.verification.verify_files import RANDOM_INPUT_KEYWORDS

    given = settings("convert", values)
    model = required(given, "model")
    gates = Gates.from_settings(given)
    report_dir = given["report"]
    verify = bool(given["verify"])
    _warn_unless_onnx_suffix(given["output"])  # type: ignore[arg-type]
    # Every file the command writes (the reports too, which the API does not write) is checked first.
    destination = output_path(model, given["output"], Target(given["to"]))  # type: ignore[arg-type]
    golden_output = given["save_outputs"] if verify else None
    golden_paths(golden_output, None).refuse_overwriting({"output": destination})  # the default output too
    check_before_writing(None, output=destination, report_dir=report_dir, golden_output=golden_output)  # type: ignore[arg-type]
    conversion = given.conversion_options()
    conversion.pop("to", None)
    outcome = convert_and_verify(
        model,
        given["to"],  # type: ignore[arg-type]
        given["data"],
        output=destination,
        verify_data=given["verify_data"],
        random_inputs=given["random_inputs"],  # type: ignore[arg-type]
        **keywords(given, RANDOM_INPUT_KEYWORDS + REFERENCE),
        verify=verify,
        skip_reason="--no-verify was given",
        gates=gates,
        optimization_level=given["optimization_level"],  # type: ignore[arg-type]
        per_layer=bool(given["per_layer"]),
        task=given["task"],  # type: ignore[arg-type]
        audit=bool(given["audit"]),
        external_data=given["external_data"],  # type: ignore[arg-type]
        progress=not quiet(),
        **conversion,
    )
    result, verified = outcome.conversion, outcome.verification
    as_json = bool(given["json"])
    if not verified.verified and report_dir is None:
        finish_unverified(result, verified, as_json, note=verify)
        return
    finish(verified, report_dir, as_json, prefix="" if as_json else conversion_summary(result) + "\n")  # type: ignore[arg-type]


def _warn_unless_onnx_suffix(output: Path | None) -> None:
    """A warning for an ``-o`` whose name does not end in ``.onnx`` (onnxruntime and viewers go by it)."""
    if output is not None and output.suffix.lower() != ".onnx":
        what = f"suffix {output.suffix!r}" if output.suffix else "no suffix"
        warn(f"{output}: the output has {what}, not '.onnx'; writing an ONNX model there all the same")
