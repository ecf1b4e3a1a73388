"""``fp8conv formats`` (fp8conv/cli/formats.py): the table and the JSON document."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import onnx
from click.testing import CliRunner

from fp8conv.cli import cli
from fp8conv.runtime.formats import FORMATS


def test_formats_lists_every_named_format_with_its_max():
    result = CliRunner().invoke(cli, ["formats"])
    assert result.exit_code == 0
    lines = result.output.splitlines()[1:]
    assert [line.split()[0] for line in lines] == list(FORMATS)
    assert "448" in lines[0]
    assert "57344" in lines[2]


def test_formats_json_states_every_formats_facts():
    outcome = CliRunner().invoke(cli, ["formats", "--json"])
    assert outcome.exit_code == 0
    document = json.loads(outcome.stdout)
    assert document["schema_version"] == "1.0"
    entries = {entry["name"]: entry for entry in document["formats"]}
    assert list(entries) == list(FORMATS)
    for name, entry in entries.items():
        fmt = FORMATS[name]
        assert entry["bits"] == 1 + entry["exponent_bits"] + entry["mantissa_bits"] - (not entry["has_sign"])
        assert (entry["exponent_bits"], entry["mantissa_bits"], entry["bias"]) == (
            fmt.exponent_bits,
            fmt.mantissa_bits,
            fmt.bias,
        )
        assert entry["has_inf"] == (entry["style"] == "ieee")
        assert entry["has_nan"] == (entry["style"] != "none")
        assert entry["min_subnormal"] <= entry["min_normal"] <= 1.0 < entry["max_value"]
    # The numbers against an independent source: ml_dtypes' finfo, and what a cast of +Inf gives.
    for name, entry in entries.items():
        dtype = getattr(ml_dtypes, f"float{entry['bits']}_{name}")
        info = ml_dtypes.finfo(dtype)
        assert entry["max_value"] == float(info.max), name
        assert entry["min_normal"] == float(info.smallest_normal), name
        assert entry["min_subnormal"] == float(info.smallest_subnormal), name
        inf = np.array(np.inf, np.float32).astype(dtype).astype(np.float32)
        assert entry["has_inf"] == bool(np.isinf(inf)), name
    assert entries["e4m3fn"] | {"onnx_type": None} == {
        "name": "e4m3fn",
        "bits": 8,
        "exponent_bits": 4,
        "mantissa_bits": 3,
        "bias": 7,
        "max_value": 448.0,
        "min_normal": 2.0**-6,
        "min_subnormal": 2.0**-9,
        "style": "fn",
        "has_inf": False,
        "has_nan": True,
        "has_sign": True,
        "has_subnormal": True,
        "has_zero": True,
        "onnx_type": None,
    }
    assert entries["e4m3fn"]["onnx_type"] == onnx.TensorProto.FLOAT8E4M3FN
