"""Training datasets: the tally Retrain records, `labelloop datasets list|diff` on a stack (moto), and the
streaming diff (images added, removed, changed; boxes moved, added, deleted)."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from labelloop_core.datasets import ManifestTally
from labelloop_core.evaluation import EvaluationMetrics
from labelloop_core.geometry import PixelBox
from labelloop_core.ledger import DatasetRecord, Decision, LabelCount
from labelloop_core.manifest import ClassMap, build_line
from labelloop_local.cli import main
from labelloop_local.formats.diff import DiffSummary, compare, diff
from labelloop_local.formats.groundtruth import Box, LabeledImage

CLASSES = ClassMap.from_labels(["pizza", "crust"])


def line(name: str, boxes: list[tuple[str, int, int, int, int]], size: tuple[int, int] = (100, 100)) -> str:
    built = build_line(
        f"s3://bucket/images/{name}",
        [(label, PixelBox(x, y, w, h)) for label, x, y, w, h in boxes],
        *size,
        CLASSES,
        "pizza_BB",
        "job",
        "2024-05-01T10:00:00.000Z",
    )
    return json.dumps(built, ensure_ascii=False, separators=(",", ":")) + "\n"


def image(
    name: str, boxes: list[tuple[str, int, int, int, int]], size: tuple[int, int] = (100, 100)
) -> LabeledImage:
    return LabeledImage(f"s3://bucket/images/{name}", *size, 3, [Box(*box) for box in boxes])


# --- the tally ------------------------------------------------------------------------------------


def test_the_tally_hashes_and_counts_what_passes_through_it() -> None:
    text = line("a.jpg", [("pizza", 1, 1, 5, 5), ("pizza", 9, 9, 5, 5), ("crust", 0, 0, 9, 9)])
    text += line("b.jpg", []) + line("é\u2028.jpg", [("crust", 1, 1, 2, 2)])
    out = io.StringIO()
    tally = ManifestTally(out, CLASSES)
    tally.write(text[:100])  # a write may end in the middle of a line
    tally.write(text[100:])
    tally.finish()
    assert out.getvalue() == text
    assert tally.sha256 == hashlib.sha256(text.encode()).hexdigest() and tally.size_bytes == len(
        text.encode()
    )
    assert (tally.images, tally.boxes) == (3, 4)
    assert tally.per_label() == {"pizza": LabelCount(1, 2), "crust": LabelCount(2, 2)}


# --- the diff -------------------------------------------------------------------------------------


def test_boxes_overlapping_enough_are_moved_the_others_added_and_deleted() -> None:
    old = image("a.jpg", [("pizza", 10, 10, 20, 20), ("pizza", 60, 60, 10, 10), ("crust", 0, 0, 5, 5)])
    new = image("a.jpg", [("pizza", 12, 10, 20, 20), ("crust", 0, 0, 5, 5), ("crust", 60, 60, 10, 10)])
    change = compare(old, new)
    assert change is not None
    assert [(a.left, b.left, round(iou, 3)) for a, b, iou in change.moved] == [(10, 12, 0.818)]
    assert change.deleted == [Box("pizza", 60, 60, 10, 10)]  # same place, other label: not a move
    assert change.added == [Box("crust", 60, 60, 10, 10)]
    assert (
        compare(
            old,
            image("a.jpg", list(reversed([(b.label, b.left, b.top, b.width, b.height) for b in old.boxes]))),
        )
        is None
    )


def test_diff_streams_both_sides_in_any_order() -> None:
    old = [image(f"{i}.jpg", [("pizza", i % 50, 1, 10, 10)]) for i in range(200)]
    new = [
        image(f"{i}.jpg", [("pizza", i % 50 + (1 if i % 10 == 0 else 0), 1, 10, 10)]) for i in range(5, 230)
    ]
    random.Random(3).shuffle(new)
    summary = DiffSummary()
    changes = list(diff(old, new, summary))
    assert (summary.images_a, summary.images_b) == (200, 225)
    assert (summary.added, summary.removed, summary.changed, summary.unchanged) == (30, 5, 19, 176)
    assert summary.boxes_moved == 19
    assert {c.source_ref.rsplit("/", 1)[1] for c in changes if c.kind == "removed"} == {
        f"{i}.jpg" for i in range(5)
    }


def test_diff_of_a_manifest_and_its_next_merge_holds_almost_nothing_in_memory() -> None:
    """In the same order (as successive merges write them), an image waits one step at most."""
    old = [image(f"{i}.jpg", []) for i in range(1000)]
    new = [image(f"{i}.jpg", [] if i % 7 else [("pizza", 1, 1, 2, 2)]) for i in range(1100)]
    summary = DiffSummary()
    for _ in diff(iter(old), iter(new), summary):
        pass
    assert (summary.added, summary.changed) == (100, 143)
    assert summary.peak_waiting <= 1
    reversed_summary = DiffSummary()
    for _ in diff(iter(old), reversed(new), reversed_summary):
        pass
    assert reversed_summary.peak_waiting >= 500  # in opposite orders the images must wait


# --- the commands on a stack ------------------------------------------------------------------------


@pytest.fixture
def stack(aws_env: None) -> Iterator[dict[str, Any]]:
    """A CloudFormation stack on moto with the two resources the commands read."""
    from moto import mock_aws

    template = {
        "Resources": {
            "ImageBucket": {"Type": "AWS::S3::Bucket"},
            "LedgerTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                },
            },
        }
    }
    with mock_aws():
        import boto3

        cloudformation = boto3.client("cloudformation")
        cloudformation.create_stack(StackName="pizza", TemplateBody=json.dumps(template))
        resources = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.list_stack_resources(StackName="pizza")["StackResourceSummaries"]
        }
        yield {
            "bucket": resources["ImageBucket"],
            "table": resources["LedgerTable"],
            "s3": boto3.client("s3"),
        }


def _record(stack: dict[str, Any], version: str, body: str, human: int) -> None:
    from labelloop_core.adapters.ledger import TrainingLedger

    key = f"manifests/train-{version}.manifest"
    stack["s3"].put_object(Bucket=stack["bucket"], Key=key, Body=body.encode())
    tally = ManifestTally(io.StringIO(), CLASSES)
    tally.write(body)
    tally.finish()
    TrainingLedger(stack["table"]).record_dataset(
        DatasetRecord(
            version_name=version,
            version_arn=f"arn:aws:rekognition:us-east-1:123456789012:project/p/version/{version}/1",
            started_at="2024-05-01T10:00:00Z",
            mode="manifest",
            manifest_key=key,
            base_manifest_key="manifests/base.manifest",
            test_manifest_key="manifests/test.manifest",
            sha256=tally.sha256,
            size_bytes=tally.size_bytes,
            images=tally.images,
            boxes=tally.boxes,
            per_label=tally.per_label(),
            human_labels=human,
        )
    )


def test_list_and_diff_read_the_trainings_of_a_stack(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from labelloop_core.adapters.ledger import TrainingLedger

    first = line("a.jpg", [("pizza", 1, 1, 10, 10)]) + line("b.jpg", [("crust", 5, 5, 10, 10)])
    second = (
        line("a.jpg", [("pizza", 2, 1, 10, 10)])
        + line("b.jpg", [("crust", 5, 5, 10, 10)])
        + line("c.jpg", [])
    )
    _record(stack, "v1", first, human=0)
    _record(stack, "v2", second, human=2)
    TrainingLedger(stack["table"]).record_decision(
        "v2",
        Decision(
            "PROMOTED", "better", "arn:v2", "2024-05-02T00:00:00Z", EvaluationMetrics(0.912, None, None, {})
        ),
    )

    assert main(["datasets", "list", "--stack", "pizza"]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["VERSION", "STARTED", "IMAGES"]
    assert rows[1].split()[:6] == ["v1", "2024-05-01T10:00:00Z", "2", "2", "0", "-"]
    assert rows[3].split()[:7] == ["v2", "2024-05-01T10:00:00Z", "3", "2", "2", "0.912", "promoted"]
    assert hashlib.sha256(second.encode()).hexdigest()[:12] in rows[3]
    assert rows[4].strip() == "pizza: 1 images, 1 boxes; crust: 1 images, 1 boxes"

    assert main(["datasets", "list", "--stack", "pizza", "--json"]) == 0
    listed = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert [(d["version_name"], d["f1"], d["human_labels"]) for d in listed] == [
        ("v1", None, 0),
        ("v2", 0.912, 2),
    ]

    assert main(["datasets", "diff", "v1", "v2", "--stack", "pizza", "--json"]) == 0
    *changes, summary = (json.loads(text) for text in capsys.readouterr().out.splitlines())
    assert [(c["source_ref"], c["kind"], len(c["moved"])) for c in changes] == [
        ("s3://bucket/images/a.jpg", "changed", 1),
        ("s3://bucket/images/c.jpg", "added", 0),
    ]
    assert summary["summary"]["unchanged"] == 1


def test_commands_fail_in_one_line_naming_the_cause(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", "list", "--stack", "nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("datasets list failed: ValidationError: ") and "nope" in err[0]
    assert main(["datasets", "diff", "v9", "v1", "--stack", "pizza"]) == 1
    assert capsys.readouterr().err.strip() == (
        "datasets diff failed: v9: no such file, and no training dataset of stack pizza"
    )
