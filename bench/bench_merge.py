"""Benchmark the streaming manifest merge (budget in docs/ARCHITECTURE.md: 1,000,000 base lines +
100,000 labels in <= 10 s and <= 1 GB peak RSS on 2 cores, for any valid JSON layout).

Inputs: a synthetic base manifest and 10% human labels (90% of them replace base images, 10% are new
images; 2% of base lines use another class-id order so they must be re-keyed), written in a layout:
- gt: Ground Truth's own compact layout and key order (the seed manifest's);
- dumps: what plain `json.dumps(line)` writes (", " and ": " separators), with every object's keys in
  the reverse order.
Both layouts hold the same logical manifest; with --layout both the merged outputs are compared and
must be byte-identical.

Callers (--via):
- cli: `labelloop manifest merge --base B --labels L -o OUT`, labels and attribute found in the
  inputs (the README's example: class ids are then remapped to the sorted label names);
- retrain: what the Retrain function does (services/retrain.py, Retrainer._merge): base lines streamed
  through S3Store.iter_lines (here a botocore StreamingBody over the local file stands in for S3),
  merged by manifest.merge into a temporary file, with the configured labels. The label lines are what
  its LabelSelection yields (each label object re-serialized compactly); the S3 GET per label object is
  not part of the merge and not timed;
- retrain-tally: the same, through the ManifestTally (datasets.py) the Retrain function writes through
  to record the manifest's SHA-256 and per-label counts (not in --via both).

Each run is a fresh subprocess, so that peak RSS (resource.getrusage ru_maxrss) belongs to the merge
alone; with validation workers, peak RSS is the main process plus workers x the largest worker. CPU
seconds include the workers. Prints a table, or with --json one JSON document.

    .venv/bin/python bench/bench_merge.py [--sizes 10000,100000,1000000] [--layout gt|dumps|both]
        [--via cli|retrain|retrain-tally|both] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LABELS = ["pepperoni pizza slice", "cheese pizza slice", "crust"]
ATTRIBUTE = "pizza_BB"
BUCKET = "bench-bucket"
BUDGET_SECONDS = 10.0
BUDGET_RSS_MB = 1024.0
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
LAYOUTS = ("gt", "dumps")
VIAS = ("cli", "retrain")
_Box = tuple[int, int, int, int, int]
BASE_DATE, LABEL_DATE = "2020-08-27T17:15:41.430Z", "2024-05-01T10:00:00.000Z"


def _gt_line(ref: str, boxes: list[_Box], created: str, class_map: dict[str, str]) -> str:
    """Ground Truth's compact layout (the seed manifest's)."""
    annotations = ",".join(
        f'{{"left":{x},"top":{y},"width":{w},"height":{h},"class_id":{c}}}' for x, y, w, h, c in boxes
    )
    objects = ",".join('{"confidence":1}' for _ in boxes)
    names = ",".join(f'"{cid}":"{name}"' for cid, name in class_map.items())
    return (
        f'{{"source-ref":"{ref}","{ATTRIBUTE}":{{"annotations":[{annotations}],'
        f'"image_size":[{{"width":1024,"height":768,"depth":3}}]}},"{ATTRIBUTE}-metadata":{{"job-name":'
        f'"labeling-job/{ATTRIBUTE}","class-map":{{{names}}},"human-annotated":"yes","objects":[{objects}],'
        f'"creation-date":"{created}","type":"groundtruth/object-detection"}}}}'
    )


def _dumps_line(ref: str, boxes: list[_Box], created: str, class_map: dict[str, str]) -> str:
    """What `json.dumps` writes for the same line with every object's keys reversed (checked in
    generate)."""
    annotations = ", ".join(
        f'{{"class_id": {c}, "height": {h}, "width": {w}, "top": {y}, "left": {x}}}'
        for x, y, w, h, c in boxes
    )
    objects = ", ".join('{"confidence": 1}' for _ in boxes)
    names = ", ".join(f'"{cid}": "{name}"' for cid, name in reversed(class_map.items()))
    return (
        f'{{"{ATTRIBUTE}-metadata": {{"type": "groundtruth/object-detection", "creation-date": "{created}", '
        f'"objects": [{objects}], "human-annotated": "yes", "class-map": {{{names}}}, '
        f'"job-name": "labeling-job/{ATTRIBUTE}"}}, "{ATTRIBUTE}": {{"image_size": [{{"depth": 3, '
        f'"height": 768, "width": 1024}}], "annotations": [{annotations}]}}, "source-ref": "{ref}"}}'
    )


def _lines(size: int, labels: bool) -> Iterator[tuple[str, list[_Box], str, dict[str, str]]]:
    canonical = {str(i): name for i, name in enumerate(LABELS)}
    swapped = {"0": LABELS[1], "1": LABELS[0]}
    if labels:
        for j in range(size // 10):
            index = j * 9 if j % 10 else size + j  # 90% replace base images, 10% are new images
            boxes = [(10 + 40 * b, 20 + 30 * b, 100 + b, 80 + b, (1 + b) % 2) for b in range(2)]
            yield f"s3://{BUCKET}/images/img-{index:08d}.jpg", boxes, LABEL_DATE, canonical
        return
    for i in range(size):
        boxes = [(10 + 40 * b, 20 + 30 * b, 100 + b, 80 + b, b % 2) for b in range(1 + i % 3)]
        class_map = swapped if i % 50 == 7 else canonical
        yield f"s3://{BUCKET}/images/img-{i:08d}.jpg", boxes, BASE_DATE, class_map


def generate(directory: Path, size: int, layout: str) -> tuple[Path, Path, Path]:
    """Base, labels (CLI) and labels as Retrain's LabelSelection yields them, in `layout`."""
    render = _gt_line if layout == "gt" else _dumps_line
    paths = [directory / f"{name}-{size}-{layout}.manifest" for name in ("base", "labels", "labels-retrain")]
    for path, labels in ((paths[0], False), (paths[1], True)):
        with path.open("w", encoding="utf-8") as out:
            for number, row in enumerate(_lines(size, labels)):
                text = render(*row)
                if number < 100:  # the templates write what they claim to: the same line, json.dumps's
                    parsed, ground_truth = json.loads(text), json.loads(_gt_line(*row))
                    assert parsed == ground_truth
                    if layout == "dumps":
                        assert text == json.dumps(parsed) and list(parsed) == list(reversed(ground_truth))
                out.write(text + "\n")
    with paths[1].open(encoding="utf-8") as source, paths[2].open("w", encoding="utf-8") as out:
        for text in source:  # services/retrain.py LabelSelection._read: json.dumps of each label object
            out.write(json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")) + "\n")
    return paths[0], paths[1], paths[2]


class _FileS3:
    """Stands in for the S3 client: get_object answers with a botocore StreamingBody over a local
    file, so S3Store.iter_lines runs unchanged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        from botocore.response import StreamingBody

        return {"Body": StreamingBody(self.path.open("rb"), self.path.stat().st_size)}


def run_cli(base: Path, labels: Path, output: Path, workers: int | None) -> dict[str, Any]:
    """The CLI's printed report (without its first line, which names the files)."""
    import contextlib
    import io

    from labelloop_local.cli import main as cli_main

    argv = ["manifest", "merge", "--base", str(base), "--labels", str(labels), "-o", str(output)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli_main(argv)
    if status != 0:
        raise SystemExit(f"labelloop manifest merge exited with {status}")
    return {"printed": printed.getvalue().splitlines()[1:]}


def run_retrain(
    base: Path, labels: Path, output: Path, workers: int | None, tally: bool = False
) -> dict[str, Any]:
    from labelloop_core import manifest
    from labelloop_core.adapters.s3store import S3Store
    from labelloop_core.datasets import ManifestTally

    class_map = manifest.ClassMap.from_labels(LABELS)
    store = S3Store(BUCKET, client=_FileS3(base))
    # Retrainer._merge: base lines from S3Store.iter_lines, merged into a temporary file (here: OUT);
    # with `tally`, through the ManifestTally that Retrainer._start_training puts in between.
    with labels.open(encoding="utf-8") as label_lines, output.open("w+", encoding="utf-8") as merged:
        base_lines = store.iter_lines("manifests/base.manifest")
        out: Any = ManifestTally(merged, class_map) if tally else merged
        report = manifest.merge(base_lines, label_lines, out, class_map, ATTRIBUTE, workers)
        if tally:
            out.finish()
        merged.flush()
    return report.to_dict()


def run_one(via: str, base: Path, labels: Path, output: Path, workers: int | None) -> dict[str, Any]:
    started = time.perf_counter()
    if via == "cli":
        report = run_cli(base, labels, output, workers)
    else:
        report = run_retrain(base, labels, output, workers, tally=via == "retrain-tally")
    seconds = time.perf_counter() - started
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # Linux reports ru_maxrss in KiB; children: the largest validation worker. This process's own peak
    # is VmHWM: its ru_maxrss also counts the bench process it was started from.
    main_mb, worker_mb = _own_peak_mb() or own.ru_maxrss / 1024, children.ru_maxrss / 1024
    worker_count = _worker_count(workers) if children.ru_maxrss else 0
    return {
        "seconds": seconds,
        "cpu_seconds": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
        "peak_rss_mb": main_mb + worker_count * worker_mb,
        "main_peak_rss_mb": main_mb,
        "worker_peak_rss_mb": worker_mb,
        "workers": worker_count,
        "main_cpu_seconds": own.ru_utime + own.ru_stime,
        "report": report,
    }


def _own_peak_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _worker_count(workers: int | None) -> int:
    from labelloop_core.manifest.workers import _pool_size

    count = _pool_size(workers)
    return count if count >= 2 else 0


def measure(
    size: int, layout: str, via: str, inputs: tuple[Path, Path, Path], workers: int | None
) -> dict[str, Any]:
    base, labels, retrain_labels = inputs
    output = base.with_name(f"merged-{size}-{layout}-{via}.manifest")
    worker_args = [] if workers is None else ["--workers", str(workers)]
    label_file = labels if via == "cli" else retrain_labels
    completed = subprocess.run(
        [sys.executable, __file__, "--run-one", via, str(base), str(label_file), str(output), *worker_args],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    with output.open(encoding="utf-8") as merged:
        output_lines = sum(1 for _ in merged)
    result.update(
        layout=layout,
        via=via,
        base_lines=size,
        label_lines=size // 10,
        output_lines=output_lines,
        lines_per_second=(size + size // 10) / result["seconds"],
        within_budget=(result["seconds"] <= BUDGET_SECONDS and result["peak_rss_mb"] <= BUDGET_RSS_MB)
        if size >= 1_000_000
        else None,
        output=str(output),
    )
    return result


def print_table(results: list[dict[str, Any]], identical: dict[str, bool]) -> None:
    header = (
        f"{'base lines':>11} {'labels':>8} {'layout':>6} {'via':>7} {'seconds':>8} {'cpu s':>7} "
        f"{'lines/s':>10} {'workers':>7} {'peak RSS MB':>12}  output lines"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['base_lines']:>11,} {r['label_lines']:>8,} {r['layout']:>6} {r['via']:>7} "
            f"{r['seconds']:>8.2f} {r['cpu_seconds']:>7.1f} {r['lines_per_second']:>10,.0f} "
            f"{r['workers']:>7} "
            f"{r['peak_rss_mb']:>12.0f}  {r['output_lines']:,}"
        )
    for key, same in identical.items():
        print(f"outputs of both layouts {key}: {'byte-identical' if same else 'DIFFERENT'}")
    print(f"budget at 1,000,000 base lines: <= {BUDGET_SECONDS:g} s and <= {BUDGET_RSS_MB:g} MB peak RSS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    parser.add_argument("--via", choices=[*VIAS, "retrain-tally", "both"], default="both")
    parser.add_argument("--workers", type=int, default=None, help="merge workers (default: the usable cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--run-one", nargs=4, metavar=("VIA", "BASE", "LABELS", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.run_one:
        via, *paths = args.run_one
        base, labels, output = (Path(p) for p in paths)
        print(json.dumps(run_one(via, base, labels, output, args.workers)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    vias = VIAS if args.via == "both" else (args.via,)
    results: list[dict[str, Any]] = []
    identical: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="labelloop-bench-") as tmp:
        for size in sizes:
            inputs = {layout: generate(Path(tmp), size, layout) for layout in layouts}
            for via in vias:
                runs = [measure(size, layout, via, inputs[layout], args.workers) for layout in layouts]
                results.extend(runs)
                if len(runs) == 2:
                    same = filecmp.cmp(runs[0]["output"], runs[1]["output"], shallow=False)
                    same = same and runs[0]["report"] == runs[1]["report"]
                    identical[f"{size} {via}"] = same
                for run in runs:
                    Path(run.pop("output")).unlink()
            for paths in inputs.values():
                for path in paths:
                    path.unlink()
    document = {
        "benchmark": "manifest-merge",
        "budget": {"seconds": BUDGET_SECONDS, "peak_rss_mb": BUDGET_RSS_MB, "base_lines": 1_000_000},
        "cores": len(os.sched_getaffinity(0)),
        "results": results,
        "identical_outputs_across_layouts": identical,
    }
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_table(results, identical)
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
