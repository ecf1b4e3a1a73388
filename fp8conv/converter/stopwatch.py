"""Wall time per stage of a conversion, for the summary, ``report.json`` and the benchmarks."""

from __future__ import annotations

import time


class Stopwatch:
    """Accumulates wall-clock seconds per named stage.

    Each :meth:`lap` charges the time since the previous lap (or since construction) to one stage, so
    the stages of a run add up to its total.

    Attributes:
        seconds: Seconds per stage, in the order the stages first finished.
    """

    def __init__(self) -> None:
        """Start timing now."""
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> float:
        """Charge the time since the previous lap to ``stage``; return that time."""
        now = time.perf_counter()
        elapsed = now - self._last
        self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        self._last = now
        return elapsed

    @property
    def total(self) -> float:
        """Seconds charged to all stages together."""
        return sum(self.seconds.values())
