"""The local stack delivers events as the deployed rules would: right handler, retries, DLQ, schedules."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labelloop_local.stack.local_stack import LocalStack
from tests.support.paths import TEMPLATE_PATH

pytestmark = pytest.mark.integration

TEMPLATE = TEMPLATE_PATH


class Recorder:
    """Stands in for a handler and remembers what it was given (and with which environment)."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.envs: list[dict[str, str]] = []
        self.fail = fail

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:

        self.events.append(event)
        self.envs.append(dict(os.environ))
        if self.fail:
            raise RuntimeError(f"simulated failure #{len(self.events)}")
        return {"ok": True}


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    stack = LocalStack(TEMPLATE, time_scale=1 / 6000)
    with stack:
        yield stack


def _upload(stack: LocalStack, key: str, body: bytes = b"not an image") -> None:
    assert stack.stack is not None
    stack.client("s3").put_object(Bucket=stack.stack.bucket, Key=key, Body=body)


def _detect_invocations(stack: LocalStack) -> int:
    assert stack.dispatcher is not None
    return stack.dispatcher.stats.invocations["DetectFunction"]


def test_upload_under_incoming_runs_the_real_detect_handler(local_stack: LocalStack) -> None:
    before = _detect_invocations(local_stack)
    _upload(local_stack, "incoming/holiday photo (1).png")
    assert local_stack.drain(60)

    assert _detect_invocations(local_stack) == before + 1
    s3 = local_stack.client("s3")
    assert local_stack.stack is not None
    keys = [
        obj["Key"]
        for obj in s3.list_objects_v2(Bucket=local_stack.stack.bucket, Prefix="predictions/").get(
            "Contents", []
        )
    ]
    # The handler decoded the URL-encoded key of the S3 event exactly once.
    assert any("holiday photo (1).png" in key for key in keys), keys
    document = json.loads(
        s3.get_object(Bucket=local_stack.stack.bucket, Key=next(k for k in keys if "holiday" in k))[
            "Body"
        ].read()
    )
    assert document["status"] == "REJECTED"
    assert local_stack.dlq_messages()["DetectFunctionDeadLetterQueue"] == 0


def test_objects_outside_incoming_trigger_nothing(local_stack: LocalStack) -> None:
    before = _detect_invocations(local_stack)
    for key in ("manifests/x.png", "predictions/incoming/y.png.json", "labels/z.json", "incomingx/a.png"):
        _upload(local_stack, key)
    assert local_stack.drain(60)
    assert _detect_invocations(local_stack) == before


def test_each_function_runs_with_its_own_environment(local_stack: LocalStack) -> None:
    assert local_stack.dispatcher is not None and local_stack.stack is not None
    detect, retrain = Recorder(), Recorder()
    local_stack.dispatcher.replace_handler("DetectFunction", detect)
    local_stack.dispatcher.replace_handler("RetrainFunction", retrain)
    _upload(local_stack, "incoming/env-check.png")
    local_stack.fire_schedule("RetrainFunction")
    assert local_stack.drain(60)

    assert detect.envs[-1]["POWERTOOLS_SERVICE_NAME"] == "detect"
    assert "MIN_NEW_LABELS" not in detect.envs[-1]
    assert (
        retrain.envs[-1]["MIN_NEW_LABELS"] == local_stack.stack.env_for("RetrainFunction")["MIN_NEW_LABELS"]
    )
    assert "REVIEW_THRESHOLD" not in retrain.envs[-1]
    assert detect.envs[-1]["AWS_ENDPOINT_URL"] == local_stack.moto_url
    # Outside a handler the process environment is the developer's own: never pointed at the stack
    # (checked while no function runs: the ModelController's schedule ticks all the time).
    with local_stack.dispatcher.quiet():
        assert os.environ.get("AWS_ENDPOINT_URL") != local_stack.moto_url
        assert os.environ.get("POWERTOOLS_SERVICE_NAME") not in ("detect", "model-controller")


def test_schedule_fires_a_real_scheduled_event(local_stack: LocalStack) -> None:
    assert local_stack.dispatcher is not None
    promote = Recorder()
    local_stack.dispatcher.replace_handler("PromoteFunction", promote)
    event_ids = local_stack.fire_schedule("PromoteFunction")
    assert local_stack.drain(60)

    assert [event["id"] for event in promote.events] == event_ids
    event = promote.events[0]
    assert event["source"] == "aws.events" and event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert event["time"].endswith("Z") and event["account"] == "123456789012"
    (route,) = local_stack.schedule_routes("PromoteFunction")
    assert event["resources"] == [route.rule_arn]


def test_model_controller_ticks_queued_behind_a_busy_function_are_folded_into_one(
    local_stack: LocalStack,
) -> None:
    """Lambda would run late ticks side by side; the one local worker folds the ticks that arrive while
    one waits into it, so they neither expire nor run back to back while other functions wait."""
    dispatcher = local_stack.dispatcher
    assert dispatcher is not None
    running, release = threading.Event(), threading.Event()

    def slow_promote(event: dict[str, Any], context: Any) -> dict[str, Any]:
        running.set()
        release.wait(60)
        return {}

    controller = Recorder()
    real_controller = dispatcher._handler("ModelControllerFunction")
    dispatcher.replace_handler("PromoteFunction", slow_promote)
    dispatcher.replace_handler("ModelControllerFunction", controller)
    folded_before = dispatcher.coalesced_ticks
    try:
        local_stack.fire_schedule("PromoteFunction")
        assert running.wait(60)  # the worker is busy: ticks can only queue
        for _ in range(3):
            local_stack.fire_schedule("ModelControllerFunction")
        deadline = time.monotonic() + 60
        while dispatcher.coalesced_ticks - folded_before < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ran_before = len(controller.events)
        release.set()
        deadline = time.monotonic() + 60
        while len(controller.events) == ran_before and time.monotonic() < deadline:
            time.sleep(0.05)
        ran_after = len(controller.events)
        assert local_stack.drain(60)
    finally:
        release.set()
        dispatcher.replace_handler("ModelControllerFunction", real_controller)

    assert dispatcher.coalesced_ticks - folded_before >= 2  # at most one of the three waited
    assert ran_after > ran_before  # the waiting tick ran: none was lost
    assert dispatcher.stats.dead_lettered["ModelControllerFunction"] == 0


def test_app_bus_rule_delivers_only_its_detail_type(local_stack: LocalStack) -> None:
    assert local_stack.dispatcher is not None and local_stack.stack is not None
    start_review = Recorder()
    local_stack.dispatcher.replace_handler("StartReviewFunction", start_review)
    events = local_stack.client("events")
    bus = local_stack.stack.bus_name
    entries = [
        {"Source": "labelloop", "DetailType": "ReviewRequested", "Detail": '{"n": 1}', "EventBusName": bus},
        {"Source": "labelloop", "DetailType": "LabelsAppended", "Detail": '{"n": 2}', "EventBusName": bus},
        {"Source": "labelloop", "DetailType": "ReviewRequested", "Detail": '{"n": 3}'},  # default bus
    ]
    events.put_events(Entries=entries)
    assert local_stack.drain(60)
    assert [event["detail"] for event in start_review.events] == [{"n": 1}]


def test_failing_handler_is_received_again_until_the_queues_redrive_policy_dead_letters_it(
    local_stack: LocalStack,
) -> None:
    """Detect consumes the DetectQueue: a batch that fails is received again until SQS moves the message
    to Detect's dead-letter queue after the queue's maxReceiveCount receives (its redrive policy)."""
    assert local_stack.dispatcher is not None and local_stack.stack is not None
    failing = Recorder(fail=True)
    local_stack.dispatcher.replace_handler("DetectFunction", failing)
    before = local_stack.dlq_messages()["DetectFunctionDeadLetterQueue"]
    _upload(local_stack, "incoming/always-fails.png")
    assert local_stack.drain(60)

    policy = local_stack.client("sqs").get_queue_attributes(
        QueueUrl=local_stack.stack.queue_url("DetectQueue"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]
    assert len(failing.events) == json.loads(policy)["maxReceiveCount"]  # every receive counts
    bodies = {record["body"] for event in failing.events for record in event["Records"]}
    (body,) = bodies  # the same message each time
    assert json.loads(body)["detail"]["object"]["key"] == "incoming/always-fails.png"
    assert local_stack.dlq_messages()["DetectFunctionDeadLetterQueue"] == before + 1
