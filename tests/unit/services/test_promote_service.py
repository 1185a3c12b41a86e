"""Promote on in-memory ports: each tick advances a trained candidate one step, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labelloop_core.config import settings_from_env
from labelloop_core.inbound.schedule import ScheduleTick
from labelloop_core.ports import S3Location
from labelloop_core.services.promote import PromoteService, PromoteSettings
from tests.support.fakes import (
    FakeCustomLabels,
    FakeModelRegistry,
    FakePublisher,
    FakeStore,
    FakeTrainingLedger,
)

PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "EVENT_BUS_NAME": "bus",
    "ACTIVE_MODEL_PARAMETER": "/active",
    "PREVIOUS_MODEL_PARAMETER": "/previous",
    "PROJECT_ARN": PROJECT,
}
NOW = datetime(2024, 5, 1, 11, tzinfo=UTC)
TICK = ScheduleTick("2024-05-01T11:00:00Z", NOW)


def summary(f1: float) -> dict[str, object]:
    return {
        "AggregatedEvaluationResults": {"Metrics": {"F1Score": f1, "Precision": f1, "Recall": f1}},
        "LabelEvaluationResults": [
            {"Label": "pizza", "Metrics": {"F1Score": f1, "Precision": f1, "Recall": f1}}
        ],
    }


class World:
    def __init__(self) -> None:
        self.store = FakeStore("images")
        self.ledger = FakeTrainingLedger()
        self.project = FakeCustomLabels(PROJECT)
        self.registry = FakeModelRegistry()
        self.publisher = FakePublisher()
        self.service = PromoteService(
            settings_from_env(PromoteSettings, ENV),
            ledger=self.ledger,
            custom_labels=self.project,
            summaries=self.store,
            registry=self.registry,
            publisher=self.publisher,
            clock=lambda: NOW,
        )

    def version(self, name: str, f1: float, status: str = "TRAINING_COMPLETED") -> str:
        arn = self.project.create_version(name, S3Location("images", "training-output/"), None)
        key = f"training-output/{name}/summary.json"
        self.store.put_json(key, summary(f1))
        self.project.finish_training(arn, f1, S3Location("images", key), status)
        return arn

    def training(self, arn: str) -> None:
        self.ledger.lock = {"status": "TRAINING", "version_arn": arn, "version_name": "candidate"}


@pytest.fixture
def world() -> World:
    return World()


def test_nothing_to_do_without_a_training(world: World) -> None:
    assert world.service.handle(TICK).action == "idle"


def test_a_training_in_progress_is_waited_for(world: World) -> None:
    arn = world.project.create_version("candidate", S3Location("images", "training-output/"), None)
    world.training(arn)
    assert world.service.handle(TICK).action == "waiting"


def test_a_better_model_is_started_then_switched_to_and_the_old_one_stopped(world: World) -> None:
    active = world.version("active", 0.80, status="RUNNING")
    world.registry.active = active
    candidate = world.version("candidate", 0.90)
    world.training(candidate)

    assert world.service.handle(TICK).action == "starting"
    assert world.registry.active == active  # never points at a model that is not running yet
    world.project.versions[candidate].status = "RUNNING"
    promoted = world.service.handle(TICK)

    assert promoted.action == "promoted"
    assert (world.registry.active, world.registry.previous) == (candidate, active)
    assert world.project.stops == [active]
    assert world.publisher.of_type("ModelPromoted")[0]["f1"] == 0.9
    assert world.service.handle(TICK).action == "idle"  # a replay after the switch changes nothing


def test_a_worse_model_is_rejected_with_the_numbers(world: World) -> None:
    world.registry.active = world.version("active", 0.80, status="RUNNING")
    candidate = world.version("candidate", 0.805)
    world.training(candidate)
    rejected = world.service.handle(TICK)
    assert rejected.action == "rejected"
    assert "candidate F1 0.805 vs active 0.800" in rejected.reason
    assert world.ledger.read_lock().status == "REJECTED"  # type: ignore[union-attr]
    assert world.project.starts == []


def test_a_failed_training_is_rejected_and_frees_the_lock(world: World) -> None:
    candidate = world.version("candidate", 0.0, status="TRAINING_FAILED")
    world.project.versions[candidate].status_message = "manifest has no valid lines"
    world.training(candidate)
    rejected = world.service.handle(TICK)
    assert rejected.action == "rejected" and "manifest has no valid lines" in rejected.reason
    assert world.publisher.of_type("ModelRejected")[0]["versionArn"] == candidate


@pytest.mark.parametrize("active_status", ["STOPPED", "STOPPING", "TRAINING_COMPLETED"])
def test_a_better_model_replaces_an_idle_stopped_one_by_switching_the_parameter_only(
    world: World, active_status: str
) -> None:
    active = world.version("active", 0.80, status=active_status)
    world.registry.active = active
    candidate = world.version("candidate", 0.90)
    world.training(candidate)

    promoted = world.service.handle(TICK)

    assert promoted.action == "promoted"
    assert (world.registry.active, world.registry.previous) == (candidate, active)
    assert world.project.starts == []  # the model controller starts it when work arrives
    assert world.project.stops == []
    assert "switched without starting" in promoted.reason
    assert world.ledger.read_lock().status == "PROMOTED"  # type: ignore[union-attr]
    assert world.publisher.of_type("ModelPromoted")[0]["versionArn"] == candidate
    assert world.service.handle(TICK).action == "idle"


def test_the_first_model_is_switched_to_without_being_started(world: World) -> None:
    candidate = world.version("candidate", 0.90)
    world.training(candidate)
    assert world.service.handle(TICK).action == "promoted"
    assert (world.registry.active, world.project.starts) == (candidate, [])


def test_a_starting_active_model_is_replaced_without_downtime(world: World) -> None:
    """The controller is starting it for waiting images: the candidate starts and takes over."""
    world.registry.active = world.version("active", 0.80, status="STARTING")
    candidate = world.version("candidate", 0.90)
    world.training(candidate)
    assert world.service.handle(TICK).action == "starting"
    assert world.project.starts == [(candidate, 1)]
