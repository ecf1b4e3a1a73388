"""GPTQ and bias correction: the RTN integer weights refined on statistics of the layers' calibration inputs.

Steps (each delegated to the module that owns it):

1. :func:`layer_input_statistics`: which tensors calibration counts for them. Every integer layer reads its
   input ``x`` (the float tensor the FP8 reference computes there: what the FP8 model's layer multiplies);
   GPTQ needs ``H = 2XᵀX/n`` of it (:class:`~fp8conv.converter.calibration.hessian.InputHessian`), bias
   correction ``E[x]`` per input channel (:class:`~fp8conv.converter.calibration.channel_mean.ChannelMean`).
   Layers reading one tensor (the Q, K and V projections) share one statistic.
2. :func:`refine_weights`, after calibration:

   * ``weight_rounding=gptq``: every integer MatMul/Gemm with a 2-D constant weight gets GPTQ's integers on
     its RTN grid (:func:`~fp8conv.runtime.integer_quantization.gptq.gptq`: the scales of
     :func:`~fp8conv.runtime.integer_quantization.quantize_weights`, computed from the float weights before
     GPTQ, as the reference GPTQ with static groups; same nodes, scales and types, only the integers differ).
     Conv layers keep RTN (GPTQ here is for the MatMul/Gemm weights onnxruntime's MatMulNBits runs).
   * ``bias_correction``: each integer layer's bias becomes ``b − α·(W_q − W)·E[x]/β`` with its final
     integer weights (:mod:`~fp8conv.runtime.integer_quantization.bias_correction`), folded by
     :class:`~fp8conv.passes.correct_biases.CorrectBiasesPass`; a layer without a bias is left as it is.

The record (:attr:`RefinedWeights.record`) is report.json's optional ``conversion.weight_methods``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import onnx_ir as ir

from fp8conv.config import ConversionConfig, WeightRounding
from fp8conv.converter.calibration.channel_mean import ChannelMean
from fp8conv.converter.calibration.hessian import InputHessian
from fp8conv.converter.collection import InputStatistic
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.correct_biases import bias_site
from fp8conv.passes.plan import Layer, QuantizationPlan
from fp8conv.runtime.integer_quantization import QuantizedWeights, dequantize
from fp8conv.runtime.integer_quantization.bias_correction import corrected_bias, output_shift
from fp8conv.runtime.integer_quantization.gptq import DEFAULT_BLOCK, GptqFactor, factor_hessian, gptq

__all__ = ["LayerInputStatistics", "RefinedWeights", "layer_input_statistics", "refine_weights"]

logger = logging.getLogger(__name__)

_GPTQ_OPS = ("MatMul", "Gemm")


@dataclasses.dataclass
class LayerInputStatistics:
    """The statistics of the layers' inputs that calibration feeds (shared by the layers reading one tensor).

    Attributes:
        hessians: ``InputHessian`` per input tensor (GPTQ).
        means: ``ChannelMean`` per (input tensor, channel axis) (bias correction).
    """

    hessians: dict[str, InputHessian] = dataclasses.field(default_factory=dict)
    means: dict[tuple[str, int], ChannelMean] = dataclasses.field(default_factory=dict)

    def by_tensor(self) -> dict[str, list[InputStatistic]]:
        """Every statistic, by the tensor it counts (what the ``StatisticsCollector`` feeds)."""
        tensors: dict[str, list[InputStatistic]] = {}
        for tensor, hessian in self.hessians.items():
            tensors.setdefault(tensor, []).append(hessian)
        for (tensor, _), mean in self.means.items():
            tensors.setdefault(tensor, []).append(mean)
        return tensors


@dataclasses.dataclass(frozen=True)
class RefinedWeights:
    """The integer weights after GPTQ, the corrected biases, and what was done.

    Attributes:
        weights: Integer weights per layer node (GPTQ's where it ran, RTN's elsewhere).
        corrected_biases: Corrected float32 bias per layer node (bias correction).
        record: ``conversion.weight_methods`` of report.json.
    """

    weights: dict[ir.Node, QuantizedWeights]
    corrected_biases: dict[ir.Node, np.ndarray]
    record: dict[str, Any]


def _input_tensor(layer: Layer) -> str | None:
    """The name of the tensor the layer multiplies its weight with (its input 0), if it has one."""
    value = layer.graph_node.inputs[0] if layer.graph_node.inputs else None
    return value.name if value is not None and value.name else None


def _integer_layers(
    plan: QuantizationPlan, weights: dict[ir.Node, QuantizedWeights]
) -> list[tuple[Layer, ir.Node, str | None]]:
    """``(layer, node, input tensor)`` of every layer with integer weights, in plan order."""
    return [(layer, layer.graph_node, _input_tensor(layer)) for layer in plan.layers if layer.graph_node in weights]


def _gptq_skip(layer: Layer) -> str | None:
    """Why GPTQ leaves an integer layer with RTN, or None."""
    if layer.op_type not in _GPTQ_OPS:
        return f"{layer.op_type}: GPTQ covers MatMul/Gemm weights (round to nearest kept)"
    values = layer.weight_codes.codes if layer.weight_codes is not None else layer.weight_array
    if values is None or np.ndim(values) != 2:
        return "its weight is not a 2-D constant (round to nearest kept)"
    return None if _input_tensor(layer) is not None else "its input has no name to calibrate"


def _channel_axis(layer: Layer) -> int:
    """The channel axis of the layer's input: 1 for Conv ``[N, C, ...]``, else the last."""
    return 1 if layer.op_type == "Conv" else -1


def layer_input_statistics(plan: QuantizationPlan, config: ConversionConfig) -> LayerInputStatistics | None:
    """The statistics GPTQ and bias correction need, empty ones to feed (None: neither method is on)."""
    use_gptq = config.weight_rounding is WeightRounding.GPTQ
    if not (use_gptq or config.bias_correction):
        return None
    statistics = LayerInputStatistics()
    for layer in plan.layers:
        tensor = _input_tensor(layer)
        if not (layer.is_integer and layer.has_weight) or tensor is None:
            continue
        if use_gptq and _gptq_skip(layer) is None:
            statistics.hessians.setdefault(tensor, InputHessian())
        if config.bias_correction and bias_site(layer) is not None:
            axis = _channel_axis(layer)
            statistics.means.setdefault((tensor, axis), ChannelMean(axis))
    return statistics


def refine_weights(
    plan: QuantizationPlan,
    weights: dict[ir.Node, QuantizedWeights],
    statistics: LayerInputStatistics,
    config: ConversionConfig,
) -> RefinedWeights:
    """GPTQ's integers and the corrected biases from the fed statistics (see the module docstring).

    Raises:
        Fp8ConvError: GPTQ fails on a layer (one line naming it).
    """
    refined = dict(weights)
    record: dict[str, Any] = {"rounding": config.weight_rounding.value, "gptq": None, "bias_correction": None}
    if config.weight_rounding is WeightRounding.GPTQ:
        record["gptq"] = _apply_gptq(plan, refined, statistics, config)
    corrected: dict[ir.Node, np.ndarray] = {}
    if config.bias_correction:
        record["bias_correction"] = _correct_biases(plan, refined, statistics, corrected)
    return RefinedWeights(refined, corrected, record)


def _apply_gptq(
    plan: QuantizationPlan,
    weights: dict[ir.Node, QuantizedWeights],
    statistics: LayerInputStatistics,
    config: ConversionConfig,
) -> dict[str, Any]:
    """Replace, in ``weights``, RTN's integers by GPTQ's; the ``gptq`` record.

    ``H``'s factorization is made once per input tensor and serves every layer reading it.
    """
    layers, skipped = [], []
    factors: dict[str, GptqFactor] = {}
    for layer, node, tensor in _integer_layers(plan, weights):
        reason = _gptq_skip(layer)
        hessian = statistics.hessians[tensor].hessian() if reason is None and tensor is not None else None
        if reason is None and hessian is None:
            reason = "calibration gave its input no finite values (round to nearest kept)"
        if reason is not None:
            skipped.append({"layer": layer.node, "reason": reason})
            continue
        assert layer.block_axis is not None
        assert hessian is not None
        assert tensor is not None
        try:
            if tensor not in factors:
                factors[tensor] = factor_hessian(hessian, damp=config.gptq_damp, act_order=config.gptq_act_order)
            result = gptq(
                layer.weight_values,  # type: ignore[arg-type]
                weights[node],
                hessian,
                k_axis=layer.block_axis,
                factor=factors[tensor],
            )
        except ValueError as error:
            raise Fp8ConvError(f"layer {layer.node}: GPTQ failed: {error}") from error
        weights[node] = result.weights
        layers.append(
            {
                "layer": layer.node,
                "input": tensor,
                "rtn_output_mse": result.rtn_error,
                "gptq_output_mse": result.gptq_error,
                "dead_inputs": result.dead_columns,
                "damp": result.damp,
            }
        )
    logger.info("GPTQ on %d layers (%d kept round to nearest)", len(layers), len(skipped))
    return {
        "damp": config.gptq_damp,
        "act_order": config.gptq_act_order,
        "block": DEFAULT_BLOCK,
        "grid": "the round-to-nearest scales, computed from the float weights before GPTQ (static groups)",
        "layers": layers,
        "skipped": skipped,
    }


def _correct_biases(
    plan: QuantizationPlan,
    weights: dict[ir.Node, QuantizedWeights],
    statistics: LayerInputStatistics,
    corrected: dict[ir.Node, np.ndarray],
) -> dict[str, Any]:
    """Fill ``corrected`` with each integer layer's corrected bias; the ``bias_correction`` record."""
    layers, skipped = [], []
    for layer, node, tensor in _integer_layers(plan, weights):
        site = bias_site(layer)
        mean_stat = statistics.means.get((tensor, _channel_axis(layer))) if tensor is not None else None
        mean = mean_stat.mean() if mean_stat is not None else None
        if site is None or mean is None:
            why = "no bias to fold the correction into" if site is None else "calibration gave its input no values"
            skipped.append({"layer": layer.node, "reason": why})
            continue
        k_axis = None if layer.op_type == "Conv" else layer.block_axis
        groups = node.attributes.get_int("group", 1) if layer.op_type == "Conv" else 1
        try:
            shift = output_shift(
                layer.weight_values,  # type: ignore[arg-type]
                dequantize(weights[node]),
                mean,
                k_axis=k_axis,
                groups=groups,
            )
            corrected[node] = corrected_bias(site.values, shift, alpha=site.alpha, beta=site.beta)
        except ValueError as error:
            skipped.append({"layer": layer.node, "reason": str(error)})
            continue
        layers.append({"layer": layer.node, "max_abs_shift": float(np.max(np.abs(shift)))})
    logger.info("bias correction on %d layers (%d without a bias)", len(layers), len(skipped))
    return {"layers": layers, "skipped": skipped}
