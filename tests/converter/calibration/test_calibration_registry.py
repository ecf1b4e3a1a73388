"""The range-method registry (fp8conv.converter.calibration.registry) and everything that reads it.

The registry, the configuration's ``ActivationRange``, the CLI's ``--activations-range`` choices, the
configuration fields the options come from, and the statistic calibration collects must all agree.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from calibration_helpers import code_histogram, fake_quantized, gaussian, relu, streaming
from fp8_models import residual_cnn

from fp8conv import load
from fp8conv.cli import cli
from fp8conv.config import ActivationRange, ConversionConfig
from fp8conv.converter import calibration as cal
from fp8conv.converter.calibration.registry import RANGE_METHODS, RangeMethodSpec, StatisticKind
from fp8conv.converter.collection import _statistics_layout
from fp8conv.passes.plan import plan_conversion


def _cli_choices() -> list[str]:
    (option,) = [param for param in cli.commands["convert"].params if param.name == "activations_range"]
    return list(option.type.choices)  # type: ignore[attr-defined]


def test_registry_names_are_the_activation_range_values_and_the_cli_choices() -> None:
    names = list(RANGE_METHODS)
    assert names == [member.value for member in ActivationRange]
    assert names == _cli_choices()
    assert names[0] == ConversionConfig().activations_range.value  # the default is listed first
    assert all(spec.name == name for name, spec in RANGE_METHODS.items())


@pytest.mark.parametrize("name", list(RANGE_METHODS))
def test_options_are_config_fields_and_keyword_parameters_with_the_same_default(name: str) -> None:
    spec = RANGE_METHODS[name]
    parameters = inspect.signature(spec.function).parameters
    fields = {field.name: field.default for field in dataclasses.fields(ConversionConfig)}
    keyword_only = {p.name: p.default for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(keyword_only) == set(spec.options)
    for option in spec.options:
        assert fields[option] == keyword_only[option]
    assert spec.config_options(ConversionConfig(percentile=99.5)) == {o: 99.5 for o in spec.options}


@pytest.mark.parametrize("name", list(RANGE_METHODS))
def test_each_method_accepts_the_statistic_its_entry_names(name: str) -> None:
    """STREAMING_HISTOGRAM and CODE_HISTOGRAM methods may get a float histogram (a group that is not one FP8
    grid); CODE_HISTOGRAM methods also take codes; a data-free method needs no counts at all."""
    spec = RANGE_METHODS[name]
    scale = 0.05
    values = fake_quantized(relu(gaussian(5000)) - np.float32(0.5), scale)
    if spec.statistic is StatisticKind.NONE:
        assert spec(cal.CodeHistogram("e4m3fn", scale), "uint8") == cal.fp8_range("e4m3fn", scale, "uint8")
        return
    kinds = [streaming(values)]
    if spec.statistic is StatisticKind.CODE_HISTOGRAM:
        kinds.append(code_histogram(values, scale))
    for stats in kinds:
        lo, hi = spec(stats, "uint8")
        assert lo < 0.0 < hi


def _statistic_types(config: ConversionConfig) -> set[str]:
    model = load(residual_cnn()).model
    factories, _ = _statistics_layout(model, plan_conversion(model, config), config)
    return {type(factory()).__name__ for factory in factories.values()}


@pytest.mark.parametrize("name", list(RANGE_METHODS))
def test_collection_collects_the_statistic_the_registry_names(name: str) -> None:
    types = _statistic_types(ConversionConfig(activations_range=name))
    if RANGE_METHODS[name].statistic is StatisticKind.STREAMING_HISTOGRAM:
        assert types == {"StreamingHistogram"}
    else:
        assert "CodeHistogram" in types  # residual_cnn's groups are FP8 quantizer outputs


def test_collection_reads_the_statistic_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "CodeHistogram" in _statistic_types(ConversionConfig(activations_range="mse"))
    continuous = RangeMethodSpec("mse", cal.mse, StatisticKind.STREAMING_HISTOGRAM)
    monkeypatch.setattr(cal, "range_method", lambda method: continuous)
    assert _statistic_types(ConversionConfig(activations_range="mse")) == {"StreamingHistogram"}


def test_compute_range_validates_method_and_options() -> None:
    h = streaming(gaussian(100))
    with pytest.raises(ValueError, match="valid methods are: mse, minmax, percentile, entropy, fp8"):
        cal.compute_range(h, "kl", "uint8")
    with pytest.raises(ValueError, match=r"bad options for range method 'minmax': percentile \(it takes no options"):
        cal.compute_range(h, "minmax", "uint8", percentile=99.0)
    with pytest.raises(ValueError, match=r"bad options for range method 'percentile': level \(it takes percentile"):
        cal.compute_range(h, "percentile", "uint8", level=99.0)
    with pytest.raises(ValueError, match=r"percentile must be in \(50, 100\]"):
        cal.compute_range(h, "percentile", "uint8", percentile=40.0)
    assert cal.compute_range(h, "percentile", "int8", percentile=100.0) == cal.minmax(h, "int8")
    assert cal.compute_range(h, ActivationRange.ENTROPY, "uint8") == cal.entropy(h, "uint8")
    assert cal.RANGE_METHODS["minmax"](h, "int8") == cal.minmax(h, "int8")  # an entry runs its method
