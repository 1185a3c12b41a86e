"""The ModelController on in-memory ports: starts, stops, Detect's consumption, running intervals and the
inference-unit hours it publishes, and how it stays out of Promote's way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labelloop_core import observability
from labelloop_core.config import settings_from_env
from labelloop_core.inbound.control import ControlTick
from labelloop_core.ledger import STARTING, TRAINING, iso
from labelloop_core.ports import QueueDepth
from labelloop_core.services.model_controller import ModelControllerService, ModelControllerSettings
from tests.support.fakes import (
    FakeCustomLabels,
    FakeMapping,
    FakeModelLedger,
    FakeModelRegistry,
    FakeQueue,
    FakeTrainingLedger,
    FakeVersion,
)

PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1"
ENV = {
    "LEDGER_TABLE": "ledger",
    "ACTIVE_MODEL_PARAMETER": "/active",
    "PROJECT_ARN": PROJECT,
    "DETECT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/detect",
    "EVENT_SOURCE_MAPPING_UUID": "a1b2c3d4-0000-4000-8000-000000000001",
    "MODEL_IDLE_MINUTES": "15",
}
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
TICK = ControlTick("schedule")


class World:
    def __init__(self, status: str | None = "STOPPED", **env: str) -> None:
        self.now = T0
        self.custom_labels = FakeCustomLabels(PROJECT)
        self.model = self.custom_labels.version_arn("v1")
        if status is not None:
            self.custom_labels.versions[self.model] = FakeVersion(status, min_units=1)
        self.registry = FakeModelRegistry(self.model if status is not None else None)
        self.queue = FakeQueue()
        self.mapping = FakeMapping(enabled=False)
        self.ledger = FakeModelLedger()
        self.training = FakeTrainingLedger()
        self.service = ModelControllerService(
            settings_from_env(ModelControllerSettings, {**ENV, **env}),
            registry=self.registry,
            custom_labels=self.custom_labels,
            queue=self.queue,
            mapping=self.mapping,
            ledger=self.ledger,
            training=self.training,
            clock=lambda: self.now,
        )

    def tick(self, after: timedelta = timedelta(minutes=1)) -> dict[str, Any]:
        self.now += after
        return self.service.handle(TICK).to_dict()

    def work(self, visible: int = 0, in_flight: int = 0, delayed: int = 0) -> None:
        self.queue.current = QueueDepth(visible, in_flight, delayed)

    def status(self, arn: str | None = None) -> str:
        return self.custom_labels.versions[arn or self.model].status

    def set_status(self, status: str, arn: str | None = None) -> None:
        self.custom_labels.versions[arn or self.model].status = status

    def intervals(self) -> list[dict[str, Any]]:
        return list(self.ledger.intervals.values())


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def published() -> Iterator[Any]:
    """The metric values the controller added since the fixture started, by name."""
    observability.metrics().clear_metrics()

    def read() -> dict[str, list[float]]:
        blob = json.loads(json.dumps(observability.metrics().serialize_metric_set()))
        names = [m["Name"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        return {name: blob[name] if isinstance(blob[name], list) else [blob[name]] for name in names}

    yield read
    observability.metrics().clear_metrics()


def test_work_waiting_for_a_stopped_model_starts_it_once_and_keeps_detection_off(world: World) -> None:
    world.work(visible=40)

    first = world.tick()
    second = world.tick()

    assert (first["action"], second["action"]) == ("start", "wait")  # STARTING now: one start
    assert world.custom_labels.starts == [(world.model, 1)]
    assert not world.mapping.enabled
    assert first["consuming"] == "Disabled"


def test_detection_resumes_when_the_model_runs_and_the_interval_opens(world: World) -> None:
    world.work(visible=40)
    world.tick()
    world.set_status("RUNNING")

    outcome = world.tick()

    assert (outcome["action"], outcome["consuming"]) == ("none", "Enabled")
    [interval] = world.intervals()
    assert interval["run"].running_at == iso(world.now) and interval["stopped_at"] is None


def test_an_idle_model_is_stopped_after_the_idle_window_detection_first(world: World) -> None:
    world.set_status("RUNNING")
    world.mapping.current = world.mapping.set_enabled(True)
    world.mapping.changes.clear()
    world.tick()  # sees it RUNNING: the interval opens now
    opened = world.now

    kept = [world.tick(timedelta(minutes=5))["action"] for _ in range(2)]  # idle 5, then 10 minutes
    stopped = world.tick(timedelta(minutes=5))  # 15 minutes

    assert kept == ["none", "none"]
    assert stopped["action"] == "stop"
    assert world.mapping.changes == [False]  # disabled before the model was asked to stop
    assert world.custom_labels.stops == [world.model]
    [interval] = world.intervals()
    assert interval["stopped_at"] == iso(opened + timedelta(minutes=15))


def test_every_sign_of_work_restarts_the_idle_window(world: World) -> None:
    world.set_status("RUNNING")
    world.tick()
    world.work(in_flight=3)  # a batch being processed
    world.tick(timedelta(minutes=10))
    world.work()
    world.ledger.record_detection(world.now + timedelta(minutes=4))  # Detect finished it later

    assert world.tick(timedelta(minutes=10))["action"] == "none"  # 6 minutes since the detection
    assert world.tick(timedelta(minutes=9))["action"] == "stop"  # 15 minutes


def test_delayed_messages_are_work_too(world: World) -> None:
    world.work(delayed=2)  # sent back to wait while the model was not running
    assert world.tick()["action"] == "start"


def test_zero_idle_minutes_keeps_the_model_running_even_without_work() -> None:
    world = World("STOPPED", MODEL_IDLE_MINUTES="0")
    assert world.tick()["action"] == "start"
    world.set_status("RUNNING")
    assert world.tick(timedelta(days=3))["action"] == "none"
    assert world.custom_labels.stops == []


def test_no_stop_while_promote_is_starting_a_candidate(world: World) -> None:
    world.set_status("RUNNING")
    world.tick()
    candidate = world.custom_labels.version_arn("v2")
    world.custom_labels.versions[candidate] = FakeVersion("STARTING")
    world.training.lock = {"status": STARTING, "version_arn": candidate}

    outcome = world.tick(timedelta(hours=2))

    assert outcome["action"] == "none"
    assert world.custom_labels.stops == []
    assert candidate not in {arn for arn, _ in world.custom_labels.starts}  # Promote's, not ours


def test_the_candidate_promote_starts_is_billed_and_recorded_too(world: World) -> None:
    candidate = world.custom_labels.version_arn("v2")
    world.custom_labels.versions[candidate] = FakeVersion("RUNNING", min_units=2)
    world.training.lock = {"status": STARTING, "version_arn": candidate}

    world.tick()
    world.training.lock = {"status": "PROMOTED", "version_arn": candidate}
    world.registry.active = candidate  # Promote switched and stops the old one
    world.set_status("STOPPED", candidate)
    world.tick()

    [interval] = world.intervals()
    assert interval["run"].min_units == 2 and interval["stopped_at"] == iso(world.now)


def test_a_model_stopped_by_someone_else_closes_its_interval(world: World) -> None:
    world.set_status("RUNNING")
    world.tick()
    world.set_status("STOPPING")  # e.g. `aws rekognition stop-project-version`
    world.tick()
    [interval] = world.intervals()
    assert interval["stopped_at"] == iso(world.now) and "STOPPING" in interval["reason"]


def test_inference_unit_hours_are_published_as_they_accrue(published: Any) -> None:
    world = World("RUNNING", MODEL_IDLE_MINUTES="0")
    world.custom_labels.versions[world.model].min_units = 2
    world.tick()
    world.tick(timedelta(minutes=30))
    world.tick(timedelta(minutes=30))

    assert sum(published()["InferenceUnitHours"]) == pytest.approx(2.0)  # 2 units for 1 hour


def test_without_a_model_images_go_to_review_so_detection_is_on() -> None:
    world = World(status=None)
    world.work(visible=3)
    outcome = world.tick()
    assert (outcome["action"], outcome["model"], outcome["consuming"]) == ("none", "NO_MODEL", "Enabled")


def test_a_missing_active_model_keeps_images_waiting_and_is_alarmed(published: Any) -> None:
    world = World()
    del world.custom_labels.versions[world.model]
    world.work(visible=3)
    outcome = world.tick()
    assert (outcome["model"], outcome["consuming"]) == ("MISSING", "Disabled")
    assert published()["ModelCannotRun"] == [1.0]


def test_a_failed_model_is_started_again_every_ten_minutes_while_work_waits(world: World) -> None:
    world.work(visible=1)
    world.tick()  # start
    world.set_status("FAILED")
    actions = [world.tick()["action"] for _ in range(10)]
    assert actions == ["wait"] * 9 + ["start"]  # 10 minutes after the first start request


def test_a_mapping_change_under_way_is_left_to_finish(world: World) -> None:
    world.set_status("RUNNING")
    world.mapping.busy = "Enabling"
    outcome = world.tick()
    assert outcome["consuming"] == "Enabling"
    assert world.mapping.changes == []


def test_a_repeated_tick_changes_nothing_more(world: World) -> None:
    world.set_status("RUNNING")
    world.tick()
    state = world.ledger.control
    world.tick(timedelta(0))
    assert len(world.intervals()) == 1
    assert world.ledger.control.open_runs.keys() == state.open_runs.keys()


def test_a_promotion_event_runs_the_same_decision_at_once(world: World) -> None:
    world.work(visible=2)
    world.training.lock = {"status": TRAINING, "version_arn": world.custom_labels.version_arn("v9")}
    outcome = world.service.handle(ControlTick("ModelPromoted", "event-1")).to_dict()
    assert (outcome["action"], outcome["trigger"]) == ("start", "ModelPromoted")


def test_auto_scaling_bounds_go_with_every_start() -> None:
    world = World("STOPPED", MIN_INFERENCE_UNITS="2", MAX_INFERENCE_UNITS="5")
    world.work(visible=1)
    world.tick()
    assert world.custom_labels.starts == [(world.model, 2)]
    assert world.custom_labels.max_units_requested == 5
