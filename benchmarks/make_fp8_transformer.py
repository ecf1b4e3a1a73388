"""Synthetic FP8 decoder-style transformers with external data, from a few KB to several GB.

Usage::

    python benchmarks/make_fp8_transformer.py -o /tmp/scale-models/t.onnx --layers 13 --hidden 2048
    python benchmarks/make_fp8_transformer.py -o t.onnx --layers 2 --hidden 64 --weights fp8 --activation relu

The model is embedding-free: its input is ``hidden_states [batch, seq, hidden]`` (float32) and its output
the final LayerNorm of the residual stream. Each of the ``--layers`` layers is a pre-norm decoder block::

    a = LayerNorm(x);  q, k, v = a·Wq + bq, a·Wk + bk, a·Wv + bv   (heads of --head-dim)
    p = Softmax(q·kᵀ / √d + causal mask);  x = x + (p·v)·Wo + bo
    m = LayerNorm(x);  x = x + act(m·Wup + bup)·Wdown + bdown      (act: Gelu or Relu, up: 4 × hidden)

Every MatMul input is FP8: activations pass an E4M3FN ``QuantizeLinear → DequantizeLinear`` pair (per
tensor, float8 zero point) and weights are, by ``--weights``, either float32 initializers behind an FP8
Q/DQ pair per output channel (``float``: the QAT-export dialect) or FLOAT8E4M3FN initializers behind a
per-output-channel ``DequantizeLinear`` (``fp8``: the stored-weights dialect). A layer holds
``12·hidden²`` weights (4 · hidden² attention, 8 · hidden² MLP): 48·hidden² bytes as float32, 12·hidden² as FP8
(hidden 2048: 201 MB or 50 MB per layer).

Weights are standard normal with column ``j`` rescaled so that its largest magnitude is exactly
``t_j = 3 (0.5 + u_j) / √K`` (``u_j`` uniform, ``K`` the input width): the per-channel FP8 scale
``t_j / 448`` is known before the weight is made, so each weight is generated only when it is written
(an ``onnx_ir.LazyTensor``), one at a time, straight into the external data file; the writer never holds
more than the tensors in flight. Activation scales are fixed ``amax / 448`` estimates (LayerNorm outputs
5, attention probabilities 1, ...). Everything derives from ``--seed``: the same arguments give the same
bytes.

Also written: ``--samples`` calibration samples of standard-normal hidden states in ``<stem>.calib.npz``
beside the model (``--data`` to choose another name).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx_ir as ir

E4M3_MAX = 448.0
INPUT = "hidden_states"
OUTPUT = "output"
OPSET = 21
WEIGHT_DIALECTS = ("float", "fp8")
ACTIVATIONS = ("gelu", "relu")

# amax of each activation quantizer (the scale is amax / 448); rough bounds of standard-normal-like values.
_AMAX = {"norm": 5.0, "qk": 4.0, "probs": 1.0, "v": 4.0, "context": 3.0, "hidden": 4.0}


class _Builder:
    """Nodes and initializers of one graph, named after the layer they belong to."""

    def __init__(self, weights: str, seed: int) -> None:
        self.weights = weights
        self.seed = seed
        self.nodes: list[ir.Node] = []
        self.initializers: list[ir.Value] = []
        self._tensors = 0

    def const(self, name: str, array: np.ndarray) -> ir.Value:
        value = ir.Value(name=name, type=ir.TensorType(_dtype(array)), shape=ir.Shape(array.shape))
        value.const_value = ir.tensor(array, name=name)
        self.initializers.append(value)
        return value

    def lazy(self, name: str, make: Callable[[], np.ndarray], dtype: ir.DataType, shape: tuple[int, ...]) -> ir.Value:
        """An initializer whose data ``make`` computes when the model is written (not kept)."""
        value = ir.Value(name=name, type=ir.TensorType(dtype), shape=ir.Shape(shape))
        value.const_value = ir.LazyTensor(lambda: ir.tensor(make(), name=name), dtype, ir.Shape(shape), name=name)
        self.initializers.append(value)
        return value

    def op(self, op_type: str, inputs: list[ir.Value | None], name: str, **attributes: object) -> ir.Value:
        node = ir.node(op_type, inputs, attributes=attributes, name=f"{name}_{op_type}")
        node.outputs[0].name = name
        self.nodes.append(node)
        return node.outputs[0]

    def rng(self) -> np.random.Generator:
        """A generator of its own for the next tensor: one tensor's values do not depend on when it is made."""
        return np.random.default_rng(self.key())

    def key(self) -> list[int]:
        """The seed of the next tensor's generator."""
        self._tensors += 1
        return [self.seed, self._tensors]

    def fp8_activation(self, x: ir.Value, amax: float) -> ir.Value:
        """``DequantizeLinear(QuantizeLinear(x))`` in E4M3FN, per tensor."""
        scale = self.const(f"{x.name}_fp8_scale", np.array(amax / E4M3_MAX, np.float32))
        zero = self.const(f"{x.name}_fp8_zp", np.zeros((), ml_dtypes.float8_e4m3fn))
        q = self.op("QuantizeLinear", [x, scale, zero], f"{x.name}_q")
        return self.op("DequantizeLinear", [q, scale, zero], f"{x.name}_fp8")

    def fp8_weight(self, name: str, rows: int, columns: int) -> ir.Value:
        """A ``[rows, columns]`` weight read by MatMul, FP8 per output channel (axis 1), in the chosen dialect."""
        amax = (3.0 * (0.5 + self.rng().random(columns)) / math.sqrt(rows)).astype(np.float32)
        scale_array = (amax / np.float32(E4M3_MAX)).astype(np.float32)
        key = self.key()

        def weight() -> np.ndarray:
            w = np.random.default_rng(key).standard_normal((rows, columns), np.float32)
            w /= np.abs(w).max(axis=0)
            w *= amax
            return w

        scale = self.const(f"{name}_scale", scale_array)
        if self.weights == "fp8":

            def codes() -> np.ndarray:
                return (weight() / scale_array).astype(ml_dtypes.float8_e4m3fn)

            stored = self.lazy(name, codes, ir.DataType.FLOAT8E4M3FN, (rows, columns))
            return self.op("DequantizeLinear", [stored, scale], f"{name}_fp8", axis=1)
        stored = self.lazy(name, weight, ir.DataType.FLOAT, (rows, columns))
        zero = self.const(f"{name}_zp", np.zeros(columns, ml_dtypes.float8_e4m3fn))
        q = self.op("QuantizeLinear", [stored, scale, zero], f"{name}_q", axis=1)
        return self.op("DequantizeLinear", [q, scale, zero], f"{name}_fp8", axis=1)

    def linear(self, x: ir.Value, name: str, rows: int, columns: int) -> ir.Value:
        """``fp8(x) · fp8(W) + b`` (the activation quantizer is the caller's)."""
        w = self.fp8_weight(f"{name}.weight", rows, columns)
        y = self.op("MatMul", [x, w], f"{name}.matmul")
        bias = self.const(f"{name}.bias", (0.02 * self.rng().standard_normal(columns)).astype(np.float32))
        return self.op("Add", [y, bias], name)

    def layer_norm(self, x: ir.Value, name: str, hidden: int) -> ir.Value:
        gamma = self.const(f"{name}.weight", (1.0 + 0.05 * self.rng().standard_normal(hidden)).astype(np.float32))
        beta = self.const(f"{name}.bias", (0.05 * self.rng().standard_normal(hidden)).astype(np.float32))
        return self.op("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-5)


def _dtype(array: np.ndarray) -> ir.DataType:
    return ir.DataType.from_numpy(array.dtype)


def _layer(
    g: _Builder, x: ir.Value, index: int, hidden: int, head_dim: int, activation: str, mask: ir.Value
) -> ir.Value:
    p = f"layers.{index}"
    heads = hidden // head_dim
    split = g.const(f"{p}.heads_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge = g.const(f"{p}.hidden_shape", np.array([0, 0, hidden], np.int64))
    a = g.fp8_activation(g.layer_norm(x, f"{p}.input_layernorm", hidden), _AMAX["norm"])
    q = g.linear(a, f"{p}.attn.q_proj", hidden, hidden)
    k = g.linear(a, f"{p}.attn.k_proj", hidden, hidden)
    v = g.linear(a, f"{p}.attn.v_proj", hidden, hidden)
    q4 = g.op("Transpose", [g.op("Reshape", [q, split], f"{p}.attn.q_heads")], f"{p}.attn.q_t", perm=[0, 2, 1, 3])
    k4 = g.op("Transpose", [g.op("Reshape", [k, split], f"{p}.attn.k_heads")], f"{p}.attn.k_t", perm=[0, 2, 3, 1])
    v4 = g.op("Transpose", [g.op("Reshape", [v, split], f"{p}.attn.v_heads")], f"{p}.attn.v_t", perm=[0, 2, 1, 3])
    scores = g.op("MatMul", [g.fp8_activation(q4, _AMAX["qk"]), g.fp8_activation(k4, _AMAX["qk"])], f"{p}.attn.scores")
    scaled = g.op(
        "Mul", [scores, g.const(f"{p}.attn.scale", np.array(1 / math.sqrt(head_dim), np.float32))], f"{p}.attn.scaled"
    )
    probs = g.op("Softmax", [g.op("Add", [scaled, mask], f"{p}.attn.masked")], f"{p}.attn.probs", axis=-1)
    context = g.op(
        "MatMul", [g.fp8_activation(probs, _AMAX["probs"]), g.fp8_activation(v4, _AMAX["v"])], f"{p}.attn.context"
    )
    merged = g.op(
        "Reshape",
        [g.op("Transpose", [context], f"{p}.attn.context_t", perm=[0, 2, 1, 3]), merge],
        f"{p}.attn.context_merged",
    )
    o = g.linear(g.fp8_activation(merged, _AMAX["context"]), f"{p}.attn.o_proj", hidden, hidden)
    x = g.op("Add", [x, o], f"{p}.attn_residual")
    m = g.fp8_activation(g.layer_norm(x, f"{p}.post_attention_layernorm", hidden), _AMAX["norm"])
    up = g.linear(m, f"{p}.mlp.up_proj", hidden, 4 * hidden)
    act = g.op("Gelu" if activation == "gelu" else "Relu", [up], f"{p}.mlp.act")
    down = g.linear(g.fp8_activation(act, _AMAX["hidden"]), f"{p}.mlp.down_proj", 4 * hidden, hidden)
    return g.op("Add", [x, down], f"{p}.mlp_residual")


def build(
    *,
    layers: int,
    hidden: int,
    head_dim: int = 64,
    seq: int = 16,
    weights: str = "float",
    activation: str = "gelu",
    seed: int = 0,
) -> ir.Model:
    """The model (its big weights lazy: computed when written).

    Args:
        layers: Decoder blocks.
        hidden: Hidden size (a multiple of ``head_dim``).
        head_dim: Attention head width.
        seq: Sequence length (static; the batch axis is dynamic).
        weights: ``float`` (float32 weights behind FP8 Q/DQ) or ``fp8`` (FP8 initializers behind DQ).
        activation: ``gelu`` or ``relu``.
        seed: Seed of every value.
    """
    if hidden % head_dim:
        raise ValueError(f"--hidden {hidden} is not a multiple of --head-dim {head_dim}")
    if weights not in WEIGHT_DIALECTS or activation not in ACTIVATIONS:
        raise ValueError(f"weights must be one of {WEIGHT_DIALECTS}, activation one of {ACTIVATIONS}")
    g = _Builder(weights, seed)
    x = ir.Value(name=INPUT, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["batch", seq, hidden]))
    mask = g.const("causal_mask", np.triu(np.full((seq, seq), -1e4, np.float32), k=1))
    h = x
    for index in range(layers):
        h = _layer(g, h, index, hidden, head_dim, activation, mask)
    out = g.layer_norm(h, "final_layernorm", hidden)
    out.name = OUTPUT
    out.type = ir.TensorType(ir.DataType.FLOAT)
    out.shape = ir.Shape(["batch", seq, hidden])
    graph = ir.Graph(
        [x],
        [out],
        nodes=g.nodes,
        initializers=g.initializers,
        opset_imports={"": OPSET},
        name=f"fp8_transformer_{layers}x{hidden}",
    )
    return ir.Model(graph, ir_version=10, producer_name="fp8conv-benchmarks", producer_version="1")


def weight_bytes(*, layers: int, hidden: int, weights: str = "float") -> int:
    """Bytes of the big weights (``12 · hidden²`` per layer, 4 bytes each as float32, 1 as FP8)."""
    return layers * 12 * hidden * hidden * (4 if weights == "float" else 1)


def write(model: ir.Model, path: str | Path) -> None:
    """Save with every initializer of 1 KiB or more in one file, ``<name>.data`` (as PyTorch exports), one at a time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ir.save(
        model,
        path,
        external_data=f"{path.name}.data",
        size_threshold_bytes=1024,
        max_in_flight_bytes=256 << 20,
    )


def calibration(*, samples: int, seq: int, hidden: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal hidden states ``[samples, seq, hidden]``, keyed by the model's input name."""
    rng = np.random.default_rng([seed, 1 << 20])
    return {INPUT: rng.standard_normal((samples, seq, hidden), np.float32)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, type=Path, help="model path (.onnx)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--weights", choices=WEIGHT_DIALECTS, default="float")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="gelu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=8, help="calibration samples")
    parser.add_argument("--data", type=Path, help="calibration .npz (default: <stem>.calib.npz beside the model)")
    args = parser.parse_args(argv)
    try:
        model = build(
            layers=args.layers,
            hidden=args.hidden,
            head_dim=args.head_dim,
            seq=args.seq,
            weights=args.weights,
            activation=args.activation,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    write(model, args.output)
    data = args.data or args.output.with_name(f"{args.output.stem}.calib.npz")
    np.savez(data, **calibration(samples=args.samples, seq=args.seq, hidden=args.hidden, seed=args.seed))
    size = weight_bytes(layers=args.layers, hidden=args.hidden, weights=args.weights)
    print(
        f"{args.output}: {args.layers} layers, hidden {args.hidden}, {args.weights} weights, "
        f"{size / 1e6:.1f} MB; {data}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
