"""Bounded-time fuzz run of fp8conv's model loader and command line (hypothesis-driven).

Every example is one ``fp8conv`` command run in-process (``click.testing.CliRunner`` on
``fp8conv.cli:cli``) in a fresh temporary directory, on one of five kinds of input:

* ``model-proto``: a committed ONNX file (``tests/corpus/*.onnx``, ``models/*/model*.onnx``) parsed with onnx
  and mutated 1-3 times (delete/duplicate/reorder a node, drop or rename an input or output, change an
  attribute, change an initializer's dtype/shape/data, a scale to 0/negative/NaN/inf/subnormal, a zero
  point's type or value, the opset or IR version, value_info types, duplicate or empty names, op types and
  domains, the graph's inputs and outputs);
* ``model-bytes``: the same files with bytes flipped, truncated, inserted, deleted, zeroed or doubled;
* ``data``: the calibration/verification data broken: wrong input names, shapes, dtypes, NaN/inf, all zeros,
  empty arrays, bad labels, pickled arrays, non-npz bytes, directories of chunks or ``.npy`` files;
* ``cli``: random combinations of options (valid and invalid ``--to``, ``--keep-float``/``--int16``/``--int4``
  regexes, gates, range methods, output and data paths);
* ``config``: ``--config`` files of random YAML/TOML content (syntax errors, wrong types, unknown keys,
  gates tables).

The commands are ``inspect``, ``inspect --json``, ``convert --to X [--data D] -o OUT`` (with ``--no-verify``
mostly, verified on data or random inputs for a fraction), ``run`` and ``verify``. Outcomes:

* exit 0/1: fine (conversion / a gate failed); exit 2: a clean refusal (one-line message, no traceback);
* findings: exit 3 (an internal error), an exception escaping the CLI, any other exit code (also exit 1 from
  ``inspect`` or ``run``, which have no gates), ``Traceback`` in the output, an exit-2 message that is not one
  line, a file written by a command that exited 2, a changed input file, a convert that exited 0/1 without
  a readable output model, a command running past the per-example timeout.

Each new finding is minimized (mutations and options dropped while it still reproduces) and saved with its
input files and command line under ``--crash-dir``. A table of inputs per kind, exit codes and findings is
printed at the end.

    python benchmarks/fuzz.py --seconds 120 [--seed N] [--crash-dir DIR]

The run is split into rounds of ``@given`` examples, each round seeded from ``--seed``, so a seed replays
the same inputs in the same order (the time budget only decides where it stops).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import onnxruntime as ort  # noqa: E402

from fp8conv.cli import cli  # noqa: E402

KINDS = ("model-proto", "model-bytes", "data", "cli", "config")
EXAMPLES_PER_ROUND = 500  # hypothesis starts every round with its simplest example
EXAMPLE_TIMEOUT_S = 60

# -- seeds ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SeedModel:
    """A committed ONNX file and its calibration data."""

    name: str
    path: Path
    data: Path
    content: bytes
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    layer_names: tuple[str, ...]

    def proto(self) -> onnx.ModelProto:
        return onnx.load_from_string(self.content)


def find_seeds() -> list[SeedModel]:
    manifest = json.loads((ROOT / "tests" / "corpus" / "manifest.json").read_text())
    pairs = [
        (ROOT / "tests" / "corpus" / entry["file"], ROOT / "tests" / "corpus" / f"{entry['network']}_calib.npz")
        for entry in manifest["files"]
    ]
    for directory in sorted((ROOT / "models").iterdir()):
        if (directory / "calib.npz").is_file():
            pairs += [(path, directory / "calib.npz") for path in sorted(directory.glob("model*.onnx"))]
    seeds = []
    for path, data in pairs:
        content = path.read_bytes()
        proto = onnx.load_from_string(content)
        initializers = {tensor.name for tensor in proto.graph.initializer}
        layers = []
        for node in proto.graph.node:
            if node.op_type in ("Conv", "MatMul", "Gemm"):
                layers += [node.name, *node.output, *(name for name in node.input[1:2] if name)]
        seeds.append(
            SeedModel(
                name=str(path.relative_to(ROOT)),
                path=path,
                data=data,
                content=content,
                input_names=tuple(v.name for v in proto.graph.input if v.name not in initializers),
                output_names=tuple(v.name for v in proto.graph.output),
                layer_names=tuple(name for name in layers if name),
            )
        )
    return seeds


# -- model mutations (protobuf level) ------------------------------------------------------------------------
#
# A step is (operation, arguments): plain data drawn by hypothesis. Indices are taken modulo the current
# counts when the step is applied, so any subset of a case's steps can be replayed (minimization).

Step = tuple[str, tuple[Any, ...]]

INT_VALUES = [
    -(2**31),
    -100,
    -2,
    -1,
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    32,
    100,
    2**31 - 1,
    2**40,
]
FLOAT_VALUES = [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-45, 1e-30, 1e38, 0.5, 448.0, 57344.0, 3.0e38]
SCALE_VALUES = [0.0, -0.0, -1.0, -0.25, math.nan, math.inf, -math.inf, 1e-45, 1e-40, 1e-30, 1e30, 3.4e38]
TENSOR_TYPES = [
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.DOUBLE,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.INT16,
    TensorProto.UINT16,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.BOOL,
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ,
    TensorProto.FLOAT8E5M2,
    TensorProto.FLOAT8E5M2FNUZ,
    TensorProto.INT4,
    TensorProto.UINT4,
    TensorProto.FLOAT4E2M1,
    TensorProto.FLOAT8E8M0,
    TensorProto.STRING,
    TensorProto.UNDEFINED,
    99,
]
ATTRIBUTE_NAMES = [
    "axis",
    "saturate",
    "block_size",
    "to",
    "transA",
    "transB",
    "group",
    "output_dtype",
    "exponent_bitwidth",
    "mantissa_bitwidth",
    "has_inf",
    "has_nan",
    "has_subnormal",
    "rounding_mode",
    "max_val",
    "precision",
    "",
]
OP_TYPES = [
    "QuantizeLinear",
    "DequantizeLinear",
    "Cast",
    "CastLike",
    "Identity",
    "Relu",
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Mul",
    "Div",
    "Clip",
    "Reshape",
    "Constant",
    "TRT_FP8QuantizeLinear",
    "TRT_FP8DequantizeLinear",
    "FloatQuant",
    "Quant",
    "NoSuchOp",
]
DOMAINS = ["", "ai.onnx", "trt", "com.microsoft", "qonnx.custom_op.general", "bogus.domain"]
OPSETS = [1, 7, 10, 12, 13, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 99]
IR_VERSIONS = [0, 1, 3, 6, 7, 8, 9, 10, 11, 12, 99]
DIMS = [0, 1, 2, 3, 5, 1000, -1, -5]
QUANTIZER_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "TRT_FP8QuantizeLinear",
    "TRT_FP8DequantizeLinear",
    "FloatQuant",
    "Quant",
}

PROTO_OPERATIONS = {
    "delete_node": lambda: st.tuples(st.integers(0, 2**16)),
    "drop_node_input": lambda: st.tuples(st.integers(0, 2**16), st.integers(0, 8), st.booleans()),
    "rename_node_input": lambda: st.tuples(
        st.integers(0, 2**16), st.integers(0, 8), st.sampled_from(["fresh", "other", "graph_input", "empty"])
    ),
    "rename_node_output": lambda: st.tuples(
        st.integers(0, 2**16), st.integers(0, 4), st.sampled_from(["fresh", "other", "graph_input", "empty"])
    ),
    "attribute": lambda: st.tuples(
        st.integers(0, 2**16),
        st.integers(0, 8),
        st.sampled_from(["set_int", "set_float", "remove", "add", "retype", "set_ints"]),
        st.sampled_from(INT_VALUES),
        st.sampled_from(FLOAT_VALUES),
        st.sampled_from(ATTRIBUTE_NAMES),
    ),
    "initializer_dtype": lambda: st.tuples(
        st.integers(0, 2**16), st.sampled_from(TENSOR_TYPES), st.sampled_from(["relabel", "cast"])
    ),
    "initializer_shape": lambda: st.tuples(
        st.integers(0, 2**16),
        st.sampled_from(["wrong_dims", "flatten", "unsqueeze", "scalar", "empty", "transpose", "negative_dim"]),
    ),
    "initializer_data": lambda: st.tuples(
        st.integers(0, 2**16),
        st.sampled_from(
            ["nan", "inf", "-inf", "zero", "huge", "negate", "random", "one_nan", "truncate_raw", "extend_raw", "clear"]
        ),
    ),
    "scale": lambda: st.tuples(st.integers(0, 2**16), st.sampled_from(SCALE_VALUES), st.booleans()),
    "zero_point": lambda: st.tuples(
        st.integers(0, 2**16),
        st.sampled_from(TENSOR_TYPES),
        st.sampled_from([0, 1, 7, -3, 200]),
        st.sampled_from(["retype", "value", "remove", "relabel"]),
    ),
    "opset": lambda: st.tuples(
        st.sampled_from(["set", "remove_default", "duplicate", "remove_custom", "add_custom"]),
        st.sampled_from(OPSETS),
    ),
    "ir_version": lambda: st.tuples(st.sampled_from(IR_VERSIONS)),
    "value_info": lambda: st.tuples(
        st.sampled_from(["clear", "strip_types", "strip_shapes", "wrong_elem_type", "wrong_rank"]),
        st.integers(0, 2**16),
        st.sampled_from(TENSOR_TYPES),
    ),
    "graph_io": lambda: st.tuples(
        st.sampled_from(
            [
                "drop_input",
                "rename_input",
                "input_dtype",
                "input_rank",
                "input_dim",
                "input_dim_param",
                "input_no_shape",
                "drop_output",
                "rename_output",
                "extra_output",
                "output_dtype",
                "no_outputs",
                "duplicate_input",
                "initializer_as_input",
                "output_is_input",
            ]
        ),
        st.integers(0, 2**16),
        st.sampled_from(TENSOR_TYPES),
        st.sampled_from(DIMS),
    ),
    "duplicate_name": lambda: st.tuples(
        st.sampled_from(["node_output", "initializer", "node_name", "initializer_as_output", "input_as_output"]),
        st.integers(0, 2**16),
        st.integers(0, 2**16),
    ),
    "empty_name": lambda: st.tuples(
        st.sampled_from(["node", "node_output", "initializer", "graph_input", "graph_output"]),
        st.integers(0, 2**16),
    ),
    "op_type": lambda: st.tuples(st.integers(0, 2**16), st.sampled_from(OP_TYPES), st.sampled_from([None, *DOMAINS])),
    "domain": lambda: st.tuples(st.integers(0, 2**16), st.sampled_from(DOMAINS)),
    "swap_nodes": lambda: st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)),
    "duplicate_node": lambda: st.tuples(st.integers(0, 2**16), st.booleans()),
}


def _pick(sequence: Any, index: int) -> Any:
    return sequence[index % len(sequence)] if len(sequence) else None


def _tensor_named(model: onnx.ModelProto, name: str) -> onnx.TensorProto | None:
    """The initializer, or the value of the Constant node, that holds tensor ``name``."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return tensor
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    return attribute.t
    return None


def _quantizer_inputs(model: onnx.ModelProto, position: int) -> list[str]:
    """Tensor names at ``position`` of the quantizer-like nodes (1: scales, 2: zero points), Cast-pair scales."""
    names = []
    for node in model.graph.node:
        if node.op_type in QUANTIZER_OPS and len(node.input) > position and node.input[position]:
            names.append(node.input[position])
        elif position == 1 and node.op_type in ("Div", "Mul") and len(node.input) > 1:
            names.append(node.input[1])
    names += [t.name for t in model.graph.initializer if position == 1 and "scale" in t.name.lower()]
    return [name for name in dict.fromkeys(names) if _tensor_named(model, name) is not None]


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                tensors.append(attribute.t)
    return tensors


def _value_names(model: onnx.ModelProto) -> list[str]:
    names = [v.name for v in model.graph.input] + [t.name for t in model.graph.initializer]
    names += [name for node in model.graph.node for name in node.output]
    return [name for name in names if name]


def _replace_array(tensor: onnx.TensorProto, array: np.ndarray) -> None:
    name = tensor.name
    tensor.CopyFrom(numpy_helper.from_array(array, name))


def _retyped(tensor: onnx.TensorProto, dtype: int, values: np.ndarray | None = None) -> onnx.TensorProto:
    """``tensor`` converted to ``dtype`` (values kept, or ``values``), or relabelled when no conversion exists."""
    if values is None:
        values = numpy_helper.to_array(tensor).astype(np.float64)
    dims = list(values.shape)
    flat = values.reshape(-1)
    if dtype == TensorProto.STRING:
        return helper.make_tensor(tensor.name, dtype, dims, [str(v).encode() for v in flat])
    if dtype == TensorProto.BOOL:
        return helper.make_tensor(tensor.name, dtype, dims, [bool(v) for v in np.nan_to_num(flat)])
    if dtype in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16) or dtype in (
        TensorProto.FLOAT8E4M3FN,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
        TensorProto.FLOAT4E2M1,
        TensorProto.FLOAT8E8M0,
    ):
        return helper.make_tensor(tensor.name, dtype, dims, [float(v) for v in flat])
    ints = [int(v) for v in np.clip(np.nan_to_num(flat), -(2**31), 2**31 - 1)]
    return helper.make_tensor(tensor.name, dtype, dims, ints)


def apply_proto_step(model: onnx.ModelProto, step: Step) -> str:
    """Apply one mutation in place; a description of what changed."""
    op, args = step
    graph = model.graph
    nodes = graph.node
    if op == "delete_node":
        node = _pick(nodes, args[0])
        if node is None:
            return "delete_node: no node"
        nodes.remove(node)
        return f"delete node {node.name or node.op_type!r} ({node.op_type})"
    if op in ("drop_node_input", "rename_node_input", "rename_node_output"):
        node = _pick(nodes, args[0])
        if node is None:
            return f"{op}: no node"
        field = node.output if op == "rename_node_output" else node.input
        if not len(field):
            return f"{op}: node {node.name!r} has none"
        j = args[1] % len(field)
        old = field[j]
        if op == "drop_node_input":
            if args[2]:
                del field[j]
                return f"remove input #{j} ({old!r}) of node {node.name!r} ({node.op_type})"
            field[j] = ""
            return f"empty input #{j} ({old!r}) of node {node.name!r} ({node.op_type})"
        choice = args[2]
        if choice == "fresh":
            new = f"fuzz_{old}_renamed"
        elif choice == "other":
            new = _pick(_value_names(model), args[0] * 7 + j) or "x"
        elif choice == "graph_input":
            new = graph.input[0].name if len(graph.input) else "x"
        else:
            new = ""
        field[j] = new
        where = "output" if op == "rename_node_output" else "input"
        return f"rename {where} #{j} of node {node.name!r} ({node.op_type}) {old!r} -> {new!r}"
    if op == "attribute":
        index, k, action, int_value, float_value, name = args
        node = _pick(nodes, index)
        if node is None:
            return "attribute: no node"
        attributes = node.attribute
        if action == "add" or not len(attributes):
            attributes.append(helper.make_attribute(name, int_value))
            return f"add attribute {name}={int_value} to node {node.name!r} ({node.op_type})"
        attribute = attributes[k % len(attributes)]
        label = f"attribute {attribute.name} of node {node.name!r} ({node.op_type})"
        if action == "remove":
            attributes.remove(attribute)
            return f"remove {label}"
        if action == "retype":
            new = (
                helper.make_attribute(attribute.name, "text")
                if attribute.type != onnx.AttributeProto.STRING
                else helper.make_attribute(attribute.name, int_value)
            )
            attribute.CopyFrom(new)
            return f"retype {label} to {onnx.AttributeProto.AttributeType.Name(new.type)}"
        if action == "set_ints":
            attribute.CopyFrom(helper.make_attribute(attribute.name, [int_value, int_value]))
            return f"set {label} to ints [{int_value}, {int_value}]"
        if attribute.type == onnx.AttributeProto.TENSOR:
            tensor = attribute.t
            try:
                array = numpy_helper.to_array(tensor)
                value = int_value if action == "set_int" else float_value
                _replace_array(tensor, np.full(array.shape, value).astype(array.dtype))
            except Exception as error:  # a tensor that cannot be rebuilt: relabel its type instead
                tensor.data_type = TensorProto.INT8
                return f"relabel tensor {label} as INT8 ({type(error).__name__})"
            return f"set tensor {label} to {value!r}"
        if action == "set_int":
            attribute.CopyFrom(helper.make_attribute(attribute.name, int_value))
            return f"set {label} to {int_value}"
        attribute.CopyFrom(helper.make_attribute(attribute.name, float_value))
        return f"set {label} to {float_value!r}"
    if op == "initializer_dtype":
        index, dtype, mode = args
        tensor = _pick(_all_tensors(model), index)
        if tensor is None:
            return "initializer_dtype: no tensor"
        old = TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in TensorProto.DataType.values() else "?"
        new_name = TensorProto.DataType.Name(dtype) if dtype in TensorProto.DataType.values() else str(dtype)
        if mode == "cast":
            try:
                tensor.CopyFrom(_retyped(tensor, dtype))
                return f"cast tensor {tensor.name!r} {old} -> {new_name}"
            except Exception:  # no such conversion: fall back to relabelling
                pass
        tensor.data_type = dtype
        return f"relabel tensor {tensor.name!r} {old} -> {new_name} (data unchanged)"
    if op == "initializer_shape":
        index, mode = args
        tensor = _pick(_all_tensors(model), index)
        if tensor is None:
            return "initializer_shape: no tensor"
        old = list(tensor.dims)
        if mode == "wrong_dims":
            if tensor.dims:
                tensor.dims[0] += 1
            else:
                tensor.dims.append(2)
        elif mode == "negative_dim":
            tensor.dims[:] = [-1, *old[1:]] if old else [-1]
        else:
            try:
                array = numpy_helper.to_array(tensor)
            except Exception as error:
                return f"initializer_shape: {tensor.name!r} unreadable ({type(error).__name__})"
            if mode == "flatten":
                array = array.reshape(-1)
            elif mode == "unsqueeze":
                array = array[None]
            elif mode == "scalar":
                array = array.reshape(-1)[:1].reshape(()) if array.size else np.zeros((), array.dtype)
            elif mode == "empty":
                array = array.reshape(-1)[:0]
            else:
                array = array.transpose()
            try:
                _replace_array(tensor, np.ascontiguousarray(array))
            except Exception as error:
                return f"initializer_shape: {tensor.name!r} not rebuilt ({type(error).__name__})"
        return f"reshape tensor {tensor.name!r} {old} -> {list(tensor.dims)} ({mode})"
    if op == "initializer_data":
        index, mode = args
        tensor = _pick(_all_tensors(model), index)
        if tensor is None:
            return "initializer_data: no tensor"
        if mode in ("truncate_raw", "extend_raw", "clear"):
            if mode == "clear":
                for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "string_data"):
                    tensor.ClearField(field)
            elif tensor.HasField("raw_data"):
                raw = tensor.raw_data
                tensor.raw_data = raw[: len(raw) // 2] if mode == "truncate_raw" else raw + b"\x01\x02\x03\x04"
            else:
                return f"initializer_data: {tensor.name!r} has no raw data"
            return f"{mode} data of tensor {tensor.name!r}"
        try:
            array = numpy_helper.to_array(tensor)
            values = array.astype(np.float64)
        except Exception as error:
            return f"initializer_data: {tensor.name!r} unreadable ({type(error).__name__})"
        if mode in ("nan", "inf", "-inf", "zero", "huge"):
            fill = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "zero": 0.0, "huge": 1e38}[mode]
            values = np.full(values.shape, fill)
        elif mode == "negate":
            values = -values
        elif mode == "random":
            values = np.random.default_rng(index).standard_normal(values.shape) * 100
        elif values.size:
            values = values.copy()
            values.reshape(-1)[index % values.size] = np.nan
        with np.errstate(all="ignore"):
            try:
                _replace_array(tensor, values.astype(array.dtype))
            except Exception as error:
                return f"initializer_data: {tensor.name!r} not rebuilt ({type(error).__name__})"
        return f"set data of tensor {tensor.name!r} ({array.dtype}, {list(array.shape)}) to {mode}"
    if op == "scale":
        index, value, everywhere = args
        name = _pick(_quantizer_inputs(model, 1), index)
        if name is None:
            return "scale: no scale"
        tensor = _tensor_named(model, name)
        try:
            array = numpy_helper.to_array(tensor)
            values = array.astype(np.float64).copy()
            if everywhere or not values.size:
                values[...] = value
            else:
                values.reshape(-1)[index % values.size] = value
            with np.errstate(all="ignore"):
                _replace_array(tensor, values.astype(array.dtype))
        except Exception as error:
            return f"scale {name!r}: not rebuilt ({type(error).__name__})"
        return f"set {'every' if everywhere else 'one'} scale of {name!r} ({array.dtype}) to {value!r}"
    if op == "zero_point":
        index, dtype, value, mode = args
        dtype_name = TensorProto.DataType.Name(dtype) if dtype in TensorProto.DataType.values() else str(dtype)
        if mode == "remove":
            for node in nodes:
                if node.op_type in QUANTIZER_OPS and len(node.input) > 2 and node.input[2]:
                    candidates = [n for n in nodes if n.op_type in QUANTIZER_OPS and len(n.input) > 2]
                    target = _pick(candidates, index)
                    old = target.input[2]
                    del target.input[2:]
                    return f"remove zero point {old!r} of node {target.name!r} ({target.op_type})"
            return "zero_point: none to remove"
        name = _pick(_quantizer_inputs(model, 2), index)
        if name is None:
            return "zero_point: no zero point"
        tensor = _tensor_named(model, name)
        if mode == "relabel":
            tensor.data_type = dtype
            return f"relabel zero point {name!r} as {dtype_name} (data unchanged)"
        try:
            array = numpy_helper.to_array(tensor)
            values = np.full(array.shape, float(value)) if mode == "value" else array.astype(np.float64)
            tensor.CopyFrom(_retyped(tensor, dtype if mode == "retype" else tensor.data_type, values))
        except Exception as error:
            return f"zero point {name!r}: not rebuilt ({type(error).__name__})"
        return f"zero point {name!r}: {'type ' + dtype_name if mode == 'retype' else 'value ' + str(value)}"
    if op == "opset":
        mode, version = args
        imports = model.opset_import
        default = [entry for entry in imports if entry.domain in ("", "ai.onnx")]
        if mode == "set":
            for entry in default:
                entry.version = version
            return f"set ai.onnx opset to {version}"
        if mode == "remove_default":
            for entry in default:
                imports.remove(entry)
            return "remove the ai.onnx opset import"
        if mode == "duplicate":
            imports.append(helper.make_opsetid("", version))
            return f"add a second ai.onnx opset import ({version})"
        if mode == "remove_custom":
            custom = [entry for entry in imports if entry.domain not in ("", "ai.onnx")]
            for entry in custom:
                imports.remove(entry)
            return f"remove custom-domain opset imports {[e.domain for e in custom]}"
        imports.append(helper.make_opsetid("trt" if version % 2 else "qonnx.custom_op.general", version))
        return f"add custom opset import (version {version})"
    if op == "ir_version":
        model.ir_version = args[0]
        return f"set IR version to {args[0]}"
    if op == "value_info":
        mode, index, dtype = args
        infos = list(graph.value_info)
        if mode == "clear":
            graph.ClearField("value_info")
            return f"clear value_info ({len(infos)} entries)"
        values = infos + list(graph.input) + list(graph.output)
        value = _pick(values, index)
        if value is None:
            return "value_info: none"
        if mode == "strip_types":
            value.ClearField("type")
        elif mode == "strip_shapes":
            value.type.tensor_type.ClearField("shape")
        elif mode == "wrong_elem_type":
            value.type.tensor_type.elem_type = dtype
        else:
            value.type.tensor_type.shape.dim.add().dim_value = 3
        return f"value {value.name!r}: {mode}"
    if op == "graph_io":
        mode, index, dtype, dim = args
        initializers = {t.name for t in graph.initializer}
        inputs = [v for v in graph.input if v.name not in initializers]
        value = _pick(inputs, index)
        output = _pick(graph.output, index)
        if mode == "drop_input" and value is not None:
            graph.input.remove(value)
            return f"drop graph input {value.name!r}"
        if mode == "rename_input" and value is not None:
            value.name = value.name + "_renamed"
            return f"rename graph input {value.name!r} (its readers keep the old name)"
        if mode == "input_dtype" and value is not None:
            value.type.tensor_type.elem_type = dtype
            return f"graph input {value.name!r} elem_type -> {dtype}"
        if mode == "input_rank" and value is not None:
            value.type.tensor_type.shape.dim.add().dim_value = 2
            return f"graph input {value.name!r}: one more dim"
        if mode == "input_dim" and value is not None and value.type.tensor_type.shape.dim:
            dims = value.type.tensor_type.shape.dim
            target = dims[index % len(dims)]
            target.Clear()
            target.dim_value = dim
            return f"graph input {value.name!r}: dim {index % len(dims)} -> {dim}"
        if mode == "input_dim_param" and value is not None and value.type.tensor_type.shape.dim:
            dims = value.type.tensor_type.shape.dim
            target = dims[index % len(dims)]
            target.Clear()
            target.dim_param = "fuzz_dim"
            return f"graph input {value.name!r}: dim {index % len(dims)} symbolic"
        if mode == "input_no_shape" and value is not None:
            value.type.tensor_type.ClearField("shape")
            return f"graph input {value.name!r}: no shape"
        if mode == "drop_output" and output is not None:
            graph.output.remove(output)
            return f"drop graph output {output.name!r}"
        if mode == "rename_output" and output is not None:
            output.name = output.name + "_renamed"
            return f"rename graph output {output.name!r} (no node makes it)"
        if mode == "extra_output":
            name = _pick([name for node in nodes for name in node.output if name], index)
            if name is None:
                return "extra_output: none"
            graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
            return f"add graph output {name!r}"
        if mode == "output_dtype" and output is not None:
            output.type.tensor_type.elem_type = dtype
            return f"graph output {output.name!r} elem_type -> {dtype}"
        if mode == "no_outputs":
            graph.ClearField("output")
            return "remove every graph output"
        if mode == "duplicate_input" and value is not None:
            graph.input.append(value)
            return f"list graph input {value.name!r} twice"
        if mode == "initializer_as_input":
            tensor = _pick(graph.initializer, index)
            if tensor is None:
                return "initializer_as_input: none"
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
            return f"list initializer {tensor.name!r} as a graph input"
        if mode == "output_is_input" and value is not None:
            graph.output.append(value)
            return f"list graph input {value.name!r} as a graph output"
        return f"graph_io {mode}: nothing to change"
    if op == "duplicate_name":
        mode, i, j = args
        if mode == "node_output":
            a, b = _pick(nodes, i), _pick(nodes, j)
            if a is None or not len(a.output) or not len(b.output):
                return "duplicate_name: no node"
            a.output[0] = b.output[0]
            return f"node {a.name!r} ({a.op_type}) now also produces {b.output[0]!r}"
        if mode == "initializer":
            tensor = _pick(graph.initializer, i)
            if tensor is None:
                return "duplicate_name: no initializer"
            copy = graph.initializer.add()
            copy.CopyFrom(tensor)
            return f"duplicate initializer {tensor.name!r}"
        if mode == "node_name":
            name = (_pick(nodes, i).name if len(nodes) else "") or "same"
            for node in nodes:
                node.name = name
            return f"name every node {name!r}"
        if mode == "initializer_as_output":
            tensor, node = _pick(graph.initializer, i), _pick(nodes, j)
            if tensor is None or node is None or not len(node.output):
                return "duplicate_name: none"
            tensor.name = node.output[0]
            return f"rename initializer to {node.output[0]!r}, a node output"
        node = _pick(nodes, i)
        if node is None or not len(graph.input) or not len(node.output):
            return "duplicate_name: none"
        node.output[0] = graph.input[0].name
        return f"node {node.name!r} ({node.op_type}) writes graph input {graph.input[0].name!r}"
    if op == "empty_name":
        mode, index = args
        if mode == "node":
            node = _pick(nodes, index)
            if node is None:
                return "empty_name: no node"
            old, node.name = node.name, ""
            return f"empty the name of node {old!r}"
        if mode == "node_output":
            node = _pick(nodes, index)
            if node is None or not len(node.output):
                return "empty_name: no node"
            old, node.output[0] = node.output[0], ""
            return f"empty output {old!r} of node {node.name!r} ({node.op_type})"
        if mode == "initializer":
            tensor = _pick(graph.initializer, index)
            if tensor is None:
                return "empty_name: no initializer"
            old, tensor.name = tensor.name, ""
            return f"empty the name of initializer {old!r}"
        values = graph.input if mode == "graph_input" else graph.output
        value = _pick(values, index)
        if value is None:
            return "empty_name: none"
        old, value.name = value.name, ""
        return f"empty the name of {mode} {old!r}"
    if op == "op_type":
        index, op_type, domain = args
        node = _pick(nodes, index)
        if node is None:
            return "op_type: no node"
        old = f"{node.domain}::{node.op_type}"
        node.op_type = op_type
        if domain is not None:
            node.domain = domain
        return f"node {node.name!r} {old} -> {node.domain}::{op_type}"
    if op == "domain":
        index, domain = args
        node = _pick(nodes, index)
        if node is None:
            return "domain: no node"
        old, node.domain = node.domain, domain
        return f"node {node.name!r} ({node.op_type}) domain {old!r} -> {domain!r}"
    if op == "swap_nodes":
        if len(nodes) < 2:
            return "swap_nodes: too few"
        i, j = args[0] % len(nodes), args[1] % len(nodes)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[j])
        nodes[i].CopyFrom(b)
        nodes[j].CopyFrom(a)
        return f"swap nodes #{i} ({a.name!r}) and #{j} ({b.name!r})"
    if op == "duplicate_node":
        node = _pick(nodes, args[0])
        if node is None:
            return "duplicate_node: no node"
        copy = nodes.add()
        copy.CopyFrom(node)
        if args[1]:
            copy.output[:] = [f"{name}_dup" if name else name for name in copy.output]
            copy.name = f"{node.name}_dup"
            return f"duplicate node {node.name!r} ({node.op_type}) with new output names"
        return f"duplicate node {node.name!r} ({node.op_type}) as it is (same outputs)"
    raise AssertionError(f"unknown mutation {op}")


# -- model mutations (byte level) ----------------------------------------------------------------------------

BYTE_OPERATIONS = {
    "flip": lambda: st.tuples(st.integers(0, 2**20), st.integers(0, 7), st.integers(1, 16)),
    "truncate": lambda: st.tuples(st.integers(0, 2**20)),
    "insert": lambda: st.tuples(st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    "delete": lambda: st.tuples(st.integers(0, 2**20), st.integers(1, 64)),
    "overwrite": lambda: st.tuples(st.integers(0, 2**20), st.integers(1, 64), st.sampled_from([0x00, 0xFF, 0x80])),
    "double": lambda: st.tuples(st.booleans()),
    "empty": lambda: st.tuples(),
    "prepend": lambda: st.tuples(st.binary(min_size=1, max_size=16)),
}


def apply_byte_step(content: bytes, step: Step) -> tuple[bytes, str]:
    op, args = step
    size = len(content)
    if op == "empty":
        return b"", "empty file"
    if op == "double":
        return (
            (content + content, "file twice (protobuf merges: every node and tensor twice)")
            if args[0]
            else (
                content + content[: size // 2],
                "file plus its first half",
            )
        )
    if op == "prepend":
        return args[0] + content, f"prepend {args[0].hex()}"
    if not size:
        return content, f"{op}: empty file"
    position = args[0] % size
    if op == "flip":
        data = bytearray(content)
        for k in range(args[2]):
            data[(position + k * 7919) % size] ^= 1 << ((args[1] + k) % 8)
        return bytes(data), f"flip {args[2]} bit(s) from byte {position}"
    if op == "truncate":
        return content[:position], f"truncate to {position} of {size} bytes"
    if op == "insert":
        return content[:position] + args[1] + content[position:], f"insert {args[1].hex()} at byte {position}"
    if op == "delete":
        return content[:position] + content[position + args[1] :], f"delete {args[1]} bytes at {position}"
    if op == "overwrite":
        end = min(size, position + args[1])
        return content[:position] + bytes([args[2]]) * (end - position) + content[end:], (
            f"overwrite bytes {position}..{end} with {args[2]:#04x}"
        )
    raise AssertionError(f"unknown byte mutation {op}")


# -- calibration data ----------------------------------------------------------------------------------------

DATA_OPERATIONS = [
    "wrong_name",
    "extra_array",
    "no_arrays",
    "drop_dim",
    "add_dim",
    "change_dim",
    "scalar",
    "one_sample",
    "empty",
    "float16",
    "float64",
    "int32",
    "int8",
    "bool",
    "complex64",
    "unicode",
    "all_nan",
    "some_nan",
    "inf",
    "-inf",
    "all_zero",
    "huge",
    "subnormal",
    "labels_count",
    "labels_float",
    "labels_2d",
    "labels_negative",
    "labels_unicode",
    "pickled",
    "random_bytes",
    "truncated_npz",
    "npy_as_npz",
    "onnx_as_npz",
    "empty_file",
    "dir_empty",
    "dir_npy",
    "dir_npy_wrong_name",
    "dir_npz_mixed_labels",
    "dir_npz_mismatched",
    "npy_file",
    "missing",
]


@dataclasses.dataclass
class DataFile:
    """What the data path holds once written: an npz, raw bytes, a directory of entries, or nothing."""

    name: str
    arrays: dict[str, np.ndarray] | None = None
    content: bytes | None = None
    entries: dict[str, Any] | None = None  # file name -> arrays (npz), np.ndarray (npy) or bytes
    missing: bool = False


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # object arrays are pickled
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def mutate_data(seed_model: SeedModel, op: str, index: int) -> tuple[DataFile, str]:
    arrays = dict(np.load(seed_model.data))
    name = next(iter(arrays))
    x = arrays[name]
    n = len(x)
    if op == "wrong_name":
        return DataFile("calib.npz", {name + "_wrong": x}), f"array named {name + '_wrong'!r} instead of {name!r}"
    if op == "extra_array":
        return DataFile("calib.npz", {**arrays, "unexpected": x[:, :1]}), "an extra array 'unexpected'"
    if op == "no_arrays":
        return DataFile("calib.npz", {}), "an npz with no arrays"
    if op == "drop_dim":
        return DataFile("calib.npz", {name: x.reshape(n, -1)[:, : max(1, x[0].size // 2)]}), "one dim fewer"
    if op == "add_dim":
        return DataFile("calib.npz", {name: x[:, None]}), "one dim more"
    if op == "change_dim":
        axis = 1 + index % (x.ndim - 1)
        return DataFile("calib.npz", {name: np.take(x, range(x.shape[axis] - 1), axis=axis)}), f"dim {axis} - 1"
    if op == "scalar":
        return DataFile("calib.npz", {name: np.float32(1.5)}), "a 0-d array"
    if op == "one_sample":
        return DataFile("calib.npz", {name: x[:1]}), "one sample"
    if op == "empty":
        return DataFile("calib.npz", {name: x[:0]}), "no samples (first axis 0)"
    if op in ("float16", "float64", "int32", "int8", "bool", "complex64"):
        return DataFile("calib.npz", {name: x.astype(op)}), f"dtype {op}"
    if op == "unicode":
        return DataFile("calib.npz", {name: x.astype(str)}), "a unicode string array"
    if op in ("all_nan", "inf", "-inf", "all_zero", "huge", "subnormal"):
        value = {"all_nan": np.nan, "inf": np.inf, "-inf": -np.inf, "all_zero": 0.0, "huge": 3e38, "subnormal": 1e-42}
        return DataFile("calib.npz", {name: np.full_like(x, value[op])}), f"every value {value[op]}"
    if op == "some_nan":
        y = x.copy()
        y.reshape(-1)[index % y.size] = np.nan
        return DataFile("calib.npz", {name: y}), "one NaN"
    if op.startswith("labels_"):
        labels = {
            "labels_count": np.zeros(n + 1, np.int64),
            "labels_float": np.full(n, 0.5, np.float32),
            "labels_2d": np.zeros((n, 3), np.int64),
            "labels_negative": np.full(n, -7, np.int64),
            "labels_unicode": np.array(["cat"] * n),
        }[op]
        return DataFile("calib.npz", {**arrays, "labels": labels}), f"labels {op[7:]}"
    if op == "pickled":
        return DataFile("calib.npz", content=_npz_bytes({name: np.array([x[0], "x"], dtype=object)})), "pickle"
    if op == "random_bytes":
        return DataFile("calib.npz", content=np.random.default_rng(index).bytes(100 + index % 400)), "random bytes"
    if op == "truncated_npz":
        content = _npz_bytes(arrays)
        return DataFile("calib.npz", content=content[: index % len(content)]), "a truncated npz"
    if op == "npy_as_npz":
        return DataFile("calib.npz", content=_npy_bytes(x)), "an .npy file named .npz"
    if op == "onnx_as_npz":
        return DataFile("calib.npz", content=seed_model.content), "the ONNX model named .npz"
    if op == "empty_file":
        return DataFile("calib.npz", content=b""), "an empty file"
    if op == "dir_empty":
        return DataFile("calib", entries={}), "an empty directory"
    if op == "dir_npy":
        return DataFile("calib", entries={f"{name}.npy": x}), "a directory with <input>.npy"
    if op == "dir_npy_wrong_name":
        return DataFile("calib", entries={"other.npy": x}), "a directory with other.npy"
    if op == "dir_npz_mixed_labels":
        entries = {"a.npz": {name: x[: n // 2], "labels": np.zeros(n // 2, np.int64)}, "b.npz": {name: x[n // 2 :]}}
        return DataFile("calib", entries=entries), "a directory of npz chunks, labels in one only"
    if op == "dir_npz_mismatched":
        entries = {"a.npz": {name: x[: n // 2]}, "b.npz": {name: x[n // 2 :, None]}}
        return DataFile("calib", entries=entries), "a directory of npz chunks of different shapes"
    if op == "npy_file":
        return DataFile("calib.npy", content=_npy_bytes(x)), "a single .npy file"
    return DataFile("calib.npz", missing=True), "a path that does not exist"


# -- config files --------------------------------------------------------------------------------------------

CONFIG_KEYS = [
    "target",
    "weights_range",
    "activations_range",
    "activation_type",
    "full_range_weights",
    "int4_block_size",
    "keep_float",
    "int16",
    "int4",
    "auto_int16_below_db",
    "percentile",
    "calibration_batch_size",
    "calibration_workers",
    "max_calibration_samples",
    "gates",
    "bogus_option",
]
GATE_KEYS = [
    "min_sqnr",
    "min_cosine",
    "max_top1_drop",
    "max_accuracy_drop",
    "max_abs_err",
    "min_integer_kernels",
    "bogus_gate",
]
REGEXES = ["", ".*", "(", "[", "nomatch", "\\", "^$", "(?P<", "conv|matmul", "*", "a{99999999}", "(?i)CONV"]
PLAUSIBLE = {
    "target": ["int8", "int4", "w8a16", "w4a16", "int9", "INT8", ""],
    "weights_range": ["mse", "max", "minmax"],
    "activations_range": ["mse", "minmax", "percentile", "entropy", "fp8", "nope"],
    "activation_type": ["uint8", "int8", "int16"],
    "full_range_weights": [True, False, "yes", 1],
    "int4_block_size": [None, 16, 32, 64, 128, 256, 0, 3, -32, 32.0, "32"],
    "auto_int16_below_db": [None, 25, 25.5, -1, math.nan, math.inf, "25"],
    "percentile": [99.9, 100, 50, 50.0001, 101, math.nan, "99"],
    "calibration_batch_size": [1, 2, 7, 0, -1, 10**9, 2.5],
    "calibration_workers": [None, 1, 2, 0, -3, 64],
    "max_calibration_samples": [None, 1, 2, 5, 0, -1, 10**12],
}


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([0, 1, -1, 2, 32, 10**20]),
        st.sampled_from([0.0, 1.5, -2.0, math.nan, math.inf, -math.inf, 1e300]),
        st.text(alphabet="abc:/.*[]{}()-_ '\"#\\", max_size=8),
    )


def yaml_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(alphabet="abxyz_", max_size=4), inner, max_size=3)
        ),
        max_leaves=6,
    )


def _toml_value(value: Any) -> str:
    if value is None:
        return "null"  # not TOML: a syntax error on purpose
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(document: dict[str, Any]) -> str:
    lines = []
    tables = []
    for key, value in document.items():
        if isinstance(value, dict) and key in ("gates", "fp8conv"):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"[{key}]")
        lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def config_files(draw: Any, seed_model: SeedModel) -> tuple[str, bytes, str]:
    """(file name, content, description) of a random config file."""
    special = draw(st.sampled_from(["document"] * 8 + ["non_utf8", "not_mapping", "directory", "missing"]))
    suffix = draw(st.sampled_from([".yaml", ".yaml", ".yml", ".toml", ".toml", ".json", ".txt", ""]))
    if special == "non_utf8":
        return f"config{suffix}", b"target: int8\n\xff\xfe\x00bad\n", "non-UTF-8 bytes"
    if special == "not_mapping":
        text = draw(st.sampled_from(["- a\n- b\n", "42\n", "just text\n", "[1, 2]\n", "~\n", "x = [1,\n"]))
        return f"config{suffix}", text.encode(), f"not a mapping: {text.strip()!r}"
    if special in ("directory", "missing"):
        return f"config{suffix}", b"", special
    document: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=5, unique=True)):
        if key == "gates":
            gates = {}
            for gate in draw(st.lists(st.sampled_from(GATE_KEYS), max_size=3, unique=True)):
                outputs = [*seed_model.output_names, "no_such_output"]
                gates[gate] = draw(
                    st.one_of(
                        st.sampled_from([10, 0.5, 0, -1, "off", "plan", 1e9, math.nan, None]),
                        st.dictionaries(st.sampled_from(outputs), st.sampled_from([10, "off", "x"]), max_size=2),
                        yaml_values(),
                    )
                )
            document[key] = gates
        elif key in ("keep_float", "int16", "int4"):
            patterns = st.sampled_from([*seed_model.layer_names, *REGEXES])
            document[key] = draw(st.one_of(patterns, st.lists(patterns, max_size=3), yaml_values()))
        elif key in PLAUSIBLE and draw(st.integers(0, 3)):
            document[key] = draw(st.sampled_from(PLAUSIBLE[key]))
        else:
            document[key] = draw(yaml_values())
    if draw(st.integers(0, 5)) == 0:
        document = {"fp8conv": document}
    as_toml = suffix == ".toml" if draw(st.integers(0, 5)) else suffix != ".toml"
    text = to_toml(document) if as_toml else yaml.safe_dump(document, allow_unicode=True)
    how = f"{'TOML' if as_toml else 'YAML'} {document!r}"
    corruption = draw(st.sampled_from([None] * 6 + ["truncate", "insert", "delete", "tab"]))
    if corruption and text:
        at = draw(st.integers(0, len(text) - 1))
        if corruption == "truncate":
            text = text[:at]
        elif corruption == "insert":
            text = text[:at] + draw(st.sampled_from(list(":[]{}\"'=#,\n&*!|>%@`"))) + text[at:]
        elif corruption == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + "\t" + text[at:]
        how += f", {corruption} at {at}"
    return f"config{suffix}", text.encode(), how


# -- command lines -------------------------------------------------------------------------------------------
#
# Arguments hold placeholders, filled in per work directory: {MODEL} the (mutated) model, {SEED} an
# unmutated copy of the seed, {DATA} the calibration data, {OUT} the output path, {CONFIG} the config file,
# {REPORT} a report directory, {EMPTYDIR} an empty directory, {MISSING} a path that does not exist,
# {TEXT} a small text file, {DIR} the work directory.


def option_groups(seed_model: SeedModel) -> dict[str, st.SearchStrategy[list[str]]]:
    patterns = st.sampled_from([*seed_model.layer_names, *(re.escape(n) for n in seed_model.layer_names), *REGEXES])
    outputs = [*seed_model.output_names, "nosuch"]
    gate_values = st.sampled_from(["10", "0", "-5", "off", "nan", "inf", "x", "", ":", "a:b:c", "1e400"])
    gate_specs = st.one_of(gate_values, st.tuples(st.sampled_from(outputs), gate_values).map(":".join))
    paths = st.sampled_from(["{DATA}", "{MISSING}", "{MODEL}", "{EMPTYDIR}", "{TEXT}", "{DIR}"])
    return {
        "to": st.sampled_from(["int8", "int4", "w8a16", "w4a16", "INT8", "int9", "", "fp8"]).map(lambda v: ["--to", v]),
        "data": paths.map(lambda v: ["--data", v]),
        "verify-data": paths.map(lambda v: ["--verify-data", v]),
        "output": st.sampled_from(["{OUT}", "{MODEL}", "{DIR}", "{MISSING}/sub/out.onnx", "{TEXT}/out.onnx", ""]).map(
            lambda v: ["-o", v]
        ),
        "keep-float": patterns.map(lambda v: ["--keep-float", v]),
        "int16": patterns.map(lambda v: ["--int16", v]),
        "int4": patterns.map(lambda v: ["--int4", v]),
        "weights-range": st.sampled_from(["mse", "max", "min"]).map(lambda v: ["--weights-range", v]),
        "activations-range": st.sampled_from(["mse", "minmax", "percentile", "entropy", "fp8", "x"]).map(
            lambda v: ["--activations-range", v]
        ),
        "activation-type": st.sampled_from(["uint8", "int8", "int4"]).map(lambda v: ["--activation-type", v]),
        "full-range-weights": st.just(["--full-range-weights"]),
        "int4-block-size": st.sampled_from(["0", "32", "64", "128", "16", "x"]).map(lambda v: ["--int4-block-size", v]),
        "auto-int16": st.sampled_from(["25", "0", "-1", "nan", "inf", "1e308", "x"]).map(lambda v: ["--auto-int16", v]),
        "max-samples": st.sampled_from(["1", "2", "3", "0", "-1", "x", str(10**12)]).map(
            lambda v: ["--max-samples", v]
        ),
        "external-data": st.sampled_from(["--external-data", "--no-external-data"]).map(lambda v: [v]),
        "no-audit": st.just(["--no-audit"]),
        "no-verify": st.just(["--no-verify"]),
        "json": st.just(["--json"]),
        "report": st.sampled_from(["{REPORT}", "{TEXT}", "{MODEL}", "{MISSING}/deep/report"]).map(
            lambda v: ["--report", v]
        ),
        "min-sqnr": gate_specs.map(lambda v: ["--min-sqnr", v]),
        "min-cosine": gate_specs.map(lambda v: ["--min-cosine", v]),
        "max-top1-drop": gate_specs.map(lambda v: ["--max-top1-drop", v]),
        "max-accuracy-drop": gate_specs.map(lambda v: ["--max-accuracy-drop", v]),
        "max-abs-err": gate_specs.map(lambda v: ["--max-abs-err", v]),
        "min-integer-kernels": st.sampled_from(["plan", "off", "0", "1", "-1", "100", "x", "3.5", ""]).map(
            lambda v: ["--min-integer-kernels", v]
        ),
        "optimization-level": st.sampled_from(["all", "basic", "disable", "extended", "max"]).map(
            lambda v: ["--optimization-level", v]
        ),
        "random-inputs": st.sampled_from(["1", "3", "0", "-2", "x"]).map(lambda v: ["--random-inputs", v]),
        "config": st.sampled_from(["{MISSING}.yaml", "{TEXT}", "{EMPTYDIR}"]).map(lambda v: ["--config", v]),
        "batch-size": st.sampled_from(["1", "5", "0", "x"]).map(lambda v: ["--batch-size", v]),
        "no-layers": st.just(["--no-layers"]),
        "extra-arg": st.sampled_from(["{MODEL}", "--nope", "-x", "--", "--to=int8", "-o"]).map(lambda v: [v]),
    }


CONVERT_OPTIONS = [
    "to",
    "data",
    "verify-data",
    "output",
    "keep-float",
    "int16",
    "int4",
    "weights-range",
    "activations-range",
    "activation-type",
    "full-range-weights",
    "int4-block-size",
    "auto-int16",
    "max-samples",
    "external-data",
    "no-audit",
    "no-verify",
    "json",
    "report",
    "min-sqnr",
    "min-cosine",
    "max-top1-drop",
    "max-accuracy-drop",
    "max-abs-err",
    "min-integer-kernels",
    "optimization-level",
    "random-inputs",
    "config",
    "extra-arg",
]
VERIFY_OPTIONS = [
    "data",
    "report",
    "min-sqnr",
    "min-cosine",
    "max-top1-drop",
    "max-abs-err",
    "min-integer-kernels",
    "optimization-level",
    "random-inputs",
    "batch-size",
    "no-layers",
    "json",
    "config",
    "extra-arg",
]
RUN_OPTIONS = ["data", "output", "batch-size", "extra-arg"]


def base_command(command: str, target: str, with_data: bool) -> tuple[list[str], list[list[str]]]:
    """The fixed head of a command line and its removable option groups."""
    data = [["--data", "{DATA}"]] if with_data else []
    if command == "inspect":
        return ["inspect", "{MODEL}"], []
    if command == "inspect-json":
        return ["inspect", "{MODEL}", "--json"], []
    if command == "run":
        return ["run", "{MODEL}", "--data", "{DATA}", "-o", "{DIR}/outputs.npz"], []
    if command == "verify":
        return ["verify", "{MODEL}", "{SEED}"], [["--data", "{DATA}"], ["--no-layers"]]
    head = ["convert", "{MODEL}", "--to", target, "-o", "{OUT}"]
    if command == "convert":
        return head, [*data, ["--no-verify"]]
    verify_on = data or [["--random-inputs", "3"]]
    return head, [*verify_on, ["--max-samples", "8"]]


# -- one example ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """Everything that makes one example (plain data, so it can be replayed with parts dropped)."""

    kind: str
    seed: SeedModel
    command: str
    head: list[str]
    options: list[list[str]]
    proto_steps: list[Step] = dataclasses.field(default_factory=list)
    byte_steps: list[Step] = dataclasses.field(default_factory=list)
    data_op: tuple[str, int] | None = None
    data_target: str = "--data"
    config: tuple[str, bytes, str] | None = None


@dataclasses.dataclass
class Outcome:
    """What one command did."""

    exit_code: int | None
    finding: str | None  # None: fine
    first_line: str
    output: str
    argv: list[str]
    mutations: list[str]
    seconds: float
    cause: str = ""  # exit 3 and escaped exceptions: the root exception and where it was raised


class ExampleTimeout(BaseException):
    """The per-example alarm (a BaseException, so neither fp8conv nor click catches it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise ExampleTimeout


COMMANDS_BY_KIND = {
    "model-proto": ["inspect"] * 4 + ["inspect-json"] * 2 + ["convert"] * 8 + ["convert-verify"] * 3 + ["run"] * 2,
    "model-bytes": ["inspect"] * 4 + ["inspect-json"] * 2 + ["convert"] * 6 + ["convert-verify"] * 2 + ["run"] * 2,
    "data": ["convert"] * 8 + ["convert-verify"] * 6 + ["run"] * 4 + ["verify"] * 2,
}


def draw_case(data: Any, seeds: list[SeedModel]) -> Case:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    seed_model = data.draw(st.sampled_from(seeds), label="seed")
    target = data.draw(st.sampled_from(["int8", "int8", "int4", "w8a16", "w4a16"]), label="target")
    if kind in COMMANDS_BY_KIND:
        command = data.draw(st.sampled_from(COMMANDS_BY_KIND[kind] + (["verify"] if kind == "model-proto" else [])))
        head, options = base_command(command, target, with_data=data.draw(st.booleans()) or kind == "data")
        case = Case(kind, seed_model, command, head, options)
        if kind == "model-proto":
            for _ in range(data.draw(st.integers(1, 3), label="mutations")):
                op = data.draw(st.sampled_from(sorted(PROTO_OPERATIONS)), label="op")
                case.proto_steps.append((op, data.draw(PROTO_OPERATIONS[op](), label="args")))
        elif kind == "model-bytes":
            for _ in range(data.draw(st.integers(1, 3), label="mutations")):
                op = data.draw(st.sampled_from(sorted(BYTE_OPERATIONS)), label="op")
                case.byte_steps.append((op, data.draw(BYTE_OPERATIONS[op](), label="args")))
        else:
            case.data_op = (data.draw(st.sampled_from(DATA_OPERATIONS)), data.draw(st.integers(0, 2**16)))
            if command == "convert-verify" and data.draw(st.booleans()):
                case.data_target = "--verify-data"
                case.options = [["--data", "{GOODDATA}"], ["--max-samples", "8"]]
        return case
    groups = option_groups(seed_model)
    if kind == "cli":
        command = data.draw(st.sampled_from(["convert"] * 8 + ["verify", "run", "inspect"]), label="command")
        names = {"convert": CONVERT_OPTIONS, "verify": VERIFY_OPTIONS, "run": RUN_OPTIONS, "inspect": ["json"]}
        head = {
            "convert": ["convert", "{MODEL}"],
            "verify": ["verify", "{MODEL}", "{SEED}"],
            "run": ["run", "{MODEL}"],
            "inspect": ["inspect", "{MODEL}"],
        }[command]
        chosen = data.draw(st.lists(st.sampled_from(names[command]), min_size=1, max_size=6), label="options")
        options = [data.draw(groups[name], label=name) for name in chosen]
        if command == "convert" and not any(group[0] == "-o" for group in options):
            options.append(["-o", "{OUT}"])
        return Case(kind, seed_model, command, head, options)
    command = data.draw(st.sampled_from(["convert"] * 6 + ["verify"]), label="command")
    config = data.draw(config_files(seed_model), label="config")
    if command == "verify":
        head = ["verify", "{MODEL}", "{SEED}", "--config", "{CONFIG}"]
        options = [["--data", "{DATA}"], ["--no-layers"]]
    else:
        head = ["convert", "{MODEL}", "--config", "{CONFIG}", "-o", "{OUT}"]
        options = [["--data", "{DATA}"], ["--no-verify"]] if data.draw(st.integers(0, 3)) else [["--data", "{DATA}"]]
    return Case(kind, seed_model, command, head, options, config=config)


def _write_entries(directory: Path, entries: dict[str, Any]) -> None:
    directory.mkdir()
    for name, value in entries.items():
        if isinstance(value, dict):
            np.savez(directory / name, **value)
        elif isinstance(value, np.ndarray):
            np.save(directory / name, value)
        else:
            (directory / name).write_bytes(value)


def materialize(case: Case, workdir: Path) -> tuple[list[str], list[str]]:
    """Write the case's input files into ``workdir``; the command line and the mutation descriptions."""
    mutations: list[str] = []
    content = case.seed.content
    if case.proto_steps:
        model = case.seed.proto()
        mutations += [apply_proto_step(model, step) for step in case.proto_steps]
        content = model.SerializeToString()
    for step in case.byte_steps:
        content, what = apply_byte_step(content, step)
        mutations.append(what)
    (workdir / "model.onnx").write_bytes(content)
    (workdir / "seed.onnx").write_bytes(case.seed.content)
    (workdir / "notes.txt").write_text("not a model\n")
    (workdir / "empty").mkdir()
    shutil.copy(case.seed.data, workdir / "good_calib.npz")
    data_path = workdir / "good_calib.npz"
    if case.data_op is not None:
        data_file, what = mutate_data(case.seed, *case.data_op)
        mutations.append(f"data ({case.data_target}): {what}")
        data_path = workdir / data_file.name
        if data_file.arrays is not None:
            np.savez(data_path, **data_file.arrays)
        elif data_file.content is not None:
            data_path.write_bytes(data_file.content)
        elif data_file.entries is not None:
            _write_entries(data_path, data_file.entries)
    config_path = workdir / "config.yaml"
    if case.config is not None:
        name, config_content, what = case.config
        config_path = workdir / name
        mutations.append(f"config {name}: {what}")
        if what == "directory":
            config_path.mkdir()
        elif what != "missing":
            config_path.write_bytes(config_content)
    values = {
        "{MODEL}": str(workdir / "model.onnx"),
        "{SEED}": str(workdir / "seed.onnx"),
        "{DATA}": str(data_path if case.data_target == "--data" else workdir / "good_calib.npz"),
        "{GOODDATA}": str(workdir / "good_calib.npz"),
        "{OUT}": str(workdir / "out.onnx"),
        "{CONFIG}": str(config_path),
        "{REPORT}": str(workdir / "report"),
        "{EMPTYDIR}": str(workdir / "empty"),
        "{MISSING}": str(workdir / "missing"),
        "{TEXT}": str(workdir / "notes.txt"),
        "{DIR}": str(workdir),
    }
    argv = []
    for argument in [*case.head, *(arg for group in case.options for arg in group)]:
        for placeholder, value in values.items():
            argument = argument.replace(placeholder, value)
        argv.append(argument)
    if case.data_target == "--verify-data":
        argv += ["--verify-data", str(data_path)]
    return argv, mutations


def _snapshot(directory: Path) -> dict[str, str]:
    files = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        files[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return files


_PROGRESS = re.compile(r"^\S[^|]*:\s+\d+%\|")


def _stderr_lines(stderr: str) -> list[str]:
    """stderr's lines without progress bars (tqdm redraws with carriage returns)."""
    lines = []
    for line in stderr.split("\n"):
        line = line.split("\r")[-1]
        if line.strip() and not _PROGRESS.match(line):
            lines.append(line)
    return lines


def execute(case: Case, workdir: Path) -> Outcome:
    argv, mutations = materialize(case, workdir)
    return run_command(argv, workdir, mutations)


def run_command(argv: list[str], workdir: Path, mutations: list[str]) -> Outcome:
    """Run ``fp8conv ARGV`` in-process in ``workdir`` and classify what it did."""
    command = argv[0] if argv else ""
    (workdir / "cwd").mkdir(exist_ok=True)
    before = _snapshot(workdir)
    logging.root.handlers.clear()  # basicConfig binds to the runner's stderr of the first call otherwise
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(EXAMPLE_TIMEOUT_S)
    result = None
    cwd = os.getcwd()
    # A relative path on the command line (an option's value taken as the output) lands in the snapshot,
    # and the inputs are not in the working directory (as when a user names files elsewhere).
    (workdir / "cwd").mkdir(exist_ok=True)
    os.chdir(workdir / "cwd")
    try:
        result = CliRunner().invoke(cli, argv, catch_exceptions=True)
    except ExampleTimeout:
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    seconds = time.monotonic() - started
    if result is None:
        return Outcome(None, "timeout", f"no result after {EXAMPLE_TIMEOUT_S} s", "", argv, mutations, seconds)
    after = _snapshot(workdir)
    code = result.exit_code
    output = result.output
    lines = _stderr_lines(result.stderr)
    first = next((line for line in lines if line.startswith(("fp8conv: ", "Error: "))), lines[-1] if lines else "")
    finding = None
    exception = result.exception
    if exception is not None and not isinstance(exception, SystemExit):
        finding = "exception-escaped"
        first = f"{type(exception).__name__}: {exception}".splitlines()[0]
    elif "Traceback" in output:
        finding = "traceback"
    elif code == 3:
        finding = "internal-error"
    elif code not in (0, 1, 2):
        finding = f"exit-{code}"
    elif code == 1 and command in ("inspect", "run"):
        finding = "exit-1-without-gates"
    elif code == 2 and not (lines and lines[-1].startswith(("fp8conv: error: ", "Error: "))):
        finding = "unclean-refusal"  # fp8conv's one line, or click's usage error, must end the output
    model_key = "model.onnx"
    if finding is None and after.get(model_key) != before.get(model_key):
        finding = "input-modified"
    elif finding is None and any(after.get(key) != value for key, value in before.items()):
        changed = [key for key, value in before.items() if after.get(key) != value]
        finding = "input-modified"
        first = f"changed or removed: {', '.join(changed)}"
    if finding is None and code == 2:
        written = sorted(set(after) - set(before))
        if written:
            finding = "wrote-on-refusal"
            first = f"{first} | left behind: {', '.join(written)}"
    if finding is None and code in (0, 1) and command == "convert":
        outputs = [arg for flag, arg in itertools.pairwise(argv) if flag in ("-o", "--output")]
        destination = (workdir / "cwd" / outputs[-1]) if outputs else workdir / "model.int8.onnx"
        try:
            onnx.load(str(destination), load_external_data=False)
        except Exception as error:
            finding = "no-output-model"
            first = f"exit {code} but {destination.name}: {type(error).__name__}: {error}".splitlines()[0]
    cause = ""
    if finding == "exception-escaped":
        cause = _root_cause("".join(traceback.format_exception(*result.exc_info)))
    elif finding == "internal-error":
        cause = _root_cause(_verbose_traceback(argv, workdir))
    return Outcome(code, finding, first[:300], output, argv, mutations, seconds, cause)


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')


def _root_cause(text: str) -> str:
    """The first exception of a chained traceback: its type and where in fp8conv (and below) it was raised."""
    blocks = text.split("Traceback (most recent call last):")[1:]
    if not blocks:
        return ""
    frames, exception = [], ""
    for line in blocks[0].splitlines():
        match = _FRAME.match(line)
        if match:
            frames.append(match)
        elif line and not line.startswith(" ") and not exception:
            exception = line
    ours = [frame for frame in frames if "/fp8conv/" in frame["file"]]
    where = ""
    if ours:
        frame = ours[-1]
        where = f"{frame['file'].split('/fp8conv/')[-1]}:{frame['line']} in {frame['function']}"
    if frames and (not ours or frames[-1] is not ours[-1]):
        deepest = frames[-1]
        where += f" (raised in {Path(deepest['file']).name}:{deepest['line']} {deepest['function']})"
    return f"{exception.split(':')[0]} at fp8conv/{where}" if where else exception.split(":")[0]


def _verbose_traceback(argv: list[str], workdir: Path) -> str:
    """The traceback of an internal error: the same command again with ``-v``."""
    logging.root.handlers.clear()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(EXAMPLE_TIMEOUT_S)
    cwd = os.getcwd()
    os.chdir(workdir / "cwd")
    try:
        result = CliRunner().invoke(cli, ["-v", *argv], catch_exceptions=True)
    except ExampleTimeout:
        return ""
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.chdir(cwd)
    logging.root.handlers.clear()
    logging.root.setLevel(logging.WARNING)
    return result.stderr


# -- the run -------------------------------------------------------------------------------------------------


def signature(case: Case, outcome: Outcome, workdir: Path) -> tuple[str, str, str]:
    if outcome.cause:  # the same root cause from any command is one finding
        return outcome.finding or "", "", outcome.cause
    text = outcome.first_line.replace(str(workdir), "")
    text = re.sub(r"0x[0-9a-f]+", "0x…", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "N", text)
    text = text.split(": [ONNXRuntimeError]")[0].split(" | left behind")[0]  # onnxruntime's detail varies
    return outcome.finding or "", case.head[0], text[:100]


class Fuzzer:
    def __init__(
        self, seeds: list[SeedModel], seconds: float, crash_dir: Path, seed: int, log: io.TextIOBase | None = None
    ) -> None:
        self.seeds = seeds
        self.log = log
        self.deadline = time.monotonic() + seconds
        self.crash_dir = crash_dir
        self.seed = seed
        self.tried: Counter[str] = Counter()
        self.exits: Counter[tuple[str, str]] = Counter()
        self.commands: Counter[str] = Counter()
        self.findings: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.harness_errors: list[str] = []
        self.seconds_running = 0.0
        self.root = Path(tempfile.mkdtemp(prefix="fp8conv-fuzz-work-"))
        self.counter = 0

    def time_up(self) -> bool:
        return time.monotonic() >= self.deadline

    def _workdir(self) -> Path:
        self.counter += 1
        path = self.root / f"{self.counter:06d}"
        path.mkdir()
        return path

    def example(self, data: Any) -> None:
        case = draw_case(data, self.seeds)
        if self.time_up():
            return
        workdir = self._workdir()
        try:
            outcome = execute(case, workdir)
        except Exception:  # a bug of this script, not of fp8conv
            self.harness_errors.append(traceback.format_exc())
            shutil.rmtree(workdir, ignore_errors=True)
            return
        self.seconds_running += outcome.seconds
        if self.log is not None:
            argv = [arg.replace(str(workdir), ".") for arg in outcome.argv]
            entry = {"kind": case.kind, "seed_model": case.seed.name, "argv": argv, "mutations": outcome.mutations}
            entry |= {"exit_code": outcome.exit_code, "finding": outcome.finding}
            self.log.write(json.dumps(entry) + "\n")
        self.tried[case.kind] += 1
        self.commands[case.command if case.kind in COMMANDS_BY_KIND else f"{case.kind}:{case.head[0]}"] += 1
        self.exits[(case.kind, "timeout" if outcome.exit_code is None else str(outcome.exit_code))] += 1
        if outcome.finding is not None:
            key = signature(case, outcome, workdir)
            if key in self.findings:
                record = self.findings[key]
                record["count"] += 1
                record["kinds"].add(case.kind)
                if len(record["other_mutations"]) < 3 and outcome.mutations not in record["other_mutations"]:
                    record["other_mutations"].append(outcome.mutations)
            else:
                case, outcome, workdir = self.minimize(case, outcome, workdir, key)
                self.findings[key] = self.save(case, outcome, workdir, key)
                print(f"[finding {len(self.findings)}] {key[0]} ({case.kind}, {case.head[0]}): {outcome.first_line}")
        shutil.rmtree(workdir, ignore_errors=True)

    def minimize(self, case: Case, outcome: Outcome, workdir: Path, key: tuple[str, str, str]) -> Any:
        """Drop mutation steps and option groups one at a time while the same finding reproduces."""
        budget = 25
        for field in ("proto_steps", "byte_steps", "options"):
            index = len(getattr(case, field)) - 1
            while (
                index >= 0
                and budget > 0
                and not self.time_up()
                and len(getattr(case, field)) > (0 if field == "options" else 1)
            ):
                items = getattr(case, field)
                smaller = dataclasses.replace(case, **{field: items[:index] + items[index + 1 :]})
                budget -= 1
                candidate_dir = self._workdir()
                try:
                    candidate = execute(smaller, candidate_dir)
                except Exception:
                    candidate = None
                if candidate is not None and candidate.finding and signature(smaller, candidate, candidate_dir) == key:
                    shutil.rmtree(workdir, ignore_errors=True)
                    case, outcome, workdir = smaller, candidate, candidate_dir
                else:
                    shutil.rmtree(candidate_dir, ignore_errors=True)
                index -= 1
        return case, outcome, workdir

    def save(self, case: Case, outcome: Outcome, workdir: Path, key: tuple[str, str, str]) -> dict[str, Any]:
        number = len(self.findings) + 1
        slug = re.sub(r"[^a-z0-9]+", "-", f"{key[0]}-{case.kind}-{case.head[0]}".lower())
        target = self.crash_dir / f"{number:03d}-{slug}"
        shutil.rmtree(target, ignore_errors=True)
        materialize(case, _fresh(target))  # the inputs as they were before the command ran
        argv = ["fp8conv", *(arg.replace(str(workdir), ".") for arg in outcome.argv)]
        command = shlex.join(argv).replace("'./", "./")
        record = {
            "finding": key[0],
            "kind": case.kind,
            "seed_model": case.seed.name,
            "mutations": outcome.mutations,
            "command": command,
            "exit_code": outcome.exit_code,
            "first_line": outcome.first_line.replace(str(workdir), "."),
            "cause": outcome.cause,
            "count": 1,
            "kinds": {case.kind},
            "other_mutations": [],
            "directory": str(target),
        }
        (target / "command.sh").write_text(f'# run from this directory\ncd "$(dirname "$0")"\n{command}\n')
        (target / "output.txt").write_text(outcome.output.replace(str(workdir), "."))
        (target / "finding.json").write_text(json.dumps({k: v for k, v in record.items() if k != "kinds"}, indent=2))
        return record

    def run(self) -> None:
        round_number = 0
        while not self.time_up():
            round_seed = self.seed * 1_000_003 + round_number
            round_number += 1
            test = hypothesis_seed(round_seed)(
                settings(
                    max_examples=EXAMPLES_PER_ROUND,
                    deadline=None,
                    database=None,
                    derandomize=False,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                    print_blob=False,
                )(given(st.data())(lambda data: self.example(data)))
            )
            test()
        self.rounds = round_number


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(fuzzer: Fuzzer, seconds: float, wall: float) -> str:
    lines = [
        f"fuzz: seed {fuzzer.seed}, budget {seconds:g} s, wall {wall:.0f} s, {sum(fuzzer.tried.values())} inputs, "
        f"{fuzzer.rounds} rounds of up to {EXAMPLES_PER_ROUND}, {fuzzer.seconds_running:.0f} s inside commands",
        "",
        "| input kind | tried | exit 0 | exit 1 | exit 2 | exit 3 | other | findings |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    per_kind_findings = Counter()
    for record in fuzzer.findings.values():
        for kind in record["kinds"]:
            per_kind_findings[kind] += 1
    for kind in KINDS:
        exits = {code: fuzzer.exits[(kind, code)] for code in ("0", "1", "2", "3")}
        other = sum(count for (k, code), count in fuzzer.exits.items() if k == kind and code not in exits)
        lines.append(
            f"| {kind} | {fuzzer.tried[kind]} | {exits['0']} | {exits['1']} | {exits['2']} | {exits['3']} | {other} | "
            f"{per_kind_findings[kind]} |"
        )
    total = {code: sum(c for (k, cd), c in fuzzer.exits.items() if cd == code) for code in ("0", "1", "2", "3")}
    other = sum(c for (k, code), c in fuzzer.exits.items() if code not in total)
    lines.append(
        f"| **all** | {sum(fuzzer.tried.values())} | {total['0']} | {total['1']} | {total['2']} | {total['3']} | "
        f"{other} | {len(fuzzer.findings)} |"
    )
    lines += ["", "commands: " + ", ".join(f"{name} {count}" for name, count in sorted(fuzzer.commands.items()))]
    lines += ["", f"findings (distinct): {len(fuzzer.findings)}"]
    for number, record in enumerate(fuzzer.findings.values(), start=1):
        lines += [
            f"{number}. {record['finding']} ×{record['count']} (kinds: {', '.join(sorted(record['kinds']))})",
            f"   seed model: {record['seed_model']}; mutations: {'; '.join(record['mutations']) or 'none'}",
            f"   command: {record['command']}",
            f"   message: {record['first_line']}",
            *([f"   cause: {record['cause']}"] if record["cause"] else []),
            *(f"   also: {'; '.join(m) or 'no mutation'}" for m in record["other_mutations"]),
            f"   repro: {record['directory']}",
        ]
    if fuzzer.harness_errors:
        lines += ["", f"harness errors (bugs of this script): {len(fuzzer.harness_errors)}; first:"]
        lines += fuzzer.harness_errors[0].rstrip().splitlines()
    lines += ["", f"crash repros: {fuzzer.crash_dir} (onnxruntime's native log: native-stderr.log)"]
    return "\n".join(lines)


def replay(crash_dir: Path) -> int:
    """Run every saved repro of ``crash_dir`` again (in a copy of its directory); print what each does now."""
    still = 0
    for record_path in sorted(crash_dir.glob("*/finding.json")):
        record = json.loads(record_path.read_text())
        workdir = Path(tempfile.mkdtemp(prefix="fp8conv-fuzz-replay-"))
        shutil.copytree(record_path.parent, workdir, dirs_exist_ok=True)
        for name in ("command.sh", "output.txt", "finding.json"):
            (workdir / name).unlink()
        argv = [
            arg if not arg.startswith("./") else str(workdir / arg[2:]) for arg in shlex.split(record["command"])[1:]
        ]
        argv = [str(workdir) if arg == "." else arg for arg in argv]
        outcome = run_command(argv, workdir, record["mutations"])
        still += outcome.finding is not None
        now = outcome.finding or f"fine, exit {outcome.exit_code}"
        print(f"{record_path.parent.name}: was {record['finding']}, now {now}: {outcome.first_line[:200]}")
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{still} of {len(list(crash_dir.glob('*/finding.json')))} repros still give a finding")
    return 1 if still else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget (default 120)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    parser.add_argument("--crash-dir", type=Path, default=None, help="where repros go (default: a temp dir)")
    parser.add_argument("--replay", type=Path, default=None, help="run the repros saved in this crash dir again")
    parser.add_argument("--log", type=Path, default=None, help="write one JSON line per input tried here")
    args = parser.parse_args(argv)
    ort.set_default_logger_severity(3)
    if args.replay is not None:
        return replay(args.replay)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    crash_dir = args.crash_dir or Path(tempfile.mkdtemp(prefix="fp8conv-fuzz-crashes-"))
    crash_dir.mkdir(parents=True, exist_ok=True)
    ort.set_default_logger_severity(3)
    logging.getLogger("hypothesis").setLevel(logging.ERROR)
    seeds = find_seeds()
    print(f"fuzz: {len(seeds)} seed models, seed {seed}, {args.seconds:g} s, crash repros in {crash_dir}", flush=True)
    started = time.monotonic()
    log = args.log.open("w") if args.log is not None else None
    fuzzer = Fuzzer(seeds, args.seconds, crash_dir, seed, log)
    native_log = crash_dir / "native-stderr.log"
    saved_stderr = os.dup(2)  # onnxruntime's own warnings and errors go to fd 2, not to the runner
    with native_log.open("wb") as log:
        os.dup2(log.fileno(), 2)
        try:
            fuzzer.run()
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            shutil.rmtree(fuzzer.root, ignore_errors=True)
            if log is not None:
                log.close()
    print(report(fuzzer, args.seconds, time.monotonic() - started))
    return 1 if fuzzer.findings or fuzzer.harness_errors else 0


if __name__ == "__main__":
    sys.exit(main())
