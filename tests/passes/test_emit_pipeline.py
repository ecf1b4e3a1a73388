"""The emission as a sequence of passes: order, per-pass records, one shared context, errors that reach the user."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from emission_helpers import planned
from fp8_models import mlp, residual_cnn

from fp8conv.converter.pipeline import convert
from fp8conv.errors import Fp8ConvError, InternalError
from fp8conv.passes.emission import EmissionContext, EmissionPass
from fp8conv.passes.emit_qdq import EmissionPipeline, EmissionResult

ORDER = [
    "EmitWeightsPass",
    "FoldFp8ConstantsPass",
    "EmitActivationsPass",
    "EmitBiasesPass",
    "RemoveFp8Pass",
    "SetOpsetsPass",
    "TopologicalSortPass",
    "RemoveUnusedNodesPass",
]


def test_the_conversion_keeps_one_record_per_pass_in_order():
    result = convert(residual_cnn())
    records = result.emission_passes
    assert [record.name for record in records] == ORDER
    modified = {record.name: record.modified for record in records}
    # int8 on a CNN with float biases: nothing to fold, nothing left of FP8, the graph already in order.
    assert modified == {
        name: name not in ("FoldFp8ConstantsPass", "RemoveFp8Pass", "TopologicalSortPass") for name in ORDER
    }
    assert all(record.seconds >= 0 for record in records)
    assert sum(record.seconds for record in records) <= result.stage_seconds["emission"]
    assert result.to_json()["emission_passes"] == [
        {"name": record.name, "modified": record.modified, "seconds": record.seconds} for record in records
    ]


def test_the_emission_passes_share_one_context_and_keep_no_run_state():
    model, passes = planned(mlp())
    assert isinstance(passes, EmissionPipeline)
    assert passes.in_place
    emission = [pass_ for pass_ in passes.passes if isinstance(pass_, EmissionPass)]
    assert len(emission) == 6
    assert len({id(pass_.context) for pass_ in emission}) == 1
    result = passes(model)
    assert isinstance(result, EmissionResult)
    assert result.model is model
    assert result.modified
    assert all(set(vars(pass_)) == {"context"} for pass_ in emission)


def test_an_emission_pass_asks_for_the_name_allocator_then_rewrites_the_main_graph(monkeypatch):
    model, passes = planned(mlp())
    context = next(pass_ for pass_ in passes.passes if isinstance(pass_, EmissionPass)).context
    events: list[tuple[str, ir.Graph]] = []
    names = EmissionContext.names
    monkeypatch.setattr(
        EmissionContext, "names", lambda self, graph: events.append(("names", graph)) or names(self, graph)
    )

    class Rewrites(EmissionPass):
        def rewrite(self, graph: ir.Graph) -> bool:
            events.append(("rewrite", graph))
            return graph is model.graph

    result = Rewrites(context)(model)
    assert events == [("names", model.graph), ("rewrite", model.graph)]
    assert result.modified
    assert result.model is model

    class Nothing(EmissionPass):
        pass

    with pytest.raises(NotImplementedError, match="Nothing defines neither rewrite nor call"):
        Nothing(context).call(model)


def test_every_emitted_name_is_unique():
    model, passes = planned(residual_cnn(), "w8a16")
    passes(model)
    nodes = [node.name for node in model.graph]
    values = [value.name for node in model.graph for value in node.outputs]
    values += list(model.graph.initializers) + [value.name for value in model.graph.inputs]
    assert len(set(nodes)) == len(nodes)
    assert len(set(values)) == len(values)


def test_a_broken_contract_is_an_internal_error_naming_the_pass():
    model, passes = planned(mlp())
    passes(model)
    with pytest.raises(
        InternalError, match="emission pass EmitWeightsPass: precondition violated: layer fc1_node: its integer weight"
    ):
        passes(model)


def test_bad_input_is_the_pass_s_own_error_not_a_wrapped_one():
    model, passes = planned(residual_cnn())
    conv1 = next(node for node in model.graph if node.name == "conv1_node")
    conv1.inputs[2].const_value = ir.tensor(np.full(8, np.inf, np.float32))
    with pytest.raises(Fp8ConvError, match="layer conv1_node: cannot quantize its bias") as caught:
        passes(model)
    assert type(caught.value) is Fp8ConvError
