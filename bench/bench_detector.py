"""Benchmark of the local Custom Labels detector: F1 before/after more labels, and timings.

    .venv/bin/python bench/bench_detector.py [--images 40] [--seed 0] [--extra-test 60] [--no-seed-photos]

Scenario of the demo: generate the sample data, hold out 20 %, train on 12 images, then on the 12 plus 20
more, and evaluate both on the same held-out images. A larger independent test set (another seed) shows the
same comparison with less sampling noise. When the seed data is present (LABELLOOP_SEED_DATA, default
../shared/seed-data), also trains on 9 of the real photos and tests on the other 3.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from labelloop_local.demo.sampledata import LABEL, generate, load_dataset
from labelloop_local.emulators.detector import EvaluationSummary, Model, Sample, evaluate, split, train

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.paths import seed_data_dir  # noqa: E402  (one resolution of the seed data path)

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float, float]:
    """Result, wall seconds, CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def describe(summary: EvaluationSummary) -> str:
    metrics = summary.per_label[LABEL]
    return (
        f"F1 {summary.f1:.3f}  P {summary.precision:.3f}  R {summary.recall:.3f}  "
        f"AP {summary.average_precision:.3f}  threshold {metrics.threshold:.1f}  "
        f"(TP {metrics.true_positives} FP {metrics.false_positives} FN {metrics.false_negatives} "
        f"of {metrics.ground_truth_boxes} boxes "
        f"in {summary.testing_images} images)"
    )


def train_and_evaluate(name: str, training: Sequence[Sample], tests: dict[str, Sequence[Sample]]) -> Model:
    model, wall, cpu = timed(lambda: train(training, [LABEL]))
    boxes = sum(len(s.boxes) for s in training)
    print(f"  {name}: trained on {len(training)} images / {boxes} boxes in {wall:.1f} s (cpu {cpu:.1f} s)")
    for test_name, test_set in tests.items():
        summary, wall, cpu = timed(functools.partial(evaluate, model, test_set))
        print(f"    {test_name:<22} {describe(summary)}  [{wall:.1f} s, cpu {cpu:.1f} s]")
    return model


def synthetic(n_images: int, seed: int, extra_test: int, work: Path) -> None:
    dataset, wall, cpu = timed(lambda: generate(work / "sample", n_images=n_images, seed=seed))
    print(f"generated {n_images} images / {dataset.box_count} slices in {wall:.2f} s (cpu {cpu:.2f} s)")
    samples = dataset.samples()
    training, held_out = split(samples, test_fraction=0.2, seed=seed)
    tests: dict[str, Sequence[Sample]] = {f"held-out ({len(held_out)} images)": held_out}
    if extra_test:
        extra = generate(work / "extra", n_images=extra_test, seed=seed + 1000).samples()
        tests[f"independent ({extra_test} images)"] = extra
    base = min(12, len(training))
    print("synthetic pizza slices:")
    train_and_evaluate(f"base ({base} images)", training[:base], tests)
    _, wall, _ = timed(lambda: train_and_evaluate(f"base + {len(training) - base} labeled", training, tests))
    print(f"  train + evaluate with all {len(training)} training images: {wall:.1f} s wall")


def seed_photos() -> None:
    seed_data = seed_data_dir()
    if seed_data is None:
        print("seed photos: not present, skipped")
        return
    photos, wall, _ = timed(lambda: load_dataset(seed_data).samples())
    print(f"seed photos: loaded {len(photos)} photos in {wall:.1f} s")
    train_and_evaluate("seed (9 photos)", photos[:9], {f"seed test ({len(photos[9:])} photos)": photos[9:]})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra-test", type=int, default=60, help="independent test images (0: none)")
    parser.add_argument("--no-seed-photos", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-detector-") as work:
        synthetic(args.images, args.seed, args.extra_test, Path(work))
    if not args.no_seed_photos:
        seed_photos()


if __name__ == "__main__":
    main()
