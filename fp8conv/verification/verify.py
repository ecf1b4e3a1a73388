"""``fp8conv.verify``: does the candidate still compute what the reference computes, and where does it depart?

Three executions run batch by batch over the same inputs:

* **reference**: the reference model brought to canonical form by :func:`fp8conv.load` and executed by
  :class:`~fp8conv.verification.runners.Fp8ReferenceRunner` — exact FP8 numerics at every FP8 quantization
  point; for a model without FP8 points (float or integer QDQ) it is plain onnxruntime with its
  quantization-sensitive rewrites off. Intermediate tensors are captured for the per-layer comparison.
* **deployed candidate**: the candidate on onnxruntime at the deployment optimization level (default
  ``ORT_ENABLE_ALL``; the CPU provider unless ``providers`` names others), graph outputs only — capturing
  intermediates would keep onnxruntime from fusing the QDQ groups into the integer kernels that deployment
  runs.
* **unfused candidate**: the same model at ``ORT_DISABLE_ALL`` — its QDQ graph as written, every Q/DQ
  executed as such — with the same intermediate tensors captured.

Each is a :class:`~fp8conv.verification.runners.Runner` (:mod:`fp8conv.verification.runners`). Golden
outputs (:mod:`fp8conv.verification.golden`) record the reference's results (``save_outputs``) or stand in
for the reference (``load_outputs``: the reference model is read, not run).

Per output: deployed vs reference (the gated error), unfused vs reference (*quantization error*: what
the INT8 QDQ graph computes differently from FP8) and deployed vs unfused (*kernel error*: what fusion and
the integer kernels change, e.g. the u8×s8 saturation of x86 CPUs without VNNI). Per layer: unfused vs
reference for every tensor present in both graphs under the same name (:mod:`fp8conv.verification.matching`).

Memory: statistics are streamed (:mod:`fp8conv.verification.metrics`, one cache-sized block at a time, with no
float64 copy of a tensor); only one batch's tensors exist at a time, so memory does not grow with the number
of samples. It does grow with the captured tensors of one batch: onnxruntime keeps every graph output of a
session allocated until its run ends, whether the run fetches it or not (measured: MiniLM, 16 sentences,
the unfused session with its 259 captures grows by the same 630 MB fetching all of them or none), so
comparing the layers in chunks would need one session per chunk.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from fp8conv.converter.data import LABELS_KEY, SampleSet
from fp8conv.converter.loading import LoadedModel, ModelInput, ParsedModel, load
from fp8conv.errors import Fp8ConvError
from fp8conv.options import Task
from fp8conv.runtime.ort_backend import CPU_PROVIDER, TensorInfo, check_providers, optimization_level
from fp8conv.verification.gates import Gates, evaluate_gates, evaluate_layer_gate
from fp8conv.verification.golden import golden_paths
from fp8conv.verification.inputs import (
    DataInput,
    data_role,
    open_data,
    random_description,
    random_options,
    random_samples,
)
from fp8conv.verification.kernel_gate import evaluate_kernel_gate, kernel_gate_setting
from fp8conv.verification.matching import TensorSite, matched_tensors
from fp8conv.verification.metrics import LabelAccuracy, TopKAgreement, is_classifier
from fp8conv.verification.result import LayerReport, OutputReport, VerificationResult
from fp8conv.verification.runners import (
    Candidate,
    OrtRunner,
    Runner,
    deployed_runner,
    read_candidate,
    unfused_runner,
)
from fp8conv.verification.tasks import infer_task

if TYPE_CHECKING:
    from fp8conv.converter.pipeline import ConversionResult

__all__ = ["DEFAULT_BATCH_SIZE", "normalize_level", "not_verified", "verify"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
"""Samples per run when neither model fixes the batch size."""


def verify(
    reference: ModelInput | ParsedModel | LoadedModel,
    candidate: ModelInput | Candidate,
    data: DataInput | None = None,
    *,
    gates: Gates | Mapping[str, Any] | None = None,
    optimization_level: str = "all",
    per_layer: bool = True,
    random_inputs: int | None = None,
    seed: int = 0,
    val_range: object = (),
    input_shapes: object = (),
    save_outputs: str | os.PathLike | None = None,
    load_outputs: str | os.PathLike | None = None,
    providers: str | Sequence[str] | None = None,
    conversion: ConversionResult | Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    task: str | None = None,
) -> VerificationResult:
    """Compare a candidate model with a reference model and check the accuracy gates.

    Args:
        reference: The reference (FP8 fake-quantized, float or integer model): path, ``onnx.ModelProto``
            or ``onnx_ir.Model``, the :class:`~fp8conv.converter.loading.ParsedModel` of one, or its
            :class:`~fp8conv.LoadedModel` (used as it is: not read again).
        candidate: The model to deploy (typically fp8conv's INT8 QDQ output), same inputs and outputs: what
            :func:`fp8conv.load` accepts, or a :class:`~fp8conv.verification.runners.Candidate`.
        data: Inputs: ``.npz`` file or directory keyed by input name (optional ``labels``), a
            :class:`~fp8conv.converter.data.SampleSet`, or ``{name: array}``. None only with
            ``random_inputs``.
        gates: Thresholds (:class:`~fp8conv.verification.gates.Gates`, or a mapping in config-file form over
            the defaults); None for the defaults.
        optimization_level: onnxruntime level the candidate is deployed at: ``all`` (default),
            ``layout``, ``extended``, ``basic`` or ``disable``.
        per_layer: Compare intermediate tensors matched by name (costs captures in two of the runs).
        random_inputs: Verify on this many random inputs instead of ``data`` (explicit opt-in; the
            report warns that they do not represent the task). Give either ``data`` or this.
        seed: Seed of the random inputs.
        val_range: ``[NAME:]LOW,HIGH`` specs (or a ``(low, high)`` pair): the range of the random inputs.
        input_shapes: ``NAME:D0xD1x...`` specs: the shapes of random inputs with dynamic dimensions.
        save_outputs: Write the reference's outputs (and the tensors the per-layer comparison uses) to this
            ``.npz``, with the SHA-256 of the reference and of the inputs (:mod:`~fp8conv.verification.golden`).
        load_outputs: Compare against the outputs such a file holds instead of running the reference (it must
            be of this reference, these inputs and sample count, and hold the tensors the comparison needs).
        providers: onnxruntime execution providers of the candidate's runs (``"A,B"`` or a list; default the
            CPU provider); the reference and the integer-kernel audit stay on the CPU provider.
        conversion: The :class:`~fp8conv.converter.pipeline.ConversionResult` that produced the
            candidate, to put its decisions (and integer-kernel audit) into the report.
        batch_size: Samples per run (default: the models' static batch size, else 16).
        progress: Show a progress bar on stderr (when stderr is a terminal).
        task: ``classification``, ``embedding`` or ``regression`` for every output; None: inferred per output
            (:mod:`~fp8conv.verification.tasks`). Top-1 and accuracy are measured and gated only for classification.

    Returns:
        The result; ``result.passed`` tells whether every gate passed, ``result.to_json()`` is report.json.

    Raises:
        Fp8ConvError: Unreadable models or data, models with different inputs or outputs, bad gates, golden
            outputs of another reference or other inputs, an unavailable execution provider.
    """
    started = time.perf_counter()
    gates = Gates.coerce(gates)
    level = normalize_level(optimization_level)
    golden = golden_paths(save_outputs, load_outputs)
    from fp8conv.options import option

    requested = check_providers(option("providers").check(providers, "providers"))  # type: ignore[arg-type]
    if data is None and random_inputs is None:
        raise Fp8ConvError("verification needs data (--data) or explicitly requested random inputs (--random-inputs N)")
    if data is not None and random_inputs is not None:
        raise Fp8ConvError("give verification data or random inputs, not both")
    loaded = reference if isinstance(reference, LoadedModel) else load(reference)
    candidate = candidate if isinstance(candidate, Candidate) else read_candidate(candidate)
    golden.refuse_overwriting(
        {"reference": loaded.source.path, "candidate": candidate.path, "data": data, "load_outputs": golden.load}
    )
    sites = matched_tensors(loaded.model, candidate.model) if per_layer else []
    captures = [site.name for site in sites]
    runner = golden.reference_runner(loaded, captures)
    deployed = deployed_runner(candidate, level, requested)
    unfused = unfused_runner(candidate, captures, requested)
    inputs = list(deployed.inputs)
    _check_inputs(runner.input_names, inputs)
    warnings: list[str] = []
    reference_outputs = [value.name or "" for value in loaded.model.graph.outputs]
    pairs = _pair_outputs(reference_outputs, [info.name for info in deployed.outputs], warnings)
    random = random_options(seed, val_range, input_shapes)
    if random_inputs is not None:
        samples = random_samples(inputs, random_inputs, **random)
        drawn = "uniform in --val-range" if random["val_range"] else "standard normal floats"
        warnings.append(
            f"verified on {random_inputs} random inputs ({drawn}, seed {random['seed']}), not on real data: random "
            "inputs exercise every kernel but do not represent the task; SQNR and top-1 agreement on real data "
            "can differ in either direction"
        )
    else:
        samples = open_data(data, inputs, constants=loaded.constant_inputs)  # type: ignore[arg-type]
    size = _batch_size(batch_size, runner.static_batch_size, inputs)
    if per_layer and not sites:
        warnings.append("no intermediate tensor has the same name in both models: no per-layer comparison")

    deployed_names = [cand for _, cand in pairs]
    run = _Run(runner, deployed.fetching(deployed_names), unfused.fetching([*deployed_names, *captures]), pairs, sites)
    golden.check_inputs(samples, size, run.static_size(size))
    run.task, run.has_labels = task, samples.has_labels
    run.consume(samples, size, progress)
    if run.samples == 0:
        raise Fp8ConvError(f"{samples.source}: no complete batch of {size} samples to verify on")
    if run.dropped:
        warnings.append(
            f"{run.dropped} trailing samples were not verified: the models need batches of exactly {size} samples"
        )
    has_labels = samples.has_labels
    if has_labels and not any(output.accuracy for output in run.outputs):
        warnings.append("the data has labels but no output is a classifier output ([N, C]): accuracy not measured")
    layers = run.compared_layers()
    layer_threshold = gates.layer_threshold
    _rank_layers(layers, layer_threshold)
    conversion_json = _conversion_json(conversion)
    role = data_role(samples.source, random_inputs is not None, conversion_json)
    if random_inputs is not None:
        role = {**role, **random_description(**random)}
    if role["warning"]:
        warnings.append(role["warning"])
    if conversion_json is not None:
        _annotate_layers(layers, {site.name: site for site in sites}, conversion_json)
    kernels = _kernels(candidate, level, conversion, warnings)
    kernel_gate = evaluate_kernel_gate(gates.kernels, kernels, conversion_json)
    golden_record = golden.finish(runner, per_layer)
    result = VerificationResult(
        verified=True,
        reference=_reference_info(loaded, golden_record),
        candidate={"path": str(candidate.path) if candidate.path is not None else None, "optimization_level": level},
        data={
            "source": samples.source,
            "samples": run.samples,
            "batch_size": size,
            "random": random_inputs is not None,
            "labels": has_labels,
            "dropped_samples": run.dropped,
        },
        outputs=run.outputs,
        layers=layers,
        skipped_layers=[{"tensor": name, "reason": reason} for name, reason in run.skipped.items()],
        layer_threshold_db=layer_threshold,
        gates=[
            *evaluate_gates(gates, run.outputs, has_labels=has_labels),
            *filter(None, (evaluate_layer_gate(gates, layers), kernel_gate)),
        ],
        gate_settings=gates.to_json() | kernel_gate_setting(kernel_gate),
        kernels=kernels,
        conversion=conversion_json,
        warnings=warnings,
        verification_data=role,
        golden_outputs=golden_record,
        execution_providers=_providers(requested, deployed),
    )
    result.seconds = time.perf_counter() - started
    logger.info("verification: %s in %.1f s", "passed" if result.passed else "FAILED", result.seconds)
    return result


def not_verified(
    reference: str | os.PathLike | None,
    candidate: str | os.PathLike | None,
    reason: str,
    *,
    conversion: ConversionResult | Mapping[str, Any] | None = None,
    gates: Gates | None = None,
) -> VerificationResult:
    """A result that records why verification was skipped (reports still carry the conversion record).

    Args:
        reference: The reference path, if any.
        candidate: The candidate path, if any.
        reason: Why nothing was verified (the first entry of ``warnings``).
        conversion: The conversion result, for its decisions and kernel audit.
        gates: The gates that would have applied.

    Returns:
        A result with ``verified`` False and the reason as the first warning; its only gate is the
        integer-kernel gate (:mod:`~fp8conv.verification.kernel_gate`) on the conversion's audit, so ``passed`` is
        False only when that fails.
    """
    conversion_json = _conversion_json(conversion)
    audit = getattr(conversion, "audit", None)
    kernels = audit.to_json() if audit is not None else None
    gates = gates or Gates.default()
    kernel_gate = evaluate_kernel_gate(gates.kernels, kernels, conversion_json)
    return VerificationResult(
        verified=False,
        reference={"path": str(reference) if reference else None, "dialects": [], "quant_points": None},
        candidate={"path": str(candidate) if candidate else None, "optimization_level": None},
        data=None,
        gates=[kernel_gate] if kernel_gate else [],
        gate_settings=gates.to_json() | kernel_gate_setting(kernel_gate),
        kernels=kernels,
        conversion=conversion_json,
        warnings=[reason],
    )


class _Run:
    """The batch loop: three executions per batch, statistics accumulated and the batch dropped.

    ``deployed`` returns the candidate names of ``pairs``; ``unfused`` those and every site's tensor.
    """

    def __init__(
        self,
        runner: Runner,
        deployed: Runner,
        unfused: Runner,
        pairs: Sequence[tuple[str, str]],
        sites: Sequence[TensorSite],
    ) -> None:
        self.runner, self.deployed, self.unfused = runner, deployed, unfused
        self.pairs = pairs
        self.outputs: list[OutputReport] = []
        self.layers = [LayerReport(index, site.name, site.node, site.op_type) for index, site in enumerate(sites)]
        self.skipped: dict[str, str] = {}
        self.integer: set[str] = set()
        self.samples = 0
        self.dropped = 0
        self.task: str | None = None  # --task; None: inferred per output
        self.has_labels = False

    def static_size(self, size: int) -> int | None:
        """The batch size every run needs (``size``, when a model fixes it), else None: other batches are dropped."""
        return size if self.runner.static_batch_size or self.deployed.static_batch_size else None

    def consume(self, samples: SampleSet, size: int, progress: bool) -> None:
        static = self.static_size(size)
        total = math.ceil(samples.num_samples / size)
        with tqdm(total=total, unit="batch", desc="verify", disable=None if progress else True, leave=False) as bar:
            for feeds in samples.batches(size):
                labels = feeds.pop(LABELS_KEY, None)
                count = len(next(iter(feeds.values())))
                if static is not None and count != static:
                    self.dropped += count
                else:
                    self._batch(feeds, labels, count)
                bar.update(1)

    def _batch(self, feeds: dict[str, np.ndarray], labels: np.ndarray | None, count: int) -> None:
        reference = self.runner.run(feeds)
        deployed = self.deployed.run(feeds)
        unfused = self.unfused.run(feeds)
        if not self.outputs:
            self.outputs = [
                self._new_output(name, reference[name], deployed[cand], count, self.task, self.has_labels)
                for name, cand in self.pairs
            ]
        for output, (name, cand) in zip(self.outputs, self.pairs, strict=True):
            ref, dep, raw = reference[name], deployed[cand], unfused[cand]
            if ref.shape != dep.shape or ref.shape != raw.shape:
                raise Fp8ConvError(
                    f"output {name!r}: the reference gives shape {list(ref.shape)}, the candidate {list(dep.shape)}"
                )
            output.total.update(ref, dep)
            output.quantization.update(ref, raw)
            output.kernel.update(raw, dep)
            if output.topk is not None:
                output.topk.update(ref, dep)
            if output.accuracy is not None and labels is not None:
                output.accuracy.update(labels, ref, dep)
        for layer in self.layers:
            if layer.tensor in self.skipped or layer.tensor in self.integer:
                continue
            ref, raw = reference[layer.tensor], unfused[layer.tensor]
            if not np.issubdtype(ref.dtype, np.floating) and not np.issubdtype(raw.dtype, np.floating):
                self.integer.add(layer.tensor)  # integer codes in both graphs (type unknown before the run)
                continue
            reason = _incomparable(ref, raw)
            if reason:
                self.skipped[layer.tensor] = reason
            else:
                layer.stats.update(ref, raw)
        self.samples += count

    def compared_layers(self) -> list[LayerReport]:
        """The layers that were compared, re-indexed in graph order."""
        kept = [layer for layer in self.layers if layer.tensor not in self.skipped and layer.tensor not in self.integer]
        for index, layer in enumerate(kept):
            layer.index = index
        return kept

    @staticmethod
    def _new_output(
        name: str, reference: np.ndarray, candidate: np.ndarray, count: int, declared: str | None, has_labels: bool
    ) -> OutputReport:
        task, reason = infer_task(name, reference, candidate, count, declared=declared, has_labels=has_labels)
        output = OutputReport(name, tuple(reference.shape), str(reference.dtype), task=task.value, task_reason=reason)
        if task is Task.CLASSIFICATION and is_classifier(reference, count) and is_classifier(candidate, count):
            output.topk = TopKAgreement()
            output.accuracy = LabelAccuracy()
        return output


def _incomparable(reference: np.ndarray, candidate: np.ndarray) -> str | None:
    """Why two same-named tensors cannot be compared (None when they can)."""
    if reference.shape != candidate.shape:
        return f"shapes differ: reference {list(reference.shape)}, candidate {list(candidate.shape)}"
    if reference.dtype != candidate.dtype and not (
        np.issubdtype(reference.dtype, np.floating) and np.issubdtype(candidate.dtype, np.floating)
    ):
        return f"types differ: reference {reference.dtype}, candidate {candidate.dtype}"
    return None


def normalize_level(level: str) -> str:
    """The key of :data:`~fp8conv.runtime.ort_backend.OPTIMIZATION_LEVELS` an optimization level names.

    The one parser, :func:`~fp8conv.runtime.ort_backend.optimization_level`: the keys (``all``, ``layout``,
    ``extended``, ``basic``, ``disable``), onnxruntime's names (``ORT_ENABLE_ALL``) and their aliases.

    Raises:
        Fp8ConvError: An unknown level.
    """
    return optimization_level(level)


def _batch_size(requested: int | None, reference_static: int | None, inputs: Sequence[TensorInfo]) -> int:
    leading = {info.shape[0] if info.shape else None for info in inputs}
    candidate_static = next(iter(leading)) if len(leading) == 1 else None
    candidate_static = candidate_static if isinstance(candidate_static, int) and candidate_static > 0 else None
    statics = {size for size in (reference_static, candidate_static) if size}
    if len(statics) > 1:
        raise Fp8ConvError(f"the models have different static batch sizes: {sorted(statics)}")
    if statics:
        (static,) = statics
        if requested is not None and requested != static:
            raise Fp8ConvError(f"batch size {requested} requested, but the models need batches of {static}")
        return static
    if requested is not None and requested < 1:
        raise Fp8ConvError(f"batch size must be >= 1, got {requested}")
    return requested or DEFAULT_BATCH_SIZE


def _check_inputs(reference: Sequence[str], candidate: Sequence[TensorInfo]) -> None:
    names = {info.name for info in candidate}
    if set(reference) != names:
        raise Fp8ConvError(
            f"the models have different inputs: reference {', '.join(reference)}; candidate {', '.join(sorted(names))}"
        )


def _pair_outputs(reference: list[str], candidate: list[str], warnings: list[str]) -> list[tuple[str, str]]:
    """(reference name, candidate name) per compared output: by name, else by position."""
    common = [name for name in reference if name in candidate]
    if len(common) == len(reference) == len(candidate):
        return [(name, name) for name in common]
    if not common and len(reference) == len(candidate):
        warnings.append(
            "no output names in common: outputs matched by position ("
            + ", ".join(f"{r} ↔ {c}" for r, c in zip(reference, candidate, strict=True))
            + ")"
        )
        return list(zip(reference, candidate, strict=True))
    if not common:
        raise Fp8ConvError(
            f"the models have no outputs in common: reference {', '.join(reference)}; candidate {', '.join(candidate)}"
        )
    unmatched = sorted((set(reference) | set(candidate)) - set(common))
    warnings.append(f"outputs present in only one model are not compared: {', '.join(unmatched)}")
    return [(name, name) for name in common]


def _rank_layers(layers: list[LayerReport], threshold: float | None) -> None:
    for rank, layer in enumerate(sorted(layers, key=lambda item: (item.stats.sqnr_db, item.index)), start=1):
        layer.rank = rank
    if threshold is None:
        return
    for layer in layers:
        layer.below_threshold = layer.stats.sqnr_db < threshold
    first = next((layer for layer in layers if layer.below_threshold), None)
    if first is not None:
        first.first_below_threshold = True


def _conversion_json(conversion: ConversionResult | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if conversion is None:
        return None
    if isinstance(conversion, Mapping):
        return dict(conversion)
    return conversion.to_json()


def _annotate_layers(layers: list[LayerReport], sites: Mapping[str, TensorSite], conversion: Mapping[str, Any]) -> None:
    """Attach the conversion's activation and weight records to each layer (for range plots)."""
    activations: dict[str, dict[str, Any]] = {}
    for record in conversion.get("activations") or []:
        for tensor in record.get("tensors", []):
            activations[tensor] = record
    weights = {record["node"]: record for record in conversion.get("layers") or [] if "node" in record}
    fields = ("dtype", "method", "low", "high", "scale", "zero_point")
    for layer in layers:
        site = sites[layer.tensor]
        record = activations.get(site.name) or (activations.get(site.quantizes) if site.quantizes else None)
        if record is not None:
            layer.activation = {key: record.get(key) for key in fields}
        weight = weights.get(site.node)
        if weight is not None:
            layer.weight = {
                key: weight.get(key)
                for key in ("node", "op_type", "precision", "weight_range", "weight_bits", "reason")
            }


def _kernels(
    candidate: Candidate, level: str, conversion: ConversionResult | Mapping[str, Any] | None, warnings: list[str]
) -> dict[str, Any] | None:
    audit = getattr(conversion, "audit", None)
    if audit is not None and getattr(audit, "optimization_level", None) == level:
        return audit.to_json()
    if not candidate.auditable:
        warnings.append("integer-kernel audit skipped: the candidate's model was not kept for it")
        return None
    try:
        return candidate.kernel_audit(level).to_json()
    except Fp8ConvError as error:
        warnings.append(f"integer-kernel audit failed: {error}")
        return None


def _reference_info(loaded: LoadedModel, golden: Mapping[str, Any] | None = None) -> dict[str, Any]:
    points = len(loaded.quant_points)
    numerics = "exact FP8 reference execution" if points else "onnxruntime (no FP8 quantization points)"
    if golden is not None and golden["mode"] == "loaded":
        numerics = f"golden outputs loaded from {golden['path']} (not run; saved from: {numerics})"
    return {
        "path": str(loaded.source.path) if loaded.source.path is not None else None,
        "dialects": list(loaded.dialects),
        "quant_points": points,
        "numerics": numerics,
    }


def _providers(requested: Sequence[str], deployed: Runner) -> dict[str, Any]:
    """report.json's ``provenance.execution_providers``: the candidate's, as asked and as its session has them."""
    session = deployed.session.get_providers() if isinstance(deployed, OrtRunner) else list(requested)
    return {
        "candidate": list(requested),
        "candidate_session": list(session),
        "reference": [CPU_PROVIDER],
        "audit": [CPU_PROVIDER],
    }
