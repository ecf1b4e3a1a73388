"""Verification: compare a candidate model with its FP8 reference and check the accuracy gates.

:mod:`~fp8conv.verification.verify` (:func:`fp8conv.verify`), :mod:`~fp8conv.verification.metrics` (streaming
error statistics), :mod:`~fp8conv.verification.matching` (tensors matched by name),
:mod:`~fp8conv.verification.inputs` (data and random inputs), :mod:`~fp8conv.verification.gates` and
:mod:`~fp8conv.verification.kernel_gate`, :mod:`~fp8conv.verification.result` (the result, report.json's
content) and :mod:`~fp8conv.verification.preflight` (inputs checked before anything is written). Rendering
the result is :mod:`fp8conv.report`'s job; :mod:`fp8conv.report` also re-exports the public names.
"""
