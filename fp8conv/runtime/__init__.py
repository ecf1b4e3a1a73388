"""Numerics and execution: number formats, the FP8 emulator, integer weight math, onnxruntime, reference runs."""
