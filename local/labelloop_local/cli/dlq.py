"""`labelloop dlq list|redrive --stack NAME`: the dead letters of a stack, and sending them back.

Every function of the stack has a dead-letter queue (`<Function>DeadLetterQueue`, docs/ARCHITECTURE.md).
Two kinds of message land in the queue of a function invoked by EventBridge:

* EventBridge could not deliver an event to its target: the body is the event, the message
  attributes say why (`ERROR_CODE`, `ERROR_MESSAGE`) and where it was going (`RULE_ARN`, `TARGET_ARN`);
* the function failed on every attempt of an asynchronous invocation: the body is Lambda's on-failure
  destination record (`requestContext.functionArn`/`condition`, `requestPayload` = the event,
  `responsePayload.errorType`/`errorMessage`).

A dead-letter queue that is the redrive target of another queue of the stack (Detect's: the
DetectQueue's, found with `ListDeadLetterSourceQueues`) holds the events of that queue: uploads
EventBridge could not put in it (EventBridge's attributes), messages Detect gave up on (the reason in
`ERROR_CODE`, `ERROR_MESSAGE`, `RETRY_ATTEMPTS`), or messages SQS moved after `maxReceiveCount`
receives (no reason recorded: the function crashed or timed out; see its log group).

`list` shows each one with its function, reason, time and event id. `redrive` sends each event back
where it failed: to the function, as an asynchronous invocation (Lambda `Invoke`,
`InvocationType=Event`, so the function's retries and its dead-letter queue apply again), or into the
source queue (SQS `SendMessage` of the original event: the consumer's receives start again from
zero; chosen over `StartMessageMoveTask`, which moves a whole queue at once, so that `--message-id`
and `--function` select single dead letters). A message is deleted only once Lambda or SQS accepted
it: nothing is lost. A message it cannot interpret stays, and is reported.

The stack is read through CloudFormation (`ListStackResources`: queue URLs and function names) and
SQS (`ListDeadLetterSourceQueues`); besides reading the queues, the only writes are `Invoke`,
`SendMessage` and `DeleteMessage` (and `ChangeMessageVisibility`, which makes a message read but not
redriven visible again at once). The same code runs against the
local stack, which answers these APIs: `labelloop local dlq ...`, or this command after the `export`
lines `labelloop local up` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelloop_local.cli import add_command, aws_failure

DLQ_SUFFIX = "DeadLetterQueue"
LIST_VISIBILITY_SECONDS = 30  # a message being listed is hidden this long at most (then released)
REDRIVE_VISIBILITY_SECONDS = 300  # ...and while being redriven, so no second reader takes it
_EVENTBRIDGE_ATTRIBUTES = ("ERROR_CODE", "ERROR_MESSAGE", "RULE_ARN", "TARGET_ARN")


class DlqError(Exception):
    """The command cannot go on; the message names the cause (printed on one line)."""


@dataclass(frozen=True)
class DeadLetter:
    """One interpretable message of a dead-letter queue."""

    queue: str  # logical id of the queue
    message_id: str
    kind: str  # "eventbridge" (undeliverable event) | "lambda" (destination record) | "queue"
    function_arn: str  # the function it failed in ("" for a queue's dead letter)
    reason: str
    failed_at: str  # ISO 8601, UTC
    event_id: str | None
    event: Any = field(repr=False)
    receipt_handle: str = field(default="", repr=False)
    source_queue: str = ""  # "queue" kind: the URL of the queue a redrive sends the event back to

    @property
    def function_name(self) -> str:
        """The function name of `function_arn` (without a version or alias qualifier)."""
        if not self.function_arn:
            return ""
        return self.function_arn.split(":function:", 1)[1].split(":", 1)[0]


@dataclass(frozen=True)
class Unreadable:
    """A message that is not one of the two formats: it stays in its queue."""

    queue: str
    message_id: str
    problem: str
    receipt_handle: str = field(default="", repr=False)


def parse_dead_letter(
    queue: str, message: Mapping[str, Any], source_queue: str | None = None
) -> DeadLetter | Unreadable:
    """Interpret one SQS message (as ReceiveMessage returns it) of the dead-letter queue `queue`;
    `source_queue`: the URL of the queue `queue` is the redrive target of, if any."""
    message_id = str(message.get("MessageId", ""))
    receipt = str(message.get("ReceiptHandle", ""))
    attributes = {
        name: str(value.get("StringValue", ""))
        for name, value in (message.get("MessageAttributes") or {}).items()
        if isinstance(value, Mapping)
    }

    def unreadable(problem: str) -> Unreadable:
        return Unreadable(queue, message_id, problem, receipt)

    try:
        body = json.loads(message.get("Body") or "")
    except ValueError:
        return unreadable("the body is not JSON")
    if source_queue:
        return _queue_dead_letter(queue, message, source_queue, body, attributes)
    if any(name in attributes for name in _EVENTBRIDGE_ATTRIBUTES):
        target = attributes.get("TARGET_ARN", "")
        if not _is_function_arn(target):
            return unreadable(f"an EventBridge dead letter without a Lambda TARGET_ARN ({target or 'none'})")
        code, text = (
            attributes.get("ERROR_CODE") or "undelivered",
            attributes.get("ERROR_MESSAGE") or "no message",
        )
        reason = f"{code}: {text}"
        retries = ", ".join(
            f"{key.lower().replace('_', ' ')} {attributes[key]}"
            for key in ("RETRY_ATTEMPTS", "EXHAUSTED_RETRY_CONDITION")
            if attributes.get(key)
        )
        sent = (message.get("Attributes") or {}).get("SentTimestamp")
        return DeadLetter(
            queue=queue,
            message_id=message_id,
            kind="eventbridge",
            function_arn=target,
            reason=f"{reason} ({retries})" if retries else reason,
            failed_at=_from_epoch_millis(sent),
            event_id=_event_id(body),
            event=body,
            receipt_handle=receipt,
        )
    if not isinstance(body, dict) or "requestContext" not in body:
        return unreadable("neither an EventBridge dead letter nor a Lambda destination record")
    context = body["requestContext"]
    if not isinstance(context, dict) or not _is_function_arn(str(context.get("functionArn", ""))):
        return unreadable("a Lambda destination record without requestContext.functionArn")
    if "requestPayload" not in body:
        return unreadable("a Lambda destination record without requestPayload (the event)")
    reason = (
        f"{context.get('condition') or 'failed'} after {context.get('approximateInvokeCount', '?')} attempts"
    )
    response = body.get("responsePayload")
    if isinstance(response, dict) and (response.get("errorType") or response.get("errorMessage")):
        reason += f": {response.get('errorType') or 'Error'}: {response.get('errorMessage') or ''}".rstrip()
    return DeadLetter(
        queue=queue,
        message_id=message_id,
        kind="lambda",
        function_arn=str(context["functionArn"]),
        reason=reason,
        failed_at=str(
            body.get("timestamp")
            or _from_epoch_millis((message.get("Attributes") or {}).get("SentTimestamp"))
        ),
        event_id=_event_id(body["requestPayload"]),
        event=body["requestPayload"],
        receipt_handle=receipt,
    )


def _queue_dead_letter(
    queue: str, message: Mapping[str, Any], source_queue: str, body: Any, attributes: Mapping[str, str]
) -> DeadLetter:
    """A dead letter of a queue's consumer: the event goes back into `source_queue`."""
    event = body
    if isinstance(body, dict) and "requestPayload" in body and "requestContext" in body:
        event = body["requestPayload"]  # recorded before the function consumed a queue
    if attributes.get("ERROR_CODE") or attributes.get("ERROR_MESSAGE"):
        reason = (
            f"{attributes.get('ERROR_CODE') or 'failed'}: {attributes.get('ERROR_MESSAGE') or 'no message'}"
        )
        if attributes.get("RETRY_ATTEMPTS"):
            reason += f" (after {attributes['RETRY_ATTEMPTS']} attempts)"
    else:
        reason = (
            "received maxReceiveCount times without a recorded reason (the function crashed or timed out "
            "on each receive): see its log group"
        )
    return DeadLetter(
        queue=queue,
        message_id=str(message.get("MessageId", "")),
        kind="queue",
        function_arn="",
        reason=reason,
        failed_at=_from_epoch_millis((message.get("Attributes") or {}).get("SentTimestamp")),
        event_id=_event_id(event),
        event=event,
        receipt_handle=str(message.get("ReceiptHandle", "")),
        source_queue=source_queue,
    )


def _is_function_arn(arn: str) -> bool:
    return arn.startswith("arn:") and ":lambda:" in arn and ":function:" in arn


def _event_id(event: Any) -> str | None:
    return str(event["id"]) if isinstance(event, dict) and event.get("id") is not None else None


def _from_epoch_millis(value: Any) -> str:
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError):
        return "unknown"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- the stack --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    sqs: Any
    lambda_: Any

    @classmethod
    def default(cls) -> Clients:
        """Clients of the default boto3 session (profile, region and AWS_ENDPOINT_URL_* settings)."""
        import boto3

        return cls(boto3.client("cloudformation"), boto3.client("sqs"), boto3.client("lambda"))


@dataclass(frozen=True)
class StackQueues:
    """A stack's dead-letter queues (logical id → URL) and functions (physical name → logical id)."""

    stack: str
    queues: dict[str, str]
    functions: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)  # dead-letter queue -> URL of its source queue

    def function_of_queue(self, queue: str) -> str:
        owner = queue.removesuffix(DLQ_SUFFIX)
        return owner if owner in self.functions.values() else "?"


def stack_queues(cloudformation: Any, stack: str, sqs: Any = None) -> StackQueues:
    """The stack's dead-letter queues and functions; with `sqs`, also the queue each dead-letter
    queue is the redrive target of (SQS ListDeadLetterSourceQueues)."""
    queues, functions = {}, {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
        for resource in page["StackResourceSummaries"]:
            logical_id, physical_id = resource["LogicalResourceId"], resource.get("PhysicalResourceId", "")
            if resource["ResourceType"] == "AWS::SQS::Queue" and logical_id.endswith(DLQ_SUFFIX):
                queues[logical_id] = physical_id  # an SQS queue's physical id is its URL
            elif resource["ResourceType"] == "AWS::Lambda::Function":
                functions[physical_id] = logical_id
    if not queues:
        raise DlqError(f"stack {stack} has no dead-letter queues (resources named *{DLQ_SUFFIX})")
    sources = {}
    for logical_id, url in queues.items() if sqs is not None else ():
        found = sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls") or []
        if found:
            sources[logical_id] = str(found[0])
    return StackQueues(stack, queues, functions, sources)


def _receive_all(sqs: Any, url: str, visibility: int) -> list[dict[str, Any]]:
    """Every message visible now, each once; they stay hidden for `visibility` seconds."""
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    if int(counts["Attributes"].get("ApproximateNumberOfMessages", 0)) == 0:
        return []
    seen: dict[str, dict[str, Any]] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=1,
            AttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            return list(seen.values())
        seen.update((m["MessageId"], m) for m in fresh)


def _release(sqs: Any, url: str, receipt_handles: Sequence[str]) -> None:
    """Make messages read but left in the queue visible again now."""
    for start in range(0, len(receipt_handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(receipt_handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


@dataclass
class Selection:
    """Which dead letters a command is about (all by default)."""

    function: str | None = None  # logical id or function name
    queue: str | None = None  # logical id, URL or queue name
    message_id: str | None = None

    def queues(self, stack: StackQueues) -> dict[str, str]:
        chosen = {
            logical_id: url
            for logical_id, url in stack.queues.items()
            if self.queue in (None, logical_id, url, url.rsplit("/", 1)[-1])
        }
        if not chosen:
            known = ", ".join(stack.queues)
            raise DlqError(f"stack {stack.stack} has no dead-letter queue {self.queue} (it has {known})")
        return chosen

    def wants(self, stack: StackQueues, letter: DeadLetter | Unreadable) -> bool:
        if self.message_id is not None and letter.message_id != self.message_id:
            return False
        if self.function is None:
            return True
        if isinstance(letter, Unreadable) or letter.kind == "queue":
            return stack.function_of_queue(letter.queue) == self.function
        return self.function in (letter.function_name, stack.functions.get(letter.function_name))


def read_dead_letters(
    clients: Clients, stack: StackQueues, selection: Selection, visibility: int = LIST_VISIBILITY_SECONDS
) -> Iterator[tuple[str, list[DeadLetter | Unreadable], list[str]]]:
    """Per selected queue: (URL, the selected letters, receipt handles of the others, to release)."""
    for logical_id, url in selection.queues(stack).items():
        source = stack.sources.get(logical_id)
        received = _receive_all(clients.sqs, url, visibility)
        letters = [parse_dead_letter(logical_id, m, source) for m in received]
        chosen = [letter for letter in letters if selection.wants(stack, letter)]
        others = [letter.receipt_handle for letter in letters if letter not in chosen]
        yield url, chosen, others


def list_dead_letters(
    clients: Clients, stack: StackQueues, selection: Selection
) -> list[DeadLetter | Unreadable]:
    found: list[DeadLetter | Unreadable] = []
    for url, letters, others in read_dead_letters(clients, stack, selection):
        _release(clients.sqs, url, [*others, *(letter.receipt_handle for letter in letters)])
        found.extend(letters)
    return found


@dataclass
class RedriveReport:
    redriven: list[DeadLetter] = field(default_factory=list)
    planned: list[DeadLetter] = field(default_factory=list)  # --dry-run
    kept: list[tuple[DeadLetter | Unreadable, str]] = field(default_factory=list)  # (letter, why)


def redrive(
    clients: Clients,
    stack: StackQueues,
    selection: Selection,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> RedriveReport:
    """Send each selected dead letter back to its function; delete it once Lambda accepted it.

    The messages of a queue are all read before the first is redriven, so an event that fails again
    (and returns to the queue) waits for the next run instead of being redriven in a loop.
    """
    report = RedriveReport()
    for url, letters, others in read_dead_letters(clients, stack, selection, REDRIVE_VISIBILITY_SECONDS):
        keep = list(others)
        for letter in letters:
            outcome = _redrive_one(clients, stack, letter, dry_run)
            if isinstance(outcome, str):  # why it stays
                report.kept.append((letter, outcome))
                progress(f"kept {letter.message_id}: {outcome}")
            elif dry_run:
                report.planned.append(outcome)
                progress(f"would send {_describe(outcome)}")
            else:
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=letter.receipt_handle)
                report.redriven.append(outcome)
                progress(f"sent {_describe(outcome)}")
                continue
            keep.append(letter.receipt_handle)
        _release(clients.sqs, url, keep)
    return report


def _redrive_one(
    clients: Clients, stack: StackQueues, letter: DeadLetter | Unreadable, dry_run: bool
) -> DeadLetter | str:
    """The letter once Lambda accepted its event again (or would, with dry_run), else why it stays."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(letter, Unreadable):
        return letter.problem
    if letter.kind == "queue":
        return letter if dry_run else _send_back(clients, letter)
    if letter.function_name not in stack.functions:
        return f"it failed in {letter.function_name}, which is not a function of stack {stack.stack}"
    if dry_run:
        return letter
    try:
        answer = clients.lambda_.invoke(
            FunctionName=letter.function_name, InvocationType="Event", Payload=json.dumps(letter.event)
        )
    except (BotoCoreError, ClientError) as error:
        return f"Lambda did not accept the invocation: {_one_line(error)}"
    if answer.get("StatusCode") != 202:
        return f"Lambda did not accept the invocation (status {answer.get('StatusCode')})"
    return letter


def _send_back(clients: Clients, letter: DeadLetter) -> DeadLetter | str:
    """The event into its source queue again, as the original message body (a new message: its
    receive count starts from zero)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        clients.sqs.send_message(QueueUrl=letter.source_queue, MessageBody=json.dumps(letter.event))
    except (BotoCoreError, ClientError) as error:
        return f"SQS did not accept the message: {_one_line(error)}"
    return letter


def _describe(letter: DeadLetter) -> str:
    where = letter.source_queue.rsplit("/", 1)[-1] if letter.kind == "queue" else letter.function_name
    return f"event {letter.event_id or '(no id)'} (message {letter.message_id}) to {where}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# -- command line -----------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "dlq",
        "list a deployed stack's dead letters, or send them back to their function",
        __doc__,
    )
    add_commands(parser, stack_argument=True)


def add_commands(parser: argparse.ArgumentParser, stack_argument: bool, wrap: Any = None) -> None:
    """`list` and `redrive` under `parser`; `wrap(function)` adapts them (e.g. to the local stack)."""
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = add_command(actions, "list", "show each dead letter: function, reason, time, event id")
    redriving = add_command(
        actions,
        "redrive",
        "send dead letters back where they failed (async Invoke, or the source queue), then delete them",
        "Each dead letter's event goes back to the function it failed in as an asynchronous invocation "
        "(its retries and dead-letter queue apply again), or, for a queue's dead-letter queue (Detect's), "
        "into that queue as a new message; the message is deleted only once Lambda or SQS accepted it.",
    )
    for sub in (listing, redriving):
        if stack_argument:
            sub.add_argument("--stack", required=True, help="name of the deployed labelloop stack")
        sub.add_argument("--function", help="only dead letters of this function (logical id or name)")
        sub.add_argument("--queue", help="only this dead-letter queue (logical id, name or URL)")
        sub.add_argument("--message-id", help="only the message with this SQS message id")
    listing.add_argument("--json", action="store_true", help="one JSON object per dead letter on stdout")
    redriving.add_argument("--dry-run", action="store_true", help="show what would be sent, change nothing")
    listing.set_defaults(func=wrap(_list) if wrap else _list)
    redriving.set_defaults(func=wrap(_redrive) if wrap else _redrive)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(function=args.function, queue=args.queue, message_id=args.message_id)


def _guarded(
    command: Callable[[argparse.Namespace, Clients, StackQueues], int], args: argparse.Namespace
) -> int:
    """Run a command; every failure becomes one line naming its cause, never a traceback."""
    from botocore.exceptions import ClientError

    try:
        clients = Clients.default()
        return command(args, clients, stack_queues(clients.cloudformation, args.stack, clients.sqs))
    except DlqError as error:
        message = str(error)
    except Exception as error:
        failure = aws_failure(error)
        if failure is None:
            raise
        message = f"stack {args.stack}: {failure}" if isinstance(error, ClientError) else failure
    print(f"dlq {args.dlq_command} failed: {message}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    return _guarded(_print_list, args)


def _redrive(args: argparse.Namespace) -> int:
    return _guarded(_print_redrive, args)


def _print_list(args: argparse.Namespace, clients: Clients, stack: StackQueues) -> int:
    letters = list_dead_letters(clients, stack, _selection(args))
    if args.json:
        for letter in letters:
            print(
                json.dumps(
                    {"type": type(letter).__name__, **asdict(letter), "receipt_handle": None}, default=str
                )
            )
        return 0
    rows = [("QUEUE", "FUNCTION", "FAILED AT", "EVENT ID", "MESSAGE ID", "REASON")]
    for letter in letters:
        if isinstance(letter, DeadLetter):
            function = stack.functions.get(letter.function_name, letter.function_name)
            function = function or stack.function_of_queue(letter.queue)
            rows.append(
                (
                    letter.queue,
                    function,
                    letter.failed_at,
                    letter.event_id or "-",
                    letter.message_id,
                    letter.reason,
                )
            )
        else:
            rows.append((letter.queue, "?", "?", "-", letter.message_id, f"UNREADABLE: {letter.problem}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])
    queues = len(_selection(args).queues(stack))
    print(f"{len(letters)} dead letter(s) in {queues} queue(s) of stack {stack.stack}", file=sys.stderr)
    return 0


def _print_redrive(args: argparse.Namespace, clients: Clients, stack: StackQueues) -> int:
    report = redrive(clients, stack, _selection(args), dry_run=args.dry_run, progress=print)
    verb = "would send" if args.dry_run else "sent"
    count = len(report.planned if args.dry_run else report.redriven)
    print(f"{verb} {count} event(s) back; {len(report.kept)} dead letter(s) kept", file=sys.stderr)
    return 1 if report.kept else 0
