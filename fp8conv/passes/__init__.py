"""Graph passes and analyses over onnx_ir models: normalization, canonical form, lowering, planning, emission."""
