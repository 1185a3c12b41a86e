"""In-memory implementations of the services' ports (`labelloop_core.ports`) for fast unit tests.

They keep the semantics the services rely on — conditional creates, staged statuses that never go
backwards, one count per label, at most one claim per window, events validated before they are
"sent" — and `tests/integration/test_ledger_contract.py` runs the same scenarios against these
fakes and the DynamoDB adapters on moto, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from labelloop_core import ledger as layout
from labelloop_core import review_tasks
from labelloop_core.adapters.events import DETAIL_TYPES, schema_name
from labelloop_core.errors import ObjectMissing, TransientError
from labelloop_core.ledger import (
    CLAIMED,
    IMAGE_STAGES,
    LOOP_STAGES,
    RELEASED,
    STALE_CLAIM,
    STARTING,
    TRAINING,
    Admission,
    ClaimResult,
    ControlState,
    DatasetRecord,
    Decision,
    ImageRecord,
    LabelRecord,
    LoopRecord,
    OpenRun,
    PendingLabel,
    TrainingLock,
    WaitingReview,
    iso,
)
from labelloop_core.model_control import RunInterval
from labelloop_core.naming import ImageRef, priority_rank, version_name_from_arn
from labelloop_core.policy import Detection
from labelloop_core.ports import (
    MappingState,
    ObjectHead,
    ObjectVersion,
    OpenedReview,
    OutgoingMessage,
    ProjectVersion,
    QueueDepth,
    S3Location,
)
from labelloop_core.review_tasks import Task, iso_time
from labelloop_core.schemas import validate


class FakeStore:
    """One bucket (plus documents of other buckets for `get_json(bucket=...)`), objects as bytes."""

    def __init__(self, bucket: str = "labelloop-bucket") -> None:
        self.bucket = bucket
        self.objects: dict[tuple[str, str], bytes] = {}
        self.versions: dict[tuple[str, str, str], bytes] = {}
        self.current: dict[tuple[str, str], str | None] = {}  # the version id each key names now
        self.puts: list[str] = []

    def put(self, key: str, body: bytes, version_id: str | None = None, bucket: str | None = None) -> None:
        self.objects[(bucket or self.bucket, key)] = body
        self.current[(bucket or self.bucket, key)] = version_id
        if version_id:
            self.versions[(bucket or self.bucket, key, version_id)] = body

    def delete(self, key: str) -> None:
        self.objects.pop((self.bucket, key), None)
        self.current.pop((self.bucket, key), None)

    def document(self, key: str) -> Any:
        return json.loads(self.objects[(self.bucket, key)])

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for bucket, key in self.objects if bucket == self.bucket and key.startswith(prefix))

    def read_head(self, key: str, length: int, version_id: str | None = None) -> ObjectHead:
        body = self._body(key, version_id)
        return ObjectHead(body[:length], len(body))

    def read_tail(self, key: str, length: int, version_id: str | None = None) -> bytes:
        return self._body(key, version_id)[-length:]

    def get_json(self, key: str, bucket: str | None = None) -> Any:
        return json.loads(self._body(key, None, bucket))

    def put_json(self, key: str, document: Any) -> None:
        self.put(key, json.dumps(document).encode())
        self.puts.append(key)

    def create_json(self, key: str, document: Any) -> bool:
        if (self.bucket, key) in self.objects:
            return False
        self.put_json(key, document)
        return True

    def exists(self, key: str) -> bool:
        return (self.bucket, key) in self.objects

    def current_version(self, key: str) -> ObjectVersion | None:
        if (self.bucket, key) not in self.objects:
            return None
        version_id = self.current.get((self.bucket, key))
        return ObjectVersion(version_id, f"etag-{version_id}" if version_id else None)

    def iter_lines(self, key: str) -> Iterator[str]:
        yield from self._body(key, None).decode("utf-8").splitlines()

    def upload_file(self, path: str, key: str) -> None:
        self.put(key, Path(path).read_bytes())
        self.puts.append(key)

    def _body(self, key: str, version_id: str | None, bucket: str | None = None) -> bytes:
        where = bucket or self.bucket
        body = self.versions.get((where, key, version_id)) if version_id else self.objects.get((where, key))
        if body is None:
            raise ObjectMissing(f"s3://{where}/{key} does not exist (NoSuchKey)")
        return body


class FakePublisher:
    """Records events after validating them, as EventBridgePublisher does before PutEvents."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[Exception] = []  # raised by the next publishes, in order

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> str:
        if detail_type not in DETAIL_TYPES:
            raise ValueError(f"unknown labelloop detail-type {detail_type!r}")
        validate(schema_name(detail_type), detail)
        if self.failures:
            raise self.failures.pop(0)
        self.events.append((detail_type, json.loads(json.dumps(detail))))
        return f"event-{len(self.events)}"

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        return [detail for kind, detail in self.events if kind == detail_type]


class FakeModelRegistry:
    def __init__(self, active: str | None = None, previous: str | None = None) -> None:
        self.active = active
        self.previous = previous

    def active_model_arn(self) -> str | None:
        return self.active

    def previous_model_arn(self) -> str | None:
        return self.previous

    def switch_active(self, new_arn: str) -> str | None:
        old, self.previous, self.active = self.active, self.active, new_arn
        return old


class FakeDetector:
    """Answers DetectCustomLabels from a script: detections per object key, or an error to raise."""

    def __init__(self, answers: Mapping[str, list[Detection] | Exception] | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[tuple[str, ImageRef, float]] = []

    def detect(self, model_arn: str, image: ImageRef, min_confidence: float) -> list[Detection]:
        self.calls.append((model_arn, image, min_confidence))
        answer = self.answers.get(image.key, [])
        if isinstance(answer, Exception):
            raise answer
        return [d for d in answer if d.confidence >= min_confidence]


class FakeReviewBackend:
    def __init__(self) -> None:
        self.reviews: dict[str, dict[str, Any]] = {}
        self.priorities: dict[str, float] = {}
        self.failures: list[Exception] = []

    def open(self, name: str, input_content: Mapping[str, Any], priority: float = 0.0) -> OpenedReview:
        if self.failures:
            raise self.failures.pop(0)
        if name in self.reviews:
            return OpenedReview(name, created=False)
        self.reviews[name] = json.loads(json.dumps(input_content))
        self.priorities[name] = priority
        return OpenedReview(name, created=True)


class FakeReviewQueue:
    """Waiting reviews and budget counters, with the conditions of adapters.ledger.ReviewQueue."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.budget: dict[str, int] = {}

    def enqueue(self, name: str, detail: Mapping[str, Any], priority: float, requested_at: datetime) -> bool:
        if name in self.items:
            return False
        at = iso(requested_at)
        self.items[name] = {
            "review_name": name,
            "detail": json.loads(json.dumps(detail)),
            "priority": priority,
            "requested_at": at,
            "queue": layout.WAITING,
            "rank": priority_rank(priority, at, name),
        }
        return True

    def waiting(self, queue: str, limit: int) -> list[WaitingReview]:
        found = sorted(
            (item for item in self.items.values() if item.get("queue") == queue), key=lambda i: i["rank"]
        )
        return [WaitingReview.from_item({"pk": f"WAITING#{i['review_name']}", **i}) for i in found[:limit]]

    def admit(self, name: str, day: str, max_per_day: int) -> Admission:
        if max_per_day > 0 and self.budget.get(day, 0) >= max_per_day:
            return Admission.BUDGET_SPENT
        item = self.items.get(name)
        if item is None or item.get("queue") != layout.WAITING:
            return Admission.TAKEN
        self.budget[day] = self.budget.get(day, 0) + 1
        item.update(queue=layout.ADMITTED, admitted_day=day)
        return Admission.ADMITTED

    def opened(self, name: str) -> None:
        item = self.items.get(name)
        if item is not None and item.get("queue") == layout.ADMITTED:
            item.pop("queue")
            item.pop("rank")
            item["opened_at"] = "now"

    def opened_on(self, day: str) -> int:
        return self.budget.get(day, 0)


class FakeTaskStore:
    """Review tasks in memory, with the conditions of adapters.review_tasks.TaskTable."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def create(self, item: Mapping[str, Any]) -> bool:
        if item["task_id"] in self.items:
            return False
        self.items[str(item["task_id"])] = json.loads(json.dumps(item))
        return True

    def get(self, task_id: str) -> Task | None:
        item = self.items.get(task_id)
        return Task.from_item(json.loads(json.dumps(item))) if item else None

    def open_tasks(self) -> Iterator[Task]:
        listed = sorted((i for i in self.items.values() if i.get("open")), key=lambda i: str(i["rank"]))
        for item in listed:
            yield Task.from_item(json.loads(json.dumps(item)))

    def claim(self, task: Task, slot: int, worker: str, now: float, until: float) -> Task | None:
        item = self.items.get(task.task_id)
        if item is None or not self._open(item, now) or not self._free(item, slot, now):
            return None
        for other in range(task.answers_needed):
            if other != slot and not self._free(item, other, now) and item.get(f"holder_{other}") == worker:
                return None
        item.update({f"holder_{slot}": worker, f"until_{slot}": until, f"accepted_{slot}": iso_time(now)})
        return review_tasks.Task.from_item(json.loads(json.dumps(item)))

    def release(self, task_id: str, slot: int, worker: str, now: float) -> bool:
        item = self.items.get(task_id)
        if item is None or not self._held(item, slot, worker, now):
            return False
        for name in (f"holder_{slot}", f"until_{slot}", f"accepted_{slot}"):
            item.pop(name, None)
        return True

    def answer(
        self, task_id: str, slot: int, worker: str, answer: Mapping[str, Any], now: float
    ) -> review_tasks.Task | None:
        item = self.items.get(task_id)
        if item is None or not self._open(item, now) or not self._held(item, slot, worker, now):
            return None
        if int(item.get("answer_count", 0)) >= int(item["answers_needed"]):
            return None
        item[f"answer_{slot}"] = json.loads(json.dumps(answer))
        item["answer_count"] = int(item.get("answer_count", 0)) + 1
        return review_tasks.Task.from_item(json.loads(json.dumps(item)))

    def finish(self, task_id: str, status: str, output_key: str | None) -> bool:
        item = self.items.get(task_id)
        if item is None or item.get("status") != review_tasks.OPEN:
            return False
        item["status"] = status
        if output_key:
            item["output_key"] = output_key
        item.pop("open", None)
        return True

    @staticmethod
    def _open(item: Mapping[str, Any], now: float) -> bool:
        return item.get("status") == review_tasks.OPEN and float(item["expires_at"]) > now

    @staticmethod
    def _free(item: Mapping[str, Any], slot: int, now: float) -> bool:
        if f"holder_{slot}" not in item:
            return True
        return float(item[f"until_{slot}"]) < now and f"answer_{slot}" not in item

    @staticmethod
    def _held(item: Mapping[str, Any], slot: int, worker: str, now: float) -> bool:
        return (
            item.get(f"holder_{slot}") == worker
            and float(item.get(f"until_{slot}", 0)) >= now
            and f"answer_{slot}" not in item
        )


class FakeImageLinks:
    """Pre-signed links as text: which image version, for how long."""

    def __init__(self) -> None:
        self.links: list[tuple[ImageRef, int]] = []

    def link(self, image: ImageRef, expires_in: int) -> str:
        self.links.append((image, expires_in))
        return f"https://images.example/{image.key}?versionId={image.version_id}&expires={expires_in}"


class FakeReviewLedger:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.pending_count = 0

    def get_image(self, image_id: str) -> ImageRecord | None:
        item = self._item(layout.image_key(image_id))
        return ImageRecord.from_item(item) if item else None

    def get_loop(self, loop_name: str) -> LoopRecord | None:
        item = self._item(layout.loop_key(loop_name))
        return LoopRecord.from_item(item) if item else None

    def get_label(self, loop_name: str) -> LabelRecord | None:
        item = self._item(layout.label_key(loop_name))
        return LabelRecord.from_item(item) if item else None

    def pending_label_count(self) -> int:
        return self.pending_count

    def record_image(
        self,
        image: ImageRef,
        status: str,
        *,
        reason: str | None = None,
        model_arn: str | None = None,
        loop_name: str | None = None,
    ) -> bool:
        attributes = {
            "image_id": image.image_id,
            "bucket": image.bucket,
            "key": image.key,
            "model_arn": model_arn,
        }
        attributes["loop_name"] = loop_name
        return self._staged(
            layout.image_key(image.image_id), status, IMAGE_STAGES, attributes, "reason", reason
        )

    def record_image_status(self, image_id: str, status: str, *, reason: str | None = None) -> bool:
        return self._staged(
            layout.image_key(image_id), status, IMAGE_STAGES, {"image_id": image_id}, "reason", reason
        )

    def record_loop(
        self,
        loop_name: str,
        status: str,
        *,
        image_id: str | None = None,
        label_key: str | None = None,
        failure_reason: str | None = None,
    ) -> bool:
        attributes = {"loop_name": loop_name, "image_id": image_id, "label_key": label_key}
        return self._staged(
            layout.loop_key(loop_name), status, LOOP_STAGES, attributes, "failure_reason", failure_reason
        )

    def put_label(
        self,
        loop_name: str,
        label_key: str,
        source_ref: str,
        created_at: str,
        agreement: Mapping[str, Any] | None = None,
    ) -> bool:
        key = layout.label_key(loop_name)
        if self._item(key) is not None:
            return False
        self.items[(key["pk"], key["sk"])] = {
            **key,
            "loop_name": loop_name,
            "label_key": label_key,
            "source_ref": source_ref,
            "created_at": created_at,
            "pending": layout.PENDING_VALUE,
            "event_sent": False,
        }
        if agreement:
            self.items[(key["pk"], key["sk"])]["consolidation"] = dict(agreement)
        self.pending_count += 1
        return True

    def claim_label_event(self, loop_name: str) -> bool:
        return self._flip_event_sent(loop_name, True)

    def release_label_event(self, loop_name: str) -> None:
        self._flip_event_sent(loop_name, False)

    def _flip_event_sent(self, loop_name: str, sent: bool) -> bool:
        item = self._item(layout.label_key(loop_name))
        if item is None or bool(item["event_sent"]) == sent:
            return False
        item["event_sent"] = sent
        return True

    def _item(self, key: layout.Key) -> dict[str, Any] | None:
        return self.items.get((key["pk"], key["sk"]))

    def _staged(
        self,
        key: layout.Key,
        status: str,
        stages: Mapping[str, int],
        attributes: Mapping[str, Any],
        reason_attribute: str,
        reason: str | None,
    ) -> bool:
        if status not in stages:
            raise ValueError(f"unknown ledger status {status!r}")
        item = self.items.setdefault((key["pk"], key["sk"]), dict(key))
        if int(item.get("stage", 0)) > stages[status]:
            return False
        item.update({name: value for name, value in attributes.items() if value is not None})
        item.update(status=status, stage=stages[status])
        if reason is None:
            item.pop(reason_attribute, None)
        else:
            item[reason_attribute] = reason
        return True


@dataclass
class FakeTrainingLedger:
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # loop name -> label item
    counter: int = 0
    lock: dict[str, Any] | None = None
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    datasets: dict[str, DatasetRecord] = field(default_factory=dict)  # version name -> record

    def add_label(self, loop_name: str, created_at: str, label_key: str | None = None) -> None:
        self.labels[loop_name] = {
            "loop_name": loop_name,
            "label_key": label_key or f"labels/{loop_name}.json",
            "created_at": created_at,
            "pending": layout.PENDING_VALUE,
        }
        self.counter += 1

    def pending_count(self) -> int:
        return self.counter

    def read_lock(self) -> TrainingLock | None:
        return TrainingLock.from_item(self.lock) if self.lock is not None else None

    def claim(self, window: str, now: datetime) -> ClaimResult:
        existing = self.windows.get(window)
        if existing is not None and existing["status"] not in (CLAIMED, RELEASED):
            return ClaimResult.WINDOW_USED
        lock = self.lock or {}
        status = lock.get("status")
        stale = iso(now - STALE_CLAIM)
        lock_free = status not in (CLAIMED, TRAINING, STARTING) or (
            status == CLAIMED and (lock.get("window") == window or str(lock.get("claimed_at", "")) < stale)
        )
        if not lock_free:
            return ClaimResult.TRAINING_IN_PROGRESS
        self.windows[window] = {"status": CLAIMED, "claimed_at": iso(now)}
        kept = {name: value for name, value in lock.items() if name in ("last_manifest_key",)}
        self.lock = {**kept, "status": CLAIMED, "claimed_at": iso(now), "window": window}
        return ClaimResult.CLAIMED

    def release_claim(self, window: str, reason: str, now: datetime) -> None:
        lock = self.lock or {}
        if self.windows.get(window, {}).get("status") != CLAIMED:
            return
        if lock.get("status") != CLAIMED or lock.get("window") != window:
            return
        for item in (self.windows[window], lock):
            item.update(status=RELEASED, released_at=iso(now), release_reason=reason[:1000])

    def mark_training(
        self,
        window: str,
        version_arn: str,
        version_name: str,
        manifest_key: str | None,
        base_manifest_key: str | None,
        now: datetime,
    ) -> None:
        lock = self.lock or {}
        if lock.get("window") != window or lock.get("status") not in (CLAIMED, TRAINING):
            raise TransientError(f"the lock is not claimed for {window}")
        started = {"version_arn": version_arn, "version_name": version_name, "started_at": iso(now)}
        lock.update(status=TRAINING, **started)
        if manifest_key:
            lock.update(manifest_key=manifest_key, last_manifest_key=manifest_key)
        if base_manifest_key:
            lock["base_manifest_key"] = base_manifest_key
        self.windows[window] = {"status": TRAINING, **started}

    def pending_labels(self) -> Iterator[PendingLabel]:
        pending = [item for item in self.labels.values() if item.get("pending")]
        for item in sorted(pending, key=lambda item: str(item["created_at"])):
            yield PendingLabel(item["loop_name"], item["label_key"], item["created_at"])

    def settle_labels(
        self, labels: Sequence[PendingLabel], version_name: str, rejected: Mapping[str, str], now: datetime
    ) -> int:
        settled = 0
        for label in labels:
            item = self.labels.get(label.loop_name)
            if item is None or not item.get("pending"):
                continue
            item.pop("pending")
            if label.loop_name in rejected:
                item.update(rejected_reason=rejected[label.loop_name], rejected_by=version_name)
            else:
                item.update(consumed_by=version_name, consumed_at=iso(now))
            self.counter -= 1
            settled += 1
        return settled

    def mark_starting(
        self, version_arn: str, previous_arn: str, candidate: Mapping[str, Any], now: datetime
    ) -> bool:
        if not self._in_promotion(version_arn):
            return False
        assert self.lock is not None
        self.lock.update(status=STARTING, previous_arn=previous_arn, candidate=dict(candidate))
        return True

    def finish(self, version_arn: str, status: str, reason: str, now: datetime) -> bool:
        if not self._in_promotion(version_arn):
            return False
        assert self.lock is not None
        self.lock.update(status=status, finished_at=iso(now), finish_reason=reason[:1000])
        return True

    def record_decision(self, version_name: str, decision: Decision) -> None:
        self.decisions[version_name] = decision

    def read_decision(self, version_name: str) -> Decision | None:
        return self.decisions.get(version_name)

    def record_dataset(self, record: DatasetRecord) -> None:
        self.datasets[record.version_name] = record

    def _in_promotion(self, version_arn: str) -> bool:
        lock = self.lock or {}
        return lock.get("version_arn") == version_arn and lock.get("status") in (TRAINING, STARTING)


@dataclass
class FakeVersion:
    status: str
    status_message: str = ""
    f1: float | None = None
    summary: S3Location | None = None
    training: S3Location | None = None
    test: S3Location | None = None
    min_units: int | None = None
    max_units: int | None = None


class FakeCustomLabels:
    """One Custom Labels project: versions keyed by ARN, optional TRAIN/TEST datasets."""

    def __init__(self, project_arn: str, datasets: Mapping[str, str] | None = None) -> None:
        self.project_arn = project_arn
        self._datasets = dict(datasets or {})
        self.versions: dict[str, FakeVersion] = {}
        self.dataset_lines: dict[str, list[str]] = {}
        self.starts: list[tuple[str, int]] = []
        self.stops: list[str] = []
        self.on_create: Callable[[str], None] | None = None  # e.g. raise to simulate a refusal

    def version_arn(self, name: str) -> str:
        return f"{self.project_arn.rsplit('/', 1)[0]}/version/{name}/1714557600000"

    def datasets(self) -> dict[str, str]:
        return dict(self._datasets)

    def update_dataset_entries(self, dataset_arn: str, lines: Iterable[str] | IO[str]) -> int:
        entries = [line.strip() for line in lines if line.strip()]
        self.dataset_lines.setdefault(dataset_arn, []).extend(entries)
        return 1 if entries else 0

    def create_version(
        self,
        version_name: str,
        output: S3Location,
        training_manifest: S3Location | None,
        test_manifest: S3Location | None = None,
    ) -> str:
        if self.on_create is not None:
            self.on_create(version_name)
        arn = self.version_arn(version_name)
        self.versions.setdefault(
            arn, FakeVersion("TRAINING_IN_PROGRESS", training=training_manifest, test=test_manifest)
        )
        return arn

    def describe_versions(self, version_names: Sequence[str]) -> dict[str, ProjectVersion]:
        found = {}
        for arn in self.versions:
            version = self.describe_version(arn)
            if version is not None and version.name in version_names:
                found[version.name] = version
        return found

    def describe_version(self, version_arn: str) -> ProjectVersion | None:
        version = self.versions.get(version_arn)
        if version is None:
            return None
        return ProjectVersion(
            version_arn,
            version.status,
            version.status_message,
            version.f1,
            version.summary,
            version.min_units,
            version.max_units,
        )

    def status_of(self, version_arn: str) -> ProjectVersion | None:
        """Any project's version (the fake keeps them all in one place)."""
        return self.describe_version(version_arn)

    def start_version(
        self, version_arn: str, min_inference_units: int, max_inference_units: int | None = None
    ) -> str:
        self.starts.append((version_arn, min_inference_units))
        self.max_units_requested = max_inference_units
        version = self.versions[version_arn]
        if version.status not in ("STARTING", "RUNNING"):
            version.status = "STARTING"
            version.min_units, version.max_units = min_inference_units, max_inference_units
        return version.status

    def stop_version(self, version_arn: str) -> str:
        self.stops.append(version_arn)
        version = self.versions.get(version_arn)
        if version is None:
            return "STOPPED"
        version.status = "STOPPING" if version.status in ("RUNNING", "STARTING") else version.status
        return version.status

    def finish_training(
        self,
        version_arn: str,
        f1: float | None,
        summary: S3Location | None,
        status: str = "TRAINING_COMPLETED",
    ) -> None:
        version = self.versions[version_arn]
        self.versions[version_arn] = dataclasses.replace(version, status=status, f1=f1, summary=summary)

    def name_of(self, version_arn: str) -> str:
        return version_name_from_arn(version_arn)


class FakeQueue:
    """An SQS queue: its depth is set by the test, sent messages are kept."""

    def __init__(self, depth: QueueDepth | None = None) -> None:
        self.current = depth or QueueDepth(0, 0, 0)
        self.sent: list[OutgoingMessage] = []
        self.refuse: set[str] = set()  # message ids SQS does not accept

    def depth(self) -> QueueDepth:
        return self.current

    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        failed = [message.id for message in messages if message.id in self.refuse]
        self.sent.extend(message for message in messages if message.id not in self.refuse)
        return failed


class FakeMapping:
    """An event source mapping that settles at once (or stays in `busy` while set)."""

    def __init__(self, enabled: bool = False) -> None:
        self.current = MappingState("Enabled" if enabled else "Disabled")
        self.changes: list[bool] = []
        self.busy: str | None = None

    def state(self) -> MappingState:
        return MappingState(self.busy) if self.busy else self.current

    def set_enabled(self, enabled: bool) -> MappingState:
        self.changes.append(enabled)
        self.current = MappingState("Enabled" if enabled else "Disabled")
        return self.current

    @property
    def enabled(self) -> bool:
        return self.current.enabled


@dataclass
class FakeModelLedger:
    """The controller's state item and the running intervals, as `ModelLedger` keeps them."""

    control: ControlState = field(default_factory=ControlState)
    intervals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (arn, running_at)
    detections: list[datetime] = field(default_factory=list)

    def read_control(self) -> ControlState:
        return self.control

    def save_control(self, state: ControlState) -> None:
        # Detect's attribute is not the controller's to write.
        self.control = dataclasses.replace(state, last_detection_at=self.control.last_detection_at)

    def record_detection(self, now: datetime) -> None:
        self.detections.append(now)
        if self.control.last_detection_at is None or self.control.last_detection_at < iso(now):
            self.control = dataclasses.replace(self.control, last_detection_at=iso(now))

    def open_run(self, version_arn: str, run: OpenRun) -> bool:
        key = (version_arn, run.running_at)
        if key in self.intervals:
            return False
        self.intervals[key] = {"run": run, "stopped_at": None, "reason": None}
        return True

    def close_run(self, version_arn: str, running_at: str, stopped_at: str, reason: str) -> bool:
        interval = self.intervals.get((version_arn, running_at))
        if interval is None or interval["stopped_at"] is not None:
            return False
        interval.update(stopped_at=stopped_at, reason=reason)
        return True

    def runs(self) -> Iterator[RunInterval]:
        from labelloop_core.ledger import parse_iso

        for (arn, running_at), interval in sorted(self.intervals.items(), key=lambda item: item[0][1]):
            run: OpenRun = interval["run"]
            stopped = interval["stopped_at"]
            yield RunInterval(
                arn,
                parse_iso(running_at),
                parse_iso(stopped) if stopped else None,
                run.min_units,
                run.max_units,
            )
