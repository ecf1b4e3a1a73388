"""New names for values and nodes a pass adds: the one allocator, which knows every name in the graph.

ONNX needs each value name once in a graph and its subgraphs (a subgraph may read outer values by name), and
fp8conv keeps node names unique too (reports and overrides name nodes). A :class:`NameAllocator` is made from
every name a graph holds, in the graph and its subgraphs: graph inputs, initializers, node outputs and node
names (one namespace for both, so a new name is never one that is there). It hands out each name once:
``base`` if free, else ``base_1``, ``base_2`` and so on; the order is deterministic, so the same model always
gets the same names.

A pass that adds names all over (normalization rewrites node by node, each rewrite through shared helpers)
opens :func:`shared_names` around its run: :func:`names_for` then gives each graph one allocator, made once,
that learns the names the rewrites hand out (:meth:`NameAllocator.new`) and free
(:meth:`NameAllocator.release`), instead of reading the whole graph again for every new name.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import onnx_ir as ir

__all__ = ["NameAllocator", "forget_name", "names_for", "shared_names"]

_SHARED: contextvars.ContextVar[dict[ir.Graph, NameAllocator] | None] = contextvars.ContextVar(
    "fp8conv_shared_names", default=None
)


class NameAllocator:
    """Deterministic unique names: ``base``, then ``base_1``, ``base_2`` and so on.

    Args:
        graph: The graph whose names (and its subgraphs') are taken from the start. Names the caller adds to the
            graph afterwards are known only when they came from :meth:`new` (or were :meth:`take`-n).
    """

    def __init__(self, graph: ir.Graph) -> None:
        self._taken: set[str] = set()
        for scope in (graph, *graph.subgraphs()):
            self._taken.update(value.name for value in scope.inputs if value.name)
            self._taken.update(scope.initializers)
        for node in ir.traversal.RecursiveGraphIterator(graph):
            if node.name:
                self._taken.add(node.name)
            self._taken.update(value.name for value in node.outputs if value.name)

    def __contains__(self, name: str) -> bool:
        """Whether ``name`` is taken."""
        return name in self._taken

    def take(self, name: str) -> None:
        """Mark ``name`` as taken (a name the caller chose itself)."""
        self._taken.add(name)

    def release(self, name: str | None) -> None:
        """Mark ``name`` as free again (the value that had it left the graph)."""
        self._taken.discard(name or "")

    def new(self, base: str, *, reuse: Callable[[str], bool] | None = None) -> str:
        """A name not taken yet, now taken: ``base``, ``base_1``, ``base_2``, … (the first free one).

        Args:
            base: The name wanted.
            reuse: Optional: a taken candidate for which it returns True is returned as it is (the name of
                something the caller will share, such as an initializer of equal contents).
        """
        name, counter = base, 0
        while name in self._taken:
            if reuse is not None and reuse(name):
                return name
            counter += 1
            name = f"{base}_{counter}"
        self._taken.add(name)
        return name


@contextlib.contextmanager
def shared_names() -> Iterator[None]:
    """While open, :func:`names_for` gives one allocator per graph (see the module docstring)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def names_for(graph: ir.Graph) -> NameAllocator:
    """The allocator of ``graph``: inside :func:`shared_names` the one of this run, else one made now."""
    shared = _SHARED.get()
    if shared is None:
        return NameAllocator(graph)
    if graph not in shared:
        shared[graph] = NameAllocator(graph)
    return shared[graph]


def forget_name(graph: ir.Graph, name: str | None) -> None:
    """Inside :func:`shared_names`: the value called ``name`` left ``graph``, its name is free again."""
    allocator = (_SHARED.get() or {}).get(graph)
    if allocator is not None:
        allocator.release(name)
