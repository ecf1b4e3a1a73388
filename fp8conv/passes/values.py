"""One value taking another's place, with the declared type and shape kept true.

ONNX writes a ``value_info`` entry (or a graph-output entry) for every named value that has a declared
type or shape, and ``onnx.checker`` refuses an entry without a type. Every rewrite that lets a new value
stand for an old one therefore goes through :func:`take_over`, which moves the name, the readers, the
graph-output positions and the declarations together.
"""

from __future__ import annotations

import onnx_ir as ir

__all__ = ["take_over"]


def take_over(old: ir.Value, new: ir.Value) -> None:
    """Let ``new`` stand for ``old``: every reader, graph-output position, the name and the declarations.

    The caller guarantees that ``new`` computes the tensor ``old`` held, so ``old``'s declared type and
    shape describe ``new`` too; declarations ``new`` already has win (they describe its producer, while
    ``old``'s may be stale). ``old`` is left without name or readers; its producer may then be removed.

    Args:
        old: The value to replace.
        new: Its replacement, already produced by a node of the same graph (or a constant).
    """
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    if new.type is None:
        new.type = old.type
    if new.shape is None:
        new.shape = old.shape
    old.name = None
    new.name = name
