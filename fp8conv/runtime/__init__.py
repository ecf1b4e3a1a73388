"""Numerics and execution: number formats, the FP8 emulator, onnxruntime sessions, reference runs."""
