"""Orchestration of a conversion: configuration, calibration, the pass pipeline, convert()/convert_file()."""
