"""moto compatibility fixes: where moto's behaviour differs from AWS in ways the handlers see.

Applied in this process only (`apply_moto_fixes()`, idempotent); each fix is documented at its
definition. The local stack, the integration tests and the benches all apply them.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
from typing import Any
from urllib.parse import quote_plus

LOG = logging.getLogger(__name__)

_fixes_lock = threading.Lock()
_fixes_applied = False
_sequencer = itertools.count(0x617F08299329D189)

# S3 `reason` per moto notification event name (AWS documents PutObject, POST Object, CopyObject,
# CompleteMultipartUpload for Object Created; DeleteObject / Lifecycle Expiration for deletions).
_S3_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def s3_event_key(key: str) -> str:
    """Encode an object key the way S3 event notifications do (space → '+', '/' kept)."""
    return quote_plus(key, safe="/*")


# What EventBridge hands a target: the event's envelope (and `replay-name` for a replayed event).
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


def normalize_event(raw: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """The event exactly as EventBridge hands it to a Lambda or SQS target.

    moto's default target transformation drops ``account``, its events keep ``ingestion-time`` and
    their ``time`` is a number; none of that is what AWS delivers.
    """
    from datetime import UTC, datetime

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


def apply_moto_fixes() -> None:
    """Patch moto (in this process) where its behaviour differs from AWS in ways our handlers see.

    Idempotent. Each fix is documented at its definition.
    """
    global _fixes_applied
    with _fixes_lock:
        if _fixes_applied:
            return
        import moto.events.models as events_models
        import moto.s3.notifications as s3_notifications

        s3_notifications._send_event_bridge_message = _send_s3_event_like_aws
        events_models.Rule._send_to_sqs_queue = _send_to_sqs_queue_like_aws  # type: ignore[method-assign]
        events_models.Replay.replay_events = _replay_events_in_window  # type: ignore[method-assign]
        _cache_jsonpath_parsing()
        _dynamodb_requests_one_at_a_time()
        _speed_up_sqs()
        _cache_service_routing()
        _fixes_applied = True


_dynamodb_lock = threading.RLock()


def _dynamodb_requests_one_at_a_time() -> None:
    """DynamoDB's PutItem, UpdateItem, DeleteItem and GetItem are atomic, and UpdateItem's ReturnValues
    give the item "as it appears after the UpdateItem operation" (Developer Guide, "Working with items";
    API reference, UpdateItem). moto's server answers requests on threads with no lock: two
    UpdateItems of one item can interleave (both pass a condition only one should), and ALL_NEW is
    serialized while another request changes the item ("dictionary changed size during iteration", or
    a later write's attributes). Serving one DynamoDB request at a time gives AWS's per-item
    atomicity; the local stack's DynamoDB traffic is small enough for that to cost nothing visible."""
    from moto.dynamodb.responses import DynamoHandler

    call_action = DynamoHandler.call_action
    if getattr(call_action, "one_at_a_time", False):
        return

    def one_at_a_time(self: Any) -> Any:
        with _dynamodb_lock:
            return call_action(self)

    one_at_a_time.one_at_a_time = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = one_at_a_time  # type: ignore[method-assign]


def _cache_jsonpath_parsing() -> None:
    """Speed, not fidelity: moto parses ~8 JSONPath expressions per event and target with
    ``jsonpath_ng.ext.parse``, which builds a new PLY parser each time (85% of a PutEvents, ~0.1 s per
    upload). The parsed paths are immutable, so identical expressions share one parse."""
    import functools

    import jsonpath_ng.ext as jsonpath_ext

    if not hasattr(jsonpath_ext.parse, "cache_info"):
        jsonpath_ext.parse = functools.lru_cache(maxsize=512)(jsonpath_ext.parse)


def _speed_up_sqs() -> None:
    """Speed, not fidelity: moto 5.2's SQS spends time that grows with the queue's depth on every
    message it hands out, so a backlog of 1,000 messages made the local stack, not the model's
    throughput, the bottleneck of a burst (75 % of the process's CPU). Three causes, same answers:
    * `receive_message` checks each message it returns against the retention period by calling
      `get_queue_attributes`, which computes *every* attribute, the three message counts (a pass over
      all messages each) included, twice per attribute name: here it reads the retention period;
    * `get_queue_attributes` with names computes all attributes twice per name: here once per call;
    * every visibility and delay check builds two datetimes for "now": here `time.time()`, the
      same epoch clock (moto's `unix_time` is UTC now minus the UTC epoch)."""
    import time

    import moto.sqs.models as sqs_models

    if getattr(sqs_models, "labelloop_fast", False):
        return
    exact_unix_time = sqs_models.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(exact_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        retention_seconds = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_seconds + message.sent_timestamp / 1000 > unix_time())

    exact_get_queue_attributes = sqs_models.SQSBackend.get_queue_attributes

    def get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
        queue = self.get_queue(queue_name)
        known = set(queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES)
        if not attribute_names or "All" in attribute_names or not known.issuperset(attribute_names):
            return dict(exact_get_queue_attributes(self, queue_name, attribute_names))  # errors too
        attributes = queue.attributes
        return {name: attributes[name] for name in attribute_names if attributes.get(name) is not None}

    sqs_models.unix_time, sqs_models.unix_time_millis = unix_time, unix_time_millis
    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]
    sqs_models.SQSBackend.get_queue_attributes = get_queue_attributes  # type: ignore[method-assign]
    sqs_models.labelloop_fast = True  # type: ignore[attr-defined]


def _cache_service_routing() -> None:
    """Speed, not fidelity: moto's server finds the backend of every request by listing its package
    directory (`os.listdir` and an `isdir` per entry, ~200 system calls) and matching hundreds of URL
    patterns, under one lock shared by all requests. The answer depends only on the host, so it is
    remembered per host."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if hasattr(DomainDispatcherApplication, "labelloop_routing_cache"):
        return
    find_backend = DomainDispatcherApplication.get_backend_for_host
    cache: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in cache:
            cache[host] = find_backend(self, host)
        return cache[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    DomainDispatcherApplication.labelloop_routing_cache = cache  # type: ignore[attr-defined]


def _send_s3_event_like_aws(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    """Replacement for ``moto.s3.notifications._send_event_bridge_message``.

    moto 5.2 differs from S3 in four ways that matter here:
    * detail.object has ``eTag``; S3 sends ``etag``;
    * the key is not URL-encoded; S3 encodes it (``a b.jpg`` → ``a+b.jpg``), consumers decode once;
    * ``reason`` is ``ObjectCreated``; S3 sends the API (``PutObject``, ``CompleteMultipartUpload``...);
    * it calls every rule's targets with the raw event (``transform_input=False``), which raises on
      archive targets; moto swallows the error, so an archive on the default bus silently stops the
      delivery to every later rule, and S3 events are never archived. S3 publishes to the default bus
      only, like PutEvents: we go through ``put_events`` so archives and rules see the event as AWS
      would (ISO ``time`` is produced by moto's SQS target).
    Also, moto emits "Object ACL Updated" and "Object Tags Added" on every PutObject (it applies the
    default ACL and an empty tag set); S3 does not, so those two are dropped.
    """
    event_name = str(getattr(event_name, "value", event_name))
    if event_name in ("s3:ObjectAcl:Put", "s3:ObjectTagging:Put"):
        return
    from moto.events.models import events_backends
    from moto.s3.notifications import _detail_type

    detail_object: dict[str, Any] = {"key": s3_event_key(key.name)}
    if hasattr(key, "size"):  # a delete marker has neither size nor ETag (S3 sends neither)
        detail_object.update(size=key.size, etag=key.etag.replace('"', ""))
    detail_object["sequencer"] = format(next(_sequencer), "X")
    if key.version_id and key.version_id != "null":
        detail_object["version-id"] = key.version_id
    detail = {
        "version": "0",
        "bucket": {"name": bucket.name},
        "object": detail_object,
        "request-id": secrets.token_hex(8).upper(),
        "requester": account_id,
        "source-ip-address": "127.0.0.1",
        "reason": _S3_REASONS.get(event_name, event_name.split(":")[-1]),
    }
    try:
        backend = events_backends[account_id][bucket.region_name]
        backend.put_events(
            [
                {
                    "Source": "aws.s3",
                    "DetailType": _detail_type(event_name),
                    "Detail": json.dumps(detail),
                    "Resources": [bucket.arn],
                    "EventBusName": "default",
                }
            ]
        )
    except Exception:  # S3 itself never fails a PutObject because EventBridge delivery failed
        LOG.exception("S3 EventBridge notification for s3://%s/%s was not delivered", bucket.name, key.name)


def _send_to_sqs_queue_like_aws(
    self: Any, resource_id: str, event: dict[str, Any], group_id: str | None = None
) -> None:
    """Replacement for ``moto.events.models.Rule._send_to_sqs_queue``: the message body is the event
    as EventBridge delivers it (``normalize_event``), not moto's internal form (numeric ``time``,
    ``ingestion-time``, no ``account``)."""
    from moto.sqs import sqs_backends

    body = json.dumps(normalize_event(event, self.account_id, self.region_name))
    sqs_backends[self.account_id][self.region_name].send_message(
        queue_name=resource_id, message_body=body, group_id=group_id
    )


def _replay_events_in_window(self: Any, archive: Any) -> None:
    """Replacement for ``moto.events.models.Replay.replay_events``.

    moto replays every archived event whatever the replay's EventStartTime/EventEndTime; EventBridge
    replays only the events whose time falls in the window (``labelloop local replay --since``).
    """
    from moto.core.utils import unix_time
    from moto.events.models import ReplayState, events_backends
    from moto.moto_api._internal import mock_random as random

    start, end = _epoch(self.event_start_time), _epoch(self.event_end_time)
    bus_name = self.destination["Arn"].split("/")[-1]
    backend = events_backends[self.account_id][self.region]
    bus = backend.describe_event_bus(bus_name)
    filter_arns = set(self.destination.get("FilterArns") or [])
    replayed = 0
    for event in list(archive.events):
        event_time = _epoch(event.get("time"))
        if (
            event_time is not None
            and start is not None
            and end is not None
            and not start <= event_time <= end
        ):
            continue
        replayed += 1
        for rule in list(bus.rules.values()):
            if filter_arns and rule.arn not in filter_arns:
                continue
            replayed_event: Any = dict(event, **{"id": str(random.uuid4()), "replay-name": self.name})
            rule.send_to_targets(replayed_event, transform_input=False)
    self.labelloop_events_replayed = replayed  # read by LocalStack.replay (same process)
    self.state = ReplayState.COMPLETED
    self.end_time = unix_time()


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
