"""The JSON Schema of ``report.json`` (``report.schema.json``, shipped as package data).

The schema is versioned by :data:`~fp8conv.verification.result.SCHEMA_VERSION` (``MAJOR.MINOR``): a minor
version only adds keys, a major one may change or remove them. Validation needs the optional
``jsonschema`` package (in the ``test`` extra); fp8conv itself never needs it to write reports.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from fp8conv.verification.result import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "report_schema", "validate_report"]


@functools.cache
def _schema_text() -> str:
    return resources.files("fp8conv.report").joinpath("report.schema.json").read_text(encoding="utf-8")


def report_schema() -> dict[str, Any]:
    """The schema as a dict (a fresh copy on every call)."""
    return json.loads(_schema_text())


def validate_report(document: dict[str, Any]) -> None:
    """Validate a ``report.json`` document against the schema.

    Raises:
        jsonschema.ValidationError: The document does not match.
        ImportError: ``jsonschema`` is not installed (``pip install jsonschema``).
    """
    import jsonschema

    schema = report_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(document)
