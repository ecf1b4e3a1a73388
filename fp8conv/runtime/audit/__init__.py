"""Integer-kernel audit: which Conv / MatMul / Gemm of an emitted QDQ model onnxruntime runs on integers.

fp8conv writes QDQ models (``DequantizeLinear → Conv/MatMul/Gemm → QuantizeLinear``) and relies on
onnxruntime's CPU execution provider to fuse each such group into an integer kernel. Whether it does
depends on details of the graph (types, scale axes, the quantized output, bias type) and on the session's
optimization level, so the audit checks it the only reliable way: by asking onnxruntime, and compares the
answer with what onnxruntime's fusion rules (:mod:`fp8conv.runtime.fusion_rules`) predict for the graph.

One module per job:

* :mod:`.session`: a CPU session at the requested level saves the graph it will run; it is loaded as an
  ``onnx_ir`` model without its weights (so is an emitted model given as a file);
* :mod:`.ir_queries`: what the audit asks of an onnx_ir value (its readers, a small constant's contents,
  its element type), over onnx_ir's own producer/use links;
* :mod:`.matching`: which optimized node each emitted Conv / MatMul / Gemm became (names onnxruntime keeps
  or derives, weights, biases, outputs);
* :mod:`.diagnosis`: the kernel the fusion rules predict, every fusion condition a float node violates,
  the hazards of an integer node;
* :mod:`.records`: :class:`KernelRecord` and :class:`KernelAudit`, what the audit reports;
* :mod:`.kernel_audit`: :func:`audit_integer_kernels`, the steps in order.

Only the main graph is audited (nodes inside ``If``/``Loop``/``Scan`` bodies are not).
"""

from fp8conv.runtime.audit.kernel_audit import audit_integer_kernels
from fp8conv.runtime.audit.records import KernelAudit, KernelRecord
from fp8conv.runtime.fusion_rules import INTEGER_KERNELS, LAYER_OPS
from fp8conv.runtime.ort_backend import OPTIMIZATION_LEVELS

AUDITED_OPS = LAYER_OPS
"""Op types of the emitted model that the audit reports on (the layers)."""

__all__ = [
    "AUDITED_OPS",
    "INTEGER_KERNELS",
    "OPTIMIZATION_LEVELS",
    "KernelAudit",
    "KernelRecord",
    "audit_integer_kernels",
]
