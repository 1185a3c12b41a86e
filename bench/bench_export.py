"""Benchmark `labelloop manifest export` (streaming: it must stay within the merge's memory budget of
docs/ARCHITECTURE.md, <= 1 GB peak RSS, for the 1,000,000-line manifest of the merge benchmark).

For each size it writes the merge benchmark's synthetic base manifest (bench_merge.generate, Ground
Truth's compact layout: 1-3 boxes a line, 2% of lines in another class-id order, so they are remapped by
name through --labels-list), then runs the export in a fresh subprocess, so that its peak RSS (VmHWM,
as bench_merge measures a run's own peak) belongs to the export alone.

    .venv/bin/python bench/bench_export.py [--sizes 10000,100000,1000000] [--formats coco,yolo,voc] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_merge import LABELS, _own_peak_mb, generate

BUDGET_RSS_MB = 1024.0
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def run_one(manifest: Path, fmt: str, out: Path) -> dict[str, object]:
    import contextlib
    import io

    from labelloop_local.cli import main

    started = time.perf_counter()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "manifest",
                "export",
                str(manifest),
                "--format",
                fmt,
                "-o",
                str(out),
                "--labels-list",
                ",".join(LABELS),
            ]
        )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = _own_peak_mb()
    return {
        "exit": code,
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024 if peak is None else peak,  # ru_maxrss: KiB on Linux
        "summary": printed.getvalue().splitlines()[0] if printed.getvalue() else "",
    }


def measure(size: int, fmt: str, directory: Path) -> dict[str, object]:
    base, labels, retrain_labels = generate(directory, size, "gt")
    labels.unlink()  # the export reads the base manifest only
    retrain_labels.unlink()
    out = directory / f"export-{fmt}-{size}"
    completed = subprocess.run(
        [sys.executable, __file__, "--run-one", str(base), fmt, str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(completed.stdout)
    output_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.exists() else 0
    result.update(
        format=fmt,
        lines=size,
        lines_per_second=size / result["seconds"],
        output_mb=output_bytes / 1e6,
        within_budget=result["peak_rss_mb"] <= BUDGET_RSS_MB if size >= 1_000_000 else None,
    )
    base.unlink()
    shutil.rmtree(out, ignore_errors=True)
    return result


def print_table(results: list[dict[str, object]]) -> None:
    header = (
        f"{'format':>6} {'lines':>10} {'seconds':>8} {'cpu s':>7} {'lines/s':>9} "
        f"{'peak RSS MB':>12} {'output MB':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['format']:>6} {r['lines']:>10,} {r['seconds']:>8.1f} {r['cpu_seconds']:>7.1f} "
            f"{r['lines_per_second']:>9,.0f} {r['peak_rss_mb']:>12.0f} {r['output_mb']:>10.0f}  "
            f"{r['summary']}"
        )
    print(f"budget at 1,000,000 lines: <= {BUDGET_RSS_MB:g} MB peak RSS (the merge's)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--formats", default="coco", help="comma-separated: coco, yolo, voc")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document only")
    parser.add_argument("--run-one", nargs=3, metavar=("MANIFEST", "FORMAT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        manifest, fmt, out = args.run_one
        print(json.dumps(run_one(Path(manifest), fmt, Path(out))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    with tempfile.TemporaryDirectory(prefix="labelloop-bench-export-") as tmp:
        results = [measure(size, fmt, Path(tmp)) for fmt in formats for size in sizes]
    if args.json:
        print(json.dumps({"benchmark": "manifest-export", "results": results}, indent=2))
    else:
        print_table(results)
    failed = any(r["exit"] != 0 or r["within_budget"] is False for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
