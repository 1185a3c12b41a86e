"""Benchmark the streaming manifest merge (DESIGN §8: 1,000,000 base lines + 100,000 labels in
<= 10 s and <= 1 GB peak RSS on 2 cores).

For each size it writes a synthetic base manifest and 10% human labels (90% of them replace base
images, 10% are new images; 2% of base lines use another class-id order so they must be re-keyed) into
a temporary directory, then runs the merge in a fresh subprocess so that peak RSS
(resource.getrusage ru_maxrss) belongs to the merge alone; with validation workers, peak RSS is the
main process plus workers x the largest worker. CPU seconds include the workers. Prints a table,
then the results as JSON.

    .venv/bin/python bench/bench_merge.py [--sizes 10000,100000,1000000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ["pepperoni pizza slice", "cheese pizza slice", "crust"]
ATTRIBUTE = "pizza_BB"
BUDGET_SECONDS = 10.0
BUDGET_RSS_MB = 1024.0
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def _line(index: int, boxes: int, created: str, class_map: str, first_class: int) -> str:
    """A line in the compact layout Ground Truth writes (the seed manifest's layout)."""
    annotations = ",".join(
        f'{{"left":{10 + 40 * b},"top":{20 + 30 * b},"width":{100 + b},"height":{80 + b},'
        f'"class_id":{(first_class + b) % 2}}}'
        for b in range(boxes)
    )
    objects = ",".join('{"confidence":1}' for _ in range(boxes))
    return (
        f'{{"source-ref":"s3://bench-bucket/images/img-{index:08d}.jpg","{ATTRIBUTE}":{{"annotations":[{annotations}],'
        f'"image_size":[{{"width":1024,"height":768,"depth":3}}]}},"{ATTRIBUTE}-metadata":{{"job-name":'
        f'"labeling-job/{ATTRIBUTE}","class-map":{class_map},"human-annotated":"yes","objects":[{objects}],'
        f'"creation-date":"{created}","type":"groundtruth/object-detection"}}}}\n'
    )


def generate(directory: Path, size: int) -> tuple[Path, Path]:
    canonical = json.dumps({str(i): name for i, name in enumerate(LABELS)}, separators=(",", ":"))
    swapped = json.dumps({"0": LABELS[1], "1": LABELS[0]}, separators=(",", ":"))
    base, labels = directory / f"base-{size}.manifest", directory / f"labels-{size}.manifest"
    with base.open("w", encoding="utf-8") as out:
        for i in range(size):
            remap = i % 50 == 7
            out.write(_line(i, 1 + i % 3, "2020-08-27T17:15:41.430Z", swapped if remap else canonical, 0))
    label_count = size // 10
    with labels.open("w", encoding="utf-8") as out:
        for j in range(label_count):
            index = j * 9 if j % 10 else size + j  # 90% replace base images, 10% are new images
            out.write(_line(index, 2, "2024-05-01T10:00:00.000Z", canonical, 1))
    return base, labels


def run_one(base: Path, labels: Path, output: Path, workers: int | None) -> dict[str, object]:
    from labelloop_core.manifest import ClassMap, merge

    class_map = ClassMap.from_labels(LABELS)
    started = time.perf_counter()
    with (
        base.open(encoding="utf-8") as base_in,
        labels.open(encoding="utf-8") as labels_in,
        output.open("w", encoding="utf-8") as out,
    ):
        report = merge(base_in, labels_in, out, class_map, ATTRIBUTE, workers=workers)
    seconds = time.perf_counter() - started
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # Linux reports ru_maxrss in KiB; children: the largest validation worker.
    main_mb, worker_mb = own.ru_maxrss / 1024, children.ru_maxrss / 1024
    worker_count = _worker_count(workers) if report.input_lines > 4000 else 0
    return {
        "seconds": seconds,
        "cpu_seconds": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
        "peak_rss_mb": main_mb + worker_count * worker_mb,
        "main_peak_rss_mb": main_mb,
        "worker_peak_rss_mb": worker_mb,
        "workers": worker_count,
        "report": report.to_dict(),
    }


def _worker_count(workers: int | None) -> int:
    from labelloop_core.manifest.workers import _pool_size

    count = _pool_size(workers)
    return count if count >= 2 else 0


def measure(size: int, directory: Path, workers: int | None) -> dict[str, object]:
    base, labels = generate(directory, size)
    output = directory / f"merged-{size}.manifest"
    worker_args = [] if workers is None else ["--workers", str(workers)]
    completed = subprocess.run(
        [sys.executable, __file__, "--run-one", str(base), str(labels), str(output), *worker_args],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(completed.stdout)
    report = result["report"]
    lines = report["inputLines"]
    result.update(
        base_lines=size,
        label_lines=size // 10,
        lines_per_second=lines / result["seconds"],
        within_budget=(result["seconds"] <= BUDGET_SECONDS and result["peak_rss_mb"] <= BUDGET_RSS_MB)
        if size >= 1_000_000
        else None,
    )
    for path in (base, labels, output):
        path.unlink()
    return result


def print_table(results: list[dict[str, object]]) -> None:
    header = (
        f"{'base lines':>11} {'labels':>8} {'seconds':>8} {'cpu s':>7} {'lines/s':>10} {'workers':>7} "
        f"{'peak RSS MB':>12}  output"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        report = r["report"]
        assert isinstance(report, dict)
        print(
            f"{r['base_lines']:>11,} {r['label_lines']:>8,} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.1f} "
            f"{r['lines_per_second']:>10,.0f} {r['workers']:>7} {r['peak_rss_mb']:>12.0f}  "
            f"kept {report['kept']:,} replaced {report['replaced']:,} added {report['added']:,} "
            f"dropped {report['droppedTotal']:,}"
        )
    print(f"budget at 1,000,000 base lines: <= {BUDGET_SECONDS:g} s and <= {BUDGET_RSS_MB:g} MB peak RSS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--workers", type=int, default=None, help="merge workers (default: the usable cores)")
    parser.add_argument("--run-one", nargs=3, metavar=("BASE", "LABELS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        base, labels, output = (Path(p) for p in args.run_one)
        print(json.dumps(run_one(base, labels, output, args.workers)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="labelloop-bench-") as tmp:
        results = [measure(size, Path(tmp), args.workers) for size in sizes]
    print_table(results)
    print(json.dumps({"benchmark": "manifest-merge", "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
