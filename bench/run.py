"""Run every benchmark in bench/ and print their figures (the budgets of docs/ARCHITECTURE.md).

Usage: python bench/run.py [name ...]
  (names: handlers, cold_import, merge, export, detector, local_stack, burst, review_api)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHES = {
    "handlers": "bench_handlers.py",
    "cold_import": "bench_cold_import.py",
    "merge": "bench_merge.py",
    "export": "bench_export.py",
    "detector": "bench_detector.py",
    "local_stack": "bench_local_stack.py",
    "burst": "bench_burst.py",
    "review_api": "bench_review_api.py",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}", file=sys.stderr
        )
        return 2
    failures = 0
    for name in names:
        script = BENCH_DIR / BENCHES[name]
        print(f"\n=== {name} ({script.name}) ===", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], check=False)
        print(f"--- {name}: exit {result.returncode} in {time.perf_counter() - started:.1f} s", flush=True)
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
