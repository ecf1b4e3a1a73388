"""The executions verification compares, behind one small interface (Polygraphy's runner shape).

A :class:`Runner` has a name, the names of the inputs it needs and of the arrays it returns, and
:meth:`~Runner.run`, one batch in, ``{name: array}`` out. Verification (:func:`fp8conv.verify`) runs three:

* :class:`Fp8ReferenceRunner`: the reference in canonical form with exact FP8 numerics at every quantization
  point (:class:`~fp8conv.passes.reference_runner.ReferenceRunner`), intermediate tensors captured;
* :func:`deployed_runner`: the candidate on onnxruntime at the deployment optimization level (the CPU
  provider unless ``--providers`` names others), graph outputs only (captures would keep onnxruntime from
  fusing what deployment fuses);
* :func:`unfused_runner`: the candidate at ``ORT_DISABLE_ALL``, every Q/DQ executed as written, with the same
  intermediate tensors captured (on the same providers).

Golden outputs (:mod:`fp8conv.verification.golden`) take the reference's place: :class:`RecordingRunner` keeps
what the reference returns, batch by batch, for ``--save-outputs``; :class:`LoadedOutputsRunner` serves the
arrays ``--load-outputs`` read, batch by batch in sample order, instead of running the reference.

The candidate is a :class:`Candidate`: its graph (to match tensors by name) and the bytes onnxruntime loads.
:func:`read_candidate` makes one of a file or an in-memory model, parsing a file once;
:func:`fp8conv.convert_and_verify` makes one of the converter's own serialization of the model it writes, so
the written bytes are the bytes verified. The unfused candidate's extra outputs are appended to those bytes
as a second serialized ``ModelProto`` holding only the new ``graph.output`` entries: a protobuf parser
merges concatenated messages field by field (repeated fields are concatenated), so the large model is
never serialized twice. The captured tensors then appear in ``graph.value_info`` too, which onnxruntime
and ``onnx.checker`` accept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from fp8conv.converter.loading import ModelInput, parse_model, read_model
from fp8conv.errors import Fp8ConvError
from fp8conv.passes.node_names import UniqueNodeNamesPass
from fp8conv.passes.reference_runner import ReferenceRunner
from fp8conv.runtime.audit import KernelAudit, audit_integer_kernels
from fp8conv.runtime.ort_backend import (
    CPU_PROVIDER,
    TensorInfo,
    create_session,
    graph_optimization_level,
    session_inputs,
    session_outputs,
)

__all__ = [
    "Candidate",
    "Fp8ReferenceRunner",
    "LoadedOutputsRunner",
    "OrtRunner",
    "RecordingRunner",
    "Runner",
    "deployed_runner",
    "named_as_read",
    "read_candidate",
    "unfused_runner",
    "with_graph_outputs",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Runner(Protocol):
    """One execution of a model, batch by batch.

    Attributes:
        name: What runs, for messages (``FP8 reference``, ``deployed candidate``, ...).
    """

    name: str

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the arrays :meth:`run` needs."""
        ...

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the arrays :meth:`run` returns."""
        ...

    @property
    def static_batch_size(self) -> int | None:
        """The leading dimension every input fixes, else None."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: ``{name: array}`` for every name in :attr:`output_names`."""
        ...


class Fp8ReferenceRunner(ReferenceRunner):
    """The exact FP8 reference of a canonical model (:class:`~fp8conv.passes.reference_runner.ReferenceRunner`).

    A model without FP8 quantization points (float or integer QDQ) runs on onnxruntime with its
    quantization-sensitive rewrites off. Its :meth:`run` raises ``Fp8ConvError("onnxruntime run failed: …")``.

    Args:
        model: The reference in canonical form (not modified).
        capture: Intermediate tensors to return with the graph outputs.
    """

    name = "FP8 reference"

    def __init__(self, model: ir.Model, *, capture: Sequence[str] = ()) -> None:
        super().__init__(model, capture=capture)


class RecordingRunner:
    """Another runner, whose results are kept: every array of every batch, in order (for ``--save-outputs``).

    Args:
        runner: The runner that computes (the FP8 reference).
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.name = runner.name
        self.batches: dict[str, list[np.ndarray]] = {name: [] for name in runner.output_names}
        """Every batch's array, by name, in the order of the runs."""

    @property
    def input_names(self) -> tuple[str, ...]:
        """The recorded runner's."""
        return self.runner.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """The recorded runner's."""
        return self.runner.output_names

    @property
    def static_batch_size(self) -> int | None:
        """The recorded runner's."""
        return self.runner.static_batch_size

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The recorded runner's result, kept (copies: an array may be a view of a feed or a constant).

        Raises:
            Fp8ConvError: An array whose first axis is not the batch's samples (it cannot be stored by sample).
        """
        count = len(next(iter(feeds.values())))
        arrays = self.runner.run(feeds)
        for name in self.output_names:
            array = np.asarray(arrays[name])
            if array.ndim == 0 or array.shape[0] != count:
                raise Fp8ConvError(
                    f"--save-outputs: the reference's {name!r} has shape {list(array.shape)} for a batch of {count} "
                    "samples; golden outputs are stored sample by sample (first axis)"
                )
            self.batches[name].append(np.array(array, copy=True))
        return arrays

    def recorded(self) -> dict[str, np.ndarray]:
        """``{name: the batches concatenated along the sample axis}`` (empty arrays when nothing ran)."""
        return {name: np.concatenate(parts) if parts else np.empty((0,)) for name, parts in self.batches.items()}


class LoadedOutputsRunner:
    """Stored reference arrays served in sample order instead of running the reference (``--load-outputs``).

    Each :meth:`run` returns the next ``len(batch)`` samples of every array: the batches must come in the
    order the arrays were saved in (the samples of the same inputs, which the inputs' SHA-256 checks).

    Args:
        arrays: ``{name: array}``, the samples along the first axis.
        input_names: The reference's inputs (what verification feeds).
        static_batch_size: The reference's static batch size, if any.
        source: How messages name the file.
    """

    name = "FP8 reference (loaded)"

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        input_names: Sequence[str],
        static_batch_size: int | None,
        source: str,
    ) -> None:
        self._arrays = dict(arrays)
        self._inputs = tuple(input_names)
        self._static = static_batch_size
        self._source = source
        self.served = 0
        """Samples served so far."""

    @property
    def input_names(self) -> tuple[str, ...]:
        """The reference's inputs."""
        return self._inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        """The stored arrays' names."""
        return tuple(self._arrays)

    @property
    def static_batch_size(self) -> int | None:
        """The reference's static batch size."""
        return self._static

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The stored arrays of the next ``len(batch)`` samples.

        Raises:
            Fp8ConvError: More samples asked for than were stored.
        """
        count = len(next(iter(feeds.values())))
        start, stop = self.served, self.served + count
        out = {}
        for name, array in self._arrays.items():
            if len(array) < stop:
                raise Fp8ConvError(f"{self._source}: holds {len(array)} samples of {name!r}, verification needs more")
            out[name] = array[start:stop]
        self.served = stop
        return out


class OrtRunner:
    """A model on an onnxruntime session, returning the outputs it fetches.

    Args:
        name: What runs (for messages).
        session: The session.
        fetch: The outputs :meth:`run` returns, in order (default: every output of the session).
        subject: How a failed run names the model (``onnxruntime run of <subject> failed: …``).
    """

    def __init__(
        self,
        name: str,
        session: ort.InferenceSession,
        fetch: Sequence[str] | None = None,
        *,
        subject: str = "the candidate",
    ) -> None:
        self.name = name
        self.session = session
        self.subject = subject
        self.inputs: tuple[TensorInfo, ...] = tuple(session_inputs(session))
        """The session's inputs."""
        self.outputs: tuple[TensorInfo, ...] = tuple(session_outputs(session))
        """Every output of the session (those :meth:`run` returns are :attr:`output_names`)."""
        self._fetch = list(fetch) if fetch is not None else [info.name for info in self.outputs]

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the session's inputs."""
        return tuple(info.name for info in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the arrays :meth:`run` returns."""
        return tuple(self._fetch)

    @property
    def static_batch_size(self) -> int | None:
        """The leading dimension when every input has the same static one, else None."""
        leading = {info.shape[0] if info.shape else None for info in self.inputs}
        size = leading.pop() if len(leading) == 1 else None
        return size if isinstance(size, int) and size > 0 else None

    def fetching(self, names: Sequence[str]) -> OrtRunner:
        """A runner on the same session that returns ``names``."""
        return OrtRunner(self.name, self.session, names, subject=self.subject)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Raises:
            Fp8ConvError: onnxruntime's run failed (its first line).
        """
        try:
            arrays = self.session.run(self._fetch, dict(feeds))
        except Exception as error:  # onnxruntime's own exception types
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise Fp8ConvError(f"onnxruntime run of {self.subject} failed: {first_line}") from error
        return dict(zip(self._fetch, arrays, strict=True))


@dataclasses.dataclass(frozen=True)
class Candidate:
    """The model under test.

    Attributes:
        model: Its graph, its nodes named as a reader of its file names them (tensors are matched and layers
            named from it; not modified).
        serialized: The bytes onnxruntime loads.
        path: The file it was read from or written to, if any (reported; its directory holds any external data).
        external_data: Whether ``serialized`` refers to external data (beside ``path``).
        proto: The parsed model, kept for an integer-kernel audit at another optimization level; None when
            the audit is to read ``path`` (external data) or is not available.
        audits: Integer-kernel audits already made of it, by optimization level (or the error one raised).
    """

    model: ir.Model
    serialized: bytes = dataclasses.field(repr=False)
    path: Path | None = None
    external_data: bool = False
    proto: onnx.ModelProto | None = dataclasses.field(default=None, repr=False)
    audits: Mapping[str, KernelAudit | Fp8ConvError] = dataclasses.field(default_factory=dict)

    @property
    def external_data_dir(self) -> Path | None:
        """Where onnxruntime finds the external data (None: the model has none)."""
        return self.path.parent if self.external_data and self.path is not None else None

    @property
    def auditable(self) -> bool:
        """Whether :meth:`kernel_audit` can audit it at any level."""
        return bool(self.audits) or self.proto is not None or (self.external_data and self.path is not None)

    def kernel_audit(self, optimization_level: str) -> KernelAudit:
        """The integer-kernel audit at ``optimization_level`` (an ``OPTIMIZATION_LEVELS`` key), made before or now.

        Raises:
            Fp8ConvError: It cannot be audited (see :attr:`auditable`), or the audit failed.
        """
        known = self.audits.get(optimization_level)
        if isinstance(known, Fp8ConvError):
            raise known
        if known is not None:
            return known
        if self.external_data and self.path is not None:
            return audit_integer_kernels(self.path, optimization_level=optimization_level)
        if self.proto is None:
            raise Fp8ConvError("the candidate cannot be audited")
        return audit_integer_kernels(self.proto, serialized=self.serialized, optimization_level=optimization_level)


def read_candidate(model: ModelInput) -> Candidate:
    """The candidate of a file or an in-memory model, validated as :func:`fp8conv.load` validates.

    A file is read and parsed once: its bytes go to onnxruntime, its graph to the tensor matching.

    Raises:
        ModelLoadError: The model cannot be read or is not valid ONNX.
    """
    parsed = parse_model(model)
    ir_model, source = read_model(parsed)
    serialized = parsed.serialized if parsed.serialized is not None else parsed.proto.SerializeToString()
    return Candidate(
        model=ir_model,
        serialized=serialized,
        path=source.path,
        external_data=bool(source.external_data),
        proto=None if source.external_data else parsed.proto,
    )


def named_as_read(model: ir.Model) -> ir.Model:
    """``model`` with node names as a reader of its serialization gives them (a clone only when that renames)."""
    names = [node.name for node in ir.traversal.RecursiveGraphIterator(model.graph)]
    if all(names) and len(set(names)) == len(names):
        return model
    clone = model.clone()
    UniqueNodeNamesPass()(clone)
    return clone


def with_graph_outputs(serialized: bytes, values: Sequence[ir.Value]) -> bytes:
    """The serialized model with ``values`` appended to its graph outputs, without re-serializing it.

    The protobuf encoding merges concatenated messages (repeated fields are concatenated), so appending a
    ``ModelProto`` whose graph holds only the new outputs is the model with those outputs.
    """
    if not values:
        return serialized
    extra = onnx.ModelProto(graph=onnx.GraphProto(output=[ir.serde.serialize_value(value) for value in values]))
    return serialized + extra.SerializeToString()


def deployed_runner(
    candidate: Candidate, optimization_level: str, providers: Sequence[str] = (CPU_PROVIDER,)
) -> OrtRunner:
    """The candidate at the deployment level (``all``, ``layout``, ``extended``, ``basic`` or ``disable``).

    Args:
        candidate: The candidate.
        optimization_level: The deployment level.
        providers: onnxruntime execution providers, in priority order (checked by the caller).

    Raises:
        Fp8ConvError: onnxruntime rejects the model.
    """
    level = graph_optimization_level(optimization_level)
    session = create_session(
        candidate.serialized,
        optimization_level=level,
        external_data_dir=candidate.external_data_dir,
        providers=providers,
    )
    return OrtRunner("deployed candidate", session)


def unfused_runner(
    candidate: Candidate, capture: Sequence[str] = (), providers: Sequence[str] = (CPU_PROVIDER,)
) -> OrtRunner:
    """The candidate at ``ORT_DISABLE_ALL`` with ``capture`` (node outputs of its main graph) among its outputs.

    Args:
        candidate: The candidate.
        capture: Node outputs of its main graph to return too.
        providers: onnxruntime execution providers, in priority order (checked by the caller).

    Raises:
        Fp8ConvError: onnxruntime rejects the model.
    """
    graph = candidate.model.graph
    produced = {value.name: value for node in graph for value in node.outputs if value.name}
    present = {value.name for value in graph.outputs}
    extra = [produced[name] for name in dict.fromkeys(capture) if name not in present]
    session = create_session(
        with_graph_outputs(candidate.serialized, extra),
        optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        external_data_dir=candidate.external_data_dir,
        providers=providers,
    )
    return OrtRunner("unfused candidate", session)
