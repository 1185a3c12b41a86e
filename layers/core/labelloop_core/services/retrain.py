"""Retrain: train a new model version once enough new human labels exist.

The scheduled check costs a constant number of AWS calls (counter + lock GetItems) whatever the
number of labels. Past the check, the window and the lock are claimed in one transaction, so a
replayed or duplicated schedule event never starts a second training, and no training starts while
another is in progress. If anything fails before Rekognition accepted the training, the claim is
released (the next schedule or the platform's retry tries again) and no label counts as consumed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, ClassVar, TextIO, cast

from labelloop_core import config, manifest, naming, observability
from labelloop_core.config import ConfigError, setting
from labelloop_core.errors import LabelloopError, ObjectMissing
from labelloop_core.inbound.schedule import ScheduleTick
from labelloop_core.ledger import ClaimResult, DatasetRecord, PendingLabel, TrainingLock, iso
from labelloop_core.ports import CustomLabels, EventPublisher, ObjectStore, S3Location, TrainingLedger

if TYPE_CHECKING:  # a training start imports it (and hashlib); the schedule runs that skip never do
    from labelloop_core.datasets import ManifestTally

MANIFEST_MODE, DATASET_MODE = "manifest", "dataset"
TRAINING_OUTPUT_PREFIX = "training-output/"
MANIFESTS_PREFIX = "manifests/"


@dataclass(frozen=True)
class RetrainResult:
    started: bool
    reason: str
    window: str | None = None
    pending: int | None = None
    version_name: str | None = None
    version_arn: str | None = None
    mode: str | None = None
    manifest_key: str | None = None
    test_manifest_key: str | None = None
    labels_used: int = 0
    labels_rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "started": self.started,
            "reason": self.reason,
            "window": self.window,
            "pending": self.pending,
            "versionName": self.version_name,
            "versionArn": self.version_arn,
            "mode": self.mode,
            "manifestKey": self.manifest_key,
            "testManifestKey": self.test_manifest_key,
            "labelsUsed": self.labels_used,
            "labelsRejected": self.labels_rejected,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class RetrainSettings:
    bucket_name: str = config.bucket_name()
    ledger_table: str = config.ledger_table()
    event_bus_name: str = config.event_bus_name()
    project_arn: str = config.project_arn()
    labels: tuple[str, ...] = config.label_names()
    label_attribute: str = config.manifest_attribute()
    min_new_labels: int = setting("MIN_NEW_LABELS", config.positive_int, 16)
    base_manifest_key: str | None = setting("BASE_MANIFEST_KEY", config.text, "manifests/base.manifest")
    test_manifest_key: str | None = setting("TEST_MANIFEST_KEY", config.text, "manifests/test.manifest")

    def check(self) -> None:
        # A model evaluated on its own training images would report a meaningless F1.
        if self.test_manifest_key is not None and self.test_manifest_key == self.base_manifest_key:
            raise ConfigError(
                "TEST_MANIFEST_KEY",
                f"{self.test_manifest_key!r} is also BASE_MANIFEST_KEY: "
                "the test images must not be trained on",
            )


def manifest_key_for(version_name: str) -> str:
    return f"{MANIFESTS_PREFIX}train-{version_name}.manifest"


class LabelSelection:
    """Reads pending label objects for the merge, remembering which were usable and which not."""

    def __init__(self, label_objects: ObjectStore, class_map: manifest.ClassMap) -> None:
        self._label_objects = label_objects
        self._class_map = class_map
        self.used: list[PendingLabel] = []
        self.rejected: dict[str, str] = {}  # loop name -> why the label cannot be trained on

    def lines(self, labels: Iterable[PendingLabel]) -> Iterator[str]:
        for label in labels:
            text = self._read(label)
            if text is not None:
                self.used.append(label)
                yield text

    def rejected_labels(self, labels: Sequence[PendingLabel]) -> list[PendingLabel]:
        return [label for label in labels if label.loop_name in self.rejected]

    def _read(self, label: PendingLabel) -> str | None:
        try:
            line = self._label_objects.get_json(label.label_key)
        except ObjectMissing as error:
            return self._reject(label, f"label object missing: {error}")
        except ValueError as error:
            return self._reject(label, f"label object {label.label_key} is not JSON: {error}")
        problems = manifest.validate_line(line, self._class_map)
        if problems:
            return self._reject(
                label, f"invalid manifest line in {label.label_key}: {'; '.join(problems[:5])}"
            )
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))

    def _reject(self, label: PendingLabel, reason: str) -> str | None:
        """Remember why `label` is not usable; returns None (no line) for `_read`."""
        observability.logger().warning(
            "label not usable for training", extra={"loop_name": label.loop_name, "reason": reason}
        )
        self.rejected[label.loop_name] = reason
        return None


@dataclass(frozen=True)
class _StartedTraining:
    """What `_start_training` hands over once Rekognition accepted the training."""

    version_arn: str
    mode: str
    manifest_key: str | None
    test_manifest_key: str | None  # None: Rekognition's AutoCreate split (or the TEST dataset)
    base_key: str | None
    labels: Sequence[PendingLabel]
    selection: LabelSelection
    tally: ManifestTally  # what the merged manifest holds, counted while it was written


class RetrainService:
    settings_type: ClassVar[type[RetrainSettings]] = RetrainSettings

    def __init__(
        self,
        settings: RetrainSettings,
        *,
        ledger: TrainingLedger,
        custom_labels: CustomLabels,
        store: ObjectStore,
        publisher: EventPublisher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        work_dir: str | None = None,  # where the merged manifest is staged (Lambda: /tmp)
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.custom_labels = custom_labels
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.work_dir = work_dir
        self.min_new_labels = settings.min_new_labels
        self.class_map = manifest.ClassMap.from_labels(settings.labels)

    @classmethod
    def from_settings(cls, settings: RetrainSettings) -> RetrainService:
        from labelloop_core.adapters.custom_labels import CustomLabelsProject
        from labelloop_core.adapters.events import EventBridgePublisher
        from labelloop_core.adapters.ledger import TrainingLedger as DynamoTrainingLedger
        from labelloop_core.adapters.s3store import S3Store

        return cls(
            settings,
            ledger=DynamoTrainingLedger(settings.ledger_table),
            custom_labels=CustomLabelsProject(settings.project_arn),
            store=S3Store(settings.bucket_name),
            publisher=EventBridgePublisher(settings.event_bus_name),
        )

    def handle(self, tick: ScheduleTick) -> RetrainResult:
        window, window_time = tick.window, tick.time
        # The whole check: two GetItems, however many labels are pending.
        pending = self.ledger.pending_count()
        lock = self.ledger.read_lock()
        if pending < self.min_new_labels:
            return self._skip(window, pending, f"{pending} new labels, {self.min_new_labels} needed")
        now = self.clock()
        if lock is not None and lock.busy_at(now) and not lock.resumable(window):
            running = " ".join(part for part in (lock.status, lock.version_name) if part)
            return self._skip(window, pending, f"training in progress ({running})")
        claim = self.ledger.claim(window, now)
        if claim is not ClaimResult.CLAIMED:
            return self._skip(window, pending, claim.value)
        return self._train_claimed(window, window_time, lock, pending)

    def _skip(self, window: str, pending: int, reason: str) -> RetrainResult:
        observability.logger().info(
            "no training started", extra={"window": window, "pending": pending, "reason": reason}
        )
        observability.count("RetrainSkipped")
        return RetrainResult(started=False, reason=reason, window=window, pending=pending)

    def _train_claimed(
        self, window: str, window_time: datetime, lock: TrainingLock | None, pending: int
    ) -> RetrainResult:
        version_name = naming.training_version_name(window_time)
        try:
            outcome = self._start_training(window, version_name, lock, pending)
        except Exception as error:
            # Rekognition has not accepted a training: free the window so a retry can start it.
            observability.logger().exception("retrain failed before training started; releasing the claim")
            observability.count("RetrainFailed")
            self.ledger.release_claim(window, f"{type(error).__name__}: {error}", self.clock())
            raise
        if isinstance(outcome, RetrainResult):
            return outcome
        # From here on a training runs: failures are raised without releasing the lock. The retry of
        # this event resumes the claim and adopts the version by its name.
        return self._record_started(window, version_name, outcome)

    def _start_training(
        self, window: str, version_name: str, lock: TrainingLock | None, pending: int
    ) -> _StartedTraining | RetrainResult:
        labels = list(self.ledger.pending_labels())
        datasets = self.custom_labels.datasets()
        mode = DATASET_MODE if datasets else MANIFEST_MODE
        selection = LabelSelection(self.store, self.class_map)
        base_key = self._base_manifest_key(lock) if mode == MANIFEST_MODE else None
        manifest_key = manifest_key_for(version_name) if mode == MANIFEST_MODE else None
        import tempfile  # only a training start writes a manifest: most scheduled runs skip

        from labelloop_core.datasets import ManifestTally

        with tempfile.NamedTemporaryFile(
            "w+", encoding="utf-8", suffix=".manifest", dir=self.work_dir
        ) as merged:
            tally = ManifestTally(cast(TextIO, merged), self.class_map)
            self._merge(base_key, selection.lines(labels), cast(TextIO, tally))
            tally.finish()
            if len(selection.used) < self.min_new_labels:
                return self._too_few_valid(window, version_name, labels, selection, pending)
            if manifest_key is not None:
                self.store.upload_file(merged.name, manifest_key)
            else:
                self._update_train_dataset(datasets, merged)
        bucket = self.settings.bucket_name
        test_key = self._test_manifest_key() if mode == MANIFEST_MODE else None
        version_arn = self.custom_labels.create_version(
            version_name,
            S3Location(bucket, TRAINING_OUTPUT_PREFIX),
            S3Location(bucket, manifest_key) if manifest_key else None,
            S3Location(bucket, test_key) if test_key else None,
        )
        return _StartedTraining(version_arn, mode, manifest_key, test_key, base_key, labels, selection, tally)

    def _merge(self, base_key: str | None, label_lines: Iterator[str], out: TextIO) -> None:
        """Stream base + labels into `out`: one validated line per source-ref, newest label wins."""
        base_lines = self.store.iter_lines(base_key) if base_key else iter(())
        report = manifest.merge(base_lines, label_lines, out, self.class_map, self.settings.label_attribute)
        out.flush()
        observability.logger().info(
            "merged training data", extra={"base": base_key, "report": report.to_dict()}
        )
        if report.dropped_total:
            observability.count("ManifestLinesDropped", report.dropped_total)

    def _base_manifest_key(self, lock: TrainingLock | None) -> str | None:
        """The last merged manifest already holds every earlier label; the configured base seeds the first."""
        if lock is not None and lock.last_manifest_key:
            return lock.last_manifest_key
        base_key = self.settings.base_manifest_key
        if base_key and not self.store.exists(base_key):
            # A cold start (no base dataset uploaded): the first model learns from human labels only.
            # Raising instead would fail every scheduled run into the DLQ until someone uploads a base.
            observability.logger().warning(
                "base manifest not found: training on human labels only",
                extra={"baseManifestKey": base_key, "bucket": self.settings.bucket_name},
            )
            observability.count("BaseManifestMissing")
            return None
        return base_key

    def _test_manifest_key(self) -> str | None:
        """The fixed test manifest when it exists (one HeadObject): every version is then scored on the
        same images, so F1s compare fairly. Absent, Rekognition auto-creates a 20% split per training."""
        test_key = self.settings.test_manifest_key
        if not test_key:
            return None
        if self.store.exists(test_key):
            return test_key
        observability.logger().info(
            "no fixed test manifest; Rekognition auto-creates the test split",
            extra={"testManifestKey": test_key},
        )
        return None

    def _update_train_dataset(self, datasets: Mapping[str, str], merged: IO[str]) -> None:
        missing = {"TRAIN", "TEST"} - set(datasets)
        if missing:
            absent = " or ".join(sorted(missing))
            raise LabelloopError(f"project {self.settings.project_arn} has datasets but no {absent} dataset")
        merged.seek(0)
        calls = self.custom_labels.update_dataset_entries(datasets["TRAIN"], merged)
        observability.logger().info(
            "train dataset updated", extra={"dataset": datasets["TRAIN"], "calls": calls}
        )

    def _too_few_valid(
        self,
        window: str,
        version_name: str,
        labels: Sequence[PendingLabel],
        selection: LabelSelection,
        pending: int,
    ) -> RetrainResult:
        """Unusable labels stop counting as new (kept, with their reason); the window is freed."""
        now = self.clock()
        rejected = selection.rejected_labels(labels)
        self.ledger.settle_labels(rejected, version_name, selection.rejected, now)
        reason = f"only {len(selection.used)} usable new labels, {self.min_new_labels} needed"
        self.ledger.release_claim(window, reason, now)
        return dataclasses.replace(self._skip(window, pending, reason), labels_rejected=len(rejected))

    def _record_started(self, window: str, version_name: str, started: _StartedTraining) -> RetrainResult:
        now = self.clock()
        version_arn, selection, manifest_key = started.version_arn, started.selection, started.manifest_key
        self.ledger.mark_training(window, version_arn, version_name, manifest_key, started.base_key, now)
        self.ledger.record_dataset(_dataset_record(version_name, started, now))
        settled = selection.used + selection.rejected_labels(started.labels)
        self.ledger.settle_labels(settled, version_name, selection.rejected, now)
        detail = {
            "schemaVersion": "1",
            "versionName": version_name,
            "versionArn": version_arn,
            "manifestKey": manifest_key,
            "mode": started.mode,
            "labelsUsed": len(selection.used),
        }
        self.publisher.publish("RetrainingStarted", detail, resources=[version_arn])
        observability.logger().info(
            "training started",
            extra={"window": window, "testManifestKey": started.test_manifest_key, **detail},
        )
        observability.count("RetrainStarted")
        observability.count("LabelsConsumed", len(selection.used))
        observability.count("LabelsRejected", len(selection.rejected))
        return RetrainResult(
            started=True,
            reason="training started",
            window=window,
            version_name=version_name,
            version_arn=version_arn,
            mode=started.mode,
            manifest_key=manifest_key,
            test_manifest_key=started.test_manifest_key,
            labels_used=len(selection.used),
            labels_rejected=len(selection.rejected),
        )


def _dataset_record(version_name: str, started: _StartedTraining, now: datetime) -> DatasetRecord:
    """What `labelloop datasets list|diff` shows of this training (the F1 comes from Promote's decision)."""
    tally = started.tally
    return DatasetRecord(
        version_name=version_name,
        version_arn=started.version_arn,
        started_at=iso(now),
        mode=started.mode,
        manifest_key=started.manifest_key,
        base_manifest_key=started.base_key,
        test_manifest_key=started.test_manifest_key,
        sha256=tally.sha256,
        size_bytes=tally.size_bytes,
        images=tally.images,
        boxes=tally.boxes,
        per_label=tally.per_label(),
        human_labels=len(started.selection.used),
        labels_rejected=len(started.selection.rejected),
    )
