"""What the kernel audit asks of onnx_ir values (runtime/audit/ir_queries.py), on graphs built in code."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx import TensorProto

from fp8conv.runtime.audit import ir_queries


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def _float(name: str) -> ir.Value:
    return ir.Value(name=name, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([1]))


def test_readers_once_per_input_slot_and_only_in_the_value_graph() -> None:
    x, cond = _float("x"), ir.Value(name="cond")
    relu = ir.node("Relu", [x])
    y = relu.outputs[0]
    inner = ir.node("Identity", [y])  # reads y from the outer scope
    then_branch = ir.Graph([], [inner.outputs[0]], nodes=[inner], name="then")
    other = ir.node("Identity", [x])
    else_branch = ir.Graph([], [other.outputs[0]], nodes=[other], name="else")
    branch = ir.node("If", [cond], attributes={"then_branch": then_branch, "else_branch": else_branch})
    add = ir.node("Add", [y, y])
    ir.Graph([x, cond], [add.outputs[0]], nodes=[relu, branch, add])
    assert ir_queries.readers(y) == [add, add]
    assert {use.node for use in y.uses()} == {add, inner}  # onnx_ir itself counts the body's reader
    assert ir_queries.readers(x) == [relu]  # the else body's Identity is not in x's graph
    assert ir_queries.readers(add.outputs[0]) == []
    assert ir_queries.readers(None) == []


def test_dequantizer_is_the_producing_dequantize_linear_only() -> None:
    graph = ir.Graph([], [], nodes=[])
    codes, scale = _initializer(graph, "codes", np.int8([1, 2])), _initializer(graph, "scale", np.float32(0.5))
    dq = ir.node("DequantizeLinear", [codes, scale])
    relu = ir.node("Relu", [dq.outputs[0]])
    graph.extend([dq, relu])
    assert ir_queries.dequantizer(dq.outputs[0]) is dq
    assert ir_queries.dequantizer(relu.outputs[0]) is None
    assert ir_queries.dequantizer(codes) is None
    assert ir_queries.dequantizer(None) is None


def test_small_values_read_only_small_constants() -> None:
    graph = ir.Graph([], [], nodes=[])
    small = _initializer(graph, "small", np.arange(ir_queries.MAX_SMALL_TENSOR, dtype=np.float32))
    large = _initializer(graph, "large", np.arange(ir_queries.MAX_SMALL_TENSOR + 1, dtype=np.float32))
    constant = ir.node("Constant", [], attributes={"value": ir.tensor(np.int32([3, 4]))})
    computed = ir.node("Relu", [small])
    graph.extend([constant, computed])
    np.testing.assert_array_equal(
        ir_queries.small_values(small), np.arange(ir_queries.MAX_SMALL_TENSOR, dtype=np.float32)
    )
    assert ir_queries.small_values(large) is None
    np.testing.assert_array_equal(
        ir_queries.small_values(large, limit=ir_queries.MAX_SMALL_TENSOR + 1), np.arange(17, dtype=np.float32)
    )
    np.testing.assert_array_equal(ir_queries.small_values(constant.outputs[0]), [3, 4])
    assert ir_queries.small_values(computed.outputs[0]) is None
    assert ir_queries.small_values(None) is None


def test_small_values_of_an_unreadable_external_tensor_are_unknown(tmp_path) -> None:
    missing = ir.ExternalTensor("gone.bin", 0, 8, ir.DataType.FLOAT, shape=ir.Shape([2]), name="s", base_dir=tmp_path)
    value = ir.Value(name="s", const_value=missing)
    assert ir_queries.small_values(value) is None
    assert ir_queries.constant_shape(value) == (2,)  # the shape needs no data


def test_constant_shape() -> None:
    graph = ir.Graph([], [], nodes=[])
    weight = _initializer(graph, "w", np.zeros((8, 4, 3, 3), np.int8))
    scalar = _initializer(graph, "s", np.float32(1.0))
    relu = ir.node("Relu", [weight])
    graph.append(relu)
    assert ir_queries.constant_shape(weight) == (8, 4, 3, 3)
    assert ir_queries.constant_shape(scalar) == ()
    assert ir_queries.constant_shape(relu.outputs[0]) is None


def test_elem_type_constant_then_declared_then_quantize_rule_then_dequantize() -> None:
    graph = ir.Graph([], [], nodes=[])
    scale = _initializer(graph, "scale", np.float32(0.1))
    zp8 = _initializer(graph, "zp8", np.int8(0))
    zp16 = _initializer(graph, "zp16", np.int16(0))
    x = _float("x")
    q_default = ir.node("QuantizeLinear", [x, scale])
    q_zero_point = ir.node("QuantizeLinear", [x, scale, zp8])
    q_attribute = ir.node("QuantizeLinear", [x, scale, zp16], attributes={"output_dtype": TensorProto.INT16})
    dq = ir.node("DequantizeLinear", [q_zero_point.outputs[0], scale, zp8])
    relu = ir.node("Relu", [x])
    declared = ir.node("Relu", [x])
    declared.outputs[0].type = ir.TensorType(ir.DataType.FLOAT16)
    undefined = ir.node("Relu", [x])
    undefined.outputs[0].type = ir.TensorType(ir.DataType.UNDEFINED)
    graph.extend([q_default, q_zero_point, q_attribute, dq, relu, declared, undefined])
    assert ir_queries.elem_type(zp16) == TensorProto.INT16
    assert ir_queries.elem_type(x) == TensorProto.FLOAT
    assert ir_queries.elem_type(declared.outputs[0]) == TensorProto.FLOAT16
    assert ir_queries.elem_type(q_default.outputs[0]) == TensorProto.UINT8
    assert ir_queries.elem_type(q_zero_point.outputs[0]) == TensorProto.INT8
    assert ir_queries.elem_type(q_attribute.outputs[0]) == TensorProto.INT16
    assert ir_queries.elem_type(dq.outputs[0]) == TensorProto.FLOAT
    assert ir_queries.elem_type(relu.outputs[0]) is None
    assert ir_queries.elem_type(undefined.outputs[0]) is None  # an undefined declared type is no type
    assert ir_queries.elem_type(None) is None


def test_dq_input_type_falls_back_to_the_zero_point() -> None:
    graph = ir.Graph([], [], nodes=[])
    scale = _initializer(graph, "scale", np.float32(0.1))
    zp = _initializer(graph, "zp", np.uint8(128))
    codes = ir.Value(name="codes")  # a computed tensor of unknown type
    with_zp = ir.node("DequantizeLinear", [codes, scale, zp])
    without_zp = ir.node("DequantizeLinear", [codes, scale])
    typed = ir.node("DequantizeLinear", [_initializer(graph, "w", np.int8([1])), scale, zp])
    graph.extend([with_zp, without_zp, typed])
    assert ir_queries.dq_input_type(with_zp) == TensorProto.UINT8
    assert ir_queries.dq_input_type(without_zp) is None
    assert ir_queries.dq_input_type(typed) == TensorProto.INT8  # the data's own type first


def test_type_name_and_label() -> None:
    assert ir_queries.type_name(TensorProto.INT8) == "INT8"
    assert ir_queries.type_name(ir.DataType.FLOAT8E4M3FN) == "FLOAT8E4M3FN"
    assert ir_queries.type_name(None) == "unknown type"
    assert ir_queries.type_name(999) == "type 999"
    x = _float("x")
    named = ir.node("Conv", [x], name="conv1")
    unnamed = ir.node("Conv", [x], outputs=[ir.Value(name="c_out")])
    no_outputs = ir.node("Conv", [x], num_outputs=0)
    assert ir_queries.label(named) == "conv1"
    assert ir_queries.label(unnamed) == "Conv(c_out)"
    assert ir_queries.label(no_outputs) == "Conv()"
