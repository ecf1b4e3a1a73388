"""What a conversion returns: the converted model and the record of every decision (``conversion`` in report.json).

* :class:`ConversionResult`: the model, the options, the source, one :class:`LayerRecord` per layer, one
  :class:`ActivationRecord` per activation group, the warnings, the stage timings, what the written model
  holds and, once written, its path, size and integer-kernel audit.
* ``to_json()`` on each: the JSON view reports read.

:func:`fp8conv.convert` fills them (:mod:`fp8conv.converter.pipeline`); nothing here computes.
:meth:`ConversionResult.save` writes the model of an in-memory conversion; ``repr()`` is one line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import onnx_ir as ir

from fp8conv.config import ConversionConfig
from fp8conv.converter.files import check_writable
from fp8conv.converter.loading import SourceInfo
from fp8conv.converter.postconditions import WrittenModel
from fp8conv.converter.saving import save_model
from fp8conv.passes.emit_qdq import PassRecord

__all__ = ["ActivationRecord", "ConversionResult", "LayerRecord"]


@dataclasses.dataclass
class ActivationRecord:
    """How one activation group was quantized (for reports)."""

    tensors: tuple[str, ...]
    dtype: str
    method: str
    low: float
    high: float
    scale: float
    zero_point: int
    statistics: str
    fp8_source: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """JSON view."""
        return dataclasses.asdict(self) | {"tensors": list(self.tensors), "fp8_source": list(self.fp8_source)}


@dataclasses.dataclass
class LayerRecord:
    """What happened to one Conv/MatMul/Gemm (for reports)."""

    node: str
    op_type: str
    precision: str
    activation_bits: int | None
    reason: str
    weight_bits: int | None = None
    weight_method: str | None = None
    weight_granularity: str | None = None
    clip_ratio_min: float | None = None
    clip_ratio_max: float | None = None
    weight_mse: float | None = None
    weight_range: tuple[float, float] | None = None

    def to_json(self) -> dict[str, object]:
        """JSON view."""
        data = dataclasses.asdict(self)
        data["weight_range"] = list(self.weight_range) if self.weight_range else None
        return data


@dataclasses.dataclass
class ConversionResult:
    """The converted model and the record of every decision.

    Attributes:
        model: The integer QDQ model (onnx_ir).
        config: The options used.
        source: Facts about the input model.
        dialects: FP8 dialects found in the input.
        layers: One record per Conv/MatMul/Gemm.
        activations: One record per activation quantization group.
        warnings: Things the user should know (data-free ranges, layers left float, …); layers that stay
            float for one reason are one message (``6 layers (a, b, c, … and 3 more) stay float: …``).
        calibration_samples: Samples the ranges were computed from (0: data-free).
        seconds: Wall time of the conversion (excluding saving and auditing).
        stage_seconds: Wall time per stage (``load``, ``plan``, ``weights``, ``reference session``,
            ``calibration forward``, ``statistics``, ``ranges``, ``emission``; ``save`` and ``audit`` from
            :func:`~fp8conv.converter.pipeline.convert_file`).
        written: What the emitted model holds, read from its graph and checked against the plan
            (:mod:`~fp8conv.converter.postconditions`); the summary's counts come from it.
        emission_passes: The emission's passes in order, each with whether it modified the model and its
            wall time (:func:`~fp8conv.passes.emit_qdq.emission_pipeline`).
        audit: The integer-kernel audit (set by :func:`~fp8conv.converter.pipeline.convert_file`).
        output_path: Where the model was written (set by :func:`~fp8conv.converter.pipeline.convert_file`).
        output_size_bytes: Size of the written model (set by :func:`~fp8conv.converter.pipeline.convert_file`).
        notes: What the user asked for and got, said for the record (layers a keep_float pattern kept
            float); not warnings.
        calibration_source: Where the calibration samples came from (the data path; None: data-free).
        auto_int16: The activation groups ``auto_int16_below_db`` gave INT16: ``tensors``, their
            ``int8_sqnr_db`` on the calibration data and the ``layers`` reading them.
        fp8_quantizers: The FP8 activation quantizers the placement did not simply replace by an integer Q/DQ
            (:class:`~fp8conv.passes.plan.records.QuantizerDecision`): ``tensor``, ``quantizer`` (its node),
            ``code``, ``reason``, ``readers`` (op types) and ``dropped`` (no integer Q/DQ at all: it became float).
        weight_methods: GPTQ and bias correction, when either ran (:mod:`~fp8conv.converter.weight_methods`):
            ``rounding``, ``gptq`` (its settings, per layer the layer-output MSE of RTN and GPTQ on the
            calibration inputs, the layers kept RTN and why) and ``bias_correction`` (the corrected layers and
            the largest shift removed, the layers without a bias); None when neither ran.
    """

    model: ir.Model
    config: ConversionConfig
    source: SourceInfo
    dialects: tuple[str, ...]
    layers: list[LayerRecord]
    activations: list[ActivationRecord]
    warnings: list[str]
    calibration_samples: int
    seconds: float
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    written: WrittenModel | None = None
    emission_passes: tuple[PassRecord, ...] = ()
    audit: Any = None
    output_path: Path | None = None
    output_size_bytes: int | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    calibration_source: str | None = None
    auto_int16: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    fp8_quantizers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    weight_methods: dict[str, Any] | None = None

    def to_json(self) -> dict[str, object]:
        """The conversion decisions as JSON (the ``conversion`` part of ``report.json``)."""
        weight_methods = {"weight_methods": self.weight_methods} if self.weight_methods is not None else {}
        return {
            "config": self.config.to_json(),
            "source": {
                "path": str(self.source.path) if self.source.path else None,
                "opset": self.source.opset,
                "size_bytes": self.source.size_bytes,
                "dialects": list(self.dialects),
            },
            "output": {
                "path": str(self.output_path) if self.output_path else None,
                "size_bytes": self.output_size_bytes,
            },
            "calibration_samples": self.calibration_samples,
            "calibration_source": self.calibration_source,
            "auto_int16": [dict(record) for record in self.auto_int16],
            "fp8_quantizers": [dict(record) for record in self.fp8_quantizers],
            **weight_methods,
            "seconds": self.seconds,
            "stage_seconds": dict(self.stage_seconds),
            "layers": [layer.to_json() for layer in self.layers],
            "activations": [record.to_json() for record in self.activations],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "written": self.written.to_json() if self.written is not None else None,
            "emission_passes": [record.to_json() for record in self.emission_passes],
            "kernels": self.audit.to_json() if self.audit is not None else None,
        }

    def __repr__(self) -> str:
        """One line: target, layers converted, calibration, where it was written."""
        converted = sum(layer.precision != "float" for layer in self.layers)
        calibration = f"{self.calibration_samples} calibration samples" if self.calibration_samples else "data-free"
        where = f", written to {self.output_path}" if self.output_path is not None else ", not written (.save(path))"
        return (
            f"<ConversionResult {self.config.target.value}: {converted}/{len(self.layers)} layers converted, "
            f"{calibration}, {len(self.warnings)} warnings{where}>"
        )

    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> ConversionResult:
        """Write the converted model to ``path`` atomically: the bytes :func:`fp8conv.convert_file` writes.

        Args:
            path: The ``.onnx`` file (external data, if any, beside it).
            external_data: Save weights as external data (None: when the model is larger than 1 GiB).

        Returns:
            This result, with ``output_path`` and ``output_size_bytes`` set.

        Raises:
            Fp8ConvError: The path cannot be written.
        """
        destination = Path(path)
        check_writable(destination, directory=False, what="model")
        self.output_size_bytes = save_model(self.model, destination, external_data=external_data)
        self.output_path = destination
        return self
