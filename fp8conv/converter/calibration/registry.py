"""The range methods by name: for each, the statistic it needs, its options and its function.

A range method maps statistics to the covered range of an integer grid, ``(stats, qtype, **options) ->
(lo, hi)`` (:mod:`fp8conv.converter.calibration.methods`). Everything that depends on the method reads it
from :data:`RANGE_METHODS`: :func:`compute_range` (the dispatcher), the choice of statistic in
:mod:`fp8conv.converter.collection`, the options the pipeline passes from :class:`ConversionConfig`, and the
CLI's ``--activations-range`` choices.

Adding a range method
---------------------
One new module and one registry line. ``percentile`` (a method with an option) as the example:

1. ``methods/percentile.py`` holds the function, its math in the module docstring::

       def percentile(stats: Statistics, qtype: QType | str = "uint8", *, percentile: float = 99.999):
           t = int_type(qtype)
           require_data(stats)
           ...
           return covered_range(lo, hi, t)

2. One line in :data:`RANGE_METHODS` below (the module joins the ``methods`` import above it) names it,
   says which statistic calibration collects for it, and lists its keyword options (each is passed from the
   :class:`ConversionConfig` field of that name)::

       RangeMethodSpec("percentile", percentile.percentile, StatisticKind.STREAMING_HISTOGRAM, ("percentile",)),

The CLI offers the new name at once. The configuration's enum ``ActivationRange`` (which sits below this
package in the import layering, so it does not import the registry) needs the name as a member, and a new
option its :class:`ConversionConfig` field: ``tests/converter/calibration/test_calibration_registry.py`` fails until the
registry, ``ActivationRange``, the CLI's choices and the configuration's fields agree.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping

from fp8conv.converter.calibration.methods import entropy, fp8, minmax, mse, percentile
from fp8conv.converter.calibration.scales import QType, lookup
from fp8conv.converter.calibration.statistics import Statistics
from fp8conv.str_enum import StrEnum

__all__ = ["RANGE_METHODS", "RangeMethod", "RangeMethodSpec", "StatisticKind", "compute_range", "range_method"]

RangeMethod = Callable[..., tuple[float, float]]
"""``method(stats, qtype, **options) -> (lo, hi)``."""


class StatisticKind(StrEnum):
    """The statistic calibration collects for a range method.

    Attributes:
        CODE_HISTOGRAM: The exact :class:`~fp8conv.converter.calibration.statistics.CodeHistogram` where
            every tensor of an activation group is the float32 output of one per-tensor FP8 quantizer,
            else a :class:`~fp8conv.converter.calibration.statistics.StreamingHistogram`: for methods that
            evaluate the grid and take either.
        STREAMING_HISTOGRAM: Always a ``StreamingHistogram``: for methods that assume a continuous
            distribution (quantiles inside bins, a histogram of ``|x|``).
        NONE: Data-free: the range comes from the FP8 quantizers' formats and scales. Statistics collected
            anyway (calibration data given, for ``auto_int16_below_db``'s SQNR, which evaluates ``mse``)
            are code histograms where possible, as for ``mse``.
    """

    CODE_HISTOGRAM = "code_histogram"
    STREAMING_HISTOGRAM = "streaming_histogram"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class RangeMethodSpec:
    """One range method of the registry; calling it runs the method with its options checked.

    Attributes:
        name: The name (``--activations-range`` choice, ``ActivationRange`` value).
        function: ``function(stats, qtype, **options) -> (lo, hi)``, the covered range.
        statistic: What calibration collects for it.
        options: Names of its keyword options; each is the :class:`ConversionConfig` field of that name.
    """

    name: str
    function: RangeMethod
    statistic: StatisticKind
    options: tuple[str, ...] = ()

    def __call__(self, stats: Statistics, qtype: QType | str = "uint8", **options: float) -> tuple[float, float]:
        """Run the method.

        Raises:
            ValueError: For an option it does not take, or whatever the method raises.
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "no options"
            raise ValueError(f"bad options for range method {self.name!r}: {', '.join(unknown)} (it takes {takes})")
        return self.function(stats, qtype, **options)

    def config_options(self, config: object) -> dict[str, float]:
        """``{option: config.<option>}``: the method's options as a conversion configuration sets them."""
        return {option: getattr(config, option) for option in self.options}


def _by_name(*specs: RangeMethodSpec) -> Mapping[str, RangeMethodSpec]:
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise AssertionError(f"range method names must be unique: {names}")
    return types.MappingProxyType({spec.name: spec for spec in specs})


RANGE_METHODS: Mapping[str, RangeMethodSpec] = _by_name(
    RangeMethodSpec("mse", mse.mse, StatisticKind.CODE_HISTOGRAM),
    RangeMethodSpec("minmax", minmax.minmax, StatisticKind.CODE_HISTOGRAM),
    RangeMethodSpec("percentile", percentile.percentile, StatisticKind.STREAMING_HISTOGRAM, ("percentile",)),
    RangeMethodSpec("entropy", entropy.entropy, StatisticKind.STREAMING_HISTOGRAM),
    RangeMethodSpec("fp8", fp8.fp8, StatisticKind.NONE),
)
"""Every range method, by name, in the order the CLI lists them (the default first)."""


def range_method(method: str) -> RangeMethodSpec:
    """The registry entry called ``method`` (a ``str`` enum such as ``ActivationRange`` works too).

    Raises:
        ValueError: For an unknown name; the message lists the valid ones.
    """
    return lookup(RANGE_METHODS, method, "range method")


def compute_range(
    stats: Statistics, method: str = "mse", qtype: QType | str = "uint8", **options: float
) -> tuple[float, float]:
    """Run the range method called ``method`` (a name of :data:`RANGE_METHODS`).

    Args:
        stats: Calibration statistics.
        method: Method name (a ``str`` enum such as ``ActivationRange`` works too).
        qtype: Integer type.
        **options: Method options (``percentile=`` for ``percentile``).

    Returns:
        The covered range.

    Raises:
        ValueError: For an unknown method or bad arguments.
    """
    return range_method(method)(stats, qtype, **options)
