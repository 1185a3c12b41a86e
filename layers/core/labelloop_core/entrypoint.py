"""The one shape of every labelloop Lambda function.

    lambda_handler = lambda_entrypoint(queued_uploads, DetectService)

gives the function, in this order:
1. one observability stack: Powertools Metrics (flushed per invocation), Tracer (built at the first
   invocation, see `observability`), Logger with the correlation id taken from the event
   (`correlation_id_path`, the EventBridge event id by default: stable across retries and replays;
   a batch consumer sets the id of each event of the batch itself);
2. edge validation inside the error boundary: `parse(event, context)` turns the event into a typed
   request or raises `InvalidEvent`, which is logged and counted (`InvalidEvents`) before it
   propagates, exactly like an `InvalidEvent` raised later by the service;
3. typed settings, validated once per container: the service class names its settings type
   (`settings_type`); a `ConfigError` names the variable at fault;
4. a service object built once per container from those settings (`from_settings`);
5. an outcome: `service.handle(request)` returns an object whose `to_dict()` is the function's result.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

from labelloop_core import observability
from labelloop_core.config import load_settings
from labelloop_core.errors import InvalidEvent

Request = TypeVar("Request", contravariant=True)
LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
EVENTBRIDGE_EVENT_ID = "id"


class Outcome(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class Service(Protocol[Request]):
    def handle(self, request: Request) -> Outcome: ...


class ServiceType(Protocol[Request]):
    settings_type: type

    def from_settings(self, settings: Any) -> Service[Request]: ...


class _Built(Generic[Request]):
    """The service of one function, built at its first invocation (one per container)."""

    def __init__(self, service_type: ServiceType[Request]) -> None:
        self._type = service_type
        self._lock = threading.Lock()
        self._service: Service[Request] | None = None
        _built.add(self)

    def get(self) -> Service[Request]:
        with self._lock:
            if self._service is None:
                self._service = self._type.from_settings(load_settings(self._type.settings_type))
            return self._service

    def forget(self) -> None:
        with self._lock:
            self._service = None


# Every function's service holder in this process (weak: a handler module loaded again replaces it).
_built: weakref.WeakSet[_Built[Any]] = weakref.WeakSet()


def forget_built_services() -> None:
    for built in list(_built):
        built.forget()


def lambda_entrypoint(
    parse: Callable[[Mapping[str, Any], Any], Request],
    service_type: ServiceType[Request],
) -> LambdaHandler:
    """The Lambda handler of a function: parse → settings → service → outcome, observed. The
    correlation id is where the parser says its events keep one (`parse.correlation_id_path`; None for
    an SQS batch, whose service sets each event's id itself), by default the EventBridge event id."""
    correlation_id_path = getattr(parse, "correlation_id_path", EVENTBRIDGE_EVENT_ID)
    logger = observability.logger()
    metrics = observability.metrics()
    service = _Built(service_type)

    @metrics.log_metrics
    @observability.capture_lambda_handler
    @logger.inject_lambda_context(correlation_id_path=correlation_id_path)
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with refusing_invalid(event):
            request = parse(event, context)
            log_keys = getattr(request, "log_keys", None)
            if log_keys is not None:
                logger.append_keys(**{k: v for k, v in log_keys().items() if v is not None})
            outcome = service.get().handle(request)
        return outcome.to_dict()

    handler: Any = lambda_handler
    handler.settings_type = service_type.settings_type  # what the function reads from its environment
    return handler


@contextmanager
def refusing_invalid(event: Any) -> Iterator[None]:
    """Log and count every InvalidEvent raised while handling `event`, then let it propagate."""
    try:
        yield
    except InvalidEvent as error:
        event_id = event.get("id") if isinstance(event, dict) else None
        observability.logger().error(
            "invalid event refused", extra={"reason": str(error), "event_id": event_id}
        )
        observability.count("InvalidEvents")
        raise
