"""sha256 of every conversion output: each sample model and corpus file, each target, with and without data.

A refactoring that must keep outputs byte-identical runs this before and after and compares::

    python benchmarks/output_hashes.py > before.json     # on the old commit
    python benchmarks/output_hashes.py --compare before.json

Prints one JSON object ``{"<model> <target> <data|nodata>": "<sha256>" | "error: <message>"}``; with
``--compare`` it prints the entries that differ and exits 1 when any does. Hashes depend on the installed
onnx/onnxruntime (calibration runs the reference on onnxruntime), so compare on one machine and venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from fp8conv import Fp8ConvError, convert_file

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("int8", "int4", "w8a16", "w4a16")


def cases() -> list[tuple[str, Path, Path | None]]:
    """``(label, model, calibration data)`` for every sample model and corpus file."""
    found = []
    for model in sorted((ROOT / "models").glob("*/model*.onnx")):
        if ".fp32." not in model.name:
            found.append((str(model.relative_to(ROOT)), model, model.parent / "calib.npz"))
    manifest = json.loads((ROOT / "tests/corpus/manifest.json").read_text())
    for entry in manifest["files"]:
        corpus = ROOT / "tests/corpus"
        found.append((f"tests/corpus/{entry['file']}", corpus / entry["file"], corpus / entry["inputs"]["calibration"]))
    return found


def hashes() -> dict[str, str]:
    """The output hash (or error) of every case, target and data choice."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, data in cases():
            for target in TARGETS:
                for use_data in (True, False):
                    key = f"{label} {target} {'data' if use_data else 'nodata'}"
                    destination = Path(tmp, "out.onnx")
                    destination.unlink(missing_ok=True)
                    try:
                        convert_file(model, destination, to=target, data=data if use_data else None, audit=False)
                        out[key] = hashlib.sha256(destination.read_bytes()).hexdigest()
                    except Fp8ConvError as error:
                        out[key] = f"error: {str(error).replace(str(ROOT), '')}"
                    print(key, out[key][:16], file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="JSON of an earlier run: print differences, exit 1 on any")
    args = parser.parse_args()
    now = hashes()
    if args.compare is None:
        print(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before = json.loads(args.compare.read_text())
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for key in differ:
        print(f"{key}\n  before {before.get(key)}\n  now    {now.get(key)}")
    print(f"{len(now) - len(differ)}/{len(now)} identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
