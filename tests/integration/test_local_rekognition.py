"""The local Rekognition Custom Labels service, called with real boto3 clients over HTTP.

Most tests plug in `BoxMemoryDetector`, a tiny deterministic detector, so they exercise the service's
protocol (statuses, errors, datasets, S3 outputs) in seconds; `test_real_detector_*` trains the
project's CPU detector end to end and is marked slow.
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from labelloop_local.emulators import LocalServices
from labelloop_local.emulators.testing import LocalAws, local_aws, wait_for
from tests.support.box_memory import BoxMemoryDetector

BUCKET = "rekognition-test-bucket"
LABEL = "pepperoni pizza slice"
ATTR = "pizza_BB"


# -- fixtures and helpers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    with local_aws(tmp_path_factory.mktemp("rekognition-state"), detector=BoxMemoryDetector) as local:
        s3 = local.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for index in range(10):
            s3.put_object(Bucket=BUCKET, Key=f"images/{index}.png", Body=_png(200, 100))
        yield local


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (220, 160, 60)).save(out, "PNG")
    return out.getvalue()


def _line(index: int, left: int = 20, boxes: int = 1, label: str = LABEL) -> str:
    annotations = [{"class_id": 0, "left": left, "top": 10, "width": 50, "height": 40} for _ in range(boxes)]
    return json.dumps(
        {
            "source-ref": f"s3://{BUCKET}/images/{index}.png",
            ATTR: {"annotations": annotations, "image_size": [{"width": 200, "height": 100, "depth": 3}]},
            f"{ATTR}-metadata": {
                "job-name": f"labeling-job/{ATTR}",
                "class-map": {"0": label},
                "human-annotated": "yes",
                "objects": [{"confidence": 1}] * boxes,
                "creation-date": "2020-08-27T17:15:41.430Z",
                "type": "groundtruth/object-detection",
            },
        }
    )


def _put_manifest(aws: LocalAws, key: str, lines: list[str]) -> dict[str, str]:
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return {"Bucket": BUCKET, "Name": key}


def _version(aws: LocalAws, project_arn: str, name: str) -> dict[str, Any]:
    response = aws.client("rekognition").describe_project_versions(
        ProjectArn=project_arn, VersionNames=[name]
    )
    return dict(response["ProjectVersionDescriptions"][0])


def _wait_status(aws: LocalAws, project_arn: str, name: str, leaving: str) -> dict[str, Any]:
    return wait_for(
        lambda: (v := _version(aws, project_arn, name))["Status"] != leaving and v,
        what=f"{name} leaving {leaving}",
    )


def _train(aws: LocalAws, project: str, version: str, manifest: dict[str, str]) -> tuple[str, str]:
    rekognition = aws.client("rekognition")
    project_arn = rekognition.create_project(ProjectName=project)["ProjectArn"]
    version_arn = rekognition.create_project_version(
        ProjectArn=project_arn,
        VersionName=version,
        OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "training-output/"},
        TrainingData={"Assets": [{"GroundTruthManifest": {"S3Object": manifest}}]},
        TestingData={"AutoCreate": True},
    )["ProjectVersionArn"]
    return project_arn, version_arn


def _running(aws: LocalAws, project: str) -> tuple[str, str]:
    manifest = _put_manifest(aws, f"manifests/{project}.manifest", [_line(i) for i in range(10)])
    project_arn, version_arn = _train(aws, project, "v1", manifest)
    assert _wait_status(aws, project_arn, "v1", "TRAINING_IN_PROGRESS")["Status"] == "TRAINING_COMPLETED"
    aws.client("rekognition").start_project_version(ProjectVersionArn=version_arn, MinInferenceUnits=1)
    _wait_status(aws, project_arn, "v1", "STARTING")
    return project_arn, version_arn


def _detect(aws: LocalAws, version_arn: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    response = aws.client("rekognition").detect_custom_labels(
        ProjectVersionArn=version_arn,
        Image={"S3Object": {"Bucket": BUCKET, "Name": key, **kwargs.pop("s3", {})}},
        **kwargs,
    )
    return list(response["CustomLabels"])


def _held_detector(may_end: threading.Event) -> type[BoxMemoryDetector]:
    """The test detector, whose training ends only once `may_end` is set: the box detector trains in
    microseconds, so a status read right after CreateProjectVersion would otherwise race its end."""

    class HeldDetector(BoxMemoryDetector):
        @staticmethod
        def train(*args: Any, **kwargs: Any) -> Any:
            may_end.wait(timeout=60)
            return BoxMemoryDetector.train(*args, **kwargs)

    return HeldDetector


def _code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


# -- tests -----------------------------------------------------------------------------------------------
def test_projects_have_aws_arns_and_unique_names(aws: LocalAws) -> None:
    rekognition = aws.client("rekognition")
    arn = rekognition.create_project(ProjectName="arn-check")["ProjectArn"]
    assert re.fullmatch(r"arn:aws:rekognition:us-east-1:123456789012:project/arn-check/\d{13}", arn)
    with pytest.raises(ClientError) as duplicate:
        rekognition.create_project(ProjectName="arn-check")
    assert _code(duplicate) == "ResourceInUseException"
    described = rekognition.describe_projects(ProjectNames=["arn-check"])["ProjectDescriptions"]
    assert [(p["ProjectArn"], p["Status"], p["Datasets"]) for p in described] == [(arn, "CREATED", [])]
    assert rekognition.delete_project(ProjectArn=arn)["Status"] == "DELETING"
    assert rekognition.describe_projects(ProjectNames=["arn-check"])["ProjectDescriptions"] == []


def test_manifest_training_writes_summary_and_model_serves_only_while_running(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    rekognition = aws.client("rekognition")
    manifest = _put_manifest(aws, "manifests/life.manifest", [_line(i) for i in range(10)])
    training_may_end = threading.Event()
    monkeypatch.setattr(aws.services.rekognition, "_detector_module", _held_detector(training_may_end))
    project_arn, version_arn = _train(aws, "lifecycle", "v1", manifest)
    assert re.fullmatch(rf"{project_arn.rsplit('/', 1)[0]}/version/v1/\d{{13}}", version_arn)
    assert _version(aws, project_arn, "v1")["Status"] == "TRAINING_IN_PROGRESS"
    training_may_end.set()

    done = _wait_status(aws, project_arn, "v1", "TRAINING_IN_PROGRESS")
    assert done["Status"] == "TRAINING_COMPLETED", done.get("StatusMessage")
    assert done["EvaluationResult"]["F1Score"] == 0.75
    summary_object = done["EvaluationResult"]["Summary"]["S3Object"]
    assert summary_object == {
        "Bucket": BUCKET,
        "Name": "training-output/EvaluationResultSummary-lifecycle-v1.json",
    }
    summary = json.loads(
        aws.client("s3").get_object(Bucket=BUCKET, Key=summary_object["Name"])["Body"].read()
    )
    assert summary["EvaluationDetails"] == {
        "ProjectVersionArn": version_arn,
        "NumberOfTrainingImages": 8,
        "NumberOfTestingImages": 2,
        "Labels": [LABEL],
    }
    assert "TrainingEndTimestamp" in done

    with pytest.raises(ClientError) as not_started:
        _detect(aws, version_arn, "images/0.png")
    assert _code(not_started) == "ResourceNotReadyException"

    assert (
        rekognition.start_project_version(ProjectVersionArn=version_arn, MinInferenceUnits=1)["Status"]
        == "STARTING"
    )
    assert _wait_status(aws, project_arn, "v1", "STARTING")["Status"] == "RUNNING"
    (label,) = _detect(aws, version_arn, "images/3.png")
    assert label["Name"] == LABEL
    assert label["Confidence"] == 80.0
    assert label["Geometry"]["BoundingBox"] == {"Left": 0.1, "Top": 0.1, "Width": 0.25, "Height": 0.4}
    assert _detect(aws, version_arn, "images/3.png", MinConfidence=90) == []
    assert _detect(aws, version_arn, "images/3.png", MaxResults=0) == []

    assert rekognition.stop_project_version(ProjectVersionArn=version_arn)["Status"] == "STOPPING"
    assert _wait_status(aws, project_arn, "v1", "STOPPING")["Status"] == "STOPPED"
    with pytest.raises(ClientError) as stopped:
        _detect(aws, version_arn, "images/3.png")
    assert _code(stopped) == "ResourceNotReadyException"

    with pytest.raises(ClientError) as same_name:
        rekognition.create_project_version(
            ProjectArn=project_arn,
            VersionName="v1",
            OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "x/"},
            TrainingData={"Assets": [{"GroundTruthManifest": {"S3Object": manifest}}]},
            TestingData={"AutoCreate": True},
        )
    assert _code(same_name) == "ResourceInUseException"


def test_training_fails_when_more_than_a_fifth_of_the_lines_are_invalid(aws: LocalAws) -> None:
    bad = [_line(5, label=""), _line(6, boxes=51), '{"source-ref": "s3://x/y.png"}']
    manifest = _put_manifest(aws, "manifests/bad.manifest", [_line(i) for i in range(5)] + bad)
    project_arn, _ = _train(aws, "invalid-lines", "v1", manifest)
    failed = _wait_status(aws, project_arn, "v1", "TRAINING_IN_PROGRESS")
    assert failed["Status"] == "TRAINING_FAILED"
    assert "3 of 8" in failed["StatusMessage"]
    assert "51 boxes" in failed["StatusMessage"]


def test_an_invalid_box_is_dropped_alone_and_an_empty_line_is_ignored_as_rekognition_does(
    aws: LocalAws,
) -> None:
    """ERROR_INVALID_BOUNDING_BOX drops the annotation, WARNING_NO_ANNOTATIONS the line, and neither
    counts toward the 20% of invalid lines: 4 such lines among 10 still train."""
    out_of_image = json.loads(_line(7, boxes=2))
    out_of_image[ATTR]["annotations"][1]["left"] = 190
    odd = [json.dumps(out_of_image), _line(8, boxes=0), _line(9, boxes=0), _line(6, left=195)]
    manifest = _put_manifest(aws, "manifests/odd.manifest", [_line(i) for i in range(6)] + odd)
    project_arn, _ = _train(aws, "odd-lines", "v1", manifest)
    done = _wait_status(aws, project_arn, "v1", "TRAINING_IN_PROGRESS")
    assert done["Status"] == "TRAINING_COMPLETED", done.get("StatusMessage")
    report = json.loads(
        aws.client("s3")
        .get_object(Bucket=BUCKET, Key=done["ManifestSummary"]["S3Object"]["Name"])["Body"]
        .read()
    )["training"]
    assert report["valid_json_lines"] == 10 and report["errors"] == []
    codes = [warning["message"].split(":")[0] for warning in report["warnings"]]
    assert codes.count("ERROR_INVALID_BOUNDING_BOX") == 2
    assert codes.count("WARNING_NO_ANNOTATIONS") == 3  # two empty lines, one whose only box was dropped


def test_training_skips_a_few_invalid_lines(aws: LocalAws) -> None:
    manifest = _put_manifest(aws, "manifests/few-bad.manifest", [_line(i) for i in range(9)] + ["not json"])
    project_arn, _ = _train(aws, "few-invalid", "v1", manifest)
    done = _wait_status(aws, project_arn, "v1", "TRAINING_IN_PROGRESS")
    assert done["Status"] == "TRAINING_COMPLETED", done.get("StatusMessage")
    report = json.loads(
        aws.client("s3")
        .get_object(Bucket=BUCKET, Key=done["ManifestSummary"]["S3Object"]["Name"])["Body"]
        .read()
    )
    assert report["training"]["valid_json_lines"] == 9
    assert report["training"]["errors"][0]["line"] == 9


def test_datasets_update_by_source_ref_distribute_and_train(aws: LocalAws) -> None:
    rekognition = aws.client("rekognition")
    project_arn = rekognition.create_project(ProjectName="with-datasets")["ProjectArn"]
    manifest = _put_manifest(aws, "manifests/ds.manifest", [_line(i) for i in range(8)])
    train_arn = rekognition.create_dataset(
        ProjectArn=project_arn,
        DatasetType="TRAIN",
        DatasetSource={"GroundTruthManifest": {"S3Object": manifest}},
    )["DatasetArn"]
    assert re.fullmatch(rf"{project_arn.rsplit('/', 1)[0]}/dataset/train/\d{{13}}", train_arn)
    test_arn = rekognition.create_dataset(ProjectArn=project_arn, DatasetType="TEST")["DatasetArn"]

    def dataset(arn: str) -> dict[str, Any]:
        return dict(rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"])

    created = wait_for(
        lambda: (d := dataset(train_arn))["Status"] != "CREATE_IN_PROGRESS" and d, what="dataset"
    )
    assert created["Status"] == "CREATE_COMPLETE"
    assert created["DatasetStats"] == {
        "LabeledEntries": 8,
        "TotalEntries": 8,
        "TotalLabels": 1,
        "ErrorEntries": 0,
    }

    # Line 0 again with a moved box replaces image 0; image 8 is new.
    changes = "\n".join([_line(0, left=100), _line(8)]).encode()
    rekognition.update_dataset_entries(DatasetArn=train_arn, Changes={"GroundTruth": changes})
    updated = wait_for(
        lambda: (d := dataset(train_arn))["Status"] != "UPDATE_IN_PROGRESS" and d, what="update"
    )
    assert updated["Status"] == "UPDATE_COMPLETE"
    assert updated["DatasetStats"]["TotalEntries"] == 9
    entries = rekognition.list_dataset_entries(DatasetArn=train_arn, SourceRefContains="images/0.png")[
        "DatasetEntries"
    ]
    assert [json.loads(e)[ATTR]["annotations"][0]["left"] for e in entries] == [100]

    rekognition.distribute_dataset_entries(Datasets=[{"Arn": train_arn}, {"Arn": test_arn}])
    assert dataset(test_arn)["DatasetStats"]["TotalEntries"] == 1  # 20% of 9, rounded down
    assert dataset(train_arn)["DatasetStats"]["TotalEntries"] == 8

    with pytest.raises(ClientError) as manifests_refused:
        rekognition.create_project_version(
            ProjectArn=project_arn,
            VersionName="manifest",
            OutputConfig={"S3Bucket": BUCKET},
            TrainingData={"Assets": [{"GroundTruthManifest": {"S3Object": manifest}}]},
            TestingData={"AutoCreate": True},
        )
    assert _code(manifests_refused) == "InvalidParameterException"

    rekognition.create_project_version(
        ProjectArn=project_arn,
        VersionName="from-datasets",
        OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "ds-output"},
    )
    done = _wait_status(aws, project_arn, "from-datasets", "TRAINING_IN_PROGRESS")
    assert done["Status"] == "TRAINING_COMPLETED", done.get("StatusMessage")
    assert done["EvaluationResult"]["Summary"]["S3Object"]["Name"].startswith("ds-output/EvaluationResult")


def test_update_dataset_entries_rejects_more_than_5_mb(aws: LocalAws) -> None:
    rekognition = aws.client("rekognition")
    project_arn = rekognition.create_project(ProjectName="big-update")["ProjectArn"]
    dataset_arn = rekognition.create_dataset(ProjectArn=project_arn, DatasetType="TRAIN")["DatasetArn"]
    with pytest.raises(ClientError) as too_big:
        rekognition.update_dataset_entries(
            DatasetArn=dataset_arn, Changes={"GroundTruth": b"{}\n" * 1_800_000}
        )
    assert _code(too_big) == "InvalidParameterException"


def test_detect_validates_images_like_aws(aws: LocalAws) -> None:
    _, version_arn = _running(aws, "image-checks")
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="checks/text.png", Body=b"definitely not an image")
    s3.put_object(Bucket=BUCKET, Key="checks/wide.png", Body=_png(4200, 100))
    s3.put_object(Bucket=BUCKET, Key="checks/gif.gif", Body=_gif())
    cases = {
        "checks/text.png": "InvalidImageFormatException",
        "checks/gif.gif": "InvalidImageFormatException",
        "checks/wide.png": "ImageTooLargeException",
        "checks/missing.png": "InvalidS3ObjectException",
    }
    for key, code in cases.items():
        with pytest.raises(ClientError) as invalid:
            _detect(aws, version_arn, key)
        assert _code(invalid) == code, key

    # Image.S3Object.Version reads that exact version, as the Detect function asks for.
    first = s3.put_object(Bucket=BUCKET, Key="checks/versioned.png", Body=_png(200, 100))["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="checks/versioned.png", Body=b"overwritten with junk")
    assert len(_detect(aws, version_arn, "checks/versioned.png", s3={"Version": first})) == 1
    with pytest.raises(ClientError) as latest:
        _detect(aws, version_arn, "checks/versioned.png")
    assert _code(latest) == "InvalidImageFormatException"


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (100, 100)).save(out, "GIF")
    return out.getvalue()


def test_describe_project_versions_limits_and_pagination(aws: LocalAws) -> None:
    rekognition = aws.client("rekognition")
    manifest = _put_manifest(aws, "manifests/pages.manifest", [_line(i) for i in range(10)])
    project_arn, _ = _train(aws, "pages", "first", manifest)
    rekognition.create_project_version(
        ProjectArn=project_arn,
        VersionName="second",
        OutputConfig={"S3Bucket": BUCKET},
        TrainingData={"Assets": [{"GroundTruthManifest": {"S3Object": manifest}}]},
        TestingData={"AutoCreate": True},
    )
    page = rekognition.describe_project_versions(ProjectArn=project_arn, MaxResults=1)
    assert [v["ProjectVersionArn"].split("/")[-2] for v in page["ProjectVersionDescriptions"]] == ["second"]
    rest = rekognition.describe_project_versions(
        ProjectArn=project_arn, MaxResults=1, NextToken=page["NextToken"]
    )
    assert [v["ProjectVersionArn"].split("/")[-2] for v in rest["ProjectVersionDescriptions"]] == ["first"]
    assert "NextToken" not in rest
    with pytest.raises(ClientError) as too_many:
        rekognition.describe_project_versions(
            ProjectArn=project_arn, VersionNames=[f"v{i}" for i in range(11)]
        )
    assert _code(too_many) == "InvalidParameterException"
    with pytest.raises(ClientError) as bad_token:
        rekognition.describe_project_versions(ProjectArn=project_arn, NextToken="garbage")
    assert _code(bad_token) == "InvalidPaginationTokenException"
    for name in ("first", "second"):
        _wait_status(aws, project_arn, name, "TRAINING_IN_PROGRESS")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
        ("ResourceNotReadyException", 400),
        ("ProvisionedThroughputExceededException", 400),
    ],
)
def test_injected_faults_give_boto3_the_real_error_codes(aws: LocalAws, error: str, status: int) -> None:
    fault = {"service": "rekognition", "operation": "DescribeProjects", "error": error, "count": 1}
    request = urllib.request.Request(
        f"{aws.services.base_url}/_labelloop/faults", data=json.dumps(fault).encode(), method="POST"
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    rekognition = aws.client("rekognition")
    with pytest.raises(ClientError) as failed:
        rekognition.describe_projects()
    assert _code(failed) == error
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert "ProjectDescriptions" in rekognition.describe_projects()


def test_a_retrying_client_survives_throttling_on_detect(aws: LocalAws) -> None:
    _, version_arn = _running(aws, "throttled")
    aws.services.inject_fault("rekognition", "DetectCustomLabels", "ThrottlingException", count=2)
    client = aws.client("rekognition", max_attempts=3)
    labels = client.detect_custom_labels(
        ProjectVersionArn=version_arn, Image={"S3Object": {"Bucket": BUCKET, "Name": "images/1.png"}}
    )["CustomLabels"]
    assert len(labels) == 1
    assert aws.services.faults.pending() == []


def test_unknown_operations_and_versions_are_errors(aws: LocalAws) -> None:
    rekognition = aws.client("rekognition")
    with pytest.raises(ClientError) as unknown_version:
        rekognition.start_project_version(
            ProjectVersionArn="arn:aws:rekognition:us-east-1:123456789012:project/x/version/y/1234567890123",
            MinInferenceUnits=1,
        )
    assert _code(unknown_version) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as unsupported:
        rekognition.detect_labels(Image={"S3Object": {"Bucket": BUCKET, "Name": "images/1.png"}})
    assert _code(unsupported) == "UnknownOperationException"


def test_projects_models_and_running_state_survive_a_restart(aws: LocalAws) -> None:
    project_arn, version_arn = _running(aws, "restart")
    again = LocalServices(aws.moto_url, aws.region, aws.services.data_dir, detector=BoxMemoryDetector)
    again.start()
    try:
        other = LocalAws(aws.moto_url, again, aws.region)
        assert _version(other, project_arn, "v1")["Status"] == "RUNNING"
        response = other.client("rekognition").detect_custom_labels(
            ProjectVersionArn=version_arn, Image={"S3Object": {"Bucket": BUCKET, "Name": "images/2.png"}}
        )
        assert [label["Name"] for label in response["CustomLabels"]] == [LABEL]
    finally:
        again.stop()
    assert list(Path(aws.services.data_dir, "models").glob("*.bin"))


@pytest.mark.slow
def test_real_detector_trains_evaluates_and_detects_on_generated_pizzas(tmp_path: Path) -> None:
    from labelloop_local.demo import sampledata

    dataset = sampledata.generate(tmp_path / "data", n_images=12, seed=3, size=(320, 240))
    with local_aws(tmp_path / "state") as aws:
        s3, rekognition = aws.client("s3"), aws.client("rekognition")
        s3.create_bucket(Bucket="real-detector")
        lines = []
        for line in dataset.manifest_path.read_text().splitlines():
            doc = json.loads(line)
            name = doc["source-ref"].rsplit("/", 1)[-1]
            s3.put_object(
                Bucket="real-detector", Key=f"images/{name}", Body=(dataset.images_dir / name).read_bytes()
            )
            doc["source-ref"] = f"s3://real-detector/images/{name}"
            lines.append(json.dumps(doc))
        s3.put_object(Bucket="real-detector", Key="train.manifest", Body="\n".join(lines).encode())
        project_arn = rekognition.create_project(ProjectName="real")["ProjectArn"]
        version_arn = rekognition.create_project_version(
            ProjectArn=project_arn,
            VersionName="v1",
            OutputConfig={"S3Bucket": "real-detector", "S3KeyPrefix": "out/"},
            TrainingData={
                "Assets": [
                    {
                        "GroundTruthManifest": {
                            "S3Object": {"Bucket": "real-detector", "Name": "train.manifest"}
                        }
                    }
                ]
            },
            TestingData={"AutoCreate": True},
        )["ProjectVersionArn"]
        done = wait_for(
            lambda: (v := _version(aws, project_arn, "v1"))["Status"] != "TRAINING_IN_PROGRESS" and v,
            timeout=600,
            interval=0.5,
            what="training",
        )
        assert done["Status"] == "TRAINING_COMPLETED", done.get("StatusMessage")
        summary = json.loads(
            s3.get_object(
                Bucket="real-detector", Key=done["EvaluationResult"]["Summary"]["S3Object"]["Name"]
            )["Body"].read()
        )
        assert (
            summary["AggregatedEvaluationResults"]["Metrics"]["F1Score"]
            == done["EvaluationResult"]["F1Score"]
        )
        assert summary["LabelEvaluationResults"][0]["Label"] == sampledata.LABEL
        rekognition.start_project_version(ProjectVersionArn=version_arn, MinInferenceUnits=1)
        wait_for(lambda: _version(aws, project_arn, "v1")["Status"] == "RUNNING", what="RUNNING")
        name = next(n for n, entry in dataset.entries.items() if entry.boxes)
        labels = rekognition.detect_custom_labels(
            ProjectVersionArn=version_arn,
            Image={"S3Object": {"Bucket": "real-detector", "Name": f"images/{name}"}},
            MinConfidence=0,
        )["CustomLabels"]
        assert labels and all(label["Name"] == sampledata.LABEL for label in labels)
        for label in labels:
            box = label["Geometry"]["BoundingBox"]
            assert (
                0 <= box["Left"] <= 1
                and 0 <= box["Top"] <= 1
                and 0 < box["Width"] <= 1
                and 0 < box["Height"] <= 1
            )
