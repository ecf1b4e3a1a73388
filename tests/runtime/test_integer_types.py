"""The one table of integer types (issue 12): ranges, ONNX and NumPy types, the type a QuantizeLinear produces."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from fp8conv.config import IntegerType
from fp8conv.converter.calibration import INT_TYPES, int_type
from fp8conv.passes.detect_unsupported import INTEGER_QUANTIZED_TYPES
from fp8conv.runtime.integer_quantization import weight_range, weight_storage_type
from fp8conv.runtime.integer_types import INTEGER_TYPES, integer_type, integer_type_of, quantize_output_type


@pytest.mark.parametrize("name", list(INTEGER_TYPES))
def test_each_type_agrees_with_numpy_and_onnx(name):
    fmt = INTEGER_TYPES[name]
    assert fmt.name == name
    assert fmt.data_type.name == name.upper() == TensorProto.DataType.Name(fmt.data_type)
    assert integer_type_of(fmt.data_type) is fmt
    assert integer_type_of(int(fmt.data_type)) is fmt
    assert fmt.qmax - fmt.qmin + 1 == 2**fmt.bits
    if fmt.bits >= 8:
        info = np.iinfo(fmt.numpy_dtype)
        assert (fmt.qmin, fmt.qmax) == (info.min, info.max)
    else:
        assert fmt.numpy_dtype == np.dtype(np.int8 if fmt.signed else np.uint8)
        assert np.iinfo(fmt.numpy_dtype).min <= fmt.qmin
        assert fmt.qmax <= np.iinfo(fmt.numpy_dtype).max
    assert fmt.symmetric is fmt.signed


def test_the_table_is_every_integer_quantized_type():
    assert {fmt.data_type for fmt in INTEGER_TYPES.values()} == INTEGER_QUANTIZED_TYPES
    assert set(INT_TYPES) == {member.value for member in IntegerType}
    for name, fmt in INT_TYPES.items():
        assert INTEGER_TYPES[name] is fmt is integer_type(IntegerType(name))


def test_lookups_refuse_unknown_types():
    with pytest.raises(ValueError, match="unknown integer type 'int7'; valid types are: int2"):
        integer_type("int7")
    with pytest.raises(ValueError, match=r"unknown integer type 'int4'; valid types are: uint8, int8, uint16, int16$"):
        int_type("int4")
    assert integer_type_of(TensorProto.FLOAT) is None
    assert integer_type_of(None) is None


def test_weight_storage_and_ranges_come_from_the_table():
    assert weight_storage_type(8) is INTEGER_TYPES["int8"]
    assert weight_storage_type(4) is INTEGER_TYPES["int4"]
    with pytest.raises(ValueError, match="4 or 8 bits"):
        weight_storage_type(7)
    assert weight_range(4) == (4, INTEGER_TYPES["int4"].qmin, INTEGER_TYPES["int4"].qmax)
    assert weight_range(8) == (8, -INTEGER_TYPES["int8"].qmax, INTEGER_TYPES["int8"].qmax)


@pytest.mark.parametrize(
    ("has_zero_point", "zero_point_type", "output_dtype", "expected"),
    [
        (False, None, 0, ir.DataType.UINT8),
        (True, ir.DataType.INT8, 0, ir.DataType.INT8),
        (True, None, 0, None),
        (False, None, TensorProto.INT16, ir.DataType.INT16),
        (True, None, TensorProto.FLOAT8E4M3FN, ir.DataType.FLOAT8E4M3FN),
        (True, ir.DataType.INT4, TensorProto.INT4, ir.DataType.INT4),
    ],
)
def test_quantize_output_type_is_onnx_rule(has_zero_point, zero_point_type, output_dtype, expected):
    got = quantize_output_type(
        has_zero_point=has_zero_point, zero_point_type=zero_point_type, output_dtype=output_dtype
    )
    assert got == expected
    assert got is None or isinstance(got, ir.DataType)


@pytest.mark.parametrize(
    ("zero_point", "output_dtype", "expected"),
    [
        (None, None, TensorProto.UINT8),
        (TensorProto.INT8, None, TensorProto.INT8),
        (None, TensorProto.INT16, TensorProto.INT16),
    ],
)
def test_quantize_output_type_matches_onnx_shape_inference(zero_point, output_dtype, expected):
    initializers = [helper.make_tensor("s", TensorProto.FLOAT, [], [1.0])]
    inputs = ["x", "s"]
    if zero_point is not None:
        initializers.append(helper.make_tensor("z", zero_point, [], [0]))
        inputs.append("z")
    attributes = {"output_dtype": output_dtype} if output_dtype is not None else {}
    node = helper.make_node("QuantizeLinear", inputs, ["y"], **attributes)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [], initializer=initializers
    )
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    inferred = next(v for v in model.graph.value_info if v.name == "y").type.tensor_type.elem_type
    got = quantize_output_type(
        has_zero_point=zero_point is not None, zero_point_type=zero_point, output_dtype=output_dtype or 0
    )
    assert inferred == expected == got
