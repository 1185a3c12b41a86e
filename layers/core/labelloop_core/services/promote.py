"""Promote: compare a trained candidate with the active model, switch to it if it is better.

A state machine driven by the training lock, advanced one step per scheduled tick:
TRAINING → (training done, better) STARTING → (candidate RUNNING) PROMOTED, or REJECTED at any
point. Every step is idempotent: a duplicated or replayed schedule event re-reads the lock and the
model status and either does nothing or repeats a write with the same values.

Inference on demand (DESIGN §10): when the active model is not running (the model controller
stopped it after ModelIdleMinutes without work, or there is no model yet), a better candidate is
promoted by switching the parameter at once, without starting anything: the controller starts the
new active model when work arrives. Only a running (or starting) active model is replaced the
zero-downtime way: the candidate is started, the parameter switched once it runs, the old one
stopped. While the training lock is STARTING the controller never stops the active model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from labelloop_core import config, observability
from labelloop_core.config import setting
from labelloop_core.errors import AccessDenied, InvalidSummary, LabelloopError, ObjectMissing, TransientError
from labelloop_core.evaluation import EvaluationMetrics, decide_promotion, parse_summary
from labelloop_core.inbound.schedule import ScheduleTick
from labelloop_core.ledger import (
    PROMOTED,
    REJECTED,
    STARTING,
    TRAINING,
    Decision,
    TrainingLock,
    metrics_from_item,
    metrics_to_item,
)
from labelloop_core.naming import version_name_from_arn
from labelloop_core.ports import (
    CustomLabels,
    EventPublisher,
    ModelRegistry,
    ObjectStore,
    ProjectVersion,
    TrainingLedger,
)
from labelloop_core.schemas import SchemaViolation, validate

# A summary that cannot be read or parsed rejects the candidate instead of failing every tick.
UNUSABLE_SUMMARY = (InvalidSummary, SchemaViolation, ObjectMissing, ValueError)
# Statuses of an active model that serves (or is about to): replace it without downtime.
LIVE = {"RUNNING", "STARTING"}
# Statuses in which a trained version has its evaluation and can be compared.
EVALUATED = {"TRAINING_COMPLETED", "STARTING", "RUNNING", "STOPPING", "STOPPED"}


_OUTCOME_METRICS = {
    "idle": "PromoteIdle",
    "waiting": "PromoteWaiting",
    "starting": "ModelStarting",
    "promoted": "ModelPromoted",
    "rejected": "ModelRejected",
}


@dataclass(frozen=True)
class PromoteResult:
    action: str  # idle | waiting | starting | promoted | rejected
    reason: str
    version_arn: str | None = None
    previous_arn: str | None = None
    f1: float | None = None
    active_f1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "action": self.action,
            "reason": self.reason,
            "versionArn": self.version_arn,
            "previousArn": self.previous_arn,
            "f1": self.f1,
            "activeF1": self.active_f1,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class PromoteSettings:
    bucket_name: str = config.bucket_name()
    ledger_table: str = config.ledger_table()
    event_bus_name: str = config.event_bus_name()
    active_model_parameter: str = config.active_model_parameter()
    previous_model_parameter: str = config.previous_model_parameter()
    project_arn: str = config.project_arn()
    promotion_margin: float = setting("PROMOTION_MARGIN", config.bounded(0, 0.99, "an F1 difference"), 0.01)
    min_inference_units: int = config.min_inference_units()
    max_inference_units: int | None = config.max_inference_units()
    min_f1_to_promote: float = setting("MIN_F1_TO_PROMOTE", config.bounded(0, 1, "an F1"), 0.5)

    def check(self) -> None:
        config.check_inference_units(self.min_inference_units, self.max_inference_units)


def model_registry(settings: PromoteSettings, client: Any = None) -> ModelRegistry:
    from labelloop_core.adapters.models import SsmModelRegistry

    # Promotion decisions must see the parameters as they are now, never a cached value.
    return SsmModelRegistry(settings.active_model_parameter, settings.previous_model_parameter, 0, client)


def custom_labels_project(settings: PromoteSettings) -> CustomLabels:
    from labelloop_core.adapters.custom_labels import CustomLabelsProject

    return CustomLabelsProject(settings.project_arn)


class PromoteService:
    settings_type: ClassVar[type[PromoteSettings]] = PromoteSettings

    def __init__(
        self,
        settings: PromoteSettings,
        *,
        ledger: TrainingLedger,
        custom_labels: CustomLabels,
        summaries: ObjectStore,
        registry: ModelRegistry,
        publisher: EventPublisher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.custom_labels = custom_labels
        self.summaries = summaries
        self.registry = registry
        self.publisher = publisher
        self.clock = clock
        self.margin = settings.promotion_margin
        self.min_inference_units = settings.min_inference_units
        self.max_inference_units = settings.max_inference_units
        self.min_f1 = settings.min_f1_to_promote

    @classmethod
    def from_settings(cls, settings: PromoteSettings) -> PromoteService:
        from labelloop_core.adapters.events import EventBridgePublisher
        from labelloop_core.adapters.ledger import TrainingLedger as DynamoTrainingLedger
        from labelloop_core.adapters.s3store import S3Store

        return cls(
            settings,
            ledger=DynamoTrainingLedger(settings.ledger_table),
            custom_labels=custom_labels_project(settings),
            summaries=S3Store(settings.bucket_name),
            registry=model_registry(settings),
            publisher=EventBridgePublisher(settings.event_bus_name),
        )

    def handle(self, tick: ScheduleTick) -> PromoteResult:
        result = self._step()
        observability.count(_OUTCOME_METRICS[result.action])
        return result

    def _step(self) -> PromoteResult:
        lock = self.ledger.read_lock()
        if lock is None or lock.status not in (TRAINING, STARTING) or not lock.version_arn:
            return PromoteResult("idle", "no training to evaluate")
        candidate = self.custom_labels.describe_version(lock.version_arn)
        if candidate is None:
            return self._reject(lock.version_arn, f"project version {lock.version_arn} no longer exists")
        if lock.status == TRAINING:
            return self._after_training(lock, candidate)
        return self._after_start(lock, candidate)

    # --- TRAINING: wait for the training, then decide -------------------------------------------

    def _after_training(self, lock: TrainingLock, candidate: ProjectVersion) -> PromoteResult:
        if candidate.status == "TRAINING_IN_PROGRESS":
            return self._waiting(candidate, "training in progress")
        if candidate.status == "TRAINING_FAILED":
            observability.count("TrainingsFailed")  # alarmed: TrainingsFailedAlarm in template.yaml
            return self._reject(
                candidate.arn, f"training failed: {candidate.status_message or 'no reason given'}"
            )
        if candidate.status not in EVALUATED:
            return self._reject(candidate.arn, f"candidate is {candidate.status}, it cannot be evaluated")
        try:
            metrics = self._summary_metrics(candidate)
        except UNUSABLE_SUMMARY as error:
            return self._reject(candidate.arn, f"evaluation summary unusable: {error}")
        active_arn = self.registry.active_model_arn()
        active, active_note = self._active_metrics(active_arn)
        decision = decide_promotion(metrics, active, self.margin, self.min_f1)
        reason = f"{active_note}; {decision.reason}" if active_note else decision.reason
        if not decision.promote:
            return self._reject(candidate.arn, reason, metrics, active, active_arn)
        details = {**metrics_to_item(metrics), "previousF1": decision.active_f1, "reason": reason}
        active_status = self._status(active_arn)
        if active_status not in LIVE:
            # Nothing runs (the model controller stopped it, or there is no model yet): switch now
            # and start nothing; the controller starts the new model when work arrives.
            details["reason"] = (
                f"{reason}; the active model is {active_status or 'none'}: switched without starting "
                "the new model (the model controller starts it when work arrives)"
            )
            return self._promote(candidate.arn, details, candidate.f1_score, stop_previous=False)
        status = self._start(candidate.arn)
        self.ledger.mark_starting(candidate.arn, active_arn or "none", details, self.clock())
        observability.logger().info(
            "promoting: candidate starting",
            extra={"version_arn": candidate.arn, "status": status, "reason": reason},
        )
        return PromoteResult("starting", reason, candidate.arn, active_arn, metrics.f1, decision.active_f1)

    def _summary_metrics(self, version: ProjectVersion) -> EvaluationMetrics:
        if version.summary is None:
            raise InvalidSummary(f"{version.arn} has no EvaluationResult.Summary")
        document = self.summaries.get_json(version.summary.key, bucket=version.summary.bucket)
        validate("evaluation-summary", document)
        return parse_summary(document)

    def _active_metrics(self, active_arn: str | None) -> tuple[EvaluationMetrics | None, str]:
        """The active model's metrics: from its recorded decision, else from its own evaluation."""
        if active_arn is None:
            return None, ""
        try:
            name = version_name_from_arn(active_arn)
        except ValueError:
            return None, f"active model {active_arn} is not a project version"
        recorded = self.ledger.read_decision(name)
        if recorded is not None and recorded.metrics is not None:
            return recorded.metrics, ""
        version = self.custom_labels.describe_version(active_arn)
        if version is None:
            return None, f"active model {active_arn} not found in the project"
        try:
            return self._summary_metrics(version), ""
        except (*UNUSABLE_SUMMARY, AccessDenied) as error:
            # e.g. a model trained elsewhere whose summary this function may not read
            if version.f1_score is None:
                return None, f"active model {active_arn} has no usable evaluation ({error})"
            note = f"active model summary unusable ({error}), compared on its overall F1 only"
            return EvaluationMetrics(version.f1_score), note

    # --- STARTING: wait for RUNNING, then switch ------------------------------------------------

    def _after_start(self, lock: TrainingLock, candidate: ProjectVersion) -> PromoteResult:
        if candidate.status == "RUNNING":
            return self._switch(lock, candidate)
        if candidate.status == "STARTING":
            return self._waiting(candidate, "candidate starting")
        if candidate.status == "TRAINING_COMPLETED":  # the start request was lost: ask again
            self._start(candidate.arn)
            return self._waiting(candidate, "candidate start requested again")
        details = lock.candidate
        message = candidate.status_message or "no reason given"
        reason = f"starting the candidate failed: {candidate.status} ({message})"
        return self._reject(candidate.arn, reason, metrics_from_item(details), None, lock.previous_arn)

    def _status(self, version_arn: str | None) -> str | None:
        """The status of a version (None: no version), in whichever project it lives."""
        if version_arn is None:
            return None
        version = self.custom_labels.status_of(version_arn)
        return version.status if version is not None else "MISSING"

    def _start(self, version_arn: str) -> str:
        return self.custom_labels.start_version(
            version_arn, self.min_inference_units, self.max_inference_units
        )

    def _switch(self, lock: TrainingLock, candidate: ProjectVersion) -> PromoteResult:
        return self._promote(candidate.arn, dict(lock.candidate), candidate.f1_score, stop_previous=True)

    def _promote(
        self, candidate_arn: str, details: dict[str, Any], f1_score: float | None, stop_previous: bool
    ) -> PromoteResult:
        registry = self.registry
        if registry.active_model_arn() != candidate_arn:
            old = registry.switch_active(candidate_arn)
        else:  # a replay after the switch: the previous parameter already names the old model
            old = registry.previous_model_arn()
        wanted = stop_previous and old and old != candidate_arn
        stop_error = self._stop_previous(old) if wanted and old else None
        reason = str(details.get("reason") or "candidate is better")
        if stop_error:
            reason = f"{reason}; previous model NOT stopped: {stop_error}"
        metrics = metrics_from_item(details)
        previous_f1 = details.get("previousF1")
        self._record(candidate_arn, PROMOTED, reason, metrics, previous_f1, old)
        self.publisher.publish(
            "ModelPromoted",
            {
                "schemaVersion": "1",
                "versionArn": candidate_arn,
                "previousArn": old,
                "f1": metrics.f1 if metrics else (f1_score or 0.0),
                "previousF1": previous_f1,
                "perLabelF1": dict(metrics.per_label) if metrics else {},
            },
            resources=[candidate_arn],
        )
        self.ledger.finish(candidate_arn, PROMOTED, reason, self.clock())
        observability.logger().info(
            "model promoted", extra={"version_arn": candidate_arn, "previous_arn": old}
        )
        return PromoteResult(
            "promoted", reason, candidate_arn, old, metrics.f1 if metrics else None, previous_f1
        )

    def _stop_previous(self, previous_arn: str) -> str | None:
        """Stop the model switched away from; a failure (e.g. a model this function may not manage)
        is recorded and alarmed on instead of blocking the promotion that already happened."""
        try:
            self.custom_labels.stop_version(previous_arn)
        except TransientError:
            raise
        except Exception as error:
            observability.logger().error(
                "previous model not stopped: it keeps running and billing",
                extra={"previous_arn": previous_arn, "error": str(error)},
            )
            observability.count("PreviousModelNotStopped")
            return f"{type(error).__name__}: {error}"
        return None

    # --- shared steps ---------------------------------------------------------------------------

    def _waiting(self, candidate: ProjectVersion, reason: str) -> PromoteResult:
        observability.logger().info(
            "waiting", extra={"version_arn": candidate.arn, "status": candidate.status}
        )
        return PromoteResult("waiting", reason, candidate.arn)

    def _reject(
        self,
        version_arn: str,
        reason: str,
        metrics: EvaluationMetrics | None = None,
        active: EvaluationMetrics | None = None,
        active_arn: str | None = None,
    ) -> PromoteResult:
        active_f1 = active.f1 if active else None
        self._record(version_arn, REJECTED, reason, metrics, active_f1, active_arn)
        f1 = metrics.f1 if metrics else None
        self.publisher.publish(
            "ModelRejected",
            {
                "schemaVersion": "1",
                "versionArn": version_arn,
                "reason": reason,
                "f1": f1,
                "activeF1": active_f1,
            },
            resources=[version_arn],
        )
        self.ledger.finish(version_arn, REJECTED, reason, self.clock())
        observability.logger().warning(
            "candidate rejected", extra={"version_arn": version_arn, "reason": reason}
        )
        return PromoteResult("rejected", reason, version_arn, active_arn, f1, active_f1)

    def _record(
        self,
        version_arn: str,
        decision: str,
        reason: str,
        metrics: EvaluationMetrics | None,
        compared_f1: float | None,
        compared_arn: str | None,
    ) -> None:
        record = Decision(
            decision=decision,
            reason=reason,
            version_arn=version_arn,
            decided_at=self.clock().isoformat(),
            metrics=metrics,
            compared_arn=compared_arn,
            compared_f1=compared_f1,
        )
        self.ledger.record_decision(version_name_from_arn(version_arn), record)


@dataclass(frozen=True)
class RollbackResult:
    active_arn: str
    previous_arn: str | None


def rollback(
    settings: PromoteSettings,
    custom_labels: CustomLabels | None = None,
    registry: ModelRegistry | None = None,
    timeout_seconds: float = 1800.0,
    poll_seconds: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RollbackResult:
    """Make the previous model active again and the current one previous (one command, see README).

    The previous model was stopped at promotion: it is started and awaited (RUNNING) before the
    parameters are swapped, so detection never points at a stopped model; then the model rolled back
    from is stopped.
    """
    custom_labels = custom_labels or custom_labels_project(settings)
    registry = registry or model_registry(settings)
    target = registry.previous_model_arn()
    if target is None:
        raise LabelloopError(f"nothing to roll back to: {settings.previous_model_parameter} is 'none'")
    custom_labels.start_version(target, settings.min_inference_units, settings.max_inference_units)
    waited = 0.0
    while (version := custom_labels.describe_version(target)) is None or version.status != "RUNNING":
        if version is None or version.status not in {"STARTING", "TRAINING_COMPLETED"}:
            found = version.status if version else "missing"
            raise LabelloopError(f"cannot roll back to {target}: it is {found}")
        if waited >= timeout_seconds:
            raise TransientError(
                f"{target} is still {version.status} after {waited:.0f} s; run rollback again"
            )
        sleep(poll_seconds)
        waited += poll_seconds
    old = registry.switch_active(target)
    if old and old != target:
        custom_labels.stop_version(old)
    observability.logger().info("rolled back", extra={"active_arn": target, "previous_arn": old})
    return RollbackResult(active_arn=target, previous_arn=old)
