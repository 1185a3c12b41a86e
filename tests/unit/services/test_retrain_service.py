"""Retrain on in-memory ports: when a training starts, on what, and what it leaves in the ledger."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from labelloop_core import manifest
from labelloop_core.config import settings_from_env
from labelloop_core.errors import TransientError
from labelloop_core.geometry import PixelBox
from labelloop_core.inbound.schedule import ScheduleTick
from labelloop_core.ledger import LabelCount
from labelloop_core.services.retrain import RetrainService, RetrainSettings
from tests.support.fakes import FakeCustomLabels, FakePublisher, FakeStore, FakeTrainingLedger

PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "EVENT_BUS_NAME": "bus",
    "PROJECT_ARN": PROJECT,
    "LABELS": "pizza",
    "LABEL_ATTRIBUTE": "pizza_BB",
    "MIN_NEW_LABELS": "3",
}
NOW = datetime(2024, 5, 1, 10, tzinfo=UTC)
CLASSES = manifest.ClassMap.from_labels(["pizza"])


def tick(moment: datetime = NOW) -> ScheduleTick:
    return ScheduleTick(moment.isoformat().replace("+00:00", "Z"), moment)


def line(name: str, created: datetime) -> dict[str, object]:
    return manifest.build_line(
        f"s3://images/incoming/{name}",
        [("pizza", PixelBox(1, 2, 30, 40))],
        100,
        100,
        CLASSES,
        "pizza_BB",
        "job",
        created,
    )


class World:
    def __init__(self, datasets: dict[str, str] | None = None) -> None:
        self.store = FakeStore("images")
        self.ledger = FakeTrainingLedger()
        self.project = FakeCustomLabels(PROJECT, datasets)
        self.publisher = FakePublisher()
        self.service = RetrainService(
            settings_from_env(RetrainSettings, ENV),
            ledger=self.ledger,
            custom_labels=self.project,
            store=self.store,
            publisher=self.publisher,
            clock=lambda: NOW,
        )

    def add_labels(self, count: int, start: int = 0) -> None:
        for number in range(start, start + count):
            loop = f"ll-{number:04d}"
            created = NOW - timedelta(minutes=60 - number)
            self.store.put(f"labels/{loop}.json", json.dumps(line(f"{number}.jpg", created)).encode())
            self.ledger.add_label(loop, created.isoformat())

    def manifest_lines(self, key: str) -> list[dict[str, object]]:
        return [json.loads(text) for text in self.store.iter_lines(key)]


@pytest.fixture
def world() -> World:
    return World()


def test_below_min_new_labels_nothing_starts(world: World) -> None:
    world.add_labels(2)
    outcome = world.service.handle(tick())
    assert not outcome.started and outcome.reason == "2 new labels, 3 needed"
    assert world.project.versions == {}


def test_enough_labels_train_once_on_the_merged_manifest(world: World) -> None:
    world.store.put(
        "manifests/base.manifest", (json.dumps(line("base.jpg", NOW - timedelta(days=9))) + "\n").encode()
    )
    world.add_labels(3)

    outcome = world.service.handle(tick())

    assert outcome.started and outcome.labels_used == 3
    refs = [entry["source-ref"] for entry in world.manifest_lines(str(outcome.manifest_key))]
    assert refs == ["s3://images/incoming/base.jpg", *(f"s3://images/incoming/{n}.jpg" for n in range(3))]
    assert world.ledger.pending_count() == 0
    assert world.ledger.read_lock().status == "TRAINING"  # type: ignore[union-attr]
    [started] = world.publisher.of_type("RetrainingStarted")
    assert started["labelsUsed"] == 3


def test_a_replayed_schedule_tick_starts_no_second_training(world: World) -> None:
    world.add_labels(6)
    assert world.service.handle(tick()).started
    assert not world.service.handle(tick()).started
    assert len(world.project.versions) == 1


def test_no_training_starts_while_one_is_in_progress(world: World) -> None:
    world.add_labels(3)
    world.service.handle(tick())
    world.add_labels(3, start=3)
    later = world.service.handle(tick(NOW + timedelta(days=1)))
    assert not later.started and later.reason.startswith("training in progress")


def test_without_a_base_manifest_the_first_model_learns_from_the_labels_alone(world: World) -> None:
    world.add_labels(3)
    outcome = world.service.handle(tick())
    assert outcome.started and len(world.manifest_lines(str(outcome.manifest_key))) == 3


def test_every_training_is_tested_on_the_fixed_test_manifest_when_it_exists(world: World) -> None:
    world.store.put("manifests/test.manifest", b"{}\n")
    world.add_labels(3)
    outcome = world.service.handle(tick())
    [version] = world.project.versions.values()
    assert version.test is not None and version.test.key == "manifests/test.manifest"
    assert outcome.test_manifest_key == "manifests/test.manifest"


def test_a_refused_training_frees_the_window_and_consumes_no_label(world: World) -> None:
    world.add_labels(3)

    def refuse(name: str) -> None:
        raise TransientError("throttled")

    world.project.on_create = refuse
    with pytest.raises(TransientError):
        world.service.handle(tick())
    assert world.ledger.pending_count() == 3
    world.project.on_create = None
    assert world.service.handle(tick()).started  # the retry of the same tick can train


def test_unusable_labels_are_set_aside_with_their_reason(world: World) -> None:
    world.add_labels(3)
    world.store.put("labels/ll-0001.json", b"not json")
    outcome = world.service.handle(tick())
    assert not outcome.started and outcome.labels_rejected == 1
    assert "not JSON" in world.ledger.labels["ll-0001"]["rejected_reason"]
    assert world.ledger.pending_count() == 2


def test_a_project_with_datasets_gets_its_train_dataset_updated() -> None:
    world = World(datasets={"TRAIN": "arn:train", "TEST": "arn:test"})
    world.add_labels(3)
    outcome = world.service.handle(tick())
    assert outcome.started and outcome.mode == "dataset" and outcome.manifest_key is None
    assert len(world.project.dataset_lines["arn:train"]) == 3


def test_the_training_records_its_dataset_hashed_and_counted_as_uploaded(world: World) -> None:
    base = json.dumps(line("base.jpg", NOW - timedelta(days=9))) + "\n"
    empty = manifest.build_line("s3://images/base/empty.jpg", [], 100, 100, CLASSES, "pizza_BB", "job", NOW)
    world.store.put("manifests/base.manifest", (base + json.dumps(empty) + "\n").encode())
    world.add_labels(3)

    outcome = world.service.handle(tick())

    record = world.ledger.datasets[str(outcome.version_name)]
    uploaded = world.store.objects[("images", str(outcome.manifest_key))]
    assert record.sha256 == hashlib.sha256(uploaded).hexdigest() and record.size_bytes == len(uploaded)
    assert (record.images, record.boxes) == (5, 4)
    assert record.per_label == {"pizza": LabelCount(images=4, boxes=4)}
    assert (record.human_labels, record.manifest_key, record.base_manifest_key) == (
        3,
        outcome.manifest_key,
        "manifests/base.manifest",
    )
    assert record.version_arn == outcome.version_arn and record.started_at == "2024-05-01T10:00:00Z"
