"""Pure helpers of Retrain and Promote: dataset chunking, names, schedule windows, lock states."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from labelloop_core.adapters.custom_labels import MAX_CHANGES_BYTES, DatasetEntryTooLarge, chunk_entries
from labelloop_core.errors import InvalidEvent
from labelloop_core.evaluation import EvaluationMetrics
from labelloop_core.inbound.schedule import schedule_tick
from labelloop_core.ledger import (
    CLAIMED,
    PROMOTED,
    STARTING,
    TRAINING,
    TrainingLock,
    metrics_from_item,
    metrics_to_item,
)
from labelloop_core.naming import version_name_from_arn
from labelloop_core.services.retrain import RetrainResult, manifest_key_for

PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza"
VERSION_ARN = f"{PROJECT}/version/labelloop-20240501T100000Z/1714557600000"


def line(number: int, padding: int = 0) -> str:
    return json.dumps({"source-ref": f"s3://bucket/incoming/{number}.jpg", "pad": "x" * padding})


def test_chunks_keep_every_line_whole_and_in_order() -> None:
    lines = [line(number, padding=number % 7 * 10) for number in range(200)]
    chunks = list(chunk_entries(lines, limit=1000))
    assert len(chunks) > 1
    assert all(len(chunk) <= 1000 for chunk in chunks)
    assert [part.decode() for chunk in chunks for part in chunk.split(b"\n")] == lines


def test_chunk_is_filled_up_to_the_limit_exactly() -> None:
    first, second = line(1), line(2)
    limit = len(first) + 1 + len(second)  # two lines and the newline between them
    assert list(chunk_entries([first, second, line(3)], limit=limit)) == [
        f"{first}\n{second}".encode(),
        line(3).encode(),
    ]


def test_default_limit_is_the_rekognition_five_megabytes() -> None:
    big = line(1, padding=3 * 1024 * 1024)
    chunks = list(chunk_entries([big, big, big]))
    assert MAX_CHANGES_BYTES == 5 * 1024 * 1024
    assert len(chunks) == 3
    assert all(len(chunk) <= MAX_CHANGES_BYTES for chunk in chunks)


def test_a_line_larger_than_the_limit_is_an_error_naming_it() -> None:
    with pytest.raises(DatasetEntryTooLarge, match=r"s3://bucket/incoming/7\.jpg"):
        list(chunk_entries([line(1), line(7, padding=2000)], limit=1000))


def test_blank_lines_are_not_sent() -> None:
    assert list(chunk_entries(["", line(1), "  \n"], limit=1000)) == [line(1).encode()]


def test_version_name_comes_from_the_version_arn() -> None:
    assert version_name_from_arn(VERSION_ARN) == "labelloop-20240501T100000Z"
    with pytest.raises(ValueError, match="not a Rekognition project version ARN"):
        version_name_from_arn(f"{PROJECT}/1714557600000")


def test_schedule_window_is_the_event_time() -> None:
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": "2024-05-01T10:00:00Z"}
    tick = schedule_tick(event)
    assert tick.window == "2024-05-01T10:00:00Z"
    assert tick.time == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_schedule_window_rejects_other_events() -> None:
    with pytest.raises(InvalidEvent):
        schedule_tick({"source": "aws.s3", "detail-type": "Object Created", "time": "2024-05-01T10:00:00Z"})


def test_merged_manifest_key_names_the_version() -> None:
    assert (
        manifest_key_for("labelloop-20240501T100000Z")
        == "manifests/train-labelloop-20240501T100000Z.manifest"
    )


def test_lock_states() -> None:
    now = datetime(2024, 5, 1, 10, tzinfo=UTC)
    fresh = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    stale = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert TrainingLock(TRAINING).busy_at(now)
    assert TrainingLock(STARTING).busy_at(now)
    assert not TrainingLock(PROMOTED).busy_at(now)
    assert TrainingLock(CLAIMED, claimed_at=fresh).busy_at(now)
    assert not TrainingLock(CLAIMED, claimed_at=stale).busy_at(now)  # abandoned by a crashed run
    assert TrainingLock(CLAIMED, window="w1").resumable("w1")
    assert not TrainingLock(CLAIMED, window="w1").resumable("w2")
    assert not TrainingLock(TRAINING, window="w1").resumable("w1")


def test_decision_metrics_round_trip() -> None:
    metrics = EvaluationMetrics(0.8, 0.75, 0.9, {"pizza": 0.8, "crust": 0.6})
    assert metrics_from_item(metrics_to_item(metrics)) == metrics
    assert metrics_from_item({"decision": "REJECTED", "reason": "training failed"}) is None


def test_retrain_result_omits_unknown_fields() -> None:
    assert RetrainResult(False, "3 new labels, 5 needed", window="w", pending=3).to_dict() == {
        "started": False,
        "reason": "3 new labels, 5 needed",
        "window": "w",
        "pending": 3,
        "labelsUsed": 0,
        "labelsRejected": 0,
    }
