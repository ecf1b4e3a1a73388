"""Give every node a unique name, so reports can name each one (legal ONNX may leave names empty or repeat them).

Nothing in fp8conv identifies a node by its name (the plan and the emission hold the nodes themselves);
names are what a user reads in a report and types in an override. This pass makes them usable for both:

* a node whose name is empty becomes ``<op_type>_<n>``, with ``n = 0, 1, …`` counted per op type;
* a node whose name an earlier node already has (in graph order) becomes ``<name>_<n>``, ``n = 1, 2, …``;
* in either case a candidate that any node of the model already has is skipped, so a new name never
  collides with a name the model was given, nor with another new one.

The first node with a given name keeps it, so a model whose names are unique is unchanged. The order is
the graph order (main graph, then each subgraph where its node appears), so the same model always gets the
same names.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

__all__ = ["UniqueNodeNamesPass"]

logger = logging.getLogger(__name__)


class UniqueNodeNamesPass(ir.passes.InPlacePass):
    """Rename the nodes whose name is empty or already taken (see the module docstring).

    Ensures: every node of the main graph and its subgraphs has a non-empty name that no other node has.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rename in place; ``modified`` when some node was renamed."""
        nodes = list(ir.traversal.RecursiveGraphIterator(model.graph))
        taken = {node.name for node in nodes if node.name}
        kept: set[str] = set()
        counters: dict[str, int] = {}
        renamed = 0
        for node in nodes:
            if node.name and node.name not in kept:
                kept.add(node.name)
                continue
            base, first = (node.name, 1) if node.name else (node.op_type or "node", 0)
            number = counters.get(base, first)
            while f"{base}_{number}" in taken:
                number += 1
            counters[base] = number + 1
            node.name = f"{base}_{number}"
            taken.add(node.name)
            kept.add(node.name)
            renamed += 1
        if renamed:
            logger.info("named %d node(s) that had no name or a name used before", renamed)
        return ir.passes.PassResult(model, modified=bool(renamed))

    def ensures(self, model: ir.Model) -> None:
        """Every node has a name of its own."""
        names = [node.name for node in ir.traversal.RecursiveGraphIterator(model.graph)]
        if not all(names) or len(set(names)) != len(names):
            raise ir.passes.PostconditionError("some node is still unnamed or shares its name")
