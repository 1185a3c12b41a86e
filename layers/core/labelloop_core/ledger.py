"""The ledger table's items: keys, statuses, typed records and the conditions that guard writes.

One DynamoDB table (`LEDGER_TABLE`, keys `pk`/`sk`) records where every image, review, label and
training stands. This module is the one home of its layout (no boto3 here); the DynamoDB adapter
(`labelloop_core.adapters.ledger`) encodes these keys, records and conditions.

| item | pk | sk | written by |
|---|---|---|---|
| image version | `IMAGE#<imageId>` | `STATE` | Detect, StartReview, AppendLabels |
| review (loop) | `LOOP#<loopName>` | `STATE` | StartReview, AppendLabels |
| label | `LABEL#<loopName>` | `LABEL` | AppendLabels (create), Retrain (settle) |
| pending-label counter | `COUNTER#labels` | `PENDING` | AppendLabels (+1), Retrain (-n) |
| training lock | `TRAINING` | `CURRENT` | Retrain (claim, start), Promote (start, finish) |
| schedule window | `RETRAIN#<window>` | `WINDOW` | Retrain |
| promotion decision | `VERSION#<versionName>` | `DECISION` | Promote |
| training dataset | `DATASETS` | `VERSION#<versionName>` | Retrain (at training start) |

Statuses carry a `stage` number and writes are conditional on it, so duplicate, replayed or
out-of-order events never move an item backwards (a late Detect duplicate cannot turn a LABELED
image back into REVIEW_REQUESTED). Label items carry `pending` ("1") while not yet used for training:
the sparse index `PendingLabels` lists exactly those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from labelloop_core.evaluation import EvaluationMetrics

Key = dict[str, str]

# --- statuses -------------------------------------------------------------------------------------
IMAGE_STAGES = {
    "REJECTED": 1,
    "PREDICTED": 1,
    "REVIEW_REQUESTED": 1,
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
PENDING_COUNTER_KEY: Key = {"pk": "COUNTER#labels", "sk": "PENDING"}
TRAINING_LOCK_KEY: Key = {"pk": "TRAINING", "sk": "CURRENT"}


def image_key(image_id: str) -> Key:
    return {"pk": f"IMAGE#{image_id}", "sk": "STATE"}


def loop_key(loop_name: str) -> Key:
    return {"pk": f"LOOP#{loop_name}", "sk": "STATE"}


def label_key(loop_name: str) -> Key:
    return {"pk": f"{LABEL_PREFIX}{loop_name}", "sk": "LABEL"}


def window_key(window: str) -> Key:
    return {"pk": f"RETRAIN#{window}", "sk": "WINDOW"}


def decision_key(version_name: str) -> Key:
    return {"pk": f"VERSION#{version_name}", "sk": "DECISION"}


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
STATUS_VALUES = {":claimed": CLAIMED, ":training": TRAINING, ":starting": STARTING, ":released": RELEASED}


def iso(moment: datetime) -> str:
    """The ledger's time format: ISO-8601 UTC with `Z` (sorts as text)."""
    return moment.isoformat().replace("+00:00", "Z")


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value)


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
    if item.get("f1") is None:
        return None
    per_label = item.get("perLabelF1") or {}
    return EvaluationMetrics(
        float(item["f1"]),
        item.get("precision"),
        item.get("recall"),
        {label: float(score) for label, score in per_label.items()},
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
