"""The ports the services depend on: what each use case needs from AWS, as typed protocols.

The boto3 adapters in `labelloop_core.adapters` implement them for AWS (and the local stack);
`tests/support/fakes.py` implements them in memory for fast unit tests of every service. Adapters
translate AWS errors into `TransientError` (retry later), `ObjectMissing`, `AccessDenied` or
`InvalidImage`, so no service reads an AWS error code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from labelloop_core.naming import ImageRef, version_name_from_arn

if TYPE_CHECKING:  # annotations only: a function imports the domain modules its service uses, no more
    from labelloop_core.ledger import (
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
    )
    from labelloop_core.model_control import RunInterval
    from labelloop_core.policy import Detection
    from labelloop_core.review_tasks import Task


@dataclass(frozen=True)
class ObjectHead:
    """The first bytes of an object and its total size."""

    data: bytes
    size: int


@dataclass(frozen=True)
class ObjectVersion:
    """The version a key names now: its version id (versioned bucket) and ETag."""

    version_id: str | None
    etag: str | None

    def is_version_of(self, image: ImageRef) -> bool:
        """True when the key still holds exactly this image version (compared by version id, else ETag)."""
        if image.version_id and image.version_id != "null":
            return self.version_id == image.version_id
        return self.etag == image.etag


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str
    version: str | None = None

    def as_s3_object(self) -> dict[str, str]:
        s3_object = {"Bucket": self.bucket, "Name": self.key}
        if self.version:
            s3_object["Version"] = self.version
        return s3_object


@dataclass(frozen=True)
class ProjectVersion:
    """The parts of a Custom Labels project version labelloop acts on."""

    arn: str
    status: str
    status_message: str
    f1_score: float | None
    summary: S3Location | None
    min_units: int | None = None  # while starting or running: MinInferenceUnits
    max_units: int | None = None  # MaxInferenceUnits (auto-scaling), if any

    @property
    def name(self) -> str:
        return version_name_from_arn(self.arn)


@dataclass(frozen=True)
class QueueDepth:
    """Messages of a queue: visible, received but not deleted yet (in flight), and delayed."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send: `id` names it in the answer, `attributes` are String message attributes."""

    id: str
    body: str
    delay_seconds: int = 0
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MappingState:
    """An event source mapping: its State (Enabled, Disabled, Enabling, Disabling, Updating, ...)."""

    state: str

    @property
    def enabled(self) -> bool:
        return self.state == "Enabled"

    @property
    def settled(self) -> bool:
        """Enabled or Disabled, not in the middle of a change."""
        return self.state in ("Enabled", "Disabled")


@dataclass(frozen=True)
class OpenedReview:
    name: str
    created: bool  # False when the review already existed (a duplicate or replayed request)


class ObjectStore(Protocol):
    """The stack's bucket (and, for `get_json`, any bucket named by an AWS document)."""

    bucket: str

    def read_head(self, key: str, length: int, version_id: str | None = None) -> ObjectHead: ...
    def read_tail(self, key: str, length: int, version_id: str | None = None) -> bytes: ...
    def get_json(self, key: str, bucket: str | None = None) -> Any: ...
    def put_json(self, key: str, document: Any) -> None: ...
    def create_json(self, key: str, document: Any) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def current_version(self, key: str) -> ObjectVersion | None: ...
    def iter_lines(self, key: str) -> Iterable[str]: ...
    def upload_file(self, path: str, key: str) -> None: ...


class EventPublisher(Protocol):
    def publish(
        self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None
    ) -> str: ...


class ModelRegistry(Protocol):
    def active_model_arn(self) -> str | None: ...
    def previous_model_arn(self) -> str | None: ...
    def switch_active(self, new_arn: str) -> str | None: ...


class Detector(Protocol):
    def detect(self, model_arn: str, image: ImageRef, min_confidence: float) -> list[Detection]: ...


class ReviewBackend(Protocol):
    """Where human reviews run (Amazon A2I human loops, or labelloop's own review tasks).

    `priority` orders the built-in backend's tasks (lower first); A2I has no order of its own (the
    review budget's queue orders what is opened)."""

    def open(self, name: str, input_content: Mapping[str, Any], priority: float) -> OpenedReview: ...


class ReviewQueue(Protocol):
    """Reviews waiting for the review budget (`MaxReviewsPerDay`), in the ledger."""

    def enqueue(
        self, name: str, detail: Mapping[str, Any], priority: float, requested_at: datetime
    ) -> bool: ...
    def waiting(self, queue: str, limit: int) -> list[WaitingReview]: ...
    def admit(self, name: str, day: str, max_per_day: int) -> Admission: ...
    def opened(self, name: str) -> None: ...
    def opened_on(self, day: str) -> int: ...


class TaskStore(Protocol):
    """The built-in backend's review tasks (`labelloop_core.review_tasks`); every write is conditional."""

    def create(self, item: Mapping[str, Any]) -> bool: ...
    def get(self, task_id: str) -> Task | None: ...
    def open_tasks(self) -> Iterator[Task]: ...
    def claim(self, task: Task, slot: int, worker: str, now: float, until: float) -> Task | None: ...
    def release(self, task_id: str, slot: int, worker: str, now: float) -> bool: ...
    def answer(
        self, task_id: str, slot: int, worker: str, answer: Mapping[str, Any], now: float
    ) -> Task | None: ...
    def finish(self, task_id: str, status: str, output_key: str | None) -> bool: ...


class ImageLinks(Protocol):
    """Short-lived links a browser can load one image version through (pre-signed S3 GETs)."""

    def link(self, image: ImageRef, expires_in: int) -> str: ...


class ReviewLedger(Protocol):
    def get_image(self, image_id: str) -> ImageRecord | None: ...
    def get_loop(self, loop_name: str) -> LoopRecord | None: ...
    def get_label(self, loop_name: str) -> LabelRecord | None: ...
    def record_image(
        self,
        image: ImageRef,
        status: str,
        *,
        reason: str | None = None,
        model_arn: str | None = None,
        loop_name: str | None = None,
    ) -> bool: ...
    def record_image_status(self, image_id: str, status: str, *, reason: str | None = None) -> bool: ...
    def record_loop(
        self,
        loop_name: str,
        status: str,
        *,
        image_id: str | None = None,
        label_key: str | None = None,
        failure_reason: str | None = None,
    ) -> bool: ...
    def put_label(
        self,
        loop_name: str,
        label_key: str,
        source_ref: str,
        created_at: str,
        agreement: Mapping[str, Any] | None = None,
    ) -> bool: ...
    def claim_label_event(self, loop_name: str) -> bool: ...
    def release_label_event(self, loop_name: str) -> None: ...


class TrainingLedger(Protocol):
    def pending_count(self) -> int: ...
    def read_lock(self) -> TrainingLock | None: ...
    def claim(self, window: str, now: datetime) -> ClaimResult: ...
    def release_claim(self, window: str, reason: str, now: datetime) -> None: ...
    def mark_training(
        self,
        window: str,
        version_arn: str,
        version_name: str,
        manifest_key: str | None,
        base_manifest_key: str | None,
        now: datetime,
    ) -> None: ...
    def pending_labels(self) -> Iterator[PendingLabel]: ...
    def settle_labels(
        self, labels: Sequence[PendingLabel], version_name: str, rejected: Mapping[str, str], now: datetime
    ) -> int: ...
    def mark_starting(
        self, version_arn: str, previous_arn: str, candidate: Mapping[str, Any], now: datetime
    ) -> bool: ...
    def finish(self, version_arn: str, status: str, reason: str, now: datetime) -> bool: ...
    def record_decision(self, version_name: str, decision: Decision) -> None: ...
    def read_decision(self, version_name: str) -> Decision | None: ...
    def record_dataset(self, record: DatasetRecord) -> None: ...


class CustomLabels(Protocol):
    """One Rekognition Custom Labels project."""

    project_arn: str

    def datasets(self) -> dict[str, str]: ...
    def update_dataset_entries(self, dataset_arn: str, lines: Iterable[str] | IO[str]) -> int: ...
    def create_version(
        self,
        version_name: str,
        output: S3Location,
        training_manifest: S3Location | None,
        test_manifest: S3Location | None = None,
    ) -> str: ...
    def describe_versions(self, version_names: Sequence[str]) -> dict[str, ProjectVersion]: ...
    def describe_version(self, version_arn: str) -> ProjectVersion | None: ...
    def status_of(self, version_arn: str) -> ProjectVersion | None: ...
    def start_version(
        self, version_arn: str, min_inference_units: int, max_inference_units: int | None = None
    ) -> str: ...
    def stop_version(self, version_arn: str) -> str: ...


class MessageQueue(Protocol):
    """One SQS queue."""

    def depth(self) -> QueueDepth: ...
    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]: ...  # ids of those NOT sent


class EventSourceMapping(Protocol):
    """The event source mapping through which a function consumes a queue."""

    def state(self) -> MappingState: ...
    def set_enabled(self, enabled: bool) -> MappingState: ...


class ModelActivity(Protocol):
    """Where Detect notes that it just worked (the controller's idle clock)."""

    def record_detection(self, now: datetime) -> None: ...


class ModelLedger(ModelActivity, Protocol):
    """The controller's state and the running intervals (`labelloop_core.ledger`)."""

    def read_control(self) -> ControlState: ...
    def save_control(self, state: ControlState) -> None: ...
    def open_run(self, version_arn: str, run: OpenRun) -> bool: ...
    def close_run(self, version_arn: str, running_at: str, stopped_at: str, reason: str) -> bool: ...
    def runs(self) -> Iterator[RunInterval]: ...
