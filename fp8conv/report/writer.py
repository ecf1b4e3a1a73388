"""Write ``report.json``, ``report.md`` and ``report.html`` into a directory, each atomically.

All three are rendered in memory first, so a rendering error leaves the directory untouched; each file
then appears complete or not at all (:func:`fp8conv.converter.files.atomic_write`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from fp8conv.converter.files import atomic_write
from fp8conv.errors import Fp8ConvError
from fp8conv.report.html import render_html
from fp8conv.report.markdown import render_markdown
from fp8conv.verification.result import VerificationResult

__all__ = ["REPORT_FILES", "write_reports"]

logger = logging.getLogger(__name__)

REPORT_FILES = ("report.json", "report.md", "report.html")
"""The files :func:`write_reports` writes."""


def write_reports(result: VerificationResult, directory: str | os.PathLike) -> dict[str, Path]:
    """Write the three reports of ``result`` into ``directory`` (created if needed).

    Args:
        result: The verification result.
        directory: Output directory.

    Returns:
        ``{"json": path, "md": path, "html": path}``.

    Raises:
        Fp8ConvError: ``directory`` exists and is not a directory, or cannot be written.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise Fp8ConvError(f"{directory}: --report needs a directory, and this is a file")
    document = result.to_json()
    texts = {
        "json": json.dumps(document, indent=2, allow_nan=False) + "\n",
        "md": render_markdown(document),
        "html": render_html(document),
    }
    paths = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for kind, text in texts.items():
            path = directory / f"report.{kind}"
            with atomic_write(path) as handle:
                handle.write(text.encode("utf-8"))
            path.chmod(0o644)  # CI artifacts are read by other users (the temporary file was 0600)
            paths[kind] = path
    except OSError as error:
        raise Fp8ConvError(f"{directory}: cannot write the reports: {error.strerror or error}") from error
    logger.info("reports written to %s", directory)
    return paths
