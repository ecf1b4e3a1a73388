"""Exact FP8 reference execution of a lowered canonical model, on onnxruntime.

:class:`ReferenceSession` runs a model whose canonical ``FakeQuantize`` nodes are already lowered to standard
ops that compute :func:`fp8conv.fp8.fake_quantize` bit for bit on onnxruntime's CPU provider, with the session
settings below. :class:`fp8conv.passes.reference_runner.ReferenceRunner` is the one to use on a canonical
model: it lowers a copy (:class:`~fp8conv.passes.lower_fake_quantize.LowerFakeQuantizePass`) and runs it
here. Quantization points are exact; the float ops between them (Conv, MatMul, Add, ...) are onnxruntime's
float32 kernels, as in any float32 run.

Lowering: float ops for every format by default. Both lowerings are exact (the tests sweep both), but
onnxruntime's float8 ``QuantizeLinear`` is not multi-threaded: the float-op lowering of e4m3fn is 2-7×
faster per quantizer than ``QuantizeLinear`` → ``DequantizeLinear`` on ResNet-18 activation shapes, and
the whole ResNet-18 runs 1.2-2× faster (``benchmarks/RESULTS.md``). ``native_qdq=True`` selects Q/DQ where
exact.

Session settings, and why (``ORT_ENABLE_ALL`` is the fastest level; these are the parts of it that
would change what a quantization point computes):

* ``disabled_optimizers=["ReluQuantRewrite", "ClipQuantRewrite"]``: level-2 rewrite rules that delete a
  ``Relu``/``Clip`` in front of a ``QuantizeLinear`` whose integer range makes it redundant. A float8 grid
  is signed, so ReluQuantRewrite changes the function (measured on the test CNN: negative values reach
  the quantizer and the logits change; reference "onnxruntime pitfalls" 1), and ClipQuantRewrite fails
  session creation outright on a float8 zero point ("Unexpected data type for QuantizeLinear input
  y_zero_point of 17"). onnxruntime matches rules by their rule names; the class names
  ``ReluQuantFusion``/``ClipQuantFusion`` disable nothing (tested). ``session.disable_quant_qdq`` does
  not cover these rules. They matter for ``native_qdq=True``, stored-weight and integer Q/DQ.
* ``session.disable_quant_qdq=1``: turns off every QDQ-aware transformer — QDQ propagation,
  ``WeightBiasQuantization`` (rewrites the float bias of a conv between float8 Q/DQ as an int32 tensor
  with scale ``x_scale·w_scale``, observed here; pitfall 2), ``EnsureUniqueDQForNodeUnit``, s8→u8
  conversion and the integer-kernel fusions (integer Q/DQ may coexist in the model and must run as
  written). It also lets constant folding fold ``DequantizeLinear`` over constant weights; folding runs
  onnxruntime's own kernel, so the folded weights are the same bits, computed once instead of every run.
* ``session.disable_double_qdq_remover=1``: the level-1 ``DoubleQDQPairsRemover`` merges integer
  ``Q→DQ→Q→DQ`` chains with different scales into one pair with a new scale (not exact).
* ``session.enable_quant_qdq_cleanup=0`` (the default, stated explicitly): it would drop ``Q→DQ`` pairs.

Left on: float fusions and layout changes (Conv+activation, Conv+Add, NCHWc, constant folding through
onnxruntime's kernels, common subexpression elimination, transpose optimization) and the final cleanup
of ``DQ→Q`` pairs with identical parameters (the identity on codes). They only reorder float arithmetic
between quantization points, as they do in a plain float32 run (a run at ``ORT_DISABLE_ALL`` differs
from this one by float rounding, ~1e-6 on the golden models). The tests in
``tests/runtime/test_reference_execution.py`` are the evidence: every captured quantization point of a CNN and
of every golden model equals the emulator bit for bit (both lowerings), the float ops between them match
a float64 torch evaluation, outputs with and without captures are identical, and the default settings
break the same lowered model.

``capture_grid`` asks, for FakeQuantize outputs, for their FP8 grid values instead (``x``'s grid value
``q`` before the scale, as float16: exact for every 8-bit format whose values are float16s, see
``LowerFakeQuantizePass``): half the bytes of the float32 tensor, and its bit pattern names the code, so
counting codes needs no search. :attr:`ReferenceSession.grid_outputs` says which ones got it.

``capture`` makes intermediate tensors extra graph outputs. That can keep onnxruntime from fusing the
node that produces them (a captured Conv output is not fused with its Relu), which changes float
rounding order only: quantization points stay exact either way.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from fp8conv.errors import Fp8ConvError
from fp8conv.runtime.ort_backend import TensorInfo, create_session, external_data_folder, session_inputs

__all__ = ["DISABLED_OPTIMIZERS", "SESSION_CONFIG", "PortableReference", "ReferenceSession", "check_feed"]

logger = logging.getLogger(__name__)

DISABLED_OPTIMIZERS: tuple[str, ...] = ("ReluQuantRewrite", "ClipQuantRewrite")
"""onnxruntime rewrite rules that change float8 quantization points (see the module docstring)."""

SESSION_CONFIG: Mapping[str, str] = {
    "session.disable_quant_qdq": "1",
    "session.disable_double_qdq_remover": "1",
    "session.enable_quant_qdq_cleanup": "0",
}
"""Session config entries of the reference session (see the module docstring)."""


class ReferenceSession:
    """Runs a lowered canonical model (standard ops only) with the reference's session settings.

    Subclasses lower in :meth:`_lower` (:class:`fp8conv.passes.reference_runner.ReferenceRunner`); this
    class runs the model as given.

    Args:
        model: The model to run. It is cloned; the caller's object is never modified.
        capture: Names of intermediate tensors to return with the outputs (node outputs of the main
            graph, graph inputs or initializers).
        capture_grid: FakeQuantize output names whose grid values :meth:`run` should return under the
            same name (float16 ``q``; the output itself is ``q * scale``). Those in :attr:`grid_outputs`
            get them; the others (native lowering, a format wider than float16, also a graph output or in
            ``capture``) return the output itself.
        intra_op_threads: Threads one :meth:`run` may use (0: onnxruntime's default). :meth:`run` may be
            called from several threads at once; with 1, each run computes on its caller's thread.

    Raises:
        Fp8ConvError: A capture name that is not a tensor of the main graph, or a model onnxruntime rejects.
    """

    def __init__(
        self,
        model: ir.Model,
        *,
        capture: Sequence[str] = (),
        capture_grid: Sequence[str] = (),
        intra_op_threads: int = 0,
    ) -> None:
        graph_outputs = [value.name or "" for value in model.graph.outputs]
        float_wanted = {*graph_outputs, *capture}
        lowered = model.clone()  # tensors shared: lowering adds and removes initializers, never edits one
        grid_outputs = self._lower(lowered, [n for n in capture_grid if n not in float_wanted])
        self.grid_outputs: frozenset[str] = frozenset(grid_outputs)
        """The names of ``capture_grid`` that :meth:`run` returns as float16 grid values."""
        self._grid_tensors = {grid_outputs[name]: name for name in sorted(self.grid_outputs)}
        plain = [name for name in capture_grid if name not in self.grid_outputs]
        self._constants = _add_captures(lowered, [*self._grid_tensors, *capture, *plain])
        self._data_dir = _spill_to_disk(lowered)
        self.model: ir.Model | None = lowered
        """The lowered model that runs, captured tensors included among its outputs (None in a session opened
        from a :class:`PortableReference`)."""
        self._open(create_session(lowered, **_session_settings(intra_op_threads)))
        self._output_names = tuple(dict.fromkeys([*graph_outputs, *capture, *capture_grid]))
        logger.info(
            "reference runner: %d inputs, %d outputs (%d captured)",
            len(self._inputs),
            len(graph_outputs),
            len(self._output_names) - len(graph_outputs),
        )

    def _open(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._inputs = session_inputs(session)
        self._session_outputs = [arg.name for arg in session.get_outputs()]

    def portable(self) -> PortableReference:
        """This session as another process rebuilds it: :meth:`PortableReference.open` runs the same model.

        The lowered model is serialized once (``ir.to_proto``, the bytes this session was created from); tensors
        spilled to a temporary file (models over :data:`SPILL_THRESHOLD_BYTES`) or kept in the source's external
        data stay there and are read by path, so the bytes stay small whatever the model's size. The files
        live as long as this session.
        """
        if self.model is None:
            raise ValueError("a session opened from a PortableReference cannot be made portable again")
        return PortableReference(
            serialized=ir.to_proto(self.model).SerializeToString(),
            external_data_dir=external_data_folder(self.model),
            grid_tensors=dict(self._grid_tensors),
            constants=dict(self._constants),
            output_names=self._output_names,
        )

    def _lower(self, model: ir.Model, grid: Sequence[str]) -> Mapping[str, str]:
        """Lower ``model`` in place; return ``{FakeQuantize output of grid: its float16 grid tensor}``.

        Here the model is already lowered: nothing to do, no grid tensors.
        """
        return {}

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the inputs :meth:`run` needs."""
        return tuple(info.name for info in self._inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the arrays :meth:`run` returns: graph outputs, then captured tensors."""
        return self._output_names

    @property
    def static_batch_size(self) -> int | None:
        """The leading dimension when every input has the same static one, else None."""
        leading = {info.shape[0] if info.shape else None for info in self._inputs}
        if len(leading) == 1:
            (size,) = leading
            if isinstance(size, int) and size > 0:
                return size
        return None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            feeds: One array per input, of the input's dtype and rank.

        Returns:
            ``{name: array}`` for every name in :attr:`output_names`.

        Raises:
            Fp8ConvError: Missing or unknown feed names, a wrong dtype, rank or static dimension, or an
                onnxruntime run failure (one line).
        """
        self._check_feeds(feeds)
        try:
            results = self._session.run(self._session_outputs, dict(feeds))
        except Exception as error:  # onnxruntime's own exception types
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise Fp8ConvError(f"onnxruntime run failed: {first_line}") from error
        computed = dict(zip(self._session_outputs, results, strict=True))
        for tensor, name in self._grid_tensors.items():
            computed[name] = computed.pop(tensor)
        out: dict[str, np.ndarray] = {}
        for name in self._output_names:
            if name in computed:
                out[name] = computed[name]
            elif name in self._constants:
                out[name] = self._constants[name]
            else:
                out[name] = feeds[name]
        return out

    def run_batches(self, batches: Iterable[Mapping[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """Run every batch of ``batches`` in turn, yielding :meth:`run`'s result for each."""
        for feeds in batches:
            yield self.run(feeds)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        expected = {info.name: info for info in self._inputs}
        missing = [name for name in expected if name not in feeds]
        extra = [name for name in feeds if name not in expected]
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)}")
            if extra:
                problems.append(f"unknown {', '.join(extra)}")
            raise Fp8ConvError(f"feeds: {'; '.join(problems)} (the model's inputs are {', '.join(expected)})")
        for name, array in feeds.items():
            check_feed(expected[name], array)


@dataclasses.dataclass(frozen=True)
class PortableReference:
    """A :class:`ReferenceSession` in a form that pickles: what a worker process needs to run the same model.

    Attributes:
        serialized: The lowered model's bytes (the parent session's own source bytes).
        external_data_dir: Where its external data is (the spilled tensors or the source's), or None.
        grid_tensors: ``{grid tensor: FakeQuantize output}`` of the outputs returned as float16 grid values.
        constants: Captured initializers' values.
        output_names: What :meth:`ReferenceSession.run` returns.
    """

    serialized: bytes = dataclasses.field(repr=False)
    external_data_dir: str | None
    grid_tensors: Mapping[str, str]
    constants: Mapping[str, np.ndarray] = dataclasses.field(repr=False)
    output_names: tuple[str, ...]

    def open(self, intra_op_threads: int = 0) -> ReferenceSession:
        """A session of the same bytes with the same settings: every run returns what the original's returns.

        Raises:
            Fp8ConvError: onnxruntime rejects the model (its external data moved, say).
        """
        session = ReferenceSession.__new__(ReferenceSession)
        session.model = None
        session.grid_outputs = frozenset(self.grid_tensors.values())
        session._grid_tensors = dict(self.grid_tensors)
        session._constants = dict(self.constants)
        session._data_dir = None
        session._output_names = self.output_names
        settings = _session_settings(intra_op_threads)
        session._open(create_session(self.serialized, external_data_dir=self.external_data_dir, **settings))
        return session


def _session_settings(intra_op_threads: int) -> dict[str, object]:
    """The keyword arguments of :func:`create_session` for a reference session (see the module docstring)."""
    return {
        "optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "disabled_optimizers": DISABLED_OPTIMIZERS,
        "config": SESSION_CONFIG,
        "intra_op_threads": intra_op_threads,
    }


def check_feed(info: TensorInfo, array: object) -> None:
    """Raise :class:`Fp8ConvError` unless ``array`` has the dtype, rank and static dimensions of ``info``."""
    if not isinstance(array, np.ndarray):
        raise Fp8ConvError(f"input {info.name!r}: expected a NumPy array, got {type(array).__name__}")
    if info.dtype is not None and array.dtype != info.dtype:
        raise Fp8ConvError(f"input {info.name!r}: dtype {array.dtype}, the model wants {info.dtype}")
    if array.ndim != info.rank:
        raise Fp8ConvError(
            f"input {info.name!r}: rank {array.ndim} (shape {array.shape}), the model wants rank {info.rank} "
            f"(shape {list(info.shape)})"
        )
    for axis, (have, want) in enumerate(zip(array.shape, info.shape, strict=True)):
        if isinstance(want, int) and want >= 0 and have != want:
            raise Fp8ConvError(
                f"input {info.name!r}: dimension {axis} is {have}, the model wants {want} (shape {list(info.shape)})"
            )


SPILL_THRESHOLD_BYTES = 64 << 20
"""A lowered model holding more bytes of tensors in memory (or computed when read) is run from a file."""


def _spill_to_disk(model: ir.Model) -> tempfile.TemporaryDirectory | None:
    """Write the tensors of 1 KiB and more to a temporary data file when those in memory exceed the threshold.

    The tensors are then ``ExternalTensor``s of that file (the source's external data is copied into it, so
    that onnxruntime finds every tensor in one directory), written one at a time (lazy ones computed then),
    4 KiB-aligned so that onnxruntime maps them instead of copying them into its own memory. The directory
    lives as long as the returned object (the session's).
    """
    in_memory = sum(
        value.const_value.nbytes
        for graph in model.graphs()
        for value in graph.initializers.values()
        if value.const_value is not None and not isinstance(value.const_value, ir.ExternalTensor)
    )
    if in_memory <= SPILL_THRESHOLD_BYTES:
        return None
    directory = tempfile.TemporaryDirectory(prefix="fp8conv-reference-")
    ir.external_data.unload_from_model(
        model,
        directory.name,
        "reference.onnx.data",
        size_threshold_bytes=1024,
        max_in_flight_bytes=64 << 20,
        alignment=4096,
    )
    logger.info("reference: %d MB of tensors in memory written to %s", in_memory >> 20, directory.name)
    return directory


def _add_captures(model: ir.Model, capture: Sequence[str]) -> dict[str, np.ndarray]:
    """Make captured node outputs graph outputs; return captured initializers' values."""
    graph = model.graph
    produced = {value.name: value for node in graph for value in node.outputs if value.name}
    outputs = {value.name for value in graph.outputs}
    fed = {value.name for value in graph.inputs if not value.is_initializer()}
    constants: dict[str, np.ndarray] = {}
    for name in capture:
        if name in outputs or name in fed:
            continue
        if name in produced:
            graph.outputs.append(produced[name])
            outputs.add(name)
        elif name in graph.initializers and graph.initializers[name].const_value is not None:
            constants[name] = graph.initializers[name].const_value.numpy()
        else:
            raise Fp8ConvError(f"capture: {name!r} is not a tensor of the model's main graph")
    return constants
