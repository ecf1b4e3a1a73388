"""``fp8conv verify``: the flags → :func:`~fp8conv.verification.verify_files.verify_files` → the reports."""

from __future__ import annotations

from typing import Any

import click

from fp8conv.cli.output import finish, quiet
from fp8conv.cli.schema_options import REFERENCE, SchemaCommand, keywords, required, schema_options, settings

__all__ = ["verify_command"]


@click.command("verify", cls=SchemaCommand)
@schema_options("verify")
def verify_command(**values: Any) -> None:
    """Compare CANDIDATE with REFERENCE on data and check the accuracy gates.

    REFERENCE runs under exact FP8 numerics (any FP8 dialect; float and integer models run as they are);
    CANDIDATE runs on onnxruntime at --optimization-level and, for the per-layer comparison and to
    separate quantization from kernel error, as its unfused QDQ graph. Tensors are matched by name.
    Works for FP8 vs INT8, float vs INT8 and INT8 vs INT8. Options can be set in a --config file too
    (REFERENCE and CANDIDATE as `reference` and `candidate`); flags override the file.

    Exit codes: 0 all gates pass, 1 a gate failed (reports are still written), 2 bad input or usage.
    """
    from fp8conv.verification.gates import Gates
    from fp8conv.verification.verify_files import RANDOM_INPUT_KEYWORDS, verify_files

    given = settings("verify", values)
    reference, candidate = required(given, "reference"), required(given, "candidate")
    if given["data"] is None and given["random_inputs"] is None:
        raise click.UsageError("give --data DATA.npz (or, explicitly, --random-inputs N)")
    result = verify_files(
        reference,
        candidate,
        given["data"],  # type: ignore[arg-type]
        gates=Gates.from_settings(given),
        report_dir=given["report"],  # type: ignore[arg-type]
        optimization_level=given["optimization_level"],
        per_layer=bool(given["per_layer"]),
        task=given["task"],
        random_inputs=given["random_inputs"],
        **keywords(given, RANDOM_INPUT_KEYWORDS + REFERENCE),
        batch_size=given["batch_size"],
        progress=not quiet(),
    )
    finish(result, given["report"], bool(given["json"]))  # type: ignore[arg-type]
