"""Retrain on moto: the scheduled check, the merged manifest, dataset mode, replays and failures.

DynamoDB, S3, EventBridge and SQS are moto (the template's resources); Rekognition Custom Labels is a
botocore Stubber on the shared client the handler uses, so every Rekognition call is asserted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from labelloop_core import manifest
from labelloop_core.adapters import clients
from labelloop_core.adapters.custom_labels import MAX_CHANGES_BYTES, CustomLabelsProject
from labelloop_core.errors import TransientError
from labelloop_core.geometry import PixelBox
from labelloop_local.stack.provision import Stack
from tests.support.flows import EventSpy

pytestmark = pytest.mark.integration

Invoke = Callable[[str, dict[str, Any]], Any]
IMAGE_W, IMAGE_H = 1200, 900


def schedule_event(time: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"schedule-{time}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/labelloop-retrain"],
        "detail": {},
    }


@dataclass
class World:
    """The provisioned stack plus the handles the tests inspect."""

    stack: Stack
    env: dict[str, str]
    rekognition: Stubber
    spy: EventSpy
    test_clients: dict[str, Any] = field(default_factory=dict)

    @property
    def class_map(self) -> manifest.ClassMap:
        return manifest.ClassMap.from_csv(self.env["LABELS"])

    @property
    def attribute(self) -> str:
        return self.env["LABEL_ATTRIBUTE"]

    @property
    def min_new_labels(self) -> int:
        return int(self.env["MIN_NEW_LABELS"])

    @property
    def project_arn(self) -> str:
        return self.env["PROJECT_ARN"]

    def dataset_arn(self, dataset_type: str) -> str:
        """A dataset of the stack's project, as DescribeProjects lists it."""
        project, _, created = self.project_arn.rpartition("/")
        return f"{project}/dataset/{dataset_type.lower()}/{int(created) + 1}"

    def s3(self) -> Any:
        return self._client("s3")

    def ddb(self) -> Any:
        return self._client("dynamodb")

    def _client(self, service: str) -> Any:
        if service not in self.test_clients:
            self.test_clients[service] = boto3.client(service, region_name="us-east-1")
        return self.test_clients[service]

    def line(self, image: str, boxes: list[PixelBox], created: datetime) -> dict[str, Any]:
        label = self.class_map.labels[0]
        return manifest.build_line(
            f"s3://{self.stack.bucket}/incoming/{image}",
            [(label, box) for box in boxes],
            IMAGE_W,
            IMAGE_H,
            self.class_map,
            self.attribute,
            "labelloop/test",
            created,
        )

    def put_base_manifest(self, lines: list[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        self.s3().put_object(Bucket=self.stack.bucket, Key=self.env["BASE_MANIFEST_KEY"], Body=body.encode())

    def put_test_manifest(self, lines: list[dict[str, Any]]) -> str:
        """The fixed test set under TEST_MANIFEST_KEY; returns the key."""
        key = self.env["TEST_MANIFEST_KEY"]
        body = "".join(json.dumps(line) + "\n" for line in lines)
        self.s3().put_object(Bucket=self.stack.bucket, Key=key, Body=body.encode())
        return key

    def add_labels(self, lines: list[dict[str, Any]], write_objects: bool = True) -> list[str]:
        """Labels as AppendLabels leaves them: `labels/<loop>.json`, a pending ledger item, the counter."""
        loops = []
        requests = []
        for line in lines:
            created = line[self.attribute + "-metadata"]["creation-date"]
            loop = "ll-" + hashlib.sha256(f"{line['source-ref']}#{created}".encode()).hexdigest()[:60]
            key = f"labels/{loop}.json"
            if write_objects:
                self.s3().put_object(Bucket=self.stack.bucket, Key=key, Body=json.dumps(line).encode())
            item = {
                "pk": {"S": f"LABEL#{loop}"},
                "sk": {"S": "LABEL"},
                "loop_name": {"S": loop},
                "label_key": {"S": key},
                "source_ref": {"S": line["source-ref"]},
                "created_at": {"S": created},
                "pending": {"S": "1"},
            }
            requests.append({"PutRequest": {"Item": item}})
            loops.append(loop)
        for start in range(0, len(requests), 25):
            self.ddb().batch_write_item(RequestItems={self.stack.table: requests[start : start + 25]})
        self.ddb().update_item(
            TableName=self.stack.table,
            Key={"pk": {"S": "COUNTER#labels"}, "sk": {"S": "PENDING"}},
            UpdateExpression="ADD #count :n",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":n": {"N": str(len(lines))}},
        )
        return loops

    def item(self, pk: str, sk: str) -> dict[str, Any]:
        return (
            self.ddb()
            .get_item(TableName=self.stack.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
            .get("Item", {})
        )

    def pending_count(self) -> int:
        return int(self.item("COUNTER#labels", "PENDING").get("count", {"N": "0"})["N"])

    def lock(self) -> dict[str, Any]:
        return self.item("TRAINING", "CURRENT")

    def set_lock(
        self, status: str, version_arn: str = "arn:aws:rekognition:us-east-1:123456789012:x"
    ) -> None:
        item = {"pk": {"S": "TRAINING"}, "sk": {"S": "CURRENT"}, "status": {"S": status}}
        item["version_arn"] = {"S": version_arn}
        self.ddb().put_item(TableName=self.stack.table, Item=item)

    def finish_training(self) -> None:
        """What Promote does when it decides: the lock stays, its training is over."""
        self.ddb().update_item(
            TableName=self.stack.table,
            Key={"pk": {"S": "TRAINING"}, "sk": {"S": "CURRENT"}},
            UpdateExpression="SET #status = :done",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":done": {"S": "REJECTED"}},
        )

    def manifest_lines(self, key: str) -> list[dict[str, Any]]:
        body = self.s3().get_object(Bucket=self.stack.bucket, Key=key)["Body"].read().decode()
        return [json.loads(text) for text in body.splitlines()]

    def published(self) -> list[dict[str, Any]]:
        return self.spy.fresh()

    # --- Rekognition expectations ------------------------------------------------------------

    def expect_project(self, datasets: list[dict[str, Any]] | None = None) -> None:
        self.rekognition.add_response(
            "describe_projects",
            {
                "ProjectDescriptions": [
                    {"ProjectArn": self.project_arn, "Status": "CREATED", "Datasets": datasets or []}
                ]
            },
            {"ProjectNames": [self.project_arn.split(":project/")[1].split("/")[0]]},
        )

    def expect_manifest_training(self, version_name: str, test_manifest_key: str | None = None) -> str:
        """CreateProjectVersion on the merged manifest, tested on `test_manifest_key` or AutoCreate."""
        arn = version_arn(self.project_arn, version_name)
        testing: dict[str, Any] = {"AutoCreate": True}
        if test_manifest_key is not None:
            testing = {
                "Assets": [
                    {
                        "GroundTruthManifest": {
                            "S3Object": {"Bucket": self.stack.bucket, "Name": test_manifest_key}
                        }
                    }
                ]
            }
        self.rekognition.add_response(
            "create_project_version",
            {"ProjectVersionArn": arn},
            {
                "ProjectArn": self.project_arn,
                "VersionName": version_name,
                "OutputConfig": {"S3Bucket": self.stack.bucket, "S3KeyPrefix": "training-output/"},
                "TrainingData": {
                    "Assets": [
                        {
                            "GroundTruthManifest": {
                                "S3Object": {
                                    "Bucket": self.stack.bucket,
                                    "Name": f"manifests/train-{version_name}.manifest",
                                }
                            }
                        }
                    ]
                },
                "TestingData": testing,
            },
        )
        return arn


def version_arn(project_arn: str, version_name: str) -> str:
    project = project_arn.split(":project/")[1].split("/")[0]
    return f"{project_arn.split(':project/')[0]}:project/{project}/version/{version_name}/1714557600000"


@pytest.fixture
def world(aws_stack: Stack) -> Iterator[World]:
    clients.reset()
    spy = EventSpy(aws_stack)
    stubber = Stubber(clients.rekognition())
    stubber.activate()
    yield World(aws_stack, aws_stack.env_for("RetrainFunction"), stubber, spy)
    stubber.deactivate()
    clients.reset()


def at(minutes: int) -> datetime:
    return datetime(2024, 5, 1, 9, tzinfo=UTC) + timedelta(minutes=minutes)


def box(left: int) -> PixelBox:
    return PixelBox(left, 100, 200, 150)


def record_calls(client: Any, calls: list[str]) -> None:
    """Append every API call the client makes (also the stubbed ones) to `calls`."""
    client.meta.events.register("before-parameter-build.*.*", lambda model, **_: calls.append(model.name))


# --- the scheduled check ---------------------------------------------------------------------


def test_below_threshold_no_training(world: World, invoke: Invoke) -> None:
    world.add_labels([world.line(f"img{n}.jpg", [box(10)], at(n)) for n in range(world.min_new_labels - 1)])

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    assert result["started"] is False
    assert f"{world.min_new_labels - 1} new labels" in result["reason"]
    world.rekognition.assert_no_pending_responses()  # and no Rekognition call was made (none stubbed)
    assert world.pending_count() == world.min_new_labels - 1
    assert world.published() == []


def test_enough_labels_start_exactly_one_training_on_a_merged_manifest(world: World, invoke: Invoke) -> None:
    base = [world.line(f"base{n}.jpg", [box(20)], at(-100 + n)) for n in range(3)]
    base.append({"source-ref": "s3://elsewhere/broken.jpg"})  # invalid base line: dropped, not fatal
    world.put_base_manifest(base)
    older = world.line("base0.jpg", [box(300)], at(5))
    newest = world.line("base0.jpg", [box(600), box(700)], at(30))
    fresh = [world.line(f"new{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels - 2)]
    loops = world.add_labels([newest, older, *fresh])
    world.expect_project()
    version_name = "labelloop-20240501T100000Z"
    arn = world.expect_manifest_training(version_name)

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    world.rekognition.assert_no_pending_responses()  # exactly one CreateProjectVersion
    assert result["started"] is True
    assert result["versionArn"] == arn
    assert result["labelsUsed"] == len(loops)
    lines = world.manifest_lines(f"manifests/train-{version_name}.manifest")
    assert all(manifest.validate_line(line, world.class_map, world.attribute) == [] for line in lines)
    refs = [line["source-ref"] for line in lines]
    assert len(refs) == len(set(refs)) == 3 + len(fresh)  # one line per image
    by_ref = {line["source-ref"]: line for line in lines}
    replaced = by_ref[f"s3://{world.stack.bucket}/incoming/base0.jpg"][world.attribute]["annotations"]
    assert [a["left"] for a in replaced] == [
        600,
        700,
    ]  # the newest human label wins over base and older label
    assert world.pending_count() == 0
    for loop in loops:
        label = world.item(f"LABEL#{loop}", "LABEL")
        assert "pending" not in label
        assert label["consumed_by"]["S"] == version_name
    lock = world.lock()
    assert lock["status"]["S"] == "TRAINING"
    assert lock["version_arn"]["S"] == arn
    assert lock["base_manifest_key"]["S"] == world.env["BASE_MANIFEST_KEY"]
    [event] = world.published()
    assert event["detail-type"] == "RetrainingStarted"
    assert event["detail"] == {
        "schemaVersion": "1",
        "versionName": version_name,
        "versionArn": arn,
        "manifestKey": f"manifests/train-{version_name}.manifest",
        "mode": "manifest",
        "labelsUsed": len(loops),
    }


def test_cold_start_without_a_base_manifest_trains_on_the_labels_alone(world: World, invoke: Invoke) -> None:
    labels = [world.line(f"first{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)]
    world.add_labels(labels)  # no base manifest was ever uploaded
    world.expect_project()
    version_name = "labelloop-20240501T100000Z"
    world.expect_manifest_training(version_name)

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    assert result["started"] is True
    lines = world.manifest_lines(f"manifests/train-{version_name}.manifest")
    assert sorted(line["source-ref"] for line in lines) == sorted(line["source-ref"] for line in labels)
    assert world.pending_count() == 0


@pytest.mark.parametrize("fixed_test_set", [True, False], ids=["test-manifest", "auto-create"])
def test_every_training_is_tested_on_the_fixed_test_manifest_when_it_exists(
    world: World, invoke: Invoke, fixed_test_set: bool
) -> None:
    world.put_base_manifest([world.line(f"base{n}.jpg", [box(20)], at(-100 + n)) for n in range(3)])
    test_key = (
        world.put_test_manifest([world.line(f"test{n}.jpg", [box(60)], at(-200 + n)) for n in range(4)])
        if fixed_test_set
        else None
    )
    world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])
    world.expect_project()
    version_name = "labelloop-20240501T100000Z"
    arn = world.expect_manifest_training(version_name, test_key)  # the exact request, TestingData included

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    world.rekognition.assert_no_pending_responses()
    assert result["started"] is True and result["versionArn"] == arn
    assert result.get("testManifestKey") == test_key
    [event] = world.published()  # the event schema is unchanged: no test manifest in the detail
    assert "testManifestKey" not in event["detail"]
    refs = {line["source-ref"] for line in world.manifest_lines(f"manifests/train-{version_name}.manifest")}
    assert not any("/test" in ref for ref in refs)  # test images are never trained on

    # The next training is scored on the same test set, so the two F1s compare.
    world.finish_training()
    world.add_labels([world.line(f"b{n}.jpg", [box(40)], at(60 + n)) for n in range(world.min_new_labels)])
    world.expect_project()
    world.expect_manifest_training("labelloop-20240501T110000Z", test_key)
    assert invoke("RetrainFunction", schedule_event("2024-05-01T11:00:00Z"))["started"] is True
    world.rekognition.assert_no_pending_responses()


def test_replayed_schedule_event_starts_no_second_training(world: World, invoke: Invoke) -> None:
    world.put_base_manifest([world.line("base.jpg", [box(20)], at(-100))])
    world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])
    world.expect_project()
    first = world.expect_manifest_training("labelloop-20240501T100000Z")
    assert invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))["started"] is True
    world.finish_training()
    world.add_labels([world.line(f"b{n}.jpg", [box(40)], at(60 + n)) for n in range(world.min_new_labels)])

    replay = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    assert replay["started"] is False
    assert replay["reason"] == "window already used"
    world.rekognition.assert_no_pending_responses()
    assert world.pending_count() == world.min_new_labels

    # The next window trains on the previous merged manifest plus the new labels.
    world.expect_project()
    world.expect_manifest_training("labelloop-20240501T110000Z")
    second = invoke("RetrainFunction", schedule_event("2024-05-01T11:00:00Z"))
    assert second["started"] is True and second["versionArn"] != first
    lines = world.manifest_lines("manifests/train-labelloop-20240501T110000Z.manifest")
    assert len(lines) == 1 + 2 * world.min_new_labels  # base + first labels + second labels
    assert world.lock()["base_manifest_key"]["S"] == "manifests/train-labelloop-20240501T100000Z.manifest"


def test_no_training_while_one_is_in_progress(world: World, invoke: Invoke) -> None:
    world.set_lock("TRAINING")
    world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    assert result["started"] is False
    assert result["reason"].startswith("training in progress")
    assert world.pending_count() == world.min_new_labels
    assert world.item("RETRAIN#2024-05-01T10:00:00Z", "WINDOW") == {}  # the window stays free


@pytest.mark.parametrize("status", ["TRAINING", "STARTING"])
def test_check_cost_does_not_grow_with_the_number_of_labels(
    world: World, invoke: Invoke, status: str
) -> None:
    """A training (or its promotion) in progress: the same AWS calls for 10 and for 1,000 new labels."""
    world.set_lock(status)
    calls: list[str] = []
    for service in ("dynamodb", "s3", "events", "ssm", "rekognition"):
        record_calls(clients.client(service), calls)
    counts = []
    for total, window in ((10, "2024-05-01T10:00:00Z"), (1000, "2024-05-01T11:00:00Z")):
        new = [
            world.line(f"{window}-{n}.jpg", [box(40)], at(n)) for n in range(total - world.pending_count())
        ]
        world.add_labels(new, write_objects=False)
        calls.clear()
        result = invoke("RetrainFunction", schedule_event(window))
        assert result["started"] is False and result["pending"] == total
        counts.append(len(calls))
    assert counts[0] == counts[1] == 2  # the counter and the lock, one GetItem each


# --- dataset mode ----------------------------------------------------------------------------

TRAIN_DATASET = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/dataset/train/1"
TEST_DATASET = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/dataset/test/1"
DATASET_READY = {"DatasetDescription": {"Status": "UPDATE_COMPLETE"}}


def record_blobs(stubber: Stubber) -> list[bytes]:
    blobs: list[bytes] = []
    stubber.client.meta.events.register(
        "before-parameter-build.rekognition.UpdateDatasetEntries",
        lambda params, **_: blobs.append(params["Changes"]["GroundTruth"]),
    )
    return blobs


def test_dataset_mode_updates_the_train_dataset_then_trains(world: World, invoke: Invoke) -> None:
    world.put_test_manifest([world.line("test0.jpg", [box(60)], at(-200))])  # the TEST dataset wins
    train_dataset, test_dataset = world.dataset_arn("TRAIN"), world.dataset_arn("TEST")
    lines = [world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)]
    correction = world.line("a0.jpg", [box(500)], at(90))  # a newer review of the same image
    world.add_labels([*lines, correction])
    world.expect_project(
        [
            {"DatasetType": "TRAIN", "DatasetArn": train_dataset},
            {"DatasetType": "TEST", "DatasetArn": test_dataset},
        ]
    )
    blobs = record_blobs(world.rekognition)
    world.rekognition.add_response("describe_dataset", DATASET_READY, {"DatasetArn": train_dataset})
    world.rekognition.add_response(
        "update_dataset_entries", {}, {"DatasetArn": train_dataset, "Changes": ANY}
    )
    world.rekognition.add_response("describe_dataset", DATASET_READY, {"DatasetArn": train_dataset})
    version_name = "labelloop-20240501T100000Z"
    world.rekognition.add_response(
        "create_project_version",
        {"ProjectVersionArn": version_arn(world.project_arn, version_name)},
        {  # dataset mode: the project's datasets, no TrainingData/TestingData
            "ProjectArn": world.project_arn,
            "VersionName": version_name,
            "OutputConfig": {"S3Bucket": world.stack.bucket, "S3KeyPrefix": "training-output/"},
        },
    )

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    world.rekognition.assert_no_pending_responses()
    assert result["started"] is True and result["mode"] == "dataset"
    [blob] = blobs
    sent = [json.loads(text) for text in blob.decode().split("\n")]
    assert len(sent) == world.min_new_labels  # one entry per image
    assert all(manifest.validate_line(line, world.class_map, world.attribute) == [] for line in sent)
    [a0] = [line for line in sent if line["source-ref"].endswith("/a0.jpg")]
    assert a0[world.attribute]["annotations"][0]["left"] == 500  # the newest review wins
    assert world.pending_count() == 0
    [event] = world.published()
    assert event["detail"]["mode"] == "dataset" and event["detail"]["manifestKey"] is None


def test_dataset_entries_are_sent_in_calls_of_at_most_5_mb() -> None:
    class_map = manifest.ClassMap.from_labels(["pizza"])
    boxes = [
        ("pizza", PixelBox(left, top, 10, 10)) for left in range(0, 500, 100) for top in range(0, 900, 90)
    ]
    lines = [
        json.dumps(
            manifest.build_line(
                f"s3://bucket/incoming/{'deep/' * 60}img{n:05d}.jpg",
                boxes,
                1200,
                900,
                class_map,
                "a",
                "job",
                at(n),
            )
        )
        for n in range(2600)  # ~4.3 KB each (50 boxes): about 11 MB in all
    ]
    client = boto3.client(
        "rekognition", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    blobs = record_blobs(stubber)
    for _ in range(3):
        stubber.add_response("describe_dataset", DATASET_READY, {"DatasetArn": TRAIN_DATASET})
        stubber.add_response("update_dataset_entries", {}, {"DatasetArn": TRAIN_DATASET, "Changes": ANY})
    stubber.add_response("describe_dataset", DATASET_READY, {"DatasetArn": TRAIN_DATASET})

    with stubber:
        calls = CustomLabelsProject(
            "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1", client
        ).update_dataset_entries(TRAIN_DATASET, lines)

    stubber.assert_no_pending_responses()
    assert calls == len(blobs) == 3
    assert all(len(blob) <= MAX_CHANGES_BYTES for blob in blobs)
    assert [text for blob in blobs for text in blob.decode().split("\n")] == lines  # no line split or lost


def test_dataset_update_waits_while_the_dataset_is_busy() -> None:
    client = boto3.client(
        "rekognition", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    busy = {"DatasetDescription": {"Status": "UPDATE_IN_PROGRESS"}}
    stubber.add_response("describe_dataset", busy, {"DatasetArn": TRAIN_DATASET})
    stubber.add_response("describe_dataset", DATASET_READY, {"DatasetArn": TRAIN_DATASET})
    stubber.add_response("update_dataset_entries", {}, {"DatasetArn": TRAIN_DATASET, "Changes": ANY})
    stubber.add_response("describe_dataset", busy, {"DatasetArn": TRAIN_DATASET})
    stubber.add_response("describe_dataset", DATASET_READY, {"DatasetArn": TRAIN_DATASET})
    waits: list[float] = []

    with stubber:
        adapter = CustomLabelsProject(
            "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1", client, sleep=waits.append
        )
        assert adapter.update_dataset_entries(TRAIN_DATASET, ['{"source-ref": "s3://b/k.jpg"}']) == 1

    stubber.assert_no_pending_responses()
    assert len(waits) == 2


# --- failures --------------------------------------------------------------------------------


def test_throttled_create_releases_the_window_and_consumes_nothing(world: World, invoke: Invoke) -> None:
    world.put_base_manifest([world.line("base.jpg", [box(20)], at(-100))])
    loops = world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])
    world.expect_project()
    world.rekognition.add_client_error(
        "create_project_version", service_error_code="ThrottlingException", service_message="Rate exceeded"
    )

    with pytest.raises(TransientError, match="Rate exceeded"):
        invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    assert world.pending_count() == world.min_new_labels
    assert all("pending" in world.item(f"LABEL#{loop}", "LABEL") for loop in loops)
    assert world.lock()["status"]["S"] == "RELEASED"
    window = world.item("RETRAIN#2024-05-01T10:00:00Z", "WINDOW")
    assert window["status"]["S"] == "RELEASED" and "Rate exceeded" in window["release_reason"]["S"]
    assert world.published() == []

    # The platform retries the same event: now it trains.
    world.expect_project()
    world.expect_manifest_training("labelloop-20240501T100000Z")
    assert invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))["started"] is True
    assert world.pending_count() == 0


def test_retry_after_a_crash_adopts_the_version_rekognition_already_created(
    world: World, invoke: Invoke
) -> None:
    """The attempt that crashed after CreateProjectVersion left the version: the retry adopts it."""
    world.put_base_manifest([world.line("base.jpg", [box(20)], at(-100))])
    world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])
    world.expect_project()
    version_name = "labelloop-20240501T100000Z"
    arn = version_arn(world.project_arn, version_name)
    world.rekognition.add_client_error(
        "create_project_version", service_error_code="ResourceInUseException", service_message="exists"
    )
    world.rekognition.add_response(
        "describe_project_versions",
        {"ProjectVersionDescriptions": [{"ProjectVersionArn": arn, "Status": "TRAINING_IN_PROGRESS"}]},
        {"ProjectArn": world.project_arn, "VersionNames": [version_name]},
    )

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    world.rekognition.assert_no_pending_responses()
    assert result["started"] is True and result["versionArn"] == arn
    assert world.lock()["version_arn"]["S"] == arn
    assert world.pending_count() == 0


def test_unusable_labels_are_recorded_not_trained_on(world: World, invoke: Invoke) -> None:
    world.put_base_manifest([world.line("base.jpg", [box(20)], at(-100))])
    good = world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])
    outside = world.line("bad.jpg", [PixelBox(1100, 100, 500, 100)], at(40))  # box past the right edge
    [bad] = world.add_labels([outside])
    world.expect_project()
    world.expect_manifest_training("labelloop-20240501T100000Z")

    result = invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))

    assert result["started"] is True
    assert result["labelsUsed"] == len(good) and result["labelsRejected"] == 1
    rejected = world.item(f"LABEL#{bad}", "LABEL")
    assert "outside" in rejected["rejected_reason"]["S"] and "pending" not in rejected
    refs = [
        line["source-ref"]
        for line in world.manifest_lines("manifests/train-labelloop-20240501T100000Z.manifest")
    ]
    assert f"s3://{world.stack.bucket}/incoming/bad.jpg" not in refs
    assert world.pending_count() == 0


def test_real_ground_truth_manifest_as_base(world: World, invoke: Invoke, seed_manifest: Path) -> None:
    seed_lines = [line for line in seed_manifest.read_text().splitlines() if line.strip()]
    world.s3().put_object(
        Bucket=world.stack.bucket, Key=world.env["BASE_MANIFEST_KEY"], Body="\n".join(seed_lines).encode()
    )
    world.add_labels([world.line(f"a{n}.jpg", [box(40)], at(n)) for n in range(world.min_new_labels)])
    world.expect_project()
    world.expect_manifest_training("labelloop-20240501T100000Z")

    assert invoke("RetrainFunction", schedule_event("2024-05-01T10:00:00Z"))["started"] is True

    lines = world.manifest_lines("manifests/train-labelloop-20240501T100000Z.manifest")
    assert len(lines) == len(seed_lines) + world.min_new_labels
    assert all(manifest.validate_line(line, world.class_map, world.attribute) == [] for line in lines)
