"""Orchestration of a conversion: loading, calibration, the pass pipeline, convert()/convert_file(), checks."""
