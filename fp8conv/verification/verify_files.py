"""What ``fp8conv verify`` runs: the checks made before anything is written, then :func:`~fp8conv.verify`.

The reference file is read and parsed once (:func:`~fp8conv.converter.loading.parse_model`): its protobuf
gives the model's interface to the checks of :mod:`~fp8conv.verification.preflight` (the report directory
and the golden-outputs file can be written, the data fits the model's inputs, random inputs can be made,
per-output gates name outputs it has), and the same parsed model is the reference :func:`~fp8conv.verify` loads.
A reference that cannot be parsed is left to :func:`~fp8conv.verify`, whose loader says why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fp8conv.converter.loading import parse_model
from fp8conv.errors import ModelLoadError
from fp8conv.verification.gates import Gates
from fp8conv.verification.inputs import DataInput
from fp8conv.verification.preflight import check_before_writing
from fp8conv.verification.result import VerificationResult

__all__ = ["RANDOM_INPUT_KEYWORDS", "verify_files"]

RANDOM_INPUT_KEYWORDS = ("seed", "val_range", "input_shapes")
"""The keywords of :func:`~fp8conv.verify` that say how random inputs are made."""


def verify_files(
    reference: str | os.PathLike,
    candidate: str | os.PathLike,
    data: DataInput | None = None,
    *,
    gates: Gates,
    report_dir: Path | None = None,
    **options: Any,
) -> VerificationResult:
    """Check every input before anything is written, then verify ``candidate`` against ``reference``.

    Args:
        reference: The reference model file (read once: for the checks and as the reference).
        candidate: The candidate model file.
        data: The verification data (None only with ``random_inputs``).
        gates: The gates (checked against the reference's outputs first).
        report_dir: The directory the caller will write the reports to (checked writable first), if any.
        **options: The other keywords of :func:`~fp8conv.verify` (``random_inputs``, ``seed``, ``save_outputs``, ...).

    Returns:
        The verification result.

    Raises:
        Fp8ConvError: The first problem the checks find (nothing is written), or what :func:`~fp8conv.verify` raises.
    """
    try:
        parsed = parse_model(reference)
    except ModelLoadError:
        parsed = None  # verify() loads it and says why it cannot
    check_before_writing(
        parsed.proto if parsed is not None else None,
        report_dir=report_dir,
        verify_data=data,  # type: ignore[arg-type]
        random_inputs=options.get("random_inputs"),
        random={name: options[name] for name in RANDOM_INPUT_KEYWORDS if name in options},
        gates=gates,
        golden_output=options.get("save_outputs"),
    )
    from fp8conv.verification import verify as verify_module  # looked up when called (tests replace verify)

    return verify_module.verify(parsed if parsed is not None else reference, candidate, data, gates=gates, **options)
