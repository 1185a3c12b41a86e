"""Promote (DESIGN §2 step 6): compare a trained candidate with the active model, switch if better.

A state machine driven by the training lock, advanced one step per scheduled tick:
TRAINING → (training done, better) STARTING → (candidate RUNNING) PROMOTED, or REJECTED at any
point. Every step is idempotent: a duplicated or replayed schedule event re-reads the lock and the
model status and either does nothing or repeats a write with the same values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelloop_core import observability
from labelloop_core.adapters.custom_labels import CustomLabels, ProjectVersion, version_name_from_arn
from labelloop_core.adapters.events import EventPublisher
from labelloop_core.adapters.models import ModelRegistry
from labelloop_core.adapters.s3store import ObjectMissing, S3Store
from labelloop_core.adapters.training_ledger import (
    PROMOTED,
    REJECTED,
    STARTING,
    TRAINING,
    TrainingLedger,
    TrainingLock,
)
from labelloop_core.config import Settings
from labelloop_core.errors import InvalidSummary, LabelloopError, TransientError
from labelloop_core.evaluation import EvaluationMetrics, decide_promotion, parse_summary
from labelloop_core.schemas import SchemaViolation, validate

# A summary that cannot be read or parsed rejects the candidate instead of failing every tick.
UNUSABLE_SUMMARY = (InvalidSummary, SchemaViolation, ObjectMissing, ValueError)
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


@dataclass
class PromoteDependencies:
    ledger: TrainingLedger
    custom_labels: CustomLabels
    summaries: S3Store
    registry: ModelRegistry
    publisher: EventPublisher
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @classmethod
    def from_settings(cls, settings: Settings) -> PromoteDependencies:
        return cls(
            ledger=TrainingLedger(settings.ledger_table),
            custom_labels=CustomLabels(settings.project_arn),
            summaries=S3Store(settings.bucket_name),
            registry=model_registry(settings),
            publisher=EventPublisher(settings.event_bus_name),
        )


def model_registry(settings: Settings, client: Any = None) -> ModelRegistry:
    # Promotion decisions must see the parameters as they are now, never a cached value.
    return ModelRegistry(settings.active_model_parameter, settings.previous_model_parameter, 0, client)


def metrics_to_item(metrics: EvaluationMetrics) -> dict[str, Any]:
    return {
        "f1": metrics.f1,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "perLabelF1": dict(metrics.per_label),
    }


def metrics_from_item(item: Mapping[str, Any]) -> EvaluationMetrics | None:
    """Metrics stored with a decision (None when the decision has none, e.g. a failed training)."""
    if item.get("f1") is None:
        return None
    per_label = item.get("perLabelF1") or {}
    return EvaluationMetrics(
        float(item["f1"]),
        item.get("precision"),
        item.get("recall"),
        {label: float(score) for label, score in per_label.items()},
    )


class Promoter:
    def __init__(self, settings: Settings, deps: PromoteDependencies) -> None:
        self.deps = deps
        self.margin: float = settings.require("PROMOTION_MARGIN")
        self.min_inference_units: int = settings.require("MIN_INFERENCE_UNITS")

    def run(self, event: Mapping[str, Any]) -> PromoteResult:
        result = self._step(event)
        observability.count(_OUTCOME_METRICS[result.action])
        return result

    def _step(self, event: Mapping[str, Any]) -> PromoteResult:
        validate("scheduled-event", event)
        lock = self.deps.ledger.read_lock()
        if lock is None or lock.status not in (TRAINING, STARTING) or not lock.version_arn:
            return PromoteResult("idle", "no training to evaluate")
        candidate = self.deps.custom_labels.describe_version(lock.version_arn)
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
            return self._reject(
                candidate.arn, f"training failed: {candidate.status_message or 'no reason given'}"
            )
        if candidate.status not in EVALUATED:
            return self._reject(candidate.arn, f"candidate is {candidate.status}, it cannot be evaluated")
        try:
            metrics = self._summary_metrics(candidate)
        except UNUSABLE_SUMMARY as error:
            return self._reject(candidate.arn, f"evaluation summary unusable: {error}")
        active_arn = self.deps.registry.active_model_arn()
        active, active_note = self._active_metrics(active_arn)
        decision = decide_promotion(metrics, active, self.margin)
        reason = f"{active_note}; {decision.reason}" if active_note else decision.reason
        if not decision.promote:
            return self._reject(candidate.arn, reason, metrics, active, active_arn)
        status = self.deps.custom_labels.start_version(candidate.arn, self.min_inference_units)
        details = {**metrics_to_item(metrics), "previousF1": decision.active_f1, "reason": reason}
        self.deps.ledger.mark_starting(candidate.arn, active_arn or "none", details, self.deps.clock())
        observability.logger().info(
            "promoting: candidate starting",
            extra={"version_arn": candidate.arn, "status": status, "reason": reason},
        )
        return PromoteResult("starting", reason, candidate.arn, active_arn, metrics.f1, decision.active_f1)

    def _summary_metrics(self, version: ProjectVersion) -> EvaluationMetrics:
        if version.summary is None:
            raise InvalidSummary(f"{version.arn} has no EvaluationResult.Summary")
        document = self.deps.summaries.get_json(version.summary.key, bucket=version.summary.bucket)
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
        recorded = self.deps.ledger.read_decision(name)
        from_ledger = metrics_from_item(recorded) if recorded else None
        if from_ledger is not None:
            return from_ledger, ""
        version = self.deps.custom_labels.describe_version(active_arn)
        if version is None:
            return None, f"active model {active_arn} not found in the project"
        try:
            return self._summary_metrics(version), ""
        except Exception as error:
            # e.g. a model trained elsewhere whose summary this function may not read
            if not isinstance(error, UNUSABLE_SUMMARY) and _error_code(error) not in {"AccessDenied", "403"}:
                raise
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
            self.deps.custom_labels.start_version(candidate.arn, self.min_inference_units)
            return self._waiting(candidate, "candidate start requested again")
        details = lock.candidate
        message = candidate.status_message or "no reason given"
        reason = f"starting the candidate failed: {candidate.status} ({message})"
        return self._reject(candidate.arn, reason, metrics_from_item(details), None, lock.previous_arn)

    def _switch(self, lock: TrainingLock, candidate: ProjectVersion) -> PromoteResult:
        registry = self.deps.registry
        if registry.active_model_arn() != candidate.arn:
            old = registry.switch_active(candidate.arn)
        else:  # a replay after the switch: the previous parameter already names the old model
            old = registry.previous_model_arn()
        stop_error = self._stop_previous(old) if old and old != candidate.arn else None
        details = dict(lock.candidate)
        reason = str(details.get("reason") or "candidate is better")
        if stop_error:
            reason = f"{reason}; previous model NOT stopped: {stop_error}"
        metrics = metrics_from_item(details)
        previous_f1 = details.get("previousF1")
        self._record(candidate.arn, PROMOTED, reason, metrics, previous_f1, old)
        self.deps.publisher.publish(
            "ModelPromoted",
            {
                "schemaVersion": "1",
                "versionArn": candidate.arn,
                "previousArn": old,
                "f1": metrics.f1 if metrics else (candidate.f1_score or 0.0),
                "previousF1": previous_f1,
                "perLabelF1": dict(metrics.per_label) if metrics else {},
            },
            resources=[candidate.arn],
        )
        self.deps.ledger.finish(candidate.arn, PROMOTED, reason, self.deps.clock())
        observability.logger().info(
            "model promoted", extra={"version_arn": candidate.arn, "previous_arn": old}
        )
        return PromoteResult(
            "promoted", reason, candidate.arn, old, metrics.f1 if metrics else None, previous_f1
        )

    def _stop_previous(self, previous_arn: str) -> str | None:
        """Stop the model switched away from; a failure (e.g. a model this function may not manage)
        is recorded and alarmed on instead of blocking the promotion that already happened."""
        try:
            self.deps.custom_labels.stop_version(previous_arn)
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
        self.deps.publisher.publish(
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
        self.deps.ledger.finish(version_arn, REJECTED, reason, self.deps.clock())
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
        item: dict[str, Any] = {
            "decision": decision,
            "reason": reason[:1000],
            "version_arn": version_arn,
            "compared_arn": compared_arn,
            "compared_f1": compared_f1,
            "decided_at": self.deps.clock().isoformat(),
        }
        if metrics is not None:
            item.update(metrics_to_item(metrics))
        self.deps.ledger.record_decision(version_name_from_arn(version_arn), item)


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def promote(
    event: Mapping[str, Any], settings: Settings, deps: PromoteDependencies | None = None
) -> PromoteResult:
    """Advance the promotion of the current training by one step (the Promote function's use case)."""
    return Promoter(settings, deps or PromoteDependencies.from_settings(settings)).run(event)


@dataclass(frozen=True)
class RollbackResult:
    active_arn: str
    previous_arn: str | None


def rollback(
    settings: Settings,
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
    custom_labels = custom_labels or CustomLabels(settings.project_arn)
    registry = registry or model_registry(settings)
    target = registry.previous_model_arn()
    if target is None:
        raise LabelloopError(f"nothing to roll back to: {settings.previous_model_parameter} is 'none'")
    custom_labels.start_version(target, settings.min_inference_units or 1)
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
