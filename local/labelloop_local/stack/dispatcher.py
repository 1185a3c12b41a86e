"""Deliver EventBridge rule targets to the unchanged handlers, in-process, with Lambda's async semantics,
and run the SQS event source mappings of the template (`labelloop_local.stack.mappings`).

Every rule of template.yaml exists in moto with the template's pattern, on the template's bus, and
targets a local-only SQS "delivery" queue (a rule whose target is a queue of the template delivers
there directly). Poller threads move delivered events into Lambda's asynchronous queue (here: an
in-memory priority queue, as EventBridge hands events to Lambda's own queue); one worker invokes
those handlers one at a time, and each event source mapping runs up to its MaximumConcurrency
batches at once on its own poller threads:

* the process environment is set to exactly that function's variables (Globals merged, intrinsics
  resolved) while its handler runs, so every function reads its own config even though all share
  one process (each function has its own settings type, parsed at its first invocation, like a
  container's). Invocations of one function may overlap (its environment is the same); a function
  waits until every invocation of another has left (`_FunctionGate`), so the swap stays race-free, and
  functions take turns in the order they started waiting. Lambda would run a late schedule tick beside
  the one still waiting; here a tick of a `background` schedule that finds an earlier one not yet
  started is folded into it, so late ticks never run back to back while every other function waits;
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
from contextlib import ExitStack, contextmanager, nullcontext
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
from labelloop_local.stack.mappings import (
    RunningMapping,
    failed_ids,
    lambda_record,
    receive_batch,
)
from labelloop_local.stack.moto_fixes import normalize_event
from labelloop_local.stack.provision import Stack
from labelloop_local.stack.template import FunctionSpec, RuleSpec

LOG = logging.getLogger(__name__)

# Lambda waits about 1 minute before the first retry and 2 minutes before the second.
LAMBDA_RETRY_DELAYS_SECONDS = (60.0, 120.0)
DEFAULT_TIME_SCALE = 1 / 1200  # 60 s → 50 ms locally


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


class _FunctionGate:
    """os.environ (and sys.stdout) belong to one function at a time; several invocations of that
    function may hold it together. A function that waits keeps newcomers of the holding function
    out, so every function gets its turn, and turns go in the order functions started waiting: when
    the gate frees, the function that has waited longest takes it with every invocation of it that was
    waiting (so a function whose invocations come one after another, a schedule's, cannot keep the
    gate from another that waits with several). Re-entrant on a thread (loading a handler inside its
    run)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: str | None = None
        self._count = 0
        self._waiting: Counter[str] = Counter()
        self._order: list[str] = []  # functions waiting, the longest-waiting first
        self._admit = 0  # invocations of the holder that were waiting when it took the gate
        self._context: ExitStack | None = None
        self._local = threading.local()

    @contextmanager
    def holding(self, function_id: str, shared: Callable[[], Any]) -> Iterator[None]:
        if getattr(self._local, "function", None) == function_id:
            yield
            return
        with self._cond:
            self._waiting[function_id] += 1
            if function_id not in self._order:
                self._order.append(function_id)
            while not self._may_enter(function_id):
                self._cond.wait()
            self._waiting[function_id] -= 1
            if not self._waiting[function_id]:
                self._order.remove(function_id)
            if self._holder is None:
                self._holder, self._context = function_id, ExitStack()
                self._context.enter_context(shared())
                self._admit = self._waiting[function_id]
            elif self._admit:
                self._admit -= 1
            self._count += 1
        self._local.function = function_id
        try:
            yield
        finally:
            self._local.function = None
            with self._cond:
                self._count -= 1
                if self._count == 0:
                    assert self._context is not None
                    self._context.close()
                    self._holder, self._context, self._admit = None, None, 0
                self._cond.notify_all()

    def _may_enter(self, function_id: str) -> bool:
        if self._holder is None:
            return self._order[0] == function_id
        others = any(count for name, count in self._waiting.items() if name != function_id)
        return self._holder == function_id and (not others or self._admit > 0)


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
        background: frozenset[str] = frozenset(),
    ) -> None:
        """`platform_env`: what Lambda's runtime would set for every function here (the endpoints,
        credentials and region of the local stack), applied only while a handler runs; `background`:
        functions whose schedule runs as clockwork (the model controller's), not counted as pending."""
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
        self._gate = _FunctionGate()
        self._stats_lock = threading.Lock()
        self._background = background
        self._mappings: dict[str, RunningMapping] = {}
        self._busy = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = DispatchStats()
        self.coalesced_ticks = 0  # background schedule ticks folded into one still waiting
        self.listeners: list[Callable[[str, dict[str, Any], Exception | None], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def add_route(self, route: Route) -> None:
        self._routes.append(route)
        if self._threads:
            self._start_poller(route)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def add_mapping(self, mapping: RunningMapping) -> None:
        self._mappings[mapping.uuid] = mapping
        if self._threads:
            self._start_mapping(mapping)

    def mappings(self) -> list[RunningMapping]:
        return list(self._mappings.values())

    def mapping(self, uuid: str) -> RunningMapping:
        if uuid not in self._mappings:
            raise KeyError(f"no event source mapping {uuid}")
        return self._mappings[uuid]

    def start(self) -> None:
        if self._threads:
            return
        worker = threading.Thread(target=self._work_loop, name="labelloop-dispatch-worker", daemon=True)
        self._threads.append(worker)
        worker.start()
        for route in self._routes:
            self._start_poller(route)
        for mapping in self._mappings.values():
            self._start_mapping(mapping)

    def _start_mapping(self, mapping: RunningMapping) -> None:
        for slot in range(mapping.pollers):
            thread = threading.Thread(
                target=self._mapping_loop,
                args=(mapping,),
                name=f"labelloop-esm-{mapping.spec.logical_id}-{slot}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

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
            if self._tick_waiting(route):
                self.coalesced_ticks += 1
            else:
                self.submit(route.rule.function, event, route)
        # Lambda's async queue now owns the event (EventBridge's delivery succeeded).
        self._sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _tick_waiting(self, route: Route) -> bool:
        """A tick of a `background` schedule while an earlier one has not started yet. Lambda would run
        the two side by side, each seeing the same state; the one worker here runs one at a time, so
        ticks queued behind a busy function would run back to back, late, keeping every other function
        out (or expire). The waiting tick stands for both."""
        if not self._background_route(route):
            return False
        with self._cond:
            return any(job.route is route and job.attempts == 0 for job in self._jobs)

    def submit(self, function_id: str, event: dict[str, Any], route: Route | None = None) -> None:
        """Queue an asynchronous invocation of ``function_id`` (Lambda ``InvocationType=Event``)."""
        now = self._clock()
        with self._cond:
            heapq.heappush(self._jobs, _Job(now, next(self._seq), function_id, event, route, now))
            self._cond.notify_all()

    # -- event source mappings ---------------------------------------------------------------------
    def _mapping_loop(self, mapping: RunningMapping) -> None:
        """One poller of a mapping: receive a batch while it is Enabled, invoke, settle the batch."""
        while not self._stop.is_set():
            if not mapping.polling():
                self._stop.wait(0.05)
                continue
            try:
                batch = receive_batch(self._sqs, mapping, self._poll_wait, self._stop)
            except Exception:
                if self._stop.is_set():
                    return
                LOG.exception("polling %s for %s failed; retrying", mapping.queue_url, mapping.spec.function)
                self._stop.wait(0.5)
                continue
            if not batch:
                continue
            with self._cond:
                mapping.in_flight += len(batch)
            try:
                self._run_batch(mapping, batch)
            except Exception:  # the poller itself must survive anything a batch does
                LOG.exception("the batch of %s failed to settle", mapping.spec.function)
            finally:
                with self._cond:
                    mapping.in_flight -= len(batch)
                    self._cond.notify_all()

    def _run_batch(self, mapping: RunningMapping, batch: list[dict[str, Any]]) -> None:
        function = mapping.spec.function
        event = {"Records": [lambda_record(m, mapping.queue_arn, self.stack.region) for m in batch]}
        error: Exception | None = None
        result: Any = None
        try:
            handler = self._handler(function)
            context = lambda_context(self.stack.function_name(function))
            self._count(self.stats.invocations, function)
            with self.function_environment(function):
                result = handler(event, context)
        except Exception as exc:
            error = exc
        self._notify(function, event, error)
        failed = None if error is not None else failed_ids(mapping, result, batch)
        if error is None:
            self._count(self.stats.successes, function)
        else:
            self._count(self.stats.function_errors, function)
            LOG.warning(
                "%s failed on a batch of %d: %s: %s", function, len(batch), type(error).__name__, error
            )
        keep = [m for m in batch if failed is None or m["MessageId"] in failed]
        done = [m for m in batch if m not in keep]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=mapping.queue_url, Entries=entries)
        # What Lambda does not delete comes back after the visibility timeout (compressed here).
        visible_in = max(1, round(mapping.visibility_timeout * self._time_scale))
        for message in keep:
            self._sqs.change_message_visibility(
                QueueUrl=mapping.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=visible_in,
            )

    def update_mapping(self, uuid: str, enabled: bool | None) -> RunningMapping:
        """`UpdateEventSourceMapping`: only `Enabled` can change locally (the rest is template.yaml's)."""
        mapping = self.mapping(uuid)
        if enabled is not None:
            mapping.set_enabled(enabled)
            LOG.info(
                "event source mapping %s of %s: %s", uuid, mapping.spec.function, mapping.current_state()
            )
        return mapping

    def _count(self, counter: Counter[str], function: str) -> None:
        with self._stats_lock:
            counter[function] += 1

    # -- execution ---------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                job = self._next_due_job()
                if job is None:
                    continue
                work = not self._is_background(job)
                self._busy += work
            try:
                self._run(job)
            except Exception:  # the dispatcher itself must survive anything a job does
                LOG.exception("dispatching to %s failed", job.function)
            finally:
                with self._cond:
                    self._busy -= work
                    self._cond.notify_all()

    def _is_background(self, job: _Job) -> bool:
        return job.route is not None and self._background_route(job.route)

    def _background_route(self, route: Route) -> bool:
        return route.rule.kind == "Schedule" and route.rule.function in self._background

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
        self._count(self.stats.invocations, job.function)
        error: Exception | None = None
        context = lambda_context(self.stack.function_name(job.function))
        try:
            with self.function_environment(job.function):
                handler(job.event, context)
        except Exception as exc:
            error = exc
        self._notify(job.function, job.event, error)
        if error is None:
            self._count(self.stats.successes, job.function)
            return
        self._count(self.stats.function_errors, job.function)
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

        @contextmanager
        def shared() -> Iterator[None]:
            # Function output (Powertools logs, EMF metrics) is CloudWatch's in AWS: here it goes to
            # the function's log file (stack.logs), never into what a command prints for a person.
            with OUTPUT.redirected(), environment(env, remove=self._removed_variables):
                yield

        with self._gate.holding(function_id, shared), OUTPUT.function(function_id):
            yield

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No handler runs while the block does (e.g. a consistent snapshot of the stack's state): the
        block holds the gate as a function of its own."""
        with self._gate.holding("(quiet)", nullcontext):
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
        """Events not yet fully handled: queued in SQS (a delivery queue, or a queue an event source
        mapping consumes, delayed messages included), waiting for (a retry of) a handler, or running.
        The ticks of a `background` schedule are clockwork, not work."""
        with self._cond:
            in_memory = sum(1 for job in self._jobs if not self._is_background(job)) + self._busy
            in_memory += sum(mapping.in_flight for mapping in self._mappings.values())
        urls = [route.queue_url for route in self._routes if not self._background_route(route)]
        urls += [mapping.queue_url for mapping in self._mappings.values()]
        in_queues = 0
        for url in urls:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            in_queues += sum(int(value) for value in attributes.values())
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
