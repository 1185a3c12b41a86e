"""Deliver EventBridge rule targets to the unchanged handlers, in-process, with Lambda's async semantics.

Every rule of template.yaml exists in moto with the template's pattern, on the template's bus, and
targets a local-only SQS "delivery" queue. Poller threads move delivered events into Lambda's
asynchronous queue (here: an in-memory priority queue, as EventBridge hands events to Lambda's own
queue); one worker invokes the handlers one at a time:

* the process environment is set to exactly that function's variables (Globals merged, intrinsics
  resolved) while its handler runs, so every function reads its own config even though all share
  one process (each function has its own settings type, parsed at its first invocation, like a
  container's); one worker keeps that swap race-free;
* a function error is retried ``EventInvokeConfig.MaximumRetryAttempts`` times (Lambda default 2)
  after Lambda's 1 and 2 minute waits scaled by ``time_scale``, then an invocation record goes to the
  function's on-failure queue (the template's ``<Function>DeadLetterQueue``) in Lambda's destination
  record format; an event older than ``MaximumEventAgeInSeconds`` goes there too (``EventAgeExceeded``);
* an event that cannot be handed to the function at all (its code cannot be found) is a target
  delivery failure: the event goes to the rule's dead-letter queue with EventBridge's attributes.
Nothing is dropped silently: a function without a failure destination logs the lost event loudly.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelloop_local.stack.handlers import (
    Handler,
    HandlerLoadError,
    environment,
    lambda_context,
    load_handler,
)
from labelloop_local.stack.logs import OUTPUT
from labelloop_local.stack.provision import Stack
from labelloop_local.stack.template import FunctionSpec, RuleSpec

LOG = logging.getLogger(__name__)

# Lambda waits about 1 minute before the first retry and 2 minutes before the second.
LAMBDA_RETRY_DELAYS_SECONDS = (60.0, 120.0)
DEFAULT_TIME_SCALE = 1 / 1200  # 60 s → 50 ms locally
_ENVELOPE_KEYS = (
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
)


@dataclass(frozen=True)
class Route:
    """One rule of the template as it exists in moto, and the queue its target delivers to."""

    rule: RuleSpec
    rule_name: str
    rule_arn: str
    bus_name: str
    queue_url: str


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    function: str = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    route: Route | None = field(compare=False)
    received: float = field(compare=False)
    attempts: int = field(default=0, compare=False)


@dataclass
class InvocationError:
    function: str
    event_id: str
    attempts: int
    error_type: str
    message: str
    destination: str  # "dlq:<logical id>" or "dropped"


@dataclass
class DispatchStats:
    invocations: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)
    function_errors: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    failures: list[InvocationError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "invocations": dict(self.invocations),
            "successes": dict(self.successes),
            "function_errors": dict(self.function_errors),
            "dead_lettered": dict(self.dead_lettered),
        }


def normalize_event(raw: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """The event exactly as EventBridge hands it to a Lambda target.

    moto's default target transformation drops ``account`` and its archive keeps ``ingestion-time``;
    neither is what AWS delivers.
    """
    event = {key: raw[key] for key in _ENVELOPE_KEYS if key in raw}
    event.setdefault("version", "0")
    event.setdefault("account", account)
    event.setdefault("region", region)
    event.setdefault("resources", [])
    if isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(float(event["time"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if "replay-name" in raw:
        event["replay-name"] = raw["replay-name"]
    return event


def iso_millis(moment: float) -> str:
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class Dispatcher:
    def __init__(
        self,
        stack: Stack,
        sqs: Any,
        *,
        time_scale: float = DEFAULT_TIME_SCALE,
        poll_wait_seconds: int = 1,
        clock: Callable[[], float] = time.time,
        platform_env: Mapping[str, str] | None = None,
    ) -> None:
        """`platform_env`: what Lambda's runtime would set for every function here (the endpoints,
        credentials and region of the local stack), applied only while a handler runs."""
        self.stack = stack
        self._platform_env = dict(platform_env or {})
        self._sqs = sqs
        self._time_scale = time_scale
        self._poll_wait = poll_wait_seconds
        self._clock = clock
        self._functions: dict[str, FunctionSpec] = stack.functions()
        self._template_variables = {name for spec in self._functions.values() for name in spec.environment}
        # A developer's shell settings must not send a handler to a real account.
        self._removed_variables = self._template_variables | {"AWS_PROFILE", "AWS_SESSION_TOKEN"}
        self._env_cache: dict[str, dict[str, str]] = {}
        self._handlers: dict[str, Handler] = {}
        self._routes: list[Route] = []
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._invoke_lock = threading.RLock()
        self._busy = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = DispatchStats()
        self.listeners: list[Callable[[str, dict[str, Any], Exception | None], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def add_route(self, route: Route) -> None:
        self._routes.append(route)
        if self._threads:
            self._start_poller(route)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def start(self) -> None:
        if self._threads:
            return
        worker = threading.Thread(target=self._work_loop, name="labelloop-dispatch-worker", daemon=True)
        self._threads.append(worker)
        worker.start()
        for route in self._routes:
            self._start_poller(route)

    def _start_poller(self, route: Route) -> None:
        thread = threading.Thread(
            target=self._poll_loop, args=(route,), name=f"labelloop-poll-{route.rule_name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self._poll_wait + 5)
        self._threads.clear()

    # -- intake ------------------------------------------------------------------------------------
    def _poll_loop(self, route: Route) -> None:
        while not self._stop.is_set():
            try:
                response = self._sqs.receive_message(
                    QueueUrl=route.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self._poll_wait
                )
            except Exception:
                if self._stop.is_set():
                    return
                LOG.exception("polling the delivery queue of rule %s failed; retrying", route.rule_name)
                self._stop.wait(0.5)
                continue
            for message in response.get("Messages", []):
                self._accept(route, message)

    def _accept(self, route: Route, message: dict[str, Any]) -> None:
        try:
            raw = json.loads(message["Body"])
            if not isinstance(raw, dict):
                raise ValueError("the delivered body is not a JSON object")
        except ValueError as exc:
            LOG.error(
                "rule %s delivered an unreadable event (%s): %.200s", route.rule_name, exc, message["Body"]
            )
            self._dead_letter_rule(route, {"unparsed": message["Body"]}, "InvalidEvent", str(exc))
        else:
            event = normalize_event(raw, self.stack.account, self.stack.region)
            if route.rule.input is not None:  # a constant Input replaces the event, as in EventBridge
                event = json.loads(route.rule.input)
            self.submit(route.rule.function, event, route)
        # Lambda's async queue now owns the event (EventBridge's delivery succeeded).
        self._sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def submit(self, function_id: str, event: dict[str, Any], route: Route | None = None) -> None:
        """Queue an asynchronous invocation of ``function_id`` (Lambda ``InvocationType=Event``)."""
        now = self._clock()
        with self._cond:
            heapq.heappush(self._jobs, _Job(now, next(self._seq), function_id, event, route, now))
            self._cond.notify_all()

    # -- execution ---------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                job = self._next_due_job()
                if job is None:
                    continue
                self._busy += 1
            try:
                self._run(job)
            except Exception:  # the dispatcher itself must survive anything a job does
                LOG.exception("dispatching to %s failed", job.function)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _next_due_job(self) -> _Job | None:
        """Called with the condition held: the earliest due job, waiting for one if needed."""
        if not self._jobs:
            self._cond.wait(timeout=0.5)
            return None
        delay = self._jobs[0].due - self._clock()
        if delay > 0:
            self._cond.wait(timeout=min(delay, 0.5))
            return None
        return heapq.heappop(self._jobs)

    def _run(self, job: _Job) -> None:
        spec = self._functions.get(job.function)
        max_age = spec.maximum_event_age_seconds if spec else 21600
        if self._clock() - job.received > max_age:
            self._dead_letter_function(job, "EventAgeExceeded", None)
            return
        try:
            handler = self._handler(job.function)
        except (HandlerLoadError, KeyError) as exc:
            if job.route is not None:
                self._dead_letter_rule(job.route, job.event, "ResourceNotFoundException", str(exc))
                return
            # A direct asynchronous Invoke reached Lambda: code that fails to load is a function
            # error there, retried and then sent to the on-failure destination like any other.
            handler = _raising(exc)
        job.attempts += 1
        self.stats.invocations[job.function] += 1
        error: Exception | None = None
        context = lambda_context(self.stack.function_name(job.function))
        try:
            with self.function_environment(job.function):
                handler(job.event, context)
        except Exception as exc:
            error = exc
        self._notify(job.function, job.event, error)
        if error is None:
            self.stats.successes[job.function] += 1
            return
        self.stats.function_errors[job.function] += 1
        retries = spec.maximum_retry_attempts if spec else 2
        if job.attempts <= retries:
            delay = LAMBDA_RETRY_DELAYS_SECONDS[min(job.attempts - 1, 1)] * self._time_scale
            LOG.warning(
                "%s failed on event %s (attempt %d of %d, retrying in %.2fs): %s: %s",
                job.function,
                job.event.get("id"),
                job.attempts,
                retries + 1,
                delay,
                type(error).__name__,
                error,
            )
            job.due = self._clock() + delay
            with self._cond:
                heapq.heappush(self._jobs, job)
                self._cond.notify_all()
            return
        self._dead_letter_function(job, "RetriesExhausted", error, context.aws_request_id)

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        """Synchronous invocation (``RequestResponse``), e.g. for a CloudFormation custom resource."""
        handler = self._handler(function_id)
        context = lambda_context(self.stack.function_name(function_id))
        with self.function_environment(function_id):
            return handler(event, context)

    def replace_handler(self, function_id: str, handler: Handler) -> None:
        """Run ``handler`` instead of the function's code (tests, experiments); env and retries unchanged."""
        if function_id not in self._functions:
            raise KeyError(f"no function {function_id} in {self.stack.template.path}")
        self._handlers[function_id] = handler

    def _handler(self, function_id: str) -> Handler:
        if function_id not in self._handlers:
            spec = self._functions[function_id]
            with self.function_environment(function_id):  # module-level code sees its own env
                self._handlers[function_id] = load_handler(spec.code_dir, spec.handler)
        return self._handlers[function_id]

    def env_for(self, function_id: str) -> dict[str, str]:
        if function_id not in self._env_cache:
            self._env_cache[function_id] = self.stack.env_for(function_id)
        return self._env_cache[function_id]

    @contextmanager
    def function_environment(self, function_id: str) -> Iterator[None]:
        """os.environ holds exactly this function's template variables while the block runs; what the
        platform sets (endpoints, credentials, region) fills the variables the template leaves empty
        (the SDK endpoint variables), as `sam local invoke --env-vars` does with the same file."""
        env = dict(self.env_for(function_id))
        env.update({name: value for name, value in self._platform_env.items() if not env.get(name)})
        env["AWS_LAMBDA_FUNCTION_NAME"] = self.stack.function_name(function_id)
        # Function output (Powertools logs, EMF metrics) is CloudWatch's in AWS: here it goes to the
        # function's log file (stack.logs), never into what a command prints for a person.
        with (
            self._invoke_lock,
            OUTPUT.function(function_id),
            environment(env, remove=self._removed_variables),
        ):
            yield

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No handler runs while the block does (e.g. a consistent snapshot of the stack's state)."""
        with self._invoke_lock:
            yield

    def _notify(self, function_id: str, event: dict[str, Any], error: Exception | None) -> None:
        for listener in self.listeners:
            try:
                listener(function_id, event, error)
            except Exception:
                LOG.exception("dispatch listener failed")

    # -- failure destinations ----------------------------------------------------------------------
    def _dead_letter_function(
        self, job: _Job, condition: str, error: Exception | None, request_id: str | None = None
    ) -> None:
        spec = self._functions.get(job.function)
        request_id = request_id or str(uuid.uuid4())
        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": iso_millis(self._clock()),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{self.stack.function_arn(job.function)}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": job.attempts,
            },
            "requestPayload": job.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        }
        if error is not None:
            record["responseContext"]["functionError"] = "Unhandled"
            record["responsePayload"] = {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "requestId": request_id,
                "stackTrace": traceback.format_exception(error)[-6:],
            }
        failure = InvocationError(
            function=job.function,
            event_id=str(job.event.get("id", "")),
            attempts=job.attempts,
            error_type=type(error).__name__ if error else condition,
            message=str(error) if error else condition,
            destination="dropped",
        )
        dlq = spec.dead_letter_queue if spec else None
        if dlq is None:
            LOG.error(
                "%s: event %s LOST after %d attempts (%s) — the function has no on-failure destination",
                job.function,
                failure.event_id,
                job.attempts,
                condition,
            )
        else:
            self._sqs.send_message(QueueUrl=self.stack.queue_url(dlq), MessageBody=json.dumps(record))
            failure.destination = f"dlq:{dlq}"
            self.stats.dead_lettered[job.function] += 1
            LOG.error(
                "%s: event %s sent to %s after %d attempts (%s): %s",
                job.function,
                failure.event_id,
                dlq,
                job.attempts,
                condition,
                failure.message,
            )
        self.stats.failures.append(failure)

    def _dead_letter_rule(self, route: Route, event: dict[str, Any], code: str, message: str) -> None:
        """EventBridge's own DLQ: the event itself, with the error in message attributes."""
        attributes = {
            "RULE_ARN": route.rule_arn,
            "TARGET_ARN": self.stack.function_arn(route.rule.function),
            "ERROR_CODE": code,
            "ERROR_MESSAGE": message[:1000],
        }
        self.stats.failures.append(
            InvocationError(route.rule.function, str(event.get("id", "")), 0, code, message, "dropped")
        )
        if route.rule.dlq is None:
            LOG.error(
                "rule %s: event %s LOST (%s: %s), no DLQ", route.rule_name, event.get("id"), code, message
            )
            return
        self._sqs.send_message(
            QueueUrl=self.stack.queue_url(route.rule.dlq),
            MessageBody=json.dumps(event),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
        self.stats.failures[-1].destination = f"dlq:{route.rule.dlq}"
        self.stats.dead_lettered[route.rule.function] += 1
        LOG.error(
            "rule %s: event %s sent to %s: %s: %s",
            route.rule_name,
            event.get("id"),
            route.rule.dlq,
            code,
            message,
        )

    # -- waiting -----------------------------------------------------------------------------------
    def pending(self) -> int:
        """Events not yet fully handled: queued in SQS, waiting for (a retry of) a handler, or running."""
        with self._cond:
            in_memory = len(self._jobs) + self._busy
        in_queues = 0
        for route in self._routes:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=route.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            in_queues += int(attributes["ApproximateNumberOfMessages"])
            in_queues += int(attributes["ApproximateNumberOfMessagesNotVisible"])
        return in_memory + in_queues

    def drain(self, timeout: float = 120.0, settle_seconds: float = 0.3) -> bool:
        """Wait until nothing is pending for ``settle_seconds``; False on timeout."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.pending() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_seconds:
                    return True
            else:
                quiet_since = None
            time.sleep(0.05)
        return False


def _raising(error: Exception) -> Handler:
    def handler(event: dict[str, Any], context: Any) -> Any:
        raise error

    return handler
