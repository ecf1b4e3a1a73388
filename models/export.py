"""torch -> ONNX export of a fake-quantized model in the Cast-pair dialect (dynamo exporter)."""

from __future__ import annotations

import contextlib
import io
import logging

import onnx
import onnx_ir as ir
import onnxscript.optimizer
import torch
from torch import nn

OPSET = 21
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _keep_weight_quantizers(node: ir.Node) -> bool | None:
    """Constant-folding veto: a ``Div`` of a constant (a weight by its scale) starts a quantizer chain.

    Folding it would collapse the weight's ``Div -> Clip -> Cast -> Cast -> Mul`` chain into a float
    constant, losing the fake quantizer the chain stands for.
    """
    if node.op_type == "Div" and node.inputs[0] is not None and node.inputs[0].const_value is not None:
        return False
    return None


def _strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node/per-value metadata (stack traces, node paths) and doc strings."""
    graph = model.graph
    for item in [*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        del item.metadata_props[:]
        item.doc_string = ""
    del model.metadata_props[:]
    model.doc_string = ""
    graph.doc_string = ""


def export_cast_dialect(
    model: nn.Module,
    example: tuple[torch.Tensor, ...],
    *,
    input_names: tuple[str, ...] = (INPUT_NAME,),
    output_names: tuple[str, ...] = (OUTPUT_NAME,),
    dynamic_axes: dict[int, str] | None = None,
) -> onnx.ModelProto:
    """Export ``model`` (eval mode, quantizers frozen) with ``torch.onnx.export(dynamo=True)``.

    ``dynamic_axes`` (default ``{0: "batch"}``) names the dynamic dimensions, the same for every input.
    The exporter's own optimizer is replaced by ``onnxscript.optimizer.optimize_ir`` with a folding veto
    (:func:`_keep_weight_quantizers`); then shapes are inferred and the exporter's metadata dropped.
    """
    model.eval()
    dims = {axis: torch.export.Dim(name) for axis, name in (dynamic_axes or {0: "batch"}).items()}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model,
            example,
            dynamo=True,
            optimize=False,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=tuple(dict(dims) for _ in example),
            verbose=False,
        )
    assert program is not None
    onnxscript.optimizer.optimize_ir(program.model, should_fold=_keep_weight_quantizers)
    proto = ir.serde.serialize_model(program.model)
    _strip_metadata(proto)
    proto.producer_name = "fp8conv models/build.py"
    proto.producer_version = ""
    del proto.graph.value_info[:]
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto
