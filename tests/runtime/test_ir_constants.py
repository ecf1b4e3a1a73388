"""The one reader of graph constants (runtime/ir_constants.py): initializers, Constant outputs, FP8 as codes."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir

from fp8conv.passes import canonical
from fp8conv.runtime.ir_constants import FP8_DATA_TYPES, constant_array, constant_tensor


def test_constant_tensor_of_initializers_and_constant_nodes() -> None:
    weight = ir.Value(name="w", const_value=ir.tensor(np.float32([1.0, 2.0]), name="w"))
    constant = ir.node("Constant", [], attributes={"value": ir.tensor(np.int64([3]))})
    scalar_float = ir.node("Constant", [], attributes={"value_float": 1.5})  # not a "value" tensor
    other_domain = ir.node("Constant", [], attributes={"value": ir.tensor(np.int64([3]))}, domain="com.example")
    computed = ir.node("Relu", [weight])
    assert constant_tensor(weight) is weight.const_value
    np.testing.assert_array_equal(constant_tensor(constant.outputs[0]).numpy(), [3])
    assert constant_tensor(scalar_float.outputs[0]) is None
    assert constant_tensor(other_domain.outputs[0]) is None
    assert constant_tensor(computed.outputs[0]) is None
    assert constant_tensor(ir.Value(name="input")) is None
    assert constant_tensor(None) is None


def test_constant_array_reads_fp8_as_uint8_codes() -> None:
    values = np.array([0.5, -2.0], dtype=ml_dtypes.float8_e4m3fn)
    fp8 = ir.Value(name="q", const_value=ir.tensor(values, dtype=ir.DataType.FLOAT8E4M3FN, name="q"))
    codes = constant_array(fp8)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, values.view(np.uint8))
    np.testing.assert_array_equal(constant_array(ir.Value(name="f", const_value=ir.tensor(np.int8([-1])))), [-1])
    assert constant_array(None) is None
    assert set(FP8_DATA_TYPES.values()) == {"e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz"}


def test_canonical_reexports_the_one_reader() -> None:
    assert canonical.constant_array is constant_array
    assert canonical.constant_tensor is constant_tensor
    assert canonical.FP8_DATA_TYPES is FP8_DATA_TYPES
