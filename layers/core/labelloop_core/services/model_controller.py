"""ModelController: run the active Custom Labels model only while there is work (DESIGN §10).

Every minute (and on demand, when Promote switched models) it looks at the active model, the
DetectQueue and the training lock, lets `model_control.decide` choose, and then:
- starts the model (MinInferenceUnits, auto-scaling up to MaxInferenceUnits when set);
- enables Detect's event source mapping only while the model is RUNNING (or while there is no model
  at all: images then go to review), so waiting images are not received and burn no retries;
- stops the model after ModelIdleMinutes without work: the mapping is disabled first, so no batch
  meets a stopping model.

It also keeps the running intervals of every model it sees RUNNING (the active one, the candidate
Promote is starting, a previous one until it stops) in the ledger, and publishes the inference-unit
hours they accrue as the `InferenceUnitHours` metric (EMF), so cost is reported exactly.

One invocation at a time (reserved concurrency 1): "one start at a time". Every step is
idempotent: a start of a starting model, a stop of a stopped one, an interval already recorded,
a mapping already in the wanted state are all no-ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from labelloop_core import config, observability
from labelloop_core.config import setting
from labelloop_core.inbound.control import ControlTick
from labelloop_core.ledger import STARTING, OpenRun, iso, parse_iso
from labelloop_core.model_control import (
    FAILED_START_RETRY,
    MISSING,
    NO_MODEL,
    RUNNING,
    Action,
    Situation,
    decide,
    idle_limit,
)
from labelloop_core.ports import (
    CustomLabels,
    EventSourceMapping,
    MappingState,
    MessageQueue,
    ModelLedger,
    ModelRegistry,
    ProjectVersion,
    TrainingLedger,
)

DEFAULT_PRICE_PER_UNIT_HOUR = 4.0  # USD, us-east-1 (README "Costs": source and date)


@dataclass(frozen=True, kw_only=True)
class ModelControllerSettings:
    ledger_table: str = config.ledger_table()
    active_model_parameter: str = config.active_model_parameter()
    project_arn: str = config.project_arn()
    detect_queue_url: str = config.detect_queue_url()
    event_source_mapping: str = setting("EVENT_SOURCE_MAPPING_UUID", config.text)
    model_idle_minutes: float = setting("MODEL_IDLE_MINUTES", config.bounded(0, 1440, "minutes"), 15.0)
    min_inference_units: int = config.min_inference_units()
    max_inference_units: int | None = config.max_inference_units()
    inference_unit_hour_price: float = setting(
        "INFERENCE_UNIT_HOUR_PRICE", config.bounded(0, 10000, "a price"), DEFAULT_PRICE_PER_UNIT_HOUR
    )

    def check(self) -> None:
        config.check_inference_units(self.min_inference_units, self.max_inference_units)


@dataclass(frozen=True)
class ControlOutcome:
    action: str  # none | start | stop | wait
    model: str  # the active model's status, NO_MODEL or MISSING
    model_arn: str | None
    consuming: str  # the state of Detect's event source mapping after this tick
    waiting: int
    reason: str
    trigger: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "model": self.model,
            "modelArn": self.model_arn,
            "consuming": self.consuming,
            "waiting": self.waiting,
            "reason": self.reason,
            "trigger": self.trigger,
        }


class ModelControllerService:
    settings_type: ClassVar[type[ModelControllerSettings]] = ModelControllerSettings

    def __init__(
        self,
        settings: ModelControllerSettings,
        *,
        registry: ModelRegistry,
        custom_labels: CustomLabels,
        queue: MessageQueue,
        mapping: EventSourceMapping,
        ledger: ModelLedger,
        training: TrainingLedger,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.custom_labels = custom_labels
        self.queue = queue
        self.mapping = mapping
        self.ledger = ledger
        self.training = training
        self.clock = clock
        self.idle_limit = idle_limit(settings.model_idle_minutes)
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: ModelControllerSettings) -> ModelControllerService:
        from labelloop_core.adapters.custom_labels import CustomLabelsProject
        from labelloop_core.adapters.event_sources import LambdaEventSourceMapping
        from labelloop_core.adapters.ledger import ModelLedger as DynamoModelLedger
        from labelloop_core.adapters.ledger import TrainingLedger as DynamoTrainingLedger
        from labelloop_core.adapters.models import SsmModelRegistry
        from labelloop_core.adapters.queues import SqsQueue

        return cls(
            settings,
            # Never cached: a promotion must be seen at the next tick.
            registry=SsmModelRegistry(settings.active_model_parameter, cache_seconds=0),
            custom_labels=CustomLabelsProject(settings.project_arn),
            queue=SqsQueue(settings.detect_queue_url),
            mapping=LambdaEventSourceMapping(settings.event_source_mapping),
            ledger=DynamoModelLedger(settings.ledger_table),
            training=DynamoTrainingLedger(settings.ledger_table),
        )

    def handle(self, tick: ControlTick) -> ControlOutcome:
        now = self.clock()
        state = self.ledger.read_control()
        active = self.registry.active_model_arn()
        lock = self.training.read_lock()
        promoting = lock is not None and lock.status == STARTING and bool(lock.version_arn)
        candidate = (
            lock.version_arn if lock is not None and promoting and lock.version_arn != active else None
        )
        tracked = list(dict.fromkeys([arn for arn in (active, candidate) if arn] + list(state.open_runs)))
        versions = {arn: self.custom_labels.status_of(arn) for arn in tracked}
        depth = self.queue.depth()
        runs = self._account(dict(state.open_runs), versions, now)
        last_work_at = iso(now) if depth.total else state.last_work_at
        status = _status(active, versions)
        requested = {arn: at for arn, at in state.start_requested.items() if arn in versions}
        situation = Situation(
            model=status,
            work=depth.total,
            idle=self._idle(now, last_work_at, state.last_detection_at, runs.get(active or "")),
            idle_limit=self.idle_limit,
            promoting=promoting,
            start_retry_due=active not in requested
            or now - parse_iso(requested[str(active)]) >= FAILED_START_RETRY,
        )
        decision = decide(situation)
        if decision.action is Action.START and active:
            self.custom_labels.start_version(
                active, self.settings.min_inference_units, self.settings.max_inference_units
            )
            requested[active] = iso(now)
            observability.count("ModelStarts")
        mapping = self._consume(decision.consume)
        if decision.action is Action.STOP and active:
            self.custom_labels.stop_version(active)
            runs = self._close(
                runs, active, now, "stopped by the model controller: ModelIdleMinutes without work"
            )
            observability.count("ModelStops")
        if status not in (NO_MODEL, RUNNING) and depth.total and decision.action is Action.NONE:
            observability.count("ModelCannotRun")  # alarmed: work waits for a model that cannot start
        self.ledger.save_control(
            dataclasses.replace(
                state,
                last_work_at=last_work_at,
                open_runs=runs,
                start_requested=requested,
                last_decision={
                    "at": iso(now),
                    "trigger": tick.trigger,
                    "action": decision.action.value,
                    "model": status,
                    "model_arn": active,
                    "waiting": depth.total,
                    "consuming": mapping.state,
                    "reason": decision.reason,
                },
            )
        )
        observability.measure("ImagesWaiting", depth.total)
        observability.measure(
            "ModelRunning", 1 if status == RUNNING and decision.action is not Action.STOP else 0
        )
        self.log.info(
            "model controller tick",
            extra={
                "action": decision.action.value,
                "model": status,
                "waiting": depth.total,
                "reason": decision.reason,
            },
        )
        return ControlOutcome(
            decision.action.value, status, active, mapping.state, depth.total, decision.reason, tick.trigger
        )

    # --- consumption --------------------------------------------------------------------------

    def _consume(self, wanted: bool) -> MappingState:
        """Enable or disable Detect's mapping; a change under way is left to finish (next tick)."""
        current = self.mapping.state()
        if current.settled and current.enabled != wanted:
            current = self.mapping.set_enabled(wanted)
            self.log.info("detect consumption switched", extra={"enabled": wanted, "state": current.state})
        return current

    # --- running intervals --------------------------------------------------------------------

    def _account(
        self, runs: dict[str, OpenRun], versions: Mapping[str, ProjectVersion | None], now: datetime
    ) -> dict[str, OpenRun]:
        """Open an interval for each version newly RUNNING, close those no longer RUNNING, and
        publish the inference-unit hours of the others up to now."""
        for arn, version in versions.items():
            running = version is not None and version.status == RUNNING
            run = runs.get(arn)
            if running and run is None and version is not None:
                run = OpenRun(
                    iso(now),
                    version.min_units or self.settings.min_inference_units,
                    version.max_units,
                    iso(now),
                )
                self.ledger.open_run(arn, run)
                runs[arn] = run
            elif running and run is not None:
                runs[arn] = self._meter(run, now)
            elif run is not None:
                seen = version.status if version else "gone"
                runs = self._close(runs, arn, now, f"seen {seen} by the model controller")
        return runs

    def _close(self, runs: dict[str, OpenRun], arn: str, when: datetime, reason: str) -> dict[str, OpenRun]:
        run = runs.pop(arn, None)
        if run is not None:
            self._meter(run, when)
            self.ledger.close_run(arn, run.running_at, iso(when), reason)
        return runs

    def _meter(self, run: OpenRun, until: datetime) -> OpenRun:
        since = parse_iso(run.metered_until or run.running_at)
        hours = max(0.0, (until - since).total_seconds() / 3600)
        if hours:
            observability.measure("InferenceUnitHours", round(hours * run.min_units, 6))
        return dataclasses.replace(run, metered_until=iso(max(until, since)))

    # --- idle time ----------------------------------------------------------------------------

    @staticmethod
    def _idle(
        now: datetime, last_work_at: str | None, last_detection_at: str | None, run: OpenRun | None
    ) -> timedelta:
        """Time since the last sign of work: a message seen waiting, a batch Detect processed, or
        the moment the model was first seen running (a model started for a reason gets its full
        idle window)."""
        moments = [parse_iso(at) for at in (last_work_at, last_detection_at) if at]
        if run is not None:
            moments.append(parse_iso(run.running_at))
        return now - max(moments) if moments else timedelta(0)


def _status(active: str | None, versions: Mapping[str, ProjectVersion | None]) -> str:
    if active is None:
        return NO_MODEL
    version = versions.get(active)
    return version.status if version is not None else MISSING
