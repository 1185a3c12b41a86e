"""The built-in review backend on the local stack: API latency per route, and a consolidation case
with disagreeing reviewers (figures for issue 8's closing note; not a budget).

Latency: the local stack (ReviewBackend builtin, TaskCount 1) with `--calls` open tasks (set-up, not
timed); one signed-in reviewer then, per task, times `GET /api/tasks/next` (claims it),
`GET /api/tasks/{id}`, `POST …/release`, claims it again (not timed) and times `POST …/answer` (which
completes the task: output.json, ReviewCompleted, the task marked COMPLETED; the AppendLabels run
that event starts is let finish before the next call, untimed); then as many
`GET /api/tasks/next` with nothing left (204). Each call goes over HTTP through the local HTTP API
(the JWT check against the local Cognito's keys), the review API function and moto (server mode);
the client runs in the same process as the stack, so the figures include both sides on one machine.
The API's throttling is raised to its maximum for the run (it would answer 429 to this loop otherwise).

Consolidation: a second stack with TaskCount 3 and one image whose model box is (100, 80, 300, 200);
reviewer 1 keeps the box and adds one nobody else draws, reviewer 2 draws it slightly off, reviewer 3
far off. Reported: the boxes the label line kept with their combined coordinates and confidence, and
the consolidation the ledger's label item and the LabelsAppended event recorded.

    .venv/bin/python bench/bench_review_api.py [--calls 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop_local.stack.local_stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.flows import png_bytes  # noqa: E402
from tests.support.reviewers import BusSpy, api, request_review, sign_in  # noqa: E402

LABEL = "pepperoni pizza slice"
NEXT = "/api/tasks/next"
SIZE = (800, 600)
MODEL_BOX = (100, 80, 300, 200)
# Consolidation case, TaskCount 3: (left, top, width, height) per reviewer.
REVIEWER_BOXES = {
    "reviewer-1 (keeps the model's box, adds one nobody else draws)": [MODEL_BOX, (600, 40, 120, 100)],
    "reviewer-2 (the same object, slightly off)": [(110, 86, 296, 198)],
    "reviewer-3 (far off)": [(460, 360, 300, 200)],
}


def _stack(work: Path, task_count: int) -> LocalStack:
    return LocalStack(
        REPO / "template.yaml",
        data_dir=work,
        # The API's throttling (default 20 requests/s, burst 40) raised to its maximum: latency, not
        # throttling, is measured here.
        params={
            "LogLevel": "WARNING",
            "TaskCount": task_count,
            "ApiThrottlingRateLimit": 10000,
            "ApiThrottlingBurstLimit": 5000,
        },
        time_scale=1 / 6000,
        schedules={},
    )


def _answer(boxes: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    return {
        "boundingBoxes": [
            {"label": LABEL, "left": left, "top": top, "width": width, "height": height}
            for left, top, width, height in boxes
        ],
        "inputImageProperties": {"width": SIZE[0], "height": SIZE[1]},
    }


def _summary(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {
        "calls": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def _by_open_tasks(samples: list[float], calls: int) -> dict[str, float]:
    """The median of the first and the last tenth of `next` calls, by how many tasks were open."""
    tenth = max(1, calls // 10)
    first, last = samples[:tenth], samples[-tenth:]
    return {
        f"{calls}-{calls - tenth + 1} open": round(statistics.median(first) * 1000, 1),
        f"{tenth}-1 open": round(statistics.median(last) * 1000, 1),
    }


def _timed(
    samples: list[float],
    stack: LocalStack,
    token: str,
    method: str,
    path: str,
    expected: int,
    body: Any = None,
) -> Any:
    """One API call, its wall time appended to `samples`; stops the bench on an unexpected status."""
    started = time.perf_counter()
    status, document = api(stack, method, path, token, body)
    samples.append(time.perf_counter() - started)
    if status != expected:
        raise SystemExit(f"{method} {path}: expected {expected}, got {status}: {document}")
    return document


def latency(calls: int, say: Callable[[str], None]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="labelloop-bench-review-"))
    samples: dict[str, list[float]] = {
        "GET /api/tasks/next": [],
        "GET /api/tasks/{taskId}": [],
        "POST /api/tasks/{taskId}/release": [],
        "POST /api/tasks/{taskId}/answer": [],
        "GET /api/tasks/next (nothing left: 204)": [],
    }
    with _stack(work / "stack", task_count=1) as stack:
        say(f"opening {calls} review tasks (not timed)")
        image = png_bytes(*SIZE)
        for index in range(calls):
            request_review(
                stack, f"uploads/bench/{index:03d}.png", image, SIZE, [(LABEL, 20.0 + index % 40, MODEL_BOX)]
            )
        token = sign_in(stack, "bench.reviewer@example.com")["AccessToken"]
        api(stack, "GET", NEXT, token)  # warm: the function's first run imports it
        api(stack, "POST", f"/api/tasks/{stack.review_tasks()[0]['task_id']}/release", token)
        say(f"timing {calls} calls of each route")
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for _ in range(calls):
            task = _timed(samples["GET /api/tasks/next"], stack, token, "GET", NEXT, 200)
            path = f"/api/tasks/{task['taskId']}"
            _timed(samples["GET /api/tasks/{taskId}"], stack, token, "GET", path, 200)
            _timed(samples["POST /api/tasks/{taskId}/release"], stack, token, "POST", f"{path}/release", 200)
            if api(stack, "GET", NEXT, token)[1]["taskId"] != task["taskId"]:
                raise SystemExit("the released task did not come back first")
            answered = samples["POST /api/tasks/{taskId}/answer"]
            _timed(answered, stack, token, "POST", f"{path}/answer", 200, _answer([MODEL_BOX]))
            # The answer's ReviewCompleted runs AppendLabels; the local stack runs one function at a
            # time (they share os.environ), so the next call would wait for it: let it finish first.
            if not stack.drain(timeout=120):
                raise SystemExit("the stack did not drain")
        for _ in range(calls):
            _timed(samples["GET /api/tasks/next (nothing left: 204)"], stack, token, "GET", NEXT, 204)
        cpu, wall = time.process_time() - cpu_started, time.perf_counter() - wall_started
        if not stack.drain(timeout=300):
            raise SystemExit("the stack did not drain")
        labels = stack.count_objects("labels/")
    if labels != calls:
        raise SystemExit(f"{labels} label lines for {calls} answered tasks")
    return {
        "routes": {route: _summary(values) for route, values in samples.items()},
        # `next` reads the open tasks in priority order (to give the caller's own claim first): the
        # k-th call sees calls - k open tasks.
        "next_p50_ms_by_open_tasks": _by_open_tasks(samples["GET /api/tasks/next"], calls),
        "timed_calls": sum(len(values) for values in samples.values()),
        "wall_seconds": round(wall, 2),  # the whole loop, with the AppendLabels runs between answers
        "cpu_seconds": round(cpu, 2),
        "label_lines": labels,
    }


def consolidation(say: Callable[[str], None]) -> dict[str, Any]:
    from labelloop_core.adapters.dynamodb_codec import decode_item

    work = Path(tempfile.mkdtemp(prefix="labelloop-bench-consolidation-"))
    with _stack(work / "stack", task_count=3) as stack:
        assert stack.stack is not None
        spy = BusSpy(stack)
        task_id = request_review(
            stack, "uploads/disagree.png", png_bytes(*SIZE), SIZE, [(LABEL, 30.0, MODEL_BOX)]
        )
        say("three reviewers answer one task (TaskCount 3)")
        for index, boxes in enumerate(REVIEWER_BOXES.values()):
            token = sign_in(stack, f"reviewer{index + 1}@example.com")["AccessToken"]
            status, task = api(stack, "GET", NEXT, token)
            if status != 200 or task["taskId"] != task_id:
                raise SystemExit(f"reviewer {index + 1} got {status} {task}")
            status, body = api(stack, "POST", f"/api/tasks/{task_id}/answer", token, _answer(boxes))
            if status != 200:
                raise SystemExit(f"reviewer {index + 1}'s answer: {status} {body}")
        if not stack.drain(timeout=120):
            raise SystemExit("the stack did not drain")
        s3 = stack.client("s3")
        line = json.loads(
            s3.get_object(Bucket=stack.stack.bucket, Key=f"labels/{task_id}.json")["Body"].read()
        )
        ledger_item = stack.client("dynamodb").get_item(
            TableName=str(stack.stack.physical["LedgerTable"]),
            Key={"pk": {"S": f"LABEL#{task_id}"}, "sk": {"S": "LABEL"}},
            ConsistentRead=True,
        )["Item"]
        (appended,) = spy.events("LabelsAppended")
    attribute = next(
        name for name, value in line.items() if isinstance(value, dict) and "annotations" in value
    )
    annotations = line[attribute]["annotations"]
    objects = line[f"{attribute}-metadata"]["objects"]
    return {
        "reviewers": {name: [list(box) for box in boxes] for name, boxes in REVIEWER_BOXES.items()},
        "kept": [
            {
                "box": [item["left"], item["top"], item["width"], item["height"]],
                "confidence": meta["confidence"],
            }
            for item, meta in zip(annotations, objects, strict=True)
        ],
        "ledger_consolidation": decode_item(ledger_item).get("consolidation"),
        "labels_appended": {
            key: appended["detail"][key]
            for key in ("boxCount", "reviewers", "agreement", "droppedBoxes", "lowAgreement")
            if key in appended["detail"]
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    def say(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        timings = latency(args.calls, say)
        figures = {
            "latency": timings,
            "consolidation": consolidation(say),
            "load_average": [round(value, 2) for value in os.getloadavg()],
        }
    if args.json:
        print(json.dumps(figures))
    else:
        for route, summary in timings["routes"].items():
            print(
                f"{route}: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, "
                f"max {summary['max_ms']} ms ({summary['calls']} calls)"
            )
        print(json.dumps(figures["consolidation"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
