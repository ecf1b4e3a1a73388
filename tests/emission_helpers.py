"""Emission passes on small FP8 models: the planned model and its pipeline, and running a pipeline up to a pass."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from fp8conv import load
from fp8conv.config import ActivationRange, ConversionConfig, Target
from fp8conv.converter import pipeline
from fp8conv.passes.emit_qdq import EmissionPipeline, emission_pipeline
from fp8conv.passes.plan import plan_conversion


def planned(model: onnx.ModelProto | str, target: str = "int8", **options: object) -> tuple[ir.Model, EmissionPipeline]:
    """The canonical model and the emission pipeline ``convert`` would run on it (data-free ranges)."""
    canonical = load(model).model
    config = ConversionConfig(target=Target(target), activations_range=ActivationRange.FP8, **options)
    plan = plan_conversion(canonical, config)
    weights, _ = pipeline._quantize_layer_weights(plan, config)
    activations, _ = pipeline._activation_quantization(canonical, plan, {}, config, [])
    return canonical, emission_pipeline(plan, pipeline._emission_weights(weights), activations)


def run_before(model: ir.Model, passes: EmissionPipeline, stop: type) -> ir.passes.PassBase:
    """Run the pipeline's passes before the first ``stop`` pass on ``model``; return that pass (not run)."""
    for pass_ in passes.passes:
        if isinstance(pass_, stop):
            return pass_
        pass_(model)
    raise AssertionError(f"no {stop.__name__} in the pipeline")
