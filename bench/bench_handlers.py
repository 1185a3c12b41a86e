"""Handler overhead (docs/ARCHITECTURE.md, "Budgets"; cold import is bench_cold_import.py, on the
built artifacts).

* Handler overhead: the unchanged handlers run on moto resources provisioned from template.yaml;
  the time spent inside AWS SDK calls (botocore `provide-client-params` → `after-call`: request
  serialization, the round trip to moto or the Stubber standing in for AWS, response parsing) is
  subtracted from each invocation's wall time; budget p50 ≤ 5 ms.

Usage: python bench/bench_handlers.py [--invocations 200]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OVERHEAD_BUDGET_MS = 5.0
MODEL_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
FLOW_ARN = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/labelloop-local"


class AwsCallTimer:
    """Sums the time spent inside botocore API calls, from parameters to parsed response."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started: dict[int, float] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.*.*", self._before)
        client.meta.events.register("after-call.*.*", self._after)

    def _before(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        if context is not None:
            context["bench_started"] = time.perf_counter()

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        self.total += time.perf_counter() - context.pop("bench_started", time.perf_counter())


def _png(width: int = 320, height: int = 240) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def provisioned() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    from labelloop_local.stack.local_stack import LOCAL_PARAMETERS
    from labelloop_local.stack.moto_fixes import apply_moto_fixes
    from labelloop_local.stack.provision import provision
    from labelloop_local.stack.template import load_template

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",  # no X-Ray daemon here; Lambda's tracer sends UDP only
        POWERTOOLS_METRICS_NAMESPACE="Labelloop",
    )
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    apply_moto_fixes()
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        stack = provision(
            load_template(REPO / "template.yaml"),
            session,
            params=LOCAL_PARAMETERS,
            resolved={
                "FlowDefinitionArn": FLOW_ARN,
                "HumanTaskUiArn": FLOW_ARN.replace("flow-definition", "ui"),
            },
        )
        session.client("ssm").put_parameter(
            Name=stack.physical["ActiveModelParameter"], Value=MODEL_ARN, Type="String", Overwrite=True
        )
        yield stack


def _use_function_env(stack: Any, logical_id: str) -> None:
    from labelloop_core import state

    for name in ("FLOW_DEFINITION_ARN", "MIN_NEW_LABELS", "REVIEW_THRESHOLD", "PROMOTION_MARGIN"):
        os.environ.pop(name, None)
    os.environ.update(stack.env_for(logical_id))
    state.reset()  # a new container for this function


def _measure(
    handler: Callable[[dict[str, Any], Any], Any], events: list[dict[str, Any]], context: Any
) -> list[float]:
    from labelloop_core.adapters import clients

    timer = AwsCallTimer()
    for service in ("s3", "dynamodb", "events", "ssm", "rekognition", "sagemaker-a2i-runtime"):
        timer.attach(clients.client(service))
    overheads = []
    for event in events:
        before_aws = timer.total
        started = time.perf_counter()
        handler(event, context)
        wall = time.perf_counter() - started
        overheads.append((wall - (timer.total - before_aws)) * 1000)
    return overheads


def bench_detect(stack: Any, invocations: int) -> list[float]:
    from botocore.stub import Stubber

    from labelloop_core.adapters import clients
    from labelloop_local.stack.handlers import lambda_context, load_handler

    _use_function_env(stack, "DetectFunction")
    handler = load_handler(REPO / "functions/detect")
    batch = json.loads((REPO / "events/detect-object-created.json").read_text())  # a DetectQueue batch
    (message,) = batch["Records"]
    s3 = clients.s3()
    body = _png()
    events = []
    for index in range(invocations):  # one upload per batch: the overhead per event
        key = f"incoming/bench/{index:05d} slice.png"
        put = s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
        upload = json.loads(message["body"])
        upload["id"] = str(uuid.uuid4())
        upload["detail"]["bucket"]["name"] = stack.bucket
        upload["detail"]["object"].update(
            key=key.replace(" ", "+"),
            size=len(body),
            etag=put["ETag"].strip('"'),
            **{"version-id": put["VersionId"]},
        )
        record = {**copy.deepcopy(message), "messageId": str(uuid.uuid4()), "body": json.dumps(upload)}
        events.append({"Records": [record]})
    stubber = Stubber(clients.client("rekognition", sdk_retries=False))  # Detect's own client
    for index in range(invocations):
        confidence = 35.0 if index % 2 else 90.0  # half go to review, half are predictions only
        stubber.add_response(
            "detect_custom_labels",
            {
                "CustomLabels": [
                    {
                        "Name": "pepperoni pizza slice",
                        "Confidence": confidence,
                        "Geometry": {"BoundingBox": {"Left": 0.1, "Top": 0.2, "Width": 0.3, "Height": 0.4}},
                    }
                ]
            },
        )
    with stubber:
        return _measure(handler, events, lambda_context("DetectFunction"))


def bench_start_review(stack: Any, invocations: int) -> list[float]:
    from botocore.stub import Stubber

    from labelloop_core.adapters import clients
    from labelloop_local.stack.handlers import lambda_context, load_handler

    _use_function_env(stack, "StartReviewFunction")
    handler = load_handler(REPO / "functions/start_review")
    template = json.loads((REPO / "events/start-review.json").read_text())
    events = []
    for index in range(invocations):
        event = copy.deepcopy(template)
        event["id"] = str(uuid.uuid4())
        detail = event["detail"]
        detail.update(bucket=stack.bucket, key=f"incoming/bench/{index:05d}.jpg", etag=f"{index:032x}")
        detail["versionId"] = None
        from labelloop_core.naming import ImageRef

        detail["imageId"] = ImageRef(stack.bucket, detail["key"], None, detail["etag"]).image_id
        events.append(event)
    stubber = Stubber(clients.a2i_runtime())
    for index in range(invocations):
        stubber.add_response(
            "start_human_loop",
            {"HumanLoopArn": f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/ll-{index}"},
        )
    with stubber:
        return _measure(handler, events, lambda_context("StartReviewFunction"))


def bench_retrain_check(stack: Any, invocations: int) -> list[float]:
    from labelloop_local.stack.handlers import lambda_context, load_handler

    _use_function_env(stack, "RetrainFunction")
    handler = load_handler(REPO / "functions/retrain")
    template = json.loads((REPO / "events/retrain-schedule.json").read_text())
    events = []
    for index in range(invocations):
        event = copy.deepcopy(template)
        event["id"] = str(uuid.uuid4())
        event["time"] = f"2026-01-01T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z"
        events.append(event)
    return _measure(handler, events, lambda_context("RetrainFunction"))


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "n": len(ordered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=200)
    args = parser.parse_args()

    results: dict[str, Any] = {"handler_overhead_ms": {}}
    print(
        f"handler overhead excluding AWS calls ({args.invocations} invocations;"
        f" budget p50 ≤ {OVERHEAD_BUDGET_MS} ms)"
    )
    with provisioned() as stack:
        for name, bench in (
            ("detect", bench_detect),
            ("start_review", bench_start_review),
            ("retrain_check", bench_retrain_check),
        ):
            summary = summarize(bench(stack, args.invocations))
            results["handler_overhead_ms"][name] = summary
            print(f"  {name:<14} p50 {summary['p50_ms']:6.2f} ms   p95 {summary['p95_ms']:6.2f} ms")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
