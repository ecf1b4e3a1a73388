"""``formats_table`` and ``formats_document`` (fp8conv/runtime/formats.py): what ``fp8conv formats`` prints."""

from __future__ import annotations

import json

from fp8conv.runtime.formats import FORMATS, FORMATS_SCHEMA_VERSION, formats_document, formats_table


def test_the_table_has_a_row_per_format_with_its_facts():
    header, *rows = formats_table().splitlines()
    assert header.split()[:6] == ["name", "bits", "E", "M", "bias", "max"]
    assert [row.split()[0] for row in rows] == list(FORMATS)
    for row, fmt in zip(rows, FORMATS.values(), strict=True):
        _, bits, exponent, mantissa, bias, max_value, *_, style = row.split()
        assert (int(bits), int(exponent), int(mantissa), int(bias)) == (
            fmt.bits,
            fmt.exponent_bits,
            fmt.mantissa_bits,
            fmt.bias,
        )
        assert float(max_value) == float(f"{fmt.max_value:g}")
        assert style == fmt.style


def test_the_document_is_strict_json_of_every_format():
    document = json.loads(json.dumps(formats_document(), allow_nan=False))
    assert document["schema_version"] == FORMATS_SCHEMA_VERSION
    assert [entry["name"] for entry in document["formats"]] == list(FORMATS)
    assert document["formats"][0] == json.loads(json.dumps(next(iter(FORMATS.values())).to_json()))
