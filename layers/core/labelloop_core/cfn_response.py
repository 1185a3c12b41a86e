"""CloudFormation custom resources: answer the pre-signed ResponseURL exactly once, always in time.

A custom resource that never answers leaves the stack waiting for an hour, so `answer_request` runs
the work with a deadline taken from the Lambda context and a watchdog that answers FAILED shortly
before the timeout if the work is still running; every exception of the work becomes a FAILED answer
with its reason. Nothing here knows what the resource is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelloop_core import observability

SUCCESS = "SUCCESS"
FAILED = "FAILED"
MAX_RESPONSE_BYTES = 4096  # CloudFormation rejects larger custom resource responses
MAX_REASON_CHARS = 1500


@dataclass(frozen=True)
class Answer:
    """What the work of a request produced: the resource's physical id and its attributes."""

    physical_id: str
    data: dict[str, str] = field(default_factory=dict)


class Deadline:
    """Time left for work, from the Lambda context, keeping `margin_seconds` to answer CloudFormation."""

    def __init__(self, remaining_ms: Callable[[], int], margin_seconds: float) -> None:
        self._remaining_ms = remaining_ms
        self.margin_seconds = margin_seconds

    def seconds_left(self) -> float:
        return self._remaining_ms() / 1000.0 - self.margin_seconds


def build_response(
    request: Mapping[str, Any],
    status: str,
    physical_id: str,
    reason: str = "",
    data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON body CloudFormation expects at ResponseURL."""
    body: dict[str, Any] = {
        "Status": status,
        "Reason": reason[:MAX_REASON_CHARS] or f"{status} (see CloudWatch Logs)",
        "PhysicalResourceId": physical_id,
        "StackId": request.get("StackId", ""),
        "RequestId": request.get("RequestId", ""),
        "LogicalResourceId": request.get("LogicalResourceId", ""),
        "NoEcho": False,
        "Data": dict(data or {}),
    }
    if len(json.dumps(body).encode("utf-8")) > MAX_RESPONSE_BYTES:
        body["Reason"] = body["Reason"][:500]
    return body


def send_response(
    url: str,
    body: Mapping[str, Any],
    attempts: int = 3,
    timeout_seconds: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """PUT `body` to the pre-signed ResponseURL; raises after `attempts` failures (Lambda then retries)."""
    # Imported on first use: urllib.request pulls in http.client and email, most of this module's
    # cold import, which every A2ISetup container pays while only its answer needs them.
    import urllib.error
    import urllib.request

    payload = json.dumps(body).encode("utf-8")
    for attempt in range(1, attempts + 1):
        # The pre-signed S3 URL is signed without a content type: send an empty one.
        request = urllib.request.Request(
            url, data=payload, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(payload))}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
                response.read()
            return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            observability.logger().warning(
                "CloudFormation response not delivered", extra={"attempt": attempt, "error": str(error)}
            )
            if attempt == attempts:
                raise
            sleep(min(2.0 * attempt, 5.0))


class _Responder:
    """Answers CloudFormation exactly once, from the work or from the watchdog, whichever is first."""

    def __init__(self, request: Mapping[str, Any], send: Callable[[str, Mapping[str, Any]], None]) -> None:
        self._request = request
        self._send = send
        self._lock = threading.Lock()
        self.body: dict[str, Any] | None = None

    def answer(
        self, status: str, physical_id: str, reason: str = "", data: Mapping[str, str] | None = None
    ) -> bool:
        with self._lock:
            if self.body is not None:
                return False
            body = build_response(self._request, status, physical_id, reason, data)
            observability.logger().info(
                "answering CloudFormation", extra={"status": status, "physical_id": physical_id}
            )
            self._send(str(self._request["ResponseURL"]), body)  # raises when undeliverable: not answered
            self.body = body
            return True


@dataclass
class RunOptions:
    work_margin_seconds: float = 15.0  # stop polling this long before the Lambda timeout
    watchdog_margin_seconds: float = 8.0  # answer FAILED this long before the timeout if still busy
    poll_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    send: Callable[[str, Mapping[str, Any]], None] = send_response


def answer_request(
    event: Mapping[str, Any],
    remaining_ms: Callable[[], int],
    work: Callable[[Deadline], Answer],
    fallback_id: str,
    options: RunOptions,
) -> dict[str, Any]:
    """Run `work` and answer CloudFormation with its outcome; returns the body sent to ResponseURL.

    `fallback_id` is the physical id of a FAILED answer (CloudFormation sends Delete with it on
    rollback, so it should name whatever the work may have created)."""
    responder = _Responder(event, options.send)
    watchdog = threading.Timer(
        max(0.0, remaining_ms() / 1000.0 - options.watchdog_margin_seconds),
        lambda: responder.answer(
            FAILED, fallback_id, "timed out before the work finished; see CloudWatch Logs"
        ),
    )
    watchdog.daemon = True
    watchdog.start()
    try:
        answer = work(Deadline(remaining_ms, options.work_margin_seconds))
    except Exception as error:  # every failure must reach CloudFormation, whatever its type
        observability.logger().exception(
            "custom resource request failed", extra={"request_type": event.get("RequestType")}
        )
        responder.answer(FAILED, fallback_id, f"{type(error).__name__}: {error}")
    else:
        # An undeliverable answer raises here: the invocation fails and Lambda retries the request.
        responder.answer(SUCCESS, answer.physical_id, data=answer.data)
    finally:
        watchdog.cancel()
    assert responder.body is not None  # answered above, by the work or by the watchdog
    return responder.body
