"""`labelloop dlq`: reading the dead-letter formats (EventBridge's, Lambda's destination records, and the
dead letters of a queue's consumer), and the AWS path (CloudFormation, SQS, Lambda) with botocore
Stubbers: what is invoked or sent back, when a message is deleted, what stays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from labelloop_local.cli import dlq, main
from labelloop_local.cli.dlq import Clients, DeadLetter, Selection, Unreadable, parse_dead_letter

ACCOUNT = "123456789012"
DETECT = "labelloop-DetectFunction-AbC123"
DETECT_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{DETECT}"
QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/labelloop-DetectFunctionDeadLetterQueue-Xyz"
DETECT_QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/labelloop-DetectQueue-Xyz"
RULE_ARN = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/labelloop-DetectFunctionObjectCreated-1"
EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": ACCOUNT,
    "time": "2026-12-01T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:s3:::labelloop-imagebucket"],
    "detail": {"bucket": {"name": "labelloop-imagebucket"}, "object": {"key": "incoming/a.jpg"}},
}


def lambda_record(**changes: Any) -> dict[str, Any]:
    """A Lambda on-failure destination record, shaped like the Lambda developer guide's example."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": "2026-12-01T10:03:05.568Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-4d2b-8880-a18cdf61200e",
            "functionArn": f"{DETECT_ARN}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": EVENT,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorType": "ResourceNotReadyException",
            "errorMessage": "the model is not running",
        },
    }
    record.update(changes)
    return record


def sqs_message(
    body: Any, attributes: dict[str, str] | None = None, message_id: str = "m-1"
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "MessageId": message_id,
        "ReceiptHandle": f"receipt-{message_id}",
        "Body": body if isinstance(body, str) else json.dumps(body),
        "Attributes": {"SentTimestamp": "1796121600000"},
    }
    if attributes:
        message["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        }
    return message


def eventbridge_attributes(**extra: str) -> dict[str, str]:
    return {
        "RULE_ARN": RULE_ARN,
        "TARGET_ARN": DETECT_ARN,
        "ERROR_CODE": "SDK_CLIENT_ERROR",
        "ERROR_MESSAGE": "Unable to invoke Lambda function: rate exceeded",
        **extra,
    }


# -- parsing ----------------------------------------------------------------------------------------


def test_lambda_destination_record_yields_the_event_its_function_and_the_error() -> None:
    letter = parse_dead_letter("DetectFunctionDeadLetterQueue", sqs_message(lambda_record()))

    assert isinstance(letter, DeadLetter)
    assert letter.kind == "lambda"
    assert letter.event == EVENT
    assert letter.event_id == EVENT["id"]
    assert letter.function_name == DETECT  # the $LATEST qualifier is not part of the name
    assert letter.failed_at == "2026-12-01T10:03:05.568Z"
    assert (
        letter.reason
        == "RetriesExhausted after 3 attempts: ResourceNotReadyException: the model is not running"
    )
    assert letter.receipt_handle == "receipt-m-1"


def test_record_of_an_event_too_old_to_run_has_no_error_but_a_condition() -> None:
    record = lambda_record(responsePayload=None)
    record["requestContext"].update(condition="EventAgeExceeded", approximateInvokeCount=0)
    letter = parse_dead_letter("q", sqs_message(record))
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "EventAgeExceeded after 0 attempts"


def test_record_with_only_an_error_message_keeps_it() -> None:
    record = lambda_record(responsePayload={"errorMessage": "Process exited before completing request"})
    letter = parse_dead_letter("q", sqs_message(record))
    assert isinstance(letter, DeadLetter)
    assert letter.reason.endswith(": Error: Process exited before completing request")


def test_eventbridge_dead_letter_is_the_event_with_the_error_in_its_attributes() -> None:
    attributes = eventbridge_attributes(
        RETRY_ATTEMPTS="185", EXHAUSTED_RETRY_CONDITION="MaximumRetryAttempts"
    )
    letter = parse_dead_letter("q", sqs_message(EVENT, attributes))

    assert isinstance(letter, DeadLetter)
    assert letter.kind == "eventbridge"
    assert letter.event == EVENT and letter.event_id == EVENT["id"]
    assert letter.function_arn == DETECT_ARN
    assert letter.reason.startswith("SDK_CLIENT_ERROR: Unable to invoke Lambda function: rate exceeded")
    assert "retry attempts 185" in letter.reason and "MaximumRetryAttempts" in letter.reason
    assert letter.failed_at == "2026-12-01T10:40:00.000Z"  # SentTimestamp, epoch milliseconds


@pytest.mark.parametrize(
    ("body", "attributes", "problem"),
    [
        pytest.param("{not json", None, "not JSON", id="not-json"),
        pytest.param(["an", "array"], None, "neither", id="json-array"),
        pytest.param({"detail": {}}, None, "neither", id="plain-object"),
        pytest.param(
            lambda_record(requestContext={"condition": "RetriesExhausted"}), None, "functionArn", id="no-arn"
        ),
        pytest.param(
            {k: v for k, v in lambda_record().items() if k != "requestPayload"},
            None,
            "requestPayload",
            id="no-event",
        ),
        pytest.param(
            EVENT,
            {"ERROR_CODE": "X", "ERROR_MESSAGE": "y", "RULE_ARN": RULE_ARN},
            "TARGET_ARN",
            id="eb-no-target",
        ),
        pytest.param(
            EVENT,
            eventbridge_attributes(TARGET_ARN=f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue"),
            "TARGET_ARN",
            id="eb-target-not-a-function",
        ),
        pytest.param("{not json", eventbridge_attributes(), "not JSON", id="eb-body-not-json"),
    ],
)
def test_malformed_message_is_unreadable_with_the_reason(body: Any, attributes: Any, problem: str) -> None:
    letter = parse_dead_letter("q", sqs_message(body, attributes))
    assert isinstance(letter, Unreadable)
    assert problem in letter.problem
    assert letter.receipt_handle == "receipt-m-1"


# -- the AWS path with Stubbers ---------------------------------------------------------------------


class Aws:
    def __init__(self) -> None:
        session = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
        self.clients = Clients(
            session.client("cloudformation"), session.client("sqs"), session.client("lambda")
        )
        self.cloudformation = Stubber(self.clients.cloudformation)
        self.sqs = Stubber(self.clients.sqs)
        self.lambda_ = Stubber(self.clients.lambda_)

    def stack(self, name: str = "labelloop", sources: list[str] | None = None) -> None:
        summaries = [
            ("DetectFunction", DETECT, "AWS::Lambda::Function"),
            ("DetectFunctionRole", "labelloop-DetectFunctionRole-1", "AWS::IAM::Role"),
            ("DetectFunctionDeadLetterQueue", QUEUE_URL, "AWS::SQS::Queue"),
            ("ImageBucket", "labelloop-imagebucket", "AWS::S3::Bucket"),
        ]
        self.cloudformation.add_response(
            "list_stack_resources",
            {
                "StackResourceSummaries": [
                    {
                        "LogicalResourceId": logical,
                        "PhysicalResourceId": physical,
                        "ResourceType": kind,
                        "LastUpdatedTimestamp": "2026-12-01T00:00:00Z",
                        "ResourceStatus": "CREATE_COMPLETE",
                    }
                    for logical, physical, kind in summaries
                ]
            },
            {"StackName": name},
        )
        self.sqs.add_response(
            "list_dead_letter_source_queues", {"queueUrls": sources or []}, {"QueueUrl": QUEUE_URL}
        )

    def queue_holds(self, *messages: dict[str, Any], visibility: int) -> None:
        self.sqs.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": str(len(messages))}},
            {"QueueUrl": QUEUE_URL, "AttributeNames": ["ApproximateNumberOfMessages"]},
        )
        receive = {
            "QueueUrl": QUEUE_URL,
            "MaxNumberOfMessages": 10,
            "VisibilityTimeout": visibility,
            "WaitTimeSeconds": 1,
            "AttributeNames": ["SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        self.sqs.add_response("receive_message", {"Messages": list(messages)}, receive)
        self.sqs.add_response("receive_message", {"Messages": list(messages)}, receive)  # seen: done

    def released(self, *receipts: str) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(receipts)]
        self.sqs.add_response(
            "change_message_visibility_batch",
            {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []},
            {"QueueUrl": QUEUE_URL, "Entries": entries},
        )

    def invoked(self, event: Any, status: int = 202) -> None:
        self.lambda_.add_response(
            "invoke",
            {"StatusCode": status},
            {"FunctionName": DETECT, "InvocationType": "Event", "Payload": json.dumps(event)},
        )

    def sent_back(self, event: Any) -> None:
        self.sqs.add_response(
            "send_message",
            {"MessageId": "new", "MD5OfMessageBody": "x"},
            {"QueueUrl": DETECT_QUEUE_URL, "MessageBody": json.dumps(event)},
        )

    def deleted(self, receipt: str) -> None:
        self.sqs.add_response("delete_message", {}, {"QueueUrl": QUEUE_URL, "ReceiptHandle": receipt})

    def __enter__(self) -> Aws:
        for stubber in (self.cloudformation, self.sqs, self.lambda_):
            stubber.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        for stubber in (self.cloudformation, self.sqs, self.lambda_):
            stubber.deactivate()

    def done(self) -> None:
        for stubber in (self.cloudformation, self.sqs, self.lambda_):
            stubber.assert_no_pending_responses()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The command's clients are these stubbed ones; an unexpected call fails the test."""
    with Aws() as stubs:
        monkeypatch.setattr(Clients, "default", classmethod(lambda cls: stubs.clients))
        yield stubs


def test_redrive_invokes_the_failed_function_asynchronously_and_then_deletes_the_message(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack()
    failed = sqs_message(lambda_record(), message_id="m-lambda")
    undelivered = sqs_message(EVENT, eventbridge_attributes(), message_id="m-events")
    aws.queue_holds(failed, undelivered, visibility=dlq.REDRIVE_VISIBILITY_SECONDS)
    aws.invoked(EVENT)  # the original event, not the record around it
    aws.deleted("receipt-m-lambda")
    aws.invoked(EVENT)
    aws.deleted("receipt-m-events")  # and nothing left to release

    assert main(["dlq", "redrive", "--stack", "labelloop"]) == 0
    aws.done()
    assert "sent 2 event(s) back; 0 dead letter(s) kept" in capsys.readouterr().err


def test_message_whose_invocation_is_refused_stays_and_is_reported(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack()
    aws.queue_holds(sqs_message(lambda_record()), visibility=dlq.REDRIVE_VISIBILITY_SECONDS)
    aws.lambda_.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
    aws.released("receipt-m-1")  # visible again at once; never deleted

    assert main(["dlq", "redrive", "--stack", "labelloop"]) == 1
    aws.done()
    out, err = capsys.readouterr()
    assert "kept m-1: Lambda did not accept the invocation" in out and "TooManyRequestsException" in out
    assert "1 dead letter(s) kept" in err


def test_unreadable_message_and_foreign_function_stay_in_the_queue(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack()
    foreign = lambda_record()
    foreign["requestContext"]["functionArn"] = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:someone-else"
    aws.queue_holds(
        sqs_message("garbage", message_id="m-bad"),
        sqs_message(foreign, message_id="m-foreign"),
        visibility=dlq.REDRIVE_VISIBILITY_SECONDS,
    )
    aws.released("receipt-m-bad", "receipt-m-foreign")

    assert main(["dlq", "redrive", "--stack", "labelloop"]) == 1
    aws.done()
    out = capsys.readouterr().out
    assert "kept m-bad: the body is not JSON" in out
    assert "kept m-foreign: it failed in someone-else, which is not a function of stack labelloop" in out


def test_dry_run_invokes_nothing_and_leaves_every_message(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack()
    aws.queue_holds(sqs_message(lambda_record()), visibility=dlq.REDRIVE_VISIBILITY_SECONDS)
    aws.released("receipt-m-1")

    assert main(["dlq", "redrive", "--stack", "labelloop", "--dry-run"]) == 0
    aws.done()
    assert f"would send event {EVENT['id']} (message m-1) to {DETECT}" in capsys.readouterr().out


def test_message_id_selects_one_and_releases_the_others(aws: Aws) -> None:
    aws.stack()
    first, second = (
        sqs_message(lambda_record(), message_id="m-1"),
        sqs_message(lambda_record(), message_id="m-2"),
    )
    aws.queue_holds(first, second, visibility=dlq.REDRIVE_VISIBILITY_SECONDS)
    aws.invoked(EVENT)
    aws.deleted("receipt-m-2")
    aws.released("receipt-m-1")

    assert main(["dlq", "redrive", "--stack", "labelloop", "--message-id", "m-2"]) == 0
    aws.done()


def test_list_shows_function_reason_time_and_event_id_and_leaves_the_messages(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack()
    aws.queue_holds(sqs_message(lambda_record()), visibility=dlq.LIST_VISIBILITY_SECONDS)
    aws.released("receipt-m-1")

    assert main(["dlq", "list", "--stack", "labelloop"]) == 0
    aws.done()
    (header, row) = capsys.readouterr().out.splitlines()
    assert header.split() == ["QUEUE", "FUNCTION", "FAILED", "AT", "EVENT", "ID", "MESSAGE", "ID", "REASON"]
    assert row.split()[:5] == [
        "DetectFunctionDeadLetterQueue",
        "DetectFunction",
        "2026-12-01T10:03:05.568Z",
        EVENT["id"],
        "m-1",
    ]
    assert row.endswith(
        "RetriesExhausted after 3 attempts: ResourceNotReadyException: the model is not running"
    )


def test_selection_by_function_accepts_the_logical_id_or_the_name() -> None:
    stack = dlq.StackQueues(
        "labelloop", {"DetectFunctionDeadLetterQueue": QUEUE_URL}, {DETECT: "DetectFunction"}
    )
    letter = parse_dead_letter("DetectFunctionDeadLetterQueue", sqs_message(lambda_record()))
    assert Selection(function="DetectFunction").wants(stack, letter)
    assert Selection(function=DETECT).wants(stack, letter)
    assert not Selection(function="PromoteFunction").wants(stack, letter)


@pytest.mark.parametrize("command", ["list", "redrive"])
def test_unknown_stack_is_one_line_naming_it(
    aws: Aws, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    aws.cloudformation.add_client_error(
        "list_stack_resources", "ValidationError", "Stack with id nope does not exist", 400
    )
    assert main(["dlq", command, "--stack", "nope"]) == 1
    assert capsys.readouterr().err == (
        f"dlq {command} failed: stack nope: ValidationError: Stack with id nope does not exist\n"
    )


def test_unknown_queue_is_one_line_listing_the_stacks_queues(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack()
    assert main(["dlq", "list", "--stack", "labelloop", "--queue", "Nope"]) == 1
    expected = "stack labelloop has no dead-letter queue Nope (it has DetectFunctionDeadLetterQueue)"
    assert capsys.readouterr().err == f"dlq list failed: {expected}\n"


def test_missing_credentials_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a session of an earlier test caches credentials
    assert main(["dlq", "list", "--stack", "labelloop"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dlq list failed: no AWS credentials")


# -- the dead letters of a queue's consumer (Detect's: the DetectQueue's redrive target) ----------


def test_a_message_detect_gave_up_on_carries_the_reason_and_goes_back_to_the_detect_queue() -> None:
    attributes = {"ERROR_CODE": "AccessDenied", "ERROR_MESSAGE": "cannot read", "RETRY_ATTEMPTS": "5"}
    letter = parse_dead_letter(
        "DetectFunctionDeadLetterQueue", sqs_message(EVENT, attributes), DETECT_QUEUE_URL
    )

    assert isinstance(letter, DeadLetter)
    assert (letter.kind, letter.source_queue, letter.event) == ("queue", DETECT_QUEUE_URL, EVENT)
    assert letter.reason == "AccessDenied: cannot read (after 5 attempts)"
    assert letter.event_id == EVENT["id"]


def test_a_message_sqs_moved_after_max_receive_count_says_where_to_look() -> None:
    letter = parse_dead_letter("DetectFunctionDeadLetterQueue", sqs_message(EVENT), DETECT_QUEUE_URL)
    assert isinstance(letter, DeadLetter)
    assert "maxReceiveCount" in letter.reason and "log group" in letter.reason


def test_an_older_destination_record_in_a_queue_consumers_dlq_goes_back_as_its_event() -> None:
    """Recorded while Detect was still invoked by EventBridge: its event now belongs in the queue."""
    letter = parse_dead_letter(
        "DetectFunctionDeadLetterQueue", sqs_message(lambda_record()), DETECT_QUEUE_URL
    )
    assert isinstance(letter, DeadLetter)
    assert (letter.kind, letter.event) == ("queue", EVENT)


def test_redrive_sends_a_queue_consumers_dead_letters_back_into_its_queue(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.stack(sources=[DETECT_QUEUE_URL])
    given_up = sqs_message(
        EVENT, {"ERROR_CODE": "AccessDenied", "ERROR_MESSAGE": "x"}, message_id="m-given-up"
    )
    undelivered = sqs_message(
        EVENT, eventbridge_attributes(TARGET_ARN="arn:aws:sqs:x"), message_id="m-undelivered"
    )
    aws.queue_holds(given_up, undelivered, visibility=dlq.REDRIVE_VISIBILITY_SECONDS)
    aws.sent_back(EVENT)
    aws.deleted("receipt-m-given-up")
    aws.sent_back(EVENT)
    aws.deleted("receipt-m-undelivered")

    assert main(["dlq", "redrive", "--stack", "labelloop", "--function", "DetectFunction"]) == 0
    aws.done()
    out = capsys.readouterr().out
    assert f"sent event {EVENT['id']} (message m-given-up) to labelloop-DetectQueue-Xyz" in out


def test_a_dead_letter_sqs_does_not_take_back_stays(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    aws.stack(sources=[DETECT_QUEUE_URL])
    aws.queue_holds(sqs_message(EVENT), visibility=dlq.REDRIVE_VISIBILITY_SECONDS)
    aws.sqs.add_client_error("send_message", "AWS.SimpleQueueService.NonExistentQueue", "gone", 400)
    aws.released("receipt-m-1")

    assert main(["dlq", "redrive", "--stack", "labelloop"]) == 1
    aws.done()
    assert "kept m-1: SQS did not accept the message" in capsys.readouterr().out
