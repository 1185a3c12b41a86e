"""A burst of N images into a STOPPED model on the local stack (DESIGN §8, §10; issue 9).

Budget: `drain_seconds` ≤ 1.25 × `floor_seconds` (N / capacity + the model's start time), no image in a
dead-letter queue, none lost, exactly one model start, and the model stopped within ModelIdleMinutes +
one controller period after the last detection.

Setup (not timed): the local stack from template.yaml, with a TPS cap on its Custom Labels service
that makes the model the bottleneck (the model's own compute is that cap: by default the local
service answers with `BoxMemoryDetector`, whose inference takes microseconds, so the 2-core
machine's CPU is not what limits the drain; `--real-detector` uses the project's CPU detector), a
start and stop time, the ModelController's schedule on a compressed clock and a short
ModelIdleMinutes; a base model trained on 20 images and made active but not started
(TRAINING_COMPLETED: it has never run, like a STOPPED one). Timed: N uploads at once (a thread
pool), until every image has its prediction document (`drain_seconds`), then until the model is
STOPPED again (`idle_stop_seconds`, from the last detection). Also reported: `capacity_used` (calls the
model served / what it could serve from the moment it was seen RUNNING: near 1 when the model is the
bottleneck), `drain_cpu_seconds` (this process's CPU during the drain), the load average, and on stderr
a progress line every 10 s (served, throttled, the DetectQueue's depth, CPU, load).

    .venv/bin/python bench/bench_burst.py [--images 1000] [--tps 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from labelloop_local.demo import sampledata
from labelloop_local.demo.run import DemoOptions, DemoResult, _DemoRun
from labelloop_local.stack.local_stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BASE_IMAGES = 20
DISTINCT_UPLOADS = 50  # generated images; the burst uploads them again under distinct keys
DRAIN_BUDGET = 1.25  # × floor_seconds


class _Poller(ABC):
    """Calls `_tick` every `interval` seconds on a thread of its own, for the length of a `with` block."""

    def __init__(self, interval: float, name: str) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    @abstractmethod
    def _tick(self) -> None:
        """One poll: what the subclass watches."""

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ModelWatch(_Poller):
    """Polls the active model's status: counts starts (→ STARTING) and stops (→ STOPPING)."""

    def __init__(self, stack: LocalStack, project_arn: str, name: str) -> None:
        super().__init__(0.1, "bench-model-watch")
        self.rekognition = stack.client("rekognition")
        self.project_arn, self.name = project_arn, name
        self.starts = self.stops = 0
        self.status = self._status()
        self.stopped_at: float | None = None
        self.running_at: float | None = None  # the first time it was seen RUNNING

    def _status(self) -> str:
        versions = self.rekognition.describe_project_versions(
            ProjectArn=self.project_arn, VersionNames=[self.name]
        )
        return str(versions["ProjectVersionDescriptions"][0]["Status"])

    def _tick(self) -> None:
        status = self._status()
        if status != self.status:
            self.starts += status == "STARTING"
            self.stops += status == "STOPPING"
            if status == "STOPPED":
                self.stopped_at = time.perf_counter()
            if status == "RUNNING" and self.running_at is None:
                self.running_at = time.perf_counter()
            self.status = status


class Progress(_Poller):
    """Every `every` seconds, one line on stderr: what is done, what waits, what the process costs."""

    def __init__(self, stack: LocalStack, started: float, say: Any, every: float = 10.0) -> None:
        super().__init__(every, "bench-progress")
        self.sqs, self.stack, self.started, self.say = stack.client("sqs"), stack, started, say
        assert stack.stack is not None
        self.queue_url = stack.stack.queue_url("DetectQueue")
        self.predictions = 0

    def _tick(self) -> None:
        throughput = self.stack.services.rekognition.throughput
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        visible, in_flight, delayed = (
            attributes[f"ApproximateNumberOfMessages{suffix}"] for suffix in ("", "NotVisible", "Delayed")
        )
        self.say(
            f"t={time.perf_counter() - self.started:6.1f}s predictions={self.predictions} "
            f"served={throughput.served} throttled={throughput.throttled} queue visible={visible} "
            f"in-flight={in_flight} delayed={delayed} cpu={time.process_time():.1f}s "
            f"load={os.getloadavg()[0]:.1f}"
        )


def _count_objects(s3: Any, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def run(
    images: int,
    tps: float,
    start_seconds: float,
    stop_seconds: float,
    idle_seconds: float,
    real_detector: bool = False,
) -> dict[str, Any]:
    from tests.support.box_memory import BoxMemoryDetector

    work = Path(tempfile.mkdtemp(prefix="labelloop-burst-"))
    dataset = sampledata.generate(work / "data", n_images=BASE_IMAGES + DISTINCT_UPLOADS, seed=7)
    names = sorted(dataset.entries)
    base, distinct = names[:BASE_IMAGES], names[BASE_IMAGES:]
    period = 1.0  # the controller's rate(1 minute), compressed
    params = {
        "LogLevel": "WARNING",
        "ModelIdleMinutes": f"{idle_seconds / 60:.4f}",
        "MinInferenceUnits": "1",
        # More concurrent batches than the model's throughput needs only meets throttling.
        "DetectConcurrency": "4",
    }

    def say(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    with LocalStack(
        REPO / "template.yaml",
        params=params,
        data_dir=work / "stack",
        schedules={"ModelControllerFunction": period},
        model_start_seconds=start_seconds,
        model_stop_seconds=stop_seconds,
        inference_tps_per_unit=tps,
        detector=None if real_detector else BoxMemoryDetector,
    ) as stack:
        assert stack.stack is not None and stack.dispatcher is not None
        setup = _DemoRun(stack, dataset, say, DemoOptions(template=REPO / "template.yaml"), DemoResult())
        setup.import_base(base)
        setup.train_base_model()
        project_arn = setup.env["PROJECT_ARN"]
        active = str(
            stack.client("ssm").get_parameter(Name=setup.active_model_parameter)["Parameter"]["Value"]
        )
        version_name = active.split("/version/")[1].split("/")[0]
        payloads = [dataset.entries[name].path.read_bytes() for name in distinct]
        throughput = stack.services.rekognition.throughput
        s3, bucket = stack.client("s3"), stack.stack.bucket

        def put(index: int) -> None:
            s3.put_object(
                Bucket=bucket, Key=f"incoming/burst-{index:06d}.png", Body=payloads[index % len(payloads)]
            )

        with ModelWatch(stack, project_arn, version_name) as watch:
            assert watch.status in ("STOPPED", "TRAINING_COMPLETED"), watch.status
            say(f"uploading {images} images at once into a {watch.status} model ({tps:g} images/s)")
            started = time.perf_counter()
            cpu_started = time.process_time()
            progress = Progress(stack, started, say).__enter__()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(put, range(images)))
            uploaded = time.perf_counter() - started
            deadline = started + 10 * (images / tps + start_seconds) + 120
            predictions, listed_at = 0, 0.0
            while time.perf_counter() < deadline:
                # Listing 1,000 prediction documents costs the one local process as much as detecting
                # a few images (40 % of its CPU when listed every 0.25 s): list them only once the
                # model has served every image (each document needs a served call) or every 10 s.
                if throughput.served >= images or time.perf_counter() - listed_at >= 10:
                    predictions = progress.predictions = _count_objects(s3, bucket, "predictions/")
                    listed_at = time.perf_counter()
                    if predictions >= images:
                        break
                time.sleep(0.25)
            last_detection = time.perf_counter()
            drain_cpu = time.process_time() - cpu_started
            progress.__exit__()
            drain = last_detection - started
            say(f"{predictions} predictions after {drain:.1f} s; waiting for the idle stop")
            stop_deadline = last_detection + idle_seconds + 3 * period + stop_seconds + 30
            while watch.stopped_at is None and time.perf_counter() < stop_deadline:
                time.sleep(0.1)
            idle_stop = None if watch.stopped_at is None else watch.stopped_at - last_detection
            stack.drain(60)
        letters = stack.dlq_messages()
        dlq = letters.pop("DetectFunctionDeadLetterQueue", 0)  # images
        other_dlq = sum(letters.values())  # e.g. schedule ticks that expired on a saturated machine
        unit_hours = stack.services.rekognition.billed_inference_unit_hours()
        errors = sum(stack.dispatcher.stats.function_errors.values())
        coalesced = stack.dispatcher.coalesced_ticks
    floor = images / tps + start_seconds
    # The model's capacity used while it ran: calls served / what it could serve from RUNNING on.
    running_for = None if watch.running_at is None else last_detection - watch.running_at
    figures: dict[str, Any] = {
        "images": images,
        "predictions": predictions,
        "dlq_messages": dlq,
        "other_dlq_messages": other_dlq,
        "lost": images - predictions - dlq,
        "model_starts": watch.starts,
        "model_stops": watch.stops,
        "upload_seconds": round(uploaded, 2),
        "drain_seconds": round(drain, 2),
        "floor_seconds": round(floor, 2),
        "drain_ratio": round(drain / floor, 3),
        "drain_cpu_seconds": round(drain_cpu, 1),
        "capacity_used": None if not running_for else round(throughput.served / (tps * running_for), 3),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "idle_stop_seconds": None if idle_stop is None else round(idle_stop, 2),
        "idle_stop_budget_seconds": round(idle_seconds + period + stop_seconds, 2),
        "inference_unit_hours": round(unit_hours, 5),
        "tps_per_inference_unit": tps,
        "model_start_seconds": start_seconds,
        "model_stop_seconds": stop_seconds,
        "throttled_calls": throughput.throttled,
        "served_calls": throughput.served,
        "function_errors": errors,
        "controller_ticks_coalesced": coalesced,
    }
    figures["within_budget"] = bool(
        drain <= DRAIN_BUDGET * floor
        and dlq == 0
        and figures["lost"] == 0
        and watch.starts == 1
        and idle_stop is not None
        and idle_stop <= figures["idle_stop_budget_seconds"]
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--tps", type=float, default=4.0, help="images per second per inference unit")
    parser.add_argument("--start-seconds", type=float, default=5.0, help="the model's start time")
    parser.add_argument("--stop-seconds", type=float, default=2.0, help="the model's stop time")
    parser.add_argument("--idle-seconds", type=float, default=6.0, help="ModelIdleMinutes, in seconds")
    parser.add_argument("--real-detector", action="store_true", help="the project's CPU detector")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        figures = run(
            args.images,
            args.tps,
            args.start_seconds,
            args.stop_seconds,
            args.idle_seconds,
            args.real_detector,
        )
    if args.json:
        print(json.dumps(figures))
    else:
        verdict = "within" if figures["within_budget"] else "OVER"
        f = figures
        print(
            f"burst: {f['images']} images into a stopped model drained in {f['drain_seconds']:.1f} s "
            f"(floor {f['floor_seconds']:.1f} s, ×{f['drain_ratio']}), {f['dlq_messages']} in a "
            f"DLQ, {f['lost']} lost, {f['model_starts']} start(s), stopped "
            f"{f['idle_stop_seconds']} s after the last detection — {verdict} budget"
        )
    return 0 if figures["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
