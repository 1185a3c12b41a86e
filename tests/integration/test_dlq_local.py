"""`labelloop dlq` on the local stack, through the same CloudFormation, SQS and Lambda calls as on AWS:
Detect fails on an upload until the DetectQueue's redrive policy moves it to Detect's DLQ
(maxReceiveCount receives), the dead letter is listed, the cause is fixed, the redrive sends the
original event back into the DetectQueue and the DLQ is empty. (Refusals of a redrive are covered by
tests/unit/test_dlq.py.)"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from labelloop_local.cli import main
from labelloop_local.stack.handlers import environment
from labelloop_local.stack.local_stack import LocalStack
from labelloop_local.stack.state import write_state
from tests.support.paths import TEMPLATE_PATH

pytestmark = pytest.mark.integration

TEMPLATE = TEMPLATE_PATH
DETECT_DLQ = "DetectFunctionDeadLetterQueue"


def operator(stack: LocalStack, argv: list[str]) -> tuple[int, list[str]]:
    """`labelloop ARGV` as an operator runs it, in a process of its own beside `labelloop local up`:
    its exit code and the lines it printed. Here it shares the stack's process, whose functions swap
    os.environ and sys.stdout while they run (the ModelController ticks all the time): no function
    runs while the command does, and its output is taken here rather than through capsys, whose
    stream a function that was running when pytest installed it would replace on its way out."""
    assert stack.dispatcher is not None
    printed = io.StringIO()
    # With the export lines `labelloop local up` prints (set only now: a function that was running when
    # they were set would restore the environment it started with, dropping them).
    with stack.dispatcher.quiet(), environment(stack.endpoint_env()), redirect_stdout(printed):
        code = main(argv)
    return code, printed.getvalue().splitlines()


class Handler:
    """Stands in for Detect: fails its whole batch while `broken` (so no message of it is deleted),
    and remembers the event ids of the messages it was given."""

    def __init__(self) -> None:
        self.broken = True
        self.event_ids: list[str] = []

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            self.event_ids.append(json.loads(record["body"])["id"])
        if self.broken:
            raise RuntimeError("the handler crashed")


def _max_receive_count(stack: LocalStack) -> int:
    """The DetectQueue's maxReceiveCount, as provisioned from template.yaml."""
    assert stack.stack is not None
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.stack.queue_url("DetectQueue"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    with LocalStack(TEMPLATE, time_scale=1 / 6000) as stack:
        yield stack


@pytest.fixture
def detect(local_stack: LocalStack) -> Iterator[Handler]:
    assert local_stack.dispatcher is not None and local_stack.drain(60)
    handler = Handler()
    local_stack.dispatcher.replace_handler("DetectFunction", handler)
    yield handler
    local_stack.services.clear_faults()
    _empty_dead_letter_queues(local_stack)


def _empty_dead_letter_queues(stack: LocalStack) -> None:
    """Delete what a test left behind (PurgeQueue is allowed once a minute only)."""
    assert stack.stack is not None
    sqs = stack.client("sqs")
    for logical_id, count in stack.dlq_messages().items():
        url = stack.stack.queue_url(logical_id)
        while count:
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                count -= 1


def _fail_one_upload(stack: LocalStack, handler: Handler, key: str) -> str:
    """Upload under incoming/ and let Detect fail on every receive; the event's id."""
    assert stack.stack is not None
    before = len(handler.event_ids)
    stack.client("s3").put_object(Bucket=stack.stack.bucket, Key=key, Body=b"not an image")
    assert stack.drain(60)
    assert len(handler.event_ids) == before + _max_receive_count(stack)  # every receive counts
    _wait_visible(stack, DETECT_DLQ)
    return handler.event_ids[-1]


def _wait_visible(stack: LocalStack, logical_id: str, timeout: float = 40.0) -> None:
    """moto moves a message to the dead-letter queue still invisible for the source queue's
    visibility timeout (SQS makes it visible at once): wait until ReceiveMessage can see it."""
    assert stack.stack is not None
    sqs, url = stack.client("sqs"), stack.stack.queue_url(logical_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        if int(attributes["Attributes"]["ApproximateNumberOfMessages"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"no visible message in {logical_id} after {timeout:.0f}s")


def test_failed_event_is_listed_then_redriven_after_the_fix_and_the_queue_is_empty(
    local_stack: LocalStack, detect: Handler
) -> None:
    event_id = _fail_one_upload(local_stack, detect, "incoming/redrive-me.png")
    assert local_stack.dlq_messages()[DETECT_DLQ] == 1

    code, printed = operator(local_stack, ["dlq", "list", "--stack", local_stack.stack_name])
    assert code == 0
    (row,) = printed[1:]
    assert row.split()[0] == DETECT_DLQ
    assert event_id in row
    assert "received maxReceiveCount times without a recorded reason" in row
    assert local_stack.dlq_messages()[DETECT_DLQ] == 1  # listing leaves it there

    detect.broken = False
    assert operator(local_stack, ["dlq", "redrive", "--stack", local_stack.stack_name])[0] == 0
    assert local_stack.drain(60)

    assert detect.event_ids[-1] == event_id  # the original event, processed once more, successfully
    assert detect.event_ids.count(event_id) == _max_receive_count(local_stack) + 1
    assert local_stack.dlq_messages()[DETECT_DLQ] == 0


def test_event_that_fails_again_returns_to_the_queue_and_is_not_redriven_in_a_loop(
    local_stack: LocalStack, detect: Handler
) -> None:
    event_id = _fail_one_upload(local_stack, detect, "incoming/still-broken.png")

    assert operator(local_stack, ["dlq", "redrive", "--stack", local_stack.stack_name])[0] == 0
    assert local_stack.drain(60)

    # one redrive: maxReceiveCount more receives, no more
    assert detect.event_ids.count(event_id) == 2 * _max_receive_count(local_stack)
    code, (line,) = operator(local_stack, ["dlq", "list", "--stack", local_stack.stack_name, "--json"])
    assert code == 0
    assert json.loads(line)["event_id"] == event_id


def test_local_dlq_uses_the_running_stack_from_its_state_file(
    local_stack: LocalStack,
    detect: Handler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event_id = _fail_one_upload(local_stack, detect, "incoming/from-state.png")
    monkeypatch.chdir(tmp_path)
    write_state(local_stack.state())

    code, (line,) = operator(local_stack, ["local", "dlq", "list", "--queue", DETECT_DLQ, "--json"])
    assert code == 0
    letter = json.loads(line)
    assert (letter["type"], letter["queue"], letter["event_id"]) == ("DeadLetter", DETECT_DLQ, event_id)

    detect.broken = False
    assert operator(local_stack, ["local", "dlq", "redrive", "--queue", DETECT_DLQ])[0] == 0
    assert local_stack.drain(60)
    assert local_stack.dlq_messages()[DETECT_DLQ] == 0


def test_local_dlq_without_a_running_stack_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELLOOP_HOME", str(tmp_path / "no-stack-here"))
    assert main(["local", "dlq", "list"]) == 1
    assert "start the stack first with `labelloop local up`" in capsys.readouterr().err
