"""Graph passes over onnx_ir models, one pass per module."""
