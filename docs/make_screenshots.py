"""Render report.html of a passing and a failing verification in headless Chromium: docs/report-*.png.

The two runs are made on shipped samples, copied into a temporary directory so the reports name them by
relative paths::

    passing  fp8conv seq_transformer/model.onnx --to int8 --data calib.npz --verify-data eval.npz
    failing  fp8conv digits_mobilenet/model.onnx --to int8 ... --activations-range percentile --percentile 99
             --min-sqnr 18 --min-layer-sqnr 18        (ranges clipped at the 99th percentile: exit 1)

Each report is loaded by Chromium from its file (``--dump-dom`` first: the rendered page must hold the
verdict and every plot, else this script fails), then photographed at a fixed window size. Needs Debian's
``chromium`` (``apt-get install chromium``); not part of the test suite, since CI has no browser.

Usage: ``python docs/make_screenshots.py [--chromium PATH]`` from the checkout's root.
"""

from __future__ import annotations

import argparse
import html.parser
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
WINDOW = "1280,2600"
"""Width, height of the screenshot: the verdict, the gates, the outputs, the per-layer plot and the worst layers."""

RUNS: dict[str, tuple[str, tuple[str, ...], int, str]] = {
    "passing": ("seq_transformer", (), 0, "PASSED"),
    "failing": (
        "digits_mobilenet",
        ("--activations-range", "percentile", "--percentile", "99", "--min-sqnr", "18", "--min-layer-sqnr", "18"),
        1,
        "FAILED",
    ),
}
"""Screenshot name: (sample model, extra convert options, expected exit code, verdict word in the page's title)."""


class _PageFacts(html.parser.HTMLParser):
    """What a rendered report page shows: its first heading's text and its images' alt texts."""

    def __init__(self) -> None:
        super().__init__()
        self.heading = ""
        self.images: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h1" and not self.heading:
            self._in_heading = True
        if tag == "img":
            values = dict(attrs)
            if (values.get("src") or "").startswith("data:image/"):
                self.images.append(values.get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.heading += data


def _chromium(chromium: str, *args: str) -> str:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def _report(work: Path, sample: str, options: tuple[str, ...], expected_exit: int) -> Path:
    model_dir = work / sample
    shutil.copytree(ROOT / "models" / sample, model_dir)
    command = [sys.executable, "-m", "fp8conv", "-q", f"{sample}/model.onnx", "--to", "int8"]
    command += ["--data", f"{sample}/calib.npz", "--verify-data", f"{sample}/eval.npz"]
    command += ["-o", f"{sample}.int8.onnx", "--report", f"{sample}-report", *options]
    finished = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if finished.returncode != expected_exit:
        ran = " ".join(command)
        raise SystemExit(f"{ran}: exit {finished.returncode}, expected {expected_exit}\n{finished.stderr}")
    return work / f"{sample}-report" / "report.html"


def main() -> None:
    """Make both screenshots, checking each rendered page first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="the browser to run")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        for name, (sample, options, expected_exit, verdict) in RUNS.items():
            page = _report(Path(temporary), sample, options, expected_exit).as_uri()
            facts = _PageFacts()
            facts.feed(_chromium(arguments.chromium, "--dump-dom", page))
            if verdict not in facts.heading or len(facts.images) < 3:
                raise SystemExit(f"{page}: rendered heading {facts.heading!r}, {len(facts.images)} plots")
            target = DOCS / f"report-{name}.png"
            _chromium(arguments.chromium, f"--window-size={WINDOW}", f"--screenshot={target}", page)
            print(f"{target.relative_to(ROOT)}: {facts.heading.strip()}; plots: {', '.join(facts.images)}")


if __name__ == "__main__":
    main()
