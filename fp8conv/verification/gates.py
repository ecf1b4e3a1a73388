"""Accuracy gates: thresholds on the verification metrics that decide pass or fail (exit code 1).

Five gates, each set globally or per output (``name:value``; ``off`` disables a gate), from the Python
API, a config file's ``gates`` table or the CLI (later sources override earlier ones per output):

===================  ===========================  =======  ============================================
gate                 metric (per output)          default  why this default
===================  ===========================  =======  ============================================
``min_sqnr``         SQNR dB of the deployed      20 dB    ‖error‖ ≤ 10 % of ‖reference‖. One INT8 or
                     candidate vs the reference            FP8 quantizer alone gives ~30-40 dB on
                                                           Gaussian-like tensors; errors accumulate
                                                           over depth, and good INT8 CNNs land at
                                                           20-30 dB on their logits. Below 20 dB the
                                                           output has visibly changed.
``min_cosine``       cosine similarity            0.99     Scale-free direction check (≈ 17 dB of
                                                           SQNR). Catches sign/permutation damage
                                                           that a loose SQNR gate might let by; note it
                                                           is blind to a pure scale error (weights
                                                           ×1.5 keep cosine 1; SQNR catches it).
``max_top1_drop``    top-1 disagreement, pp       2 pp     Classifier outputs only. Good INT8 models
                     ``100·(1 − top1_agreement)``          flip 0.5-2 % of predictions (flips in both
                                                           directions, so ~2-3× their accuracy drop).
``max_accuracy_drop``  top-1 accuracy drop vs the  1 pp     Only with labels. MLPerf's INT8 quality
                     labels, pp                            target is 99 % of the reference accuracy
                                                           (0.76 pp for ResNet-50).
``max_abs_err``      max absolute error           off      Depends on the output's units; set it per
                                                           output when an absolute bound matters.
===================  ===========================  =======  ============================================

These are not Polygraphy's element-wise ``atol``/``rtol`` tolerances: a quantized model differs from its
reference in nearly every element, so element-wise bounds either fail good models or must be set so
loose they catch nothing. SQNR and cosine are energy ratios over the whole output, and the task-level
gates look at predictions.

Rate gates (top-1 drop, accuracy drop) are judged with sampling noise in mind: the gate fails when the
one-sided 95 % Wilson lower confidence bound of the rate exceeds the threshold (the reported value is the
observed rate). With 32 samples one flipped prediction (3.1 % observed, bound 0.6 %) passes a 2 pp gate;
two or more fail it; with thousands of samples the bound is within a fraction of a point of the observed
rate.

Per-layer SQNR (every intermediate tensor matched by name, the unfused QDQ graph vs the reference) is a
diagnostic: it shows where the candidate departs from the reference, and fails nothing by default (a
healthy INT8 network has layers below 20 dB whose error the next layers average out). ``min_layer_sqnr``
(default off; one value for every layer) makes it a gate: the lowest layer SQNR must reach it, and only
then are layers below it marked as failures.

Independently of these, a ``nonfinite`` gate always fails an output where the candidate produces NaN or
Inf at a position where the reference does not (or vice versa).

One more gate is about the model, not an output: ``min_integer_kernels`` (:mod:`fp8conv.verification.kernel_gate`),
the number of layers onnxruntime runs on integer kernels. Default: every layer the conversion plans on an
integer kernel (only when the candidate was converted in the same run); a number overrides it; ``off``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fp8conv.errors import Fp8ConvError
from fp8conv.options import GATE_OPTIONS, Settings

if TYPE_CHECKING:  # imported where the gates are evaluated: the CLI reads the defaults without NumPy
    from fp8conv.verification.result import GateResult, LayerReport, OutputReport

__all__ = [
    "DEFAULT_THRESHOLDS",
    "GATE_NAMES",
    "KERNEL_GATE",
    "LAYER_GATE",
    "RATE_GATE_HELP",
    "Gates",
    "KernelThreshold",
    "evaluate_gates",
    "evaluate_layer_gate",
]

logger = logging.getLogger(__name__)

GATE_NAMES: tuple[str, ...] = ("min_sqnr", "min_cosine", "max_top1_drop", "max_accuracy_drop", "max_abs_err")
"""The configurable gates, in report order."""

LAYER_GATE = "min_layer_sqnr"
"""The per-layer SQNR gate (one value for every compared layer; default off: layer numbers are diagnostics)."""

DEFAULT_THRESHOLDS: Mapping[str, float | None] = {
    "min_sqnr": 20.0,
    "min_cosine": 0.99,
    "max_top1_drop": 2.0,
    "max_accuracy_drop": 1.0,
    "max_abs_err": None,
    LAYER_GATE: None,
}
"""Global defaults (None: off). See the module docstring for the reasoning."""

KERNEL_GATE = "min_integer_kernels"
"""The integer-kernel coverage gate (one value for the model, not per output)."""

RATE_GATE_HELP = (
    "Judged with sampling noise in mind: the gate fails when the one-sided 95 % Wilson lower bound of the rate "
    "exceeds the threshold (the report shows the observed rate and the bound), so with 32 samples one changed "
    "prediction (3.1 % observed, bound 0.6 %) passes a 2 pp gate and two fail it."
)
"""How the rate gates (``max_top1_drop``, ``max_accuracy_drop``) decide, for their ``--help``."""

_PLANNED = frozenset({"plan", "planned", "default"})

_METRIC = {
    "min_sqnr": "sqnr_db",
    "min_cosine": "cosine",
    "max_top1_drop": "top1_drop_pp",
    "max_accuracy_drop": "accuracy_drop_pp",
    "max_abs_err": "max_abs_err",
    "nonfinite": "nonfinite_mismatch",
}
_OFF = frozenset({"off", "none", "null", "disable", "disabled"})
_GLOBAL_KEYS = frozenset({"*", "default", "all"})


@dataclasses.dataclass(frozen=True)
class _Setting:
    value: float | None
    source: str


@dataclasses.dataclass(frozen=True)
class KernelThreshold:
    """The ``min_integer_kernels`` setting.

    Attributes:
        minimum: The required number of integer kernels; None: every layer the conversion plans on one.
        enabled: False when the gate is off.
        source: Where the setting came from: ``default``, ``config``, ``cli`` or ``api``.
    """

    minimum: int | None = None
    enabled: bool = True
    source: str = "default"

    @classmethod
    def parse(cls, spec: str | float, source: str) -> KernelThreshold:
        """``"off"``, ``"plan"`` (the default) or a whole number >= 0.

        Raises:
            Fp8ConvError: A per-output spec or a value that is none of these.
        """
        text = str(spec).strip().lower()
        if text in _OFF or text == "false":  # YAML reads a bare off as false
            return cls(None, False, source)
        if text in _PLANNED:
            return cls(None, True, source)
        if ":" in text:
            raise Fp8ConvError(f"gate {KERNEL_GATE} is one number for the model, not per output: {spec!r}")
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise Fp8ConvError(f"gate {KERNEL_GATE}: {spec!r} is not a whole number >= 0, 'plan' or 'off'")
        return cls(int(value), True, source)


@dataclasses.dataclass(frozen=True)
class Gates:
    """Gate thresholds: per gate, a global value and per-output values (None = off).

    Build with :meth:`default`, then layer :meth:`with_mapping` (config file / API dict) and
    :meth:`with_specs` (CLI strings) on top; each overrides the same (gate, output) key only.

    Attributes:
        settings: ``{gate: {output or None: setting}}``; ``None`` is the global key.
        kernels: The ``min_integer_kernels`` setting.
    """

    settings: Mapping[str, Mapping[str | None, _Setting]]
    kernels: KernelThreshold = KernelThreshold()

    @classmethod
    def default(cls) -> Gates:
        """The documented defaults (:data:`DEFAULT_THRESHOLDS`)."""
        return cls({name: {None: _Setting(DEFAULT_THRESHOLDS[name], "default")} for name in (*GATE_NAMES, LAYER_GATE)})

    @classmethod
    def coerce(cls, gates: Gates | Mapping[str, Any] | None) -> Gates:
        """Gates from None (defaults), a :class:`Gates`, or a mapping in config-file form (over defaults)."""
        if gates is None:
            return cls.default()
        if isinstance(gates, Gates):
            return gates
        if isinstance(gates, Mapping):
            return cls.default().with_mapping(gates, source="api")
        raise Fp8ConvError(f"gates must be a Gates object or a mapping, not {type(gates).__name__}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Gates:
        """The gates of a command's settings: defaults, then the config file's, then the command line's.

        Each source's setting is layered in order (:meth:`with_mapping` for a config file's ``gates`` table
        and gate keys, :meth:`with_specs` for the gate flags), so each overrides the (gate, output) keys it
        names only: ``--min-sqnr logits:25`` keeps the file's global ``min_sqnr``.

        Raises:
            Fp8ConvError: A bad gate or value, naming the config file and line where it comes from one.
        """
        gates = cls.default()
        for name in ("gates", *GATE_OPTIONS):
            for setting in settings.every(name):
                try:
                    if setting.source == "cli":
                        specs = setting.value if isinstance(setting.value, tuple) else (setting.value,)
                        gates = gates.with_specs(name, specs, source="cli")
                    else:
                        table = setting.value if name == "gates" else {name: setting.value}
                        gates = gates.with_mapping(table, source="config")  # type: ignore[arg-type]
                except Fp8ConvError as error:
                    raise Fp8ConvError(f"{setting.origin}: {error}" if setting.origin else str(error)) from error
        return gates

    def with_specs(self, name: str, specs: Iterable[str | float], *, source: str = "cli") -> Gates:
        """Override one gate with CLI-style specs: ``"20"`` (global), ``"logits:25"``, ``"off"``, ``"x:off"``.

        The output name is everything before the last ``:`` (names such as ``out:0`` work: ``out:0:25``).

        Raises:
            Fp8ConvError: Unknown gate, or a value that is not a number (or ``off``) in range.
        """
        name = _gate_name(name)
        if name == KERNEL_GATE:
            kernels = self.kernels
            for spec in specs:
                kernels = KernelThreshold.parse(spec, source)
            return dataclasses.replace(self, kernels=kernels)
        updated = dict(self.settings.get(name, {}))
        for spec in specs:
            output, value = _parse_spec(name, spec)
            updated[output] = _Setting(value, source)
        return dataclasses.replace(self, settings={**self.settings, name: updated})

    def with_mapping(self, mapping: Mapping[str, Any], *, source: str = "config") -> Gates:
        """Override gates from a config ``gates`` table or API dict.

        Each key is a gate name (``min_sqnr`` or ``min-sqnr``); each value a number or ``"off"``
        (global), a table ``{output: value}`` (``"*"`` = global), or a list of CLI-style specs.

        Raises:
            Fp8ConvError: Unknown gate names (the valid ones are listed) or bad values.
        """
        if not isinstance(mapping, Mapping):
            raise Fp8ConvError(f"gates: expected a table of gate thresholds, got {type(mapping).__name__}")
        gates = self
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                specs = [
                    _join(None if str(output) in _GLOBAL_KEYS else str(output), threshold)
                    for output, threshold in value.items()
                ]
            elif isinstance(value, (list, tuple)):
                specs = list(value)
            else:
                specs = [_join(None, value)]
            gates = gates.with_specs(str(key), specs, source=source)
        return gates

    def threshold(self, name: str, output: str) -> _Setting:
        """The setting that applies to ``output``: its own, else the global one."""
        table = self.settings.get(name, {})
        return table.get(output, table.get(None, _Setting(None, "default")))

    def per_output_names(self) -> set[str]:
        """Every output named in a per-output setting."""
        return {output for table in self.settings.values() for output in table if output is not None}

    def global_threshold(self, name: str) -> float | None:
        """The global value of a gate (None when off)."""
        return self.settings.get(name, {}).get(None, _Setting(None, "default")).value

    @property
    def layer_threshold(self) -> float | None:
        """The ``min_layer_sqnr`` gate's value (None: off, layer numbers are diagnostics)."""
        return self.global_threshold(LAYER_GATE)

    def to_json(self) -> dict[str, Any]:
        """``{gate: {"global": value, "outputs": {name: value}}}`` (None = off)."""
        return {
            name: {
                "global": self.global_threshold(name),
                "outputs": {k: s.value for k, s in self.settings.get(name, {}).items() if k is not None},
            }
            for name in (*GATE_NAMES, LAYER_GATE)
        }


def _gate_name(name: str) -> str:
    normalized = name.strip().lstrip("-").replace("-", "_")
    valid = (*GATE_NAMES, LAYER_GATE, KERNEL_GATE)
    if normalized not in valid:
        raise Fp8ConvError(f"unknown gate {name!r}; valid gates: {', '.join(valid)}")
    return normalized


def _join(output: str | None, value: object) -> str:
    text = "off" if value is None else str(value)
    return text if output is None else f"{output}:{text}"


def _parse_spec(name: str, spec: str | float) -> tuple[str | None, float | None]:
    text = str(spec).strip()
    output: str | None = None
    if ":" in text:
        output, text = (part.strip() for part in text.rsplit(":", 1))
        if not output:
            raise Fp8ConvError(f"gate {name}: empty output name in {spec!r} (use NAME:VALUE)")
        if name == LAYER_GATE:
            raise Fp8ConvError(f"gate {name} is one value for every layer, not per output or tensor: {spec!r}")
    if text.lower() in _OFF:
        return output, None
    try:
        value = float(text)
    except ValueError:
        raise Fp8ConvError(
            f"gate {name}: {spec!r} is not a number, NAME:NUMBER or 'off' (e.g. 20 or logits:25)"
        ) from None
    if not math.isfinite(value):
        raise Fp8ConvError(f"gate {name}: threshold must be finite, got {spec!r}")
    if name == "min_cosine" and not -1.0 <= value <= 1.0:
        raise Fp8ConvError(f"gate {name}: cosine threshold must be in [-1, 1], got {value:g}")
    if name == "max_abs_err" and value < 0.0:
        raise Fp8ConvError(f"gate {name}: threshold must be >= 0, got {value:g}")
    return output, value


def evaluate_gates(gates: Gates, outputs: list[OutputReport], *, has_labels: bool) -> list[GateResult]:
    """Check every gate on every output it applies to.

    Gates apply to outputs as follows: SQNR, cosine and max abs error to every output; top-1 drop to
    classifier outputs; accuracy drop to classifier outputs with labels. A gate set explicitly (not a
    default) that applies to no output gives one failed row saying why, so a requested check is never
    silently skipped.

    Args:
        gates: The thresholds.
        outputs: The per-output results.
        has_labels: Whether the data had labels.

    Returns:
        The results, gate by gate, output by output, then one ``nonfinite`` row per output.

    Raises:
        Fp8ConvError: A per-output threshold names an output the models do not have, or a rate gate is set
            for a specific output that is not a classifier output.
    """
    names = {output.name for output in outputs}
    unknown = sorted(gates.per_output_names() - names)
    if unknown:
        raise Fp8ConvError(
            f"gates name output(s) {', '.join(unknown)} that the models do not have; "
            f"outputs: {', '.join(sorted(names))}"
        )
    from fp8conv.verification.result import GateResult

    by_name = {output.name: output for output in outputs}
    for name in ("max_top1_drop", "max_accuracy_drop"):
        for output_name, setting in gates.settings.get(name, {}).items():
            if output_name is not None and setting.value is not None and by_name[output_name].topk is None:
                raise Fp8ConvError(
                    f"gate {name} is set for output {output_name!r}, which is not a classifier output "
                    "([N, C] with C >= 2)"
                )
    results: list[GateResult] = []
    for name in GATE_NAMES:
        applied = False
        explicit = False
        for output in outputs:
            setting = gates.threshold(name, output.name)
            explicit = explicit or (setting.value is not None and setting.source != "default")
            if setting.value is None:
                continue
            result = _check(name, setting, output, has_labels)
            if result is not None:
                results.append(result)
                applied = True
        if explicit and not applied:
            results.append(_not_applicable(name, gates, has_labels))
    for output in outputs:
        mismatch = output.total.nonfinite_mismatch
        results.append(
            GateResult(
                "nonfinite", output.name, _METRIC["nonfinite"], "<=", 0.0, float(mismatch), mismatch == 0, "builtin"
            )
        )
    return results


def evaluate_layer_gate(gates: Gates, layers: Sequence[LayerReport]) -> GateResult | None:
    """Check ``min_layer_sqnr`` on the compared layers (None when the gate is off).

    The value is the lowest layer SQNR; the note counts the layers below the threshold and names the first
    in graph order. Set with no layer compared (``--no-layers``, or no tensor matched by name), it fails
    saying so: a requested check is never silently skipped.
    """
    setting = gates.threshold(LAYER_GATE, "")
    if setting.value is None:
        return None
    from fp8conv.verification.result import GateResult

    threshold = float(setting.value)
    metric = "layer_sqnr_db"
    if not layers:
        note = "no layer was compared (per-layer comparison off, or no tensor has the same name in both models)"
        return GateResult(LAYER_GATE, None, metric, ">=", threshold, None, False, setting.source, note=note)
    lowest = min(layers, key=lambda layer: (layer.stats.sqnr_db, layer.index))
    below = [layer for layer in layers if layer.stats.sqnr_db < threshold]
    if below:
        note = f"{len(below)} of {len(layers)} layers below {threshold:g} dB; first in graph order: {below[0].tensor}"
    else:
        note = f"all {len(layers)} layers at or above {threshold:g} dB; lowest: {lowest.tensor}"
    value = lowest.stats.sqnr_db
    return GateResult(LAYER_GATE, None, metric, ">=", threshold, value, not below, setting.source, note=note)


def _check(name: str, setting: _Setting, output: OutputReport, has_labels: bool) -> GateResult | None:
    from fp8conv.verification.metrics import wilson_lower_bound
    from fp8conv.verification.result import GateResult

    threshold = float(setting.value)  # type: ignore[arg-type]
    metric = _METRIC[name]
    if name in ("min_sqnr", "min_cosine"):
        value = output.total.sqnr_db if name == "min_sqnr" else output.total.cosine
        return GateResult(name, output.name, metric, ">=", threshold, value, value >= threshold, setting.source)
    if name == "max_abs_err":
        value = output.total.max_abs_err
        return GateResult(name, output.name, metric, "<=", threshold, value, value <= threshold, setting.source)
    if name == "max_top1_drop":
        if output.topk is None:
            return None
        events, samples = output.topk.top1_flips, output.topk.samples
        observed = 100.0 * events / samples if samples else 0.0
        note = f"{events} of {samples} samples changed their top-1 class"
    else:
        if output.accuracy is None or not has_labels:
            return None
        events, samples = output.accuracy.lost - output.accuracy.gained, output.accuracy.samples
        observed = output.accuracy.drop_pp or 0.0
        note = f"{output.accuracy.lost} lost and {output.accuracy.gained} gained of {samples} labelled samples"
    bound = 100.0 * wilson_lower_bound(events, samples)
    return GateResult(
        name, output.name, metric, "<=", threshold, observed, bound <= threshold, setting.source, bound, note
    )


def _not_applicable(name: str, gates: Gates, has_labels: bool) -> GateResult:
    from fp8conv.verification.result import GateResult

    setting = next(s for s in gates.settings[name].values() if s.value is not None and s.source != "default")
    if name == "max_accuracy_drop" and not has_labels:
        note = "needs labels: add a 'labels' array to the data"
    else:
        note = "no classifier output ([N, C] with C >= 2)"
    return GateResult(name, None, _METRIC[name], "<=", float(setting.value), None, False, setting.source, note=note)
