"""FoldFp8ConstantsPass: FP8 quantizers of constants that are no layer's weight become exact float initializers."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from emission_helpers import planned, run_before
from fp8_models import residual_cnn
from paths import CORPUS

from fp8conv.passes.dequantize_fp8 import exact_weights
from fp8conv.passes.emission import is_fp8_quantizer
from fp8conv.passes.fold_fp8_constants import FoldFp8ConstantsPass

QUARK = CORPUS / "cnn.quark.onnx"  # biases stored as FP8 too


def test_fp8_biases_become_their_exact_float_values():
    model, passes = planned(str(QUARK))
    fold = run_before(model, passes, FoldFp8ConstantsPass)
    quantizers = [
        node
        for node in model.graph
        if is_fp8_quantizer(node) and node.outputs[0].uses() and exact_weights(node) is not None
    ]
    assert quantizers  # the biases' FP8 quantizers, still read
    expected, readers = {}, {}
    for node in quantizers:
        expected[node.outputs[0].name] = exact_weights(node)
        readers[node.outputs[0].name] = [(use.node, use.idx) for use in node.outputs[0].uses()]
    assert fold(model).modified
    for name, uses in readers.items():
        for reader, index in uses:
            folded = reader.inputs[index]
            assert folded.is_initializer()
            assert folded.name.endswith("_fp8_exact")
            np.testing.assert_array_equal(folded.const_value.numpy(), expected[name])


def test_nothing_to_fold_is_not_modified():
    model, passes = planned(residual_cnn())  # its FP8 weights all belong to layers
    fold = run_before(model, passes, FoldFp8ConstantsPass)
    assert not fold(model).modified


def test_requires_the_integer_weights_emitted_first():
    model, passes = planned(residual_cnn())
    fold = passes.passes[1]
    assert isinstance(fold, FoldFp8ConstantsPass)
    with pytest.raises(ir.passes.PreconditionError, match="layer conv1_node: its integer weight is not emitted yet"):
        fold(model)


def test_ensures_no_constant_fp8_quantizer_is_read():
    model, passes = planned(str(QUARK))
    fold = run_before(model, passes, FoldFp8ConstantsPass)
    with pytest.raises(ir.passes.PostconditionError, match="of a constant is still read"):
        fold.ensures(model)
