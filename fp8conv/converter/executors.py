"""Where independent pieces of work run: this process, local processes, or Ray tasks (one seam for all of them).

An :class:`Executor` maps a picklable function over items, ``function(context, item) -> result``, and returns the
results in item order. The ``context`` is what every call shares (a lowered reference model's bytes, a
statistics layout): it travels once per worker process (local processes: the pool's initializer; Ray: one
``ray.put``), never once per item, so items stay small (a range of samples, a layer to probe). ``done(index,
result)`` is called in the caller's thread as each item finishes, in completion order, for progress.

Implementations:

* :class:`SerialExecutor`: in this process, one item after the other (``--jobs 1``).
* :class:`ProcessExecutor`: a :class:`concurrent.futures.ProcessPoolExecutor` of ``jobs`` processes started
  with the ``spawn`` method (a fresh interpreter: no forked onnxruntime thread pools or locks), ``--executor
  local``.
* :class:`RayExecutor`: each item a Ray task (``ray.remote``); it uses the Ray instance this process is
  connected to, or calls ``ray.init()`` (which connects to the cluster ``RAY_ADDRESS`` or ``ray start`` names,
  else starts a local one, shut down again when the executor closes). ``--executor ray``; needs the optional
  extra ``pip install fp8conv[ray]``. Files that items name must be at the same path on every node.

Calibration shards use it (:mod:`fp8conv.converter.shards`); so can per-layer sensitivity (one item per layer
probed) and verification over large data sets (one item per range of samples, metrics merged in item order).
``function`` must be importable by name in a fresh interpreter (a module-level function), and ``context``,
items and results picklable. No scheduling of its own: the pool and Ray schedule.
"""

from __future__ import annotations

import abc
import concurrent.futures
import enum
import logging
import multiprocessing
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from fp8conv.errors import Fp8ConvError

__all__ = [
    "RAY_MISSING",
    "Executor",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "make_executor",
]

logger = logging.getLogger(__name__)

C = TypeVar("C")
T = TypeVar("T")
R = TypeVar("R")

Done = Callable[[int, Any], object]
"""``done(index, result)``: called as item ``index`` finishes."""

RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install fp8conv[ray]"
"""The one line said when Ray is asked for and cannot be imported."""


class Executor(abc.ABC, Generic[C, T, R]):
    """Maps ``function(context, item)`` over items (see the module docstring); a context manager.

    Attributes:
        name: ``serial``, ``local`` or ``ray`` (for messages).
        jobs: At most this many items run at once.
    """

    name = "executor"

    def __init__(self, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
        self.jobs = jobs

    @abc.abstractmethod
    def map(self, function: Callable[[C, T], R], context: C, items: Sequence[T], done: Done | None = None) -> list[R]:
        """``[function(context, item) for item in items]``, computed where the executor runs work.

        Args:
            function: A module-level function (pickled by name).
            context: Shared by every call; sent once per worker.
            items: The work, one call each.
            done: Called with ``(index, result)`` as each item finishes.

        Returns:
            The results, in the order of ``items``.

        Raises:
            Exception: The first exception an item raised (the items still running are waited for or cancelled).
        """

    def close(self) -> None:
        """Release what the executor started (nothing here)."""

    def __enter__(self) -> Executor[C, T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(jobs={self.jobs})"


class SerialExecutor(Executor[C, T, R]):
    """Every item in this process, in order: ``map`` is a loop (the reference for the others)."""

    name = "serial"

    def map(self, function: Callable[[C, T], R], context: C, items: Sequence[T], done: Done | None = None) -> list[R]:
        """See :meth:`Executor.map`."""
        results = []
        for index, item in enumerate(items):
            results.append(function(context, item))
            if done is not None:
                done(index, results[-1])
        return results


_CONTEXTS: dict[str, Any] = {}
"""The contexts a worker process was started with, by token (set by :func:`_remember`)."""


def _remember(token: str, context: object) -> None:
    """Process-pool initializer: keep the context for the calls of this pool."""
    _CONTEXTS[token] = context


def _call_remembered(function: Callable[[Any, Any], Any], token: str, item: object) -> object:
    return function(_CONTEXTS[token], item)


class ProcessExecutor(Executor[C, T, R]):
    """Items in ``jobs`` local processes (``ProcessPoolExecutor``, ``spawn`` start method).

    Each process is started with the context (pickled once per process) and runs items as the pool hands
    them out; the pool is created by :meth:`map` with ``min(jobs, len(items))`` processes and shut down when
    it returns.
    """

    name = "local"

    def map(self, function: Callable[[C, T], R], context: C, items: Sequence[T], done: Done | None = None) -> list[R]:
        """See :meth:`Executor.map`."""
        if not items:
            return []
        token = uuid.uuid4().hex
        results: list[Any] = [None] * len(items)
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(self.jobs, len(items)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_remember,
            initargs=(token, context),
        )
        try:
            futures = {pool.submit(_call_remembered, function, token, item): index for index, item in enumerate(items)}
            for future in concurrent.futures.as_completed(futures):
                index = futures[future]
                try:
                    results[index] = future.result()
                except concurrent.futures.process.BrokenProcessPool as error:
                    raise Fp8ConvError(
                        f"a calibration process died ({error}); was it out of memory? try fewer --jobs"
                    ) from error
                if done is not None:
                    done(index, results[index])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results


def _import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        Fp8ConvError: Ray is not installed (:data:`RAY_MISSING`).
    """
    try:
        import ray
    except ImportError as error:
        raise Fp8ConvError(RAY_MISSING) from error
    return ray


def _call(function: Callable[[Any, Any], Any], context: object, item: object) -> object:
    return function(context, item)


class RayExecutor(Executor[C, T, R]):
    """Items as Ray tasks of one CPU each, at most ``jobs`` at once (see the module docstring for ``ray.init``).

    Args:
        jobs: Tasks in flight at once.
        init: Keyword arguments of ``ray.init`` when this executor has to start Ray.

    Raises:
        Fp8ConvError: Ray is not installed.
    """

    name = "ray"

    def __init__(self, jobs: int = 1, **init: Any) -> None:
        super().__init__(jobs)
        self._ray = _import_ray()
        self._init = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING, **init}
        self._started = False

    def _connect(self) -> None:
        if not self._ray.is_initialized():
            logger.info("starting Ray (ray.init)")
            self._ray.init(**self._init)
            self._started = True

    def map(self, function: Callable[[C, T], R], context: C, items: Sequence[T], done: Done | None = None) -> list[R]:
        """See :meth:`Executor.map`."""
        if not items:
            return []
        ray = self._ray
        self._connect()
        task = ray.remote(num_cpus=1, max_retries=0)(_call)
        shared = ray.put(context)
        results: list[Any] = [None] * len(items)
        pending: dict[Any, int] = {}
        queue = list(enumerate(items))
        try:
            while queue or pending:
                while queue and len(pending) < self.jobs:
                    index, item = queue.pop(0)
                    pending[task.remote(function, shared, item)] = index
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    index = pending.pop(ref)
                    results[index] = _ray_result(ray, ref)
                    if done is not None:
                        done(index, results[index])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return results

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False


def _ray_result(ray: Any, ref: object) -> object:
    """``ray.get(ref)``; a task's own exception is raised as itself (one line), not as Ray's wrapper."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from error
        raise


def make_executor(kind: str | enum.Enum, jobs: int) -> Executor:
    """The executor ``--executor KIND --jobs N`` asks for: serial for ``local`` with one job.

    Raises:
        Fp8ConvError: ``ray`` without Ray installed, or an unknown kind.
    """
    name = kind.value if isinstance(kind, enum.Enum) else str(kind)
    if name == "ray":
        return RayExecutor(jobs)
    if name == "local":
        return SerialExecutor(jobs) if jobs == 1 else ProcessExecutor(jobs)
    raise Fp8ConvError(f"unknown executor {name!r}; expected local or ray")
