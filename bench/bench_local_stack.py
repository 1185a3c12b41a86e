"""100 images from upload to review decision on the local stack (budget: ≤ 30 s on 2 cores).

The budget is in docs/ARCHITECTURE.md, "Budgets".

Setup (not timed): start the local stack from template.yaml, generate sample data, train and start a
base model on 20 images. Timed: upload 100 images to incoming/ and wait until every one has its
review decision: a prediction document written and, when review is needed, its human loop started.

    .venv/bin/python bench/bench_local_stack.py [--images 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from labelloop_local.demo import sampledata
from labelloop_local.demo.run import DemoOptions, DemoResult, _DemoRun
from labelloop_local.stack.local_stack import LocalStack

BUDGET_SECONDS = 30.0
BASE_IMAGES = 20
REPO = Path(__file__).resolve().parents[1]


def run(images: int) -> dict[str, float | int]:
    work = Path(tempfile.mkdtemp(prefix="labelloop-bench-"))
    dataset = sampledata.generate(work / "data", n_images=BASE_IMAGES + images, seed=7)
    names = sorted(dataset.entries)
    base, uploads = names[:BASE_IMAGES], names[BASE_IMAGES:]

    def say(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    with LocalStack(REPO / "template.yaml", params={"LogLevel": "WARNING"}, data_dir=work / "stack") as stack:
        setup = _DemoRun(stack, dataset, say, DemoOptions(template=REPO / "template.yaml"), DemoResult())
        setup.import_base(base)
        setup.train_base_model()
        assert stack.dispatcher is not None
        say(f"uploading {len(uploads)} images and waiting for every review decision")
        started = time.perf_counter()
        setup.upload(uploads)  # returns once the dispatcher has drained every rule delivery
        elapsed = time.perf_counter() - started
        predictions = stack.count_objects("predictions/")
        loops = len(stack.human_loops())
        errors = sum(stack.dispatcher.stats.function_errors.values())
    if predictions != len(uploads):
        raise SystemExit(f"only {predictions} of {len(uploads)} images got a prediction")
    return {
        "images": len(uploads),
        "seconds": round(elapsed, 2),
        "images_per_second": round(len(uploads) / elapsed, 2),
        "reviews_started": loops,
        "function_errors": errors,
        "budget_seconds": BUDGET_SECONDS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        figures = run(args.images)
    if args.json:
        print(json.dumps(figures))
    else:
        verdict = "within" if figures["seconds"] <= BUDGET_SECONDS else "OVER"
        print(
            f"local stack: {figures['images']} images upload → review decision in {figures['seconds']:.1f} s "
            f"({figures['images_per_second']:.2f} images/s, {figures['reviews_started']} reviews started) — "
            f"{verdict} the {BUDGET_SECONDS:.0f} s budget"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
