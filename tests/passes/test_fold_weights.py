"""The reference folds its weight quantizers (lazily) and runs large models from a temporary data file.

Both must leave every output bit as the plain lowering computes it on onnxruntime.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import onnx_ir as ir
import pytest
from fp8_models import mlp, modelopt_transformer, residual_cnn
from golden_models import GOLDEN

from fp8conv.passes.fold_weights import FoldWeightQuantizationPass
from fp8conv.passes.lower_fake_quantize import LowerFakeQuantizePass
from fp8conv.passes.normalize import normalize_fp8
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.runtime import reference
from fp8conv.runtime.reference import ReferenceSession


def _canonical(proto) -> ir.Model:
    return normalize_fp8(ir.from_proto(proto)).model


def _feeds(model: ir.Model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        value.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in value.shape]).astype(np.float32)
        for value in model.graph.inputs
    }


def _unfolded(model: ir.Model) -> ReferenceSession:
    """The reference as it was: every quantizer lowered, onnxruntime folds the constant ones."""
    lowered = model.clone()
    LowerFakeQuantizePass(native=False)(lowered)
    return ReferenceSession(lowered)


MODELS = {
    "mlp": lambda: mlp(batch="batch"),
    "residual_cnn": residual_cnn,
    "modelopt_transformer": modelopt_transformer,
    **{name: case.build for name, case in GOLDEN.items() if name in ("dq_weight", "dq_weight_blocked")},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_folded_reference_computes_the_bits_of_the_lowered_one(name):
    model = _canonical(MODELS[name]())
    feeds = _feeds(model)
    folded = ReferenceRunner(model)
    expected = _unfolded(model).run(feeds)
    got = folded.run(feeds)
    for output, array in expected.items():
        np.testing.assert_array_equal(got[output].view(np.uint32), array.view(np.uint32), err_msg=output)
    lowered_ops = {node.op_type for node in folded.model.graph}
    assert "FakeQuantize" not in lowered_ops


def test_weight_quantizers_become_lazy_initializers_of_the_same_name():
    model = _canonical(mlp(batch="batch"))
    clone = model.clone()
    FoldWeightQuantizationPass()(clone)
    folded = [v for v in clone.graph.initializers.values() if isinstance(v.const_value, ir.LazyTensor)]
    assert sorted(v.name for v in folded) == ["fc1.weight_fp8", "fc2.weight_fp8"]
    assert "fc1.weight" not in clone.graph.initializers  # nothing reads the float weight any more
    assert sum(node.op_type == "FakeQuantize" for node in clone.graph) == 2  # the activations'


def test_a_large_reference_runs_from_a_temporary_data_file(monkeypatch):
    monkeypatch.setattr(reference, "SPILL_THRESHOLD_BYTES", 0)
    model = _canonical(mlp(batch="batch"))
    feeds = _feeds(model)
    runner = ReferenceRunner(model)
    directory = runner._data_dir.name
    assert os.path.isfile(os.path.join(directory, "reference.onnx.data"))
    tensors = [v.const_value for v in runner.model.graph.initializers.values() if v.const_value.nbytes >= 1024]
    assert tensors
    assert all(isinstance(tensor, ir.ExternalTensor) for tensor in tensors)
    expected = _unfolded(model).run(feeds)
    got = runner.run(feeds)
    np.testing.assert_array_equal(got["output"], expected["output"])
    del runner, got
    gc.collect()
    assert not os.path.exists(directory)
