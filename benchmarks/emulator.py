"""Exhaustive bit-exactness check and throughput of the FP8 emulator against ml_dtypes.

Usage::

    python benchmarks/emulator.py                    # exhaustive (all 2^32 float32) + throughput
    python benchmarks/emulator.py --skip-exhaustive  # throughput only

(a) Exhaustive: every float32 bit pattern is encoded to e4m3fn and e5m2 with both saturate modes and
compared code for code with ml_dtypes (``np.clip(x, -max, max).astype`` for saturate=True, plain
``astype`` for saturate=False). Prints the mismatch count per case; the script exits 1 if any is > 0.

(b) Throughput: ``encode``, ``decode``, ``quantize_values`` and ``fake_quantize`` against the
equivalent ml_dtypes expression on the same float32 array (standard normal * 50), in one
run, timed alternately so that both sides see the same machine load; best of N each. Results are also
checked for equality before timing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable

import ml_dtypes
import numpy as np
from machine import cpu_model

from fp8conv import fp8

ML_DTYPES = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}


def ml_encode(x: np.ndarray, name: str, saturate: bool) -> np.ndarray:
    dtype = ML_DTYPES[name]
    if saturate:
        limit = float(ml_dtypes.finfo(dtype).max)
        x = np.clip(x, -limit, limit)
    return x.astype(dtype).view(np.uint8)


def exhaustive(formats: list[str], chunk_log2: int) -> int:
    chunk = 1 << chunk_log2
    cases = [(name, saturate) for name in formats for saturate in (True, False)]
    mismatches = dict.fromkeys(cases, 0)
    seconds = dict.fromkeys(cases, 0.0)
    offsets = np.arange(chunk, dtype=np.uint32)
    start_all = time.perf_counter()
    with np.errstate(all="ignore"):
        for index, start in enumerate(range(0, 1 << 32, chunk)):
            x = (offsets + np.uint32(start)).view(np.float32)
            for name, saturate in cases:
                t0 = time.perf_counter()
                ours = fp8.encode(x, name, saturate=saturate)
                theirs = ml_encode(x, name, saturate)
                mismatches[name, saturate] += int(np.count_nonzero(ours != theirs))
                seconds[name, saturate] += time.perf_counter() - t0
            if index % 32 == 31:
                done = (index + 1) * chunk / (1 << 32)
                print(f"  ... {done:6.1%} of float32 after {time.perf_counter() - start_all:.0f} s", file=sys.stderr)
    print("### (a) Exhaustive: every float32 bit pattern, `fp8.encode` vs ml_dtypes\n")
    print("| format | saturate | float32 inputs | mismatching codes | seconds (both sides) |")
    print("|---|---|---:|---:|---:|")
    for name, saturate in cases:
        print(f"| {name} | {saturate} | {1 << 32:,} | {mismatches[name, saturate]} | {seconds[name, saturate]:.1f} |")
    total = sum(mismatches.values())
    print(f"\nTotal mismatches: **{total}** ({time.perf_counter() - start_all:.0f} s)\n")
    return total


def best_of_interleaved(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best time of each of two calls, run alternately so that both see the same machine load."""
    ours()  # warm-up: builds lookup tables, faults in pages
    theirs()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for index, fn in enumerate((ours, theirs)):
            t0 = time.perf_counter()
            fn()
            best[index] = min(best[index], time.perf_counter() - t0)
    return best[0], best[1]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == np.uint8:
        return bool(np.array_equal(a, b))
    return bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


Op = tuple[str, Callable[[], np.ndarray], Callable[[], np.ndarray]]


def operations(name: str, x: np.ndarray, scale: np.float32) -> list[Op]:
    """(label, fp8conv call, equivalent ml_dtypes call) for one format."""
    dtype = ML_DTYPES[name]
    limit = float(ml_dtypes.finfo(dtype).max)
    codes = fp8.encode(x, name)
    ml_codes = codes.view(dtype)
    return [
        (
            "encode (saturate=True)",
            lambda: fp8.encode(x, name, saturate=True),
            lambda: np.clip(x, -limit, limit).astype(dtype).view(np.uint8),
        ),
        (
            "encode (saturate=False)",
            lambda: fp8.encode(x, name, saturate=False),
            lambda: x.astype(dtype).view(np.uint8),
        ),
        ("decode", lambda: fp8.decode(codes, name), lambda: ml_codes.astype(np.float32)),
        (
            "quantize_values",
            lambda: fp8.quantize_values(x, name),
            lambda: np.clip(x, -limit, limit).astype(dtype).astype(np.float32),
        ),
        (
            f"fake_quantize (scale {float(scale):g})",
            lambda: fp8.fake_quantize(x, scale, name),
            lambda: np.clip(x / scale, -limit, limit).astype(dtype).astype(np.float32) * scale,
        ),
    ]


def throughput(formats: list[str], size: int, repeats: int, scale: float) -> list[tuple[str, str, float, float]]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(size, dtype=np.float32) * 50).astype(np.float32)
    rows = []
    for name in formats:
        for op, ours, theirs in operations(name, x, np.float32(scale)):
            if not same(ours(), theirs()):
                raise SystemExit(f"{op} {name}: fp8conv and ml_dtypes results differ")
            t_ours, t_theirs = best_of_interleaved(ours, theirs, repeats)
            rows.append((op, name, size / t_ours / 1e6, size / t_theirs / 1e6))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-exhaustive", action="store_true", help="only measure throughput")
    parser.add_argument("--skip-throughput", action="store_true", help="only run the exhaustive check")
    parser.add_argument("--formats", nargs="+", default=list(ML_DTYPES), choices=list(ML_DTYPES))
    parser.add_argument("--chunk-log2", type=int, default=24, help="exhaustive chunk size, log2 (default 24)")
    parser.add_argument("--size", type=int, default=1 << 24, help="throughput array length (default 2^24)")
    parser.add_argument("--repeats", type=int, default=7, help="throughput repetitions, best is kept (default 7)")
    parser.add_argument("--scale", type=float, default=0.37, help="fake_quantize scale (default 0.37)")
    args = parser.parse_args(argv)

    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} {platform.machine()}, load {load}")
    command = " ".join(["python benchmarks/emulator.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"- command: `{command}`")
    print(f"- python {platform.python_version()}, numpy {np.__version__}, ml_dtypes {ml_dtypes.__version__}")
    print()

    failures = 0
    if not args.skip_exhaustive:
        failures = exhaustive(args.formats, args.chunk_log2)
    if not args.skip_throughput:
        rows = throughput(args.formats, args.size, args.repeats, args.scale)
        print(
            f"### (b) Throughput: {args.size:,} float32 values (standard normal * 50), "
            f"best of {args.repeats} (interleaved), single process; load after: "
            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
        )
        print("| operation | format | fp8conv (M el/s) | ml_dtypes (M el/s) | fp8conv / ml_dtypes |")
        print("|---|---|---:|---:|---:|")
        for op, name, ours, theirs in rows:
            print(f"| {op} | {name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")
        print()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
