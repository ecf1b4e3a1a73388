"""``fp8conv.convert_and_verify``: convert a model, write it, and verify it against its source, reading each once.

What ``fp8conv MODEL --to int8`` runs. Compared with :func:`~fp8conv.converter.pipeline.convert_file` followed
by :func:`~fp8conv.verification.verify.verify` on the two files, nothing is read twice:

* the source file is read and parsed once (:func:`~fp8conv.converter.loading.parse_model`): the protobuf
  gives the model's interface to the checks made before anything is written
  (:mod:`~fp8conv.verification.preflight`), and then :func:`~fp8conv.load` validates it (``onnx.checker``
  once, on the bytes read) and normalizes it once. That one :class:`~fp8conv.LoadedModel` is converted
  (:func:`~fp8conv.convert` works on a clone) and is the verification reference;
* the converted model is serialized once (:func:`~fp8conv.converter.pipeline.write_converted`); those
  bytes are checked by ``onnx.checker`` before they are written, written atomically, loaded by the
  integer-kernel audit's session and by the deployed and unfused sessions of verification
  (:mod:`~fp8conv.verification.runners`).

A model saved with external data is written by ``onnx_ir`` and then read back once for verification
(its ``.onnx`` file only; the weights stay on disk for onnxruntime).

The reference runner of verification is not the one calibration used: calibration captures FP8 grid values
and its own tensors, verification the tensors both graphs have, and a capture can change how onnxruntime
fuses the float ops around it (float rounding order), so one shared runner would change the reported
numbers. Both are built from the same canonical model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from fp8conv.config import ConversionConfig, Target, checked_call
from fp8conv.converter.data import DataSource
from fp8conv.converter.loading import ModelInput, ParsedModel, load, parse_model
from fp8conv.converter.pipeline import ConversionResult, SerializedModel, default_output_path
from fp8conv.errors import Fp8ConvError, InternalError, ModelLoadError
from fp8conv.runtime.audit import KernelAudit, audit_integer_kernels
from fp8conv.runtime.ort_backend import check_providers
from fp8conv.verification.gates import Gates
from fp8conv.verification.golden import golden_paths
from fp8conv.verification.inputs import DataInput
from fp8conv.verification.preflight import check_before_writing
from fp8conv.verification.result import VerificationResult
from fp8conv.verification.runners import Candidate, named_as_read, read_candidate
from fp8conv.verification.verify import normalize_level, not_verified
from fp8conv.verification.verify import verify as verify_candidate

__all__ = ["NO_DATA_REASON", "VerifiedConversion", "convert_and_verify", "output_path"]

NO_DATA_REASON = (
    "no data to verify on: pass --data (or --verify-data) DATA.npz, or --random-inputs N to verify on random inputs"
)
"""Why nothing is verified when there is neither verification data, calibration data nor random inputs."""


@dataclasses.dataclass(frozen=True)
class VerifiedConversion:
    """A conversion and its verification.

    Attributes:
        conversion: The conversion (its ``output_path``, ``output_size_bytes`` and, when audited, ``audit`` set).
        verification: The verification of the written model against the source; when nothing was verified,
            a result with ``verified`` False whose first warning says why and whose only gate is the
            integer-kernel gate on the conversion's audit.
    """

    conversion: ConversionResult
    verification: VerificationResult

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return self.verification.passed

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for it: 0 every gate passed, 1 a gate failed."""
        return self.verification.exit_code

    def to_json(self) -> dict[str, Any]:
        """``report.json``: the verification, the conversion record under its ``conversion`` key."""
        return self.verification.to_json()

    def __repr__(self) -> str:
        """The two results' one-line summaries."""
        return f"<VerifiedConversion {self.conversion!r} {self.verification!r}>"


def convert_and_verify(
    model: ModelInput,
    to: str | Target | None = None,
    data: DataSource | None = None,
    *,
    output: str | os.PathLike | None = None,
    verify_data: DataInput | None = None,
    random_inputs: int | None = None,
    seed: int = 0,
    val_range: object = (),
    input_shapes: object = (),
    save_outputs: str | os.PathLike | None = None,
    load_outputs: str | os.PathLike | None = None,
    providers: str | Sequence[str] | None = None,
    verify: bool = True,
    skip_reason: str = "verification was not asked for (verify=False)",
    gates: Gates | Mapping[str, Any] | None = None,
    optimization_level: str = "all",
    per_layer: bool = True,
    task: str | None = None,
    audit: bool = True,
    external_data: bool | None = None,
    config: ConversionConfig | None = None,
    progress: bool = False,
    **options: Any,
) -> VerifiedConversion:
    """Convert an FP8 model, write it atomically, and verify the written model against the source.

    Every input is checked before anything is written (:mod:`~fp8conv.verification.preflight`): the output
    path, the verification data (its first samples), random inputs, gates naming outputs. Verification runs
    on ``verify_data``, else ``random_inputs`` random inputs, else the calibration data ``data``; with none
    of them, or with ``verify`` False, nothing is verified and the result says why. The reports of the result
    are written by :func:`fp8conv.write_reports`.

    Args:
        model: The FP8 model: a path, ``onnx.ModelProto``, ``onnx_ir.Model`` or ``onnx_graphsurgeon.Graph``
            (never modified).
        to: Target: ``int8``, ``int4``, ``w8a16`` or ``w4a16`` (None: ``config``'s, else ``int8``).
        data: Calibration samples: a path, ``{input name: array}``, an array (one-input model), a reader of feeds
            (``get_next()`` or any iterable of ``{input name: array}``) or a sample set
            (:func:`~fp8conv.converter.data.open_samples`); None for data-free ranges. A reader is read once,
            for calibration and (without ``verify_data``) verification.
        output: Where to write the converted model (default ``<stem>.<target>.onnx`` beside a model file;
            required for an in-memory model).
        verify_data: Held-out verification data (any of the forms of ``data``).
        random_inputs: Verify on this many random inputs (explicit opt-in; not with ``verify_data``).
        seed: Seed of the random inputs (only with ``random_inputs``).
        val_range: ``[NAME:]LOW,HIGH`` specs (or a ``(low, high)`` pair): the range of the random inputs.
        input_shapes: ``NAME:D0xD1x...`` specs: the shapes of random inputs with dynamic dimensions.
        save_outputs: Write the FP8 reference's outputs over the verification samples (and the tensors the
            per-layer comparison uses) to this ``.npz``: golden outputs (:mod:`~fp8conv.verification.golden`).
        load_outputs: Compare against such a file instead of running the FP8 reference (checked against the
            model before converting, against the inputs before verifying).
        providers: onnxruntime execution providers of the candidate's verification runs (``"A,B"`` or a list;
            default the CPU provider); the reference and the integer-kernel audit stay on the CPU provider.
        verify: Verify at all (False: convert, write and audit only; the integer-kernel gate still applies).
        skip_reason: The reason recorded when ``verify`` is False.
        gates: Thresholds (:class:`~fp8conv.Gates` or a mapping in config-file form); None for the defaults.
        optimization_level: onnxruntime level the candidate is verified at (``all``, ``layout``, ``extended``,
            ``basic``, ``disable``).
        per_layer: Compare intermediate tensors matched by name.
        task: ``classification``, ``embedding`` or ``regression`` for every output (None: inferred per output);
            top-1 and accuracy gates apply only to classification outputs.
        audit: Audit the written model's integer kernels (at ``all``) for the conversion record.
        external_data: Save weights as external data (None: when the model is larger than 1 GiB).
        config: Full conversion configuration (``to`` and ``options`` override its fields).
        progress: Show progress bars.
        **options: The conversion options (as :func:`~fp8conv.convert`).

    Returns:
        The conversion and its verification.

    Raises:
        Fp8ConvError: Bad model, data, options (an unknown keyword, a bad value, a contradiction: one line
            naming the option), gates or output path (nothing is written then, nor left written when
            verification finds the problem).
        InternalError: The converted model violates a postcondition or fails ``onnx.checker``.
    """
    level = normalize_level(optimization_level)
    keywords = {
        "to": to,
        "data": data,
        "output": output,
        "verify_data": verify_data,
        "random_inputs": random_inputs,
        "seed": seed,
        "val_range": val_range,
        "input_shapes": input_shapes,
        "save_outputs": save_outputs,
        "load_outputs": load_outputs,
        "providers": providers,
        "verify": verify,
        "gates": gates,
        "optimization_level": level,
        "per_layer": per_layer,
        "task": task,
        "audit": audit,
        "external_data": external_data,
    }
    config, settings = checked_call("convert_and_verify", {**keywords, **options}, config)
    gates = Gates.coerce(gates)
    source = Path(model) if isinstance(model, (str, os.PathLike)) else None
    target = config.target
    destination = output_path(model, output, target)
    verify_on = verify_data if verify_data is not None else (data if random_inputs is None else None)
    if not verify:
        reason: str | None = skip_reason
    elif verify_on is None and random_inputs is None:
        reason = NO_DATA_REASON
    else:
        reason = None

    random = {"seed": seed, "val_range": val_range, "input_shapes": input_shapes}
    golden = golden_paths(settings["save_outputs"], settings["load_outputs"])
    golden.refuse_overwriting({"model": source, "output": destination})
    if verify:
        check_providers(settings["providers"])  # type: ignore[arg-type]
    started = time.perf_counter()
    parsed, unreadable = _parse(model)
    loading = time.perf_counter() - started
    check_before_writing(
        parsed.proto if parsed is not None else None,
        output=destination,
        verify_data=verify_on if verify and isinstance(verify_on, (str, os.PathLike)) else None,
        random_inputs=random_inputs if verify else None,
        random=random,
        gates=gates if verify else None,
        golden_output=golden.save,
    )
    if source is not None and destination.resolve() == source.resolve():
        raise Fp8ConvError(f"{destination}: the output would overwrite the input model")
    if unreadable is not None:
        raise unreadable
    assert parsed is not None
    from fp8conv.converter import pipeline  # looked up when called (tests replace pipeline.convert)

    started = time.perf_counter()
    loaded = load(parsed)
    loading += time.perf_counter() - started
    if reason is None:
        golden.check_reference(loaded)  # a file of another model is refused before converting
    if data is not None and not isinstance(data, (str, os.PathLike)):  # arrays or a reader: read once, used twice
        data = pipeline.open_calibration_samples(data, loaded.model, loaded.constant_inputs)
        if verify_data is None and random_inputs is None:
            verify_on = data

    result = pipeline.convert(loaded, target, data, config=config, progress=progress)
    result.seconds += loading  # convert() timed the clone of the loaded model as its "load"
    result.stage_seconds["load"] = result.stage_seconds.get("load", 0.0) + loading
    written = pipeline.write_converted(
        result, destination, audit=audit, external_data=external_data, before_writing=_check_converted
    )
    if reason is not None:
        return VerifiedConversion(result, not_verified(source, destination, reason, conversion=result, gates=gates))
    try:
        if written is not None:
            candidate = _written_candidate(result, written, destination, level)
        else:
            candidate = read_candidate(destination)  # external data: the .onnx file, its weights left on disk
        del written  # the candidate holds the bytes; the protobuf served the audits
        verification = verify_candidate(
            loaded,
            candidate,
            None if random_inputs is not None else verify_on,
            gates=gates,
            optimization_level=level,
            per_layer=per_layer,
            random_inputs=random_inputs,
            **random,
            save_outputs=golden.save,
            load_outputs=golden.load,
            providers=settings["providers"],  # type: ignore[arg-type]
            conversion=result,
            progress=progress,
            task=task,
        )
    except Exception:  # bad verification data found only now (exit 2) or a bug (exit 3): nothing is left written
        pipeline.remove_written_model(destination)
        raise
    return VerifiedConversion(result, verification)


def output_path(model: ModelInput, output: str | os.PathLike | None, target: Target) -> Path:
    """Where :func:`convert_and_verify` writes: ``output``, else ``<stem>.<target>.onnx`` beside a model file.

    Raises:
        Fp8ConvError: An in-memory model without ``output``.
    """
    if output is not None:
        return Path(output)
    if isinstance(model, (str, os.PathLike)):
        return default_output_path(Path(model), target)
    raise Fp8ConvError("an in-memory model needs an output path (output=...)")


def _parse(model: ModelInput) -> tuple[ParsedModel | None, ModelLoadError | None]:
    """The parsed model, or the loader's error (raised after the checks that do not need the model)."""
    try:
        return parse_model(model), None
    except ModelLoadError as error:
        return None, error


def _check_converted(serialized: bytes) -> None:
    """``onnx.checker`` on the converted model's bytes; a failure is fp8conv's bug (nothing is written)."""
    try:
        onnx.checker.check_model(serialized)
    except onnx.checker.ValidationError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InternalError(f"the converted model fails onnx.checker: {first_line}") from error


def _written_candidate(result: ConversionResult, written: SerializedModel, destination: Path, level: str) -> Candidate:
    """The candidate of the bytes just written, with the integer-kernel audit at the verification level.

    That audit is made here, while the protobuf exists, unless the conversion's audit is at that level; a
    failure is kept for verification to report.
    """
    audits: dict[str, KernelAudit | Fp8ConvError] = {}
    if result.audit is not None:
        audits[result.audit.optimization_level] = result.audit
    if level not in audits:
        try:
            audits[level] = audit_integer_kernels(result.model, serialized=written.serialized, optimization_level=level)
        except Fp8ConvError as error:
            audits[level] = error
    return Candidate(model=named_as_read(result.model), serialized=written.serialized, path=destination, audits=audits)
