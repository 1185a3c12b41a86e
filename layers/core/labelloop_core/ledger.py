"""The ledger table's items: keys, statuses, typed records and the conditions that guard writes.

One DynamoDB table (`LEDGER_TABLE`, keys `pk`/`sk`) records where every image, review, label and
training stands. This module is the one home of its layout (no boto3 here); the DynamoDB adapter
(`labelloop_core.adapters.ledger`) encodes these keys, records and conditions.

| item | pk | sk | written by |
|---|---|---|---|
| image version | `IMAGE#<imageId>` | `STATE` | Detect, StartReview, AppendLabels |
| review (loop) | `LOOP#<loopName>` | `STATE` | StartReview, AppendLabels |
| label (+ reviewers' agreement) | `LABEL#<loopName>` | `LABEL` | AppendLabels (create), Retrain (settle) |
| pending-label counter | `COUNTER#labels` | `PENDING` | AppendLabels (+1), Retrain (-n) |
| training lock | `TRAINING` | `CURRENT` | Retrain (claim, start), Promote (start, finish) |
| schedule window | `RETRAIN#<window>` | `WINDOW` | Retrain |
| promotion decision | `VERSION#<versionName>` | `DECISION` | Promote |
| review budget of a UTC day | `BUDGET#<YYYY-MM-DD>` | `OPENED` | StartReview (+1 per review opened) |
| review waiting for budget | `WAITING#<reviewName>` | `REQUEST` | StartReview |
| model control state | `MODEL` | `CONTROL` | ModelController (state), Detect (`last_detection_at`) |
| running interval | `MODELRUN` | `<runningAt>#<versionName>` | ModelController (open, close) |
| training dataset | `DATASETS` | `VERSION#<versionName>` | Retrain (at training start) |

Statuses carry a `stage` number and writes are conditional on it, so duplicate, replayed or
out-of-order events never move an item backwards (a late Detect duplicate cannot turn a LABELED
image back into REVIEW_REQUESTED). Label items carry `pending` ("1") while not yet used for training:
the sparse index `PendingLabels` lists exactly those.

The review budget (`MaxReviewsPerDay`, DESIGN §9): with a budget, a review request is first kept as a
WAITING item (its ReviewRequested detail and its priority); the sparse index `WaitingReviews` lists the
waiting ones by `rank` (priority order) under `queue` = "waiting". Admitting one is a transaction:
the day's counter goes up only while it is below the budget, and the item moves to `queue` =
"admitted" only if it was still waiting, so no review is counted twice and none beyond the budget.
An admitted item leaves the index once its review is open; one still admitted (a crash in between)
is opened by the next scheduled run. Nothing waiting is ever dropped: it waits for the next day.

Running intervals are what inference-unit hours are billed on (`model_control.usage`): the controller
opens one when it first sees a version RUNNING (the active model, the candidate Promote starts, a
previous model until it stops) and closes it when it sees it no longer RUNNING, or at once when it
stops the model itself. One partition holds them all (a few per day), so a report is one Query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # built on first read: Detect and the review functions never read metrics or runs
    from labelloop_core.evaluation import EvaluationMetrics
    from labelloop_core.model_control import RunInterval

Key = dict[str, str]

# --- statuses -------------------------------------------------------------------------------------
IMAGE_STAGES = {
    "REJECTED": 1,
    "PREDICTED": 1,
    "REVIEW_REQUESTED": 1,
    "REVIEW_WAITING": 1,  # waiting for the review budget of a later day
    "IN_REVIEW": 2,
    "LABELED": 3,
    "REVIEW_FAILED": 3,
    "REVIEW_STOPPED": 3,
    "SUPERSEDED": 3,  # the key was uploaded again or deleted before its review: a newer version counts
}
LOOP_STAGES = {
    "IN_PROGRESS": 1,
    "COMPLETED": 2,
    "FAILED": 2,
    "STOPPED": 2,
    "INVALID_REVIEW": 2,
    "SUPERSEDED": 2,
}
# Training lock. CLAIMED: a Retrain invocation prepares a training; TRAINING: Rekognition trains;
# STARTING: Promote decided to promote and the candidate is starting. Anything else is finished.
CLAIMED, TRAINING, STARTING = "CLAIMED", "TRAINING", "STARTING"
BUSY_STATUSES = (CLAIMED, TRAINING, STARTING)
PROMOTED, REJECTED, RELEASED = "PROMOTED", "REJECTED", "RELEASED"
# A CLAIMED lock older than the longest Lambda run belongs to a crashed invocation.
STALE_CLAIM = timedelta(minutes=15)

# --- keys -----------------------------------------------------------------------------------------
PENDING_INDEX = "PendingLabels"
PENDING_VALUE = "1"
LABEL_PREFIX = "LABEL#"
WAITING_INDEX = "WaitingReviews"
WAITING, ADMITTED = "waiting", "admitted"  # `queue` of a waiting review (the index's partition key)
PENDING_COUNTER_KEY: Key = {"pk": "COUNTER#labels", "sk": "PENDING"}
TRAINING_LOCK_KEY: Key = {"pk": "TRAINING", "sk": "CURRENT"}
MODEL_CONTROL_KEY: Key = {"pk": "MODEL", "sk": "CONTROL"}
MODEL_RUNS_PK = "MODELRUN"


def image_key(image_id: str) -> Key:
    return {"pk": f"IMAGE#{image_id}", "sk": "STATE"}


def loop_key(loop_name: str) -> Key:
    return {"pk": f"LOOP#{loop_name}", "sk": "STATE"}


def label_key(loop_name: str) -> Key:
    return {"pk": f"{LABEL_PREFIX}{loop_name}", "sk": "LABEL"}


def budget_key(day: str) -> Key:
    return {"pk": f"BUDGET#{day}", "sk": "OPENED"}


def waiting_key(review_name: str) -> Key:
    return {"pk": f"WAITING#{review_name}", "sk": "REQUEST"}


def budget_day(moment: datetime) -> str:
    """The UTC day a review opened at `moment` counts against."""
    if moment.tzinfo is None:
        raise ValueError("budget_day needs a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def window_key(window: str) -> Key:
    return {"pk": f"RETRAIN#{window}", "sk": "WINDOW"}


def decision_key(version_name: str) -> Key:
    return {"pk": f"VERSION#{version_name}", "sk": "DECISION"}


def run_key(running_at: str, version_arn: str) -> Key:
    from labelloop_core.naming import version_name_from_arn

    return {"pk": MODEL_RUNS_PK, "sk": f"{running_at}#{version_name_from_arn(version_arn)}"}


# Every training's dataset in one partition: one Query lists them, oldest first (names sort by time).
DATASETS_PK = "DATASETS"
DATASET_SK_PREFIX = "VERSION#"


def dataset_key(version_name: str) -> Key:
    return {"pk": DATASETS_PK, "sk": f"{DATASET_SK_PREFIX}{version_name}"}


# --- conditions -----------------------------------------------------------------------------------
CREATE_ONLY = "attribute_not_exists(pk)"
STAGE_NOT_BEHIND = "attribute_not_exists(#stage) OR #stage <= :stage"
EVENT_FLAG_IS = "attribute_exists(pk) AND event_sent = :old"
STILL_PENDING = "attribute_exists(pending)"
# A window can be claimed again by a retry of its own event while its training never started.
WINDOW_CLAIMABLE = "attribute_not_exists(pk) OR #status IN (:claimed, :released)"
LOCK_FREE = (
    "attribute_not_exists(pk) OR NOT (#status IN (:claimed, :training, :starting))"
    " OR (#status = :claimed AND (#window = :window OR claimed_at < :stale))"
)
OWN_CLAIM = "#window = :window AND #status IN (:claimed, :training)"
CLAIMED_FOR_WINDOW = "#status = :claimed AND #window = :window"
STILL_CLAIMED = "#status = :claimed"
LOCK_IN_PROMOTION = "version_arn = :arn AND #status IN (:training, :starting)"
RUN_OPEN = "attribute_exists(pk) AND attribute_not_exists(stopped_at)"
DETECTION_NEWER = "attribute_not_exists(last_detection_at) OR last_detection_at < :now"
STATUS_VALUES = {":claimed": CLAIMED, ":training": TRAINING, ":starting": STARTING, ":released": RELEASED}
# The review budget: a day's counter below the budget; a waiting item not yet admitted.
BUDGET_LEFT = "attribute_not_exists(opened) OR opened < :max"
STILL_WAITING = "#queue = :waiting"
STILL_ADMITTED = "#queue = :admitted"
QUEUE_VALUES = {":waiting": WAITING, ":admitted": ADMITTED}


def iso(moment: datetime) -> str:
    """The ledger's time format: ISO-8601 UTC with `Z` (sorts as text)."""
    return moment.isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The inverse of `iso`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value)


class Admission(Enum):
    """What admitting a waiting review against the day's budget gave."""

    ADMITTED = "admitted"
    BUDGET_SPENT = "budget spent"
    TAKEN = "already admitted"  # another invocation admitted it


class ClaimResult(Enum):
    """What claiming a retrain schedule window gave."""

    CLAIMED = "claimed"
    WINDOW_USED = "window already used"
    TRAINING_IN_PROGRESS = "training in progress"


# --- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    status: str
    stage: int
    reason: str | None = None
    model_arn: str | None = None
    loop_name: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ImageRecord:
        return cls(
            image_id=str(item.get("image_id") or str(item["pk"]).removeprefix("IMAGE#")),
            status=str(item.get("status", "")),
            stage=int(item.get("stage", 0)),
            reason=_text(item, "reason"),
            model_arn=_text(item, "model_arn"),
            loop_name=_text(item, "loop_name"),
        )

    @property
    def reviewed(self) -> bool:
        """Past the review request: a review was opened or has ended."""
        return self.stage > IMAGE_STAGES["REVIEW_REQUESTED"]


@dataclass(frozen=True)
class LoopRecord:
    loop_name: str
    status: str
    image_id: str | None = None
    label_key: str | None = None
    failure_reason: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> LoopRecord:
        return cls(
            loop_name=str(item.get("loop_name") or str(item["pk"]).removeprefix("LOOP#")),
            status=str(item.get("status", "")),
            image_id=_text(item, "image_id"),
            label_key=_text(item, "label_key"),
            failure_reason=_text(item, "failure_reason"),
        )


@dataclass(frozen=True)
class LabelRecord:
    loop_name: str
    label_key: str
    source_ref: str | None
    created_at: str | None
    pending: bool
    event_sent: bool
    # Several reviewers: {reviewers, agreement, droppedBoxes, lowAgreement} (labelloop_core.consolidation)
    consolidation: Mapping[str, Any] | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> LabelRecord:
        loop_name = str(item.get("loop_name") or str(item["pk"]).removeprefix(LABEL_PREFIX))
        return cls(
            loop_name=loop_name,
            label_key=str(item.get("label_key") or f"labels/{loop_name}.json"),
            source_ref=_text(item, "source_ref"),
            created_at=_text(item, "created_at"),
            pending=item.get("pending") == PENDING_VALUE,
            event_sent=bool(item.get("event_sent")),
            consolidation=dict(item["consolidation"]) if item.get("consolidation") else None,
        )


@dataclass(frozen=True)
class PendingLabel:
    """A label not used for training yet, as the PendingLabels index lists it."""

    loop_name: str
    label_key: str
    created_at: str

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> PendingLabel:
        record = LabelRecord.from_item(item)
        return cls(record.loop_name, record.label_key, record.created_at or "")


@dataclass(frozen=True)
class WaitingReview:
    """A review request kept until the budget admits it (the ReviewRequested detail, verbatim)."""

    name: str
    detail: Mapping[str, Any]
    priority: float
    requested_at: str
    queue: str

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> WaitingReview:
        return cls(
            name=str(item.get("review_name") or str(item["pk"]).removeprefix("WAITING#")),
            detail=dict(item.get("detail") or {}),
            priority=float(item.get("priority", 0)),
            requested_at=str(item.get("requested_at", "")),
            queue=str(item.get("queue", "")),
        )


@dataclass(frozen=True)
class TrainingLock:
    status: str
    window: str | None = None
    version_arn: str | None = None
    version_name: str | None = None
    started_at: str | None = None
    claimed_at: str | None = None
    manifest_key: str | None = None
    base_manifest_key: str | None = None
    last_manifest_key: str | None = None
    previous_arn: str | None = None
    candidate: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TrainingLock:
        names = (
            "window",
            "version_arn",
            "version_name",
            "started_at",
            "claimed_at",
            "manifest_key",
            "base_manifest_key",
            "last_manifest_key",
            "previous_arn",
        )
        return cls(
            status=str(item.get("status", RELEASED)),
            candidate=dict(item.get("candidate") or {}),
            **{name: _text(item, name) for name in names},
        )

    @property
    def busy(self) -> bool:
        return self.status in BUSY_STATUSES

    def resumable(self, window: str) -> bool:
        """Claimed for `window` by an attempt that failed before Rekognition accepted the training."""
        return self.status == CLAIMED and self.window == window

    def busy_at(self, now: datetime) -> bool:
        """Busy, unless it is a claim abandoned by a crashed invocation."""
        if self.status != CLAIMED:
            return self.busy
        return not self.claimed_at or self.claimed_at >= iso(now - STALE_CLAIM)


@dataclass(frozen=True)
class Decision:
    """Promote's verdict on a trained version, with the metrics it compared."""

    decision: str  # PROMOTED | REJECTED
    reason: str
    version_arn: str
    decided_at: str
    metrics: EvaluationMetrics | None = None
    compared_arn: str | None = None
    compared_f1: float | None = None

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "decision": self.decision,
            "reason": self.reason[:1000],
            "version_arn": self.version_arn,
            "compared_arn": self.compared_arn,
            "compared_f1": self.compared_f1,
            "decided_at": self.decided_at,
        }
        if self.metrics is not None:
            item.update(metrics_to_item(self.metrics))
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Decision:
        compared_f1 = item.get("compared_f1")
        return cls(
            decision=str(item.get("decision", "")),
            reason=str(item.get("reason", "")),
            version_arn=str(item.get("version_arn", "")),
            decided_at=str(item.get("decided_at", "")),
            metrics=metrics_from_item(item),
            compared_arn=_text(item, "compared_arn"),
            compared_f1=float(compared_f1) if compared_f1 is not None else None,
        )


def metrics_to_item(metrics: EvaluationMetrics) -> dict[str, Any]:
    return {
        "f1": metrics.f1,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "perLabelF1": dict(metrics.per_label),
    }


def metrics_from_item(item: Mapping[str, Any]) -> EvaluationMetrics | None:
    """Metrics stored with a decision or a candidate (None when there are none, e.g. a failed training)."""
    from labelloop_core.evaluation import EvaluationMetrics

    if item.get("f1") is None:
        return None
    per_label = item.get("perLabelF1") or {}
    return EvaluationMetrics(
        float(item["f1"]),
        item.get("precision"),
        item.get("recall"),
        {label: float(score) for label, score in per_label.items()},
    )


# --- inference on demand --------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenRun:
    """A running interval the controller has not closed yet (kept in the control state)."""

    running_at: str
    min_units: int
    max_units: int | None = None
    metered_until: str | None = None  # inference-unit hours are published up to here

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"running_at": self.running_at, "min_units": self.min_units}
        if self.max_units is not None:
            item["max_units"] = self.max_units
        if self.metered_until is not None:
            item["metered_until"] = self.metered_until
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> OpenRun:
        max_units = item.get("max_units")
        return cls(
            running_at=str(item["running_at"]),
            min_units=int(item.get("min_units", 1)),
            max_units=int(max_units) if max_units is not None else None,
            metered_until=_text(item, "metered_until"),
        )


@dataclass(frozen=True)
class ControlState:
    """The ModelController's memory between ticks (`MODEL`/`CONTROL`).

    `last_detection_at` is written by Detect after each batch, everything else by the controller
    (one writer each: the controller is a singleton and never writes Detect's attribute)."""

    last_work_at: str | None = None  # the last tick that saw messages waiting
    last_detection_at: str | None = None
    open_runs: Mapping[str, OpenRun] = field(default_factory=dict)  # by version ARN
    start_requested: Mapping[str, str] = field(default_factory=dict)  # version ARN -> when
    last_decision: Mapping[str, Any] = field(default_factory=dict)  # what the last tick saw and did

    CONTROLLER_ATTRIBUTES = ("last_work_at", "open_runs", "start_requested", "last_decision")

    def to_item(self) -> dict[str, Any]:
        """The controller's attributes (not `last_detection_at`, which is Detect's)."""
        return {
            "last_work_at": self.last_work_at,
            "open_runs": {arn: run.to_item() for arn, run in self.open_runs.items()},
            "start_requested": dict(self.start_requested),
            "last_decision": dict(self.last_decision),
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> ControlState:
        if not item:
            return cls()
        return cls(
            last_work_at=_text(item, "last_work_at"),
            last_detection_at=_text(item, "last_detection_at"),
            open_runs={arn: OpenRun.from_item(run) for arn, run in (item.get("open_runs") or {}).items()},
            start_requested={arn: str(at) for arn, at in (item.get("start_requested") or {}).items()},
            last_decision=dict(item.get("last_decision") or {}),
        )


def run_item(version_arn: str, run: OpenRun) -> dict[str, Any]:
    item = {**run_key(run.running_at, version_arn), "version_arn": version_arn, **run.to_item()}
    item.pop("metered_until", None)
    return item


def run_from_item(item: Mapping[str, Any]) -> RunInterval:
    from labelloop_core.model_control import RunInterval

    max_units = item.get("max_units")
    stopped = _text(item, "stopped_at")
    return RunInterval(
        version_arn=str(item["version_arn"]),
        running_at=parse_iso(str(item["running_at"])),
        stopped_at=parse_iso(stopped) if stopped else None,
        min_units=int(item.get("min_units", 1)),
        max_units=int(max_units) if max_units is not None else None,
    )


@dataclass(frozen=True)
class LabelCount:
    images: int = 0  # images with at least one box of the label
    boxes: int = 0


@dataclass(frozen=True)
class DatasetRecord:
    """What a training was trained on, recorded by Retrain when it starts the training."""

    version_name: str
    version_arn: str
    started_at: str
    mode: str  # manifest | dataset
    manifest_key: str | None  # manifests/train-<version>.manifest (None: the project's TRAIN dataset)
    base_manifest_key: str | None
    test_manifest_key: str | None
    sha256: str  # of the merged manifest's bytes, as uploaded
    size_bytes: int
    images: int
    boxes: int
    per_label: Mapping[str, LabelCount]
    human_labels: int  # labels from human review used for the first time by this training
    labels_rejected: int = 0

    def to_item(self) -> dict[str, Any]:
        return {
            "version_name": self.version_name,
            "version_arn": self.version_arn,
            "started_at": self.started_at,
            "mode": self.mode,
            "manifest_key": self.manifest_key,
            "base_manifest_key": self.base_manifest_key,
            "test_manifest_key": self.test_manifest_key,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "images": self.images,
            "boxes": self.boxes,
            "per_label": {
                label: {"images": count.images, "boxes": count.boxes}
                for label, count in self.per_label.items()
            },
            "human_labels": self.human_labels,
            "labels_rejected": self.labels_rejected,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> DatasetRecord:
        per_label = item.get("per_label") or {}
        return cls(
            version_name=str(item.get("version_name") or str(item["sk"]).removeprefix(DATASET_SK_PREFIX)),
            version_arn=str(item.get("version_arn", "")),
            started_at=str(item.get("started_at", "")),
            mode=str(item.get("mode", "")),
            manifest_key=_text(item, "manifest_key"),
            base_manifest_key=_text(item, "base_manifest_key"),
            test_manifest_key=_text(item, "test_manifest_key"),
            sha256=str(item.get("sha256", "")),
            size_bytes=int(item.get("size_bytes", 0)),
            images=int(item.get("images", 0)),
            boxes=int(item.get("boxes", 0)),
            per_label={
                str(label): LabelCount(int(count.get("images", 0)), int(count.get("boxes", 0)))
                for label, count in per_label.items()
            },
            human_labels=int(item.get("human_labels", 0)),
            labels_rejected=int(item.get("labels_rejected", 0)),
        )
