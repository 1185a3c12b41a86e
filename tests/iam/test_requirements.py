"""From a recorded call to the permissions it needs, each checked against the Service Authorization
Reference."""

from __future__ import annotations

from typing import Any

import pytest

from tests.iam import reference
from tests.iam.requirements import Call, UnmappedCall, requirements

pytestmark = pytest.mark.iam

BUCKET = "bucket"
ACCOUNT = "123456789012"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ledger"


def needs(
    service: str, operation: str, params: dict[str, Any], **extra: Any
) -> list[tuple[str, str, dict[str, Any]]]:
    call = Call("Fn", service, operation, "us-east-1", ACCOUNT, params, **extra)
    return [(r.request.action, r.request.resource, dict(r.request.context)) for r in requirements(call)]


def test_a_get_of_a_named_version_needs_get_object_version() -> None:
    assert needs("s3", "GetObject", {"Bucket": BUCKET, "Key": "incoming/a.png"}) == [
        ("s3:GetObject", "arn:aws:s3:::bucket/incoming/a.png", {})
    ]
    assert needs("s3", "GetObject", {"Bucket": BUCKET, "Key": "a", "VersionId": "v1"}) == [
        ("s3:GetObjectVersion", "arn:aws:s3:::bucket/a", {})
    ]


def test_a_head_needs_get_object_and_a_missing_key_needs_list_bucket_without_prefix() -> None:
    found = needs("s3", "HeadObject", {"Bucket": BUCKET, "Key": "manifests/test.manifest"}, error="404")
    assert found == [
        ("s3:GetObject", "arn:aws:s3:::bucket/manifests/test.manifest", {}),
        ("s3:ListBucket", "arn:aws:s3:::bucket", {}),
    ]


def test_a_conditional_put_carries_if_none_match() -> None:
    found = needs("s3", "PutObject", {"Bucket": BUCKET, "Key": "labels/x.json", "IfNoneMatch": "*"})
    assert found == [("s3:PutObject", "arn:aws:s3:::bucket/labels/x.json", {"s3:if-none-match": "*"})]


def test_multipart_uploads_need_put_object_and_copies_read_the_source() -> None:
    assert needs("s3", "UploadPart", {"Bucket": BUCKET, "Key": "m", "UploadId": "u", "PartNumber": 1}) == [
        ("s3:PutObject", "arn:aws:s3:::bucket/m", {})
    ]
    copy = needs("s3", "CopyObject", {"Bucket": BUCKET, "Key": "b", "CopySource": "bucket/a%20b?versionId=v"})
    assert copy == [
        ("s3:GetObjectVersion", "arn:aws:s3:::bucket/a b", {}),
        ("s3:PutObject", "arn:aws:s3:::bucket/b", {}),
    ]


def test_a_transaction_needs_the_action_of_each_of_its_items() -> None:
    items = [
        {"Put": {"TableName": "ledger", "Item": {}}},
        {"Update": {"TableName": "ledger", "Key": {}}},
        {"ConditionCheck": {"TableName": "other", "Key": {}}},
    ]
    assert [action for action, _, _ in needs("dynamodb", "TransactWriteItems", {"TransactItems": items})] == [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
    ]


def test_a_query_on_an_index_needs_the_index_arn() -> None:
    found = needs("dynamodb", "Query", {"TableName": "ledger", "IndexName": "PendingLabels"})
    assert found == [("dynamodb:Query", f"{TABLE}/index/PendingLabels", {})]


def test_put_events_is_authorized_per_entry_with_its_source_and_detail_type() -> None:
    entries = [
        {"Source": "labelloop", "DetailType": "ReviewRequested", "EventBusName": "app", "Detail": "{}"},
        {"Source": "labelloop", "DetailType": "LabelsAppended", "Detail": "{}"},
    ]
    assert needs("events", "PutEvents", {"Entries": entries}) == [
        (
            "events:PutEvents",
            f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/app",
            {"events:source": "labelloop", "events:detail-type": "ReviewRequested"},
        ),
        (
            "events:PutEvents",
            f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default",
            {"events:source": "labelloop", "events:detail-type": "LabelsAppended"},
        ),
    ]


def test_detect_custom_labels_reads_the_image_with_the_callers_rights() -> None:
    version = f"arn:aws:rekognition:us-east-1:{ACCOUNT}:project/p/version/v/1"
    image = {"S3Object": {"Bucket": BUCKET, "Name": "incoming/a.png", "Version": "v1"}}
    assert needs("rekognition", "DetectCustomLabels", {"ProjectVersionArn": version, "Image": image}) == [
        ("rekognition:DetectCustomLabels", version, {}),
        ("s3:GetObject", "arn:aws:s3:::bucket/incoming/a.png", {}),
        ("s3:GetObjectVersion", "arn:aws:s3:::bucket/incoming/a.png", {}),
    ]


def test_training_reads_the_manifests_and_their_images_and_writes_the_output() -> None:
    project = f"arn:aws:rekognition:us-east-1:{ACCOUNT}:project/p/1700000000000"
    manifest = {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": "manifests/train.manifest"}}}
    params = {
        "ProjectArn": project,
        "VersionName": "v",
        "OutputConfig": {"S3Bucket": BUCKET, "S3KeyPrefix": "training-output/"},
        "TrainingData": {"Assets": [manifest]},
        "TestingData": {"AutoCreate": True},
    }
    derived = {"manifests": {"s3://bucket/manifests/train.manifest": ["s3://bucket/base/a.jpg"]}}
    assert needs("rekognition", "CreateProjectVersion", params, derived=derived) == [
        ("rekognition:CreateProjectVersion", project, {}),
        ("s3:GetObject", "arn:aws:s3:::bucket/manifests/train.manifest", {}),
        ("s3:GetObject", "arn:aws:s3:::bucket/base/a.jpg", {}),
        ("s3:PutObject", "arn:aws:s3:::bucket/training-output/*", {}),
    ]


def test_describe_projects_has_no_resource_type() -> None:
    assert reference.supports_only_wildcard("rekognition:DescribeProjects")
    assert needs("rekognition", "DescribeProjects", {"ProjectNames": ["p"]}) == [
        ("rekognition:DescribeProjects", "*", {})
    ]


def test_creating_a_flow_definition_passes_its_role_to_sagemaker() -> None:
    team = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/team"
    role = f"arn:aws:iam::{ACCOUNT}:role/a2i"
    params = {"FlowDefinitionName": "s-flow-1", "RoleArn": role, "HumanLoopConfig": {"WorkteamArn": team}}
    assert needs("sagemaker", "CreateFlowDefinition", params) == [
        (
            "sagemaker:CreateFlowDefinition",
            f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/s-flow-1",
            {"sagemaker:WorkteamArn": team},
        ),
        ("iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ]


def test_a_call_the_flow_stubbed_as_denied_needs_no_grant() -> None:
    version = f"arn:aws:rekognition:us-east-1:{ACCOUNT}:project/p/version/v/1"
    assert (
        needs(
            "rekognition", "StopProjectVersion", {"ProjectVersionArn": version}, error="AccessDeniedException"
        )
        == []
    )


def test_an_unmapped_operation_fails_instead_of_proving_nothing() -> None:
    with pytest.raises(UnmappedCall, match=r"s3\.GetBucketAcl"):
        needs("s3", "GetBucketAcl", {"Bucket": BUCKET})


def test_the_reference_refuses_unknown_actions_resources_and_condition_keys() -> None:
    with pytest.raises(reference.UnknownPermission, match="no such action"):
        reference.resource_types("rekognition:DescribeProject")
    with pytest.raises(reference.UnknownPermission, match="ARN formats"):
        reference.matching_resource_type("rekognition:DetectCustomLabels", "arn:aws:s3:::bucket/key")
    with pytest.raises(reference.UnknownPermission, match="not '\\*'"):
        reference.matching_resource_type("s3:GetObject", "*")
    resource_type = reference.matching_resource_type(
        "events:PutEvents", "arn:aws:events:us-east-1:1:event-bus/b"
    )
    with pytest.raises(reference.UnknownPermission, match="events:detailtype"):
        reference.check_condition_keys("events:PutEvents", resource_type, ["events:detailtype"])
