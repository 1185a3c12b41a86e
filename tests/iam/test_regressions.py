"""Grants template.yaml lacked before the proof existed: on the role as it was, the proof fails with
the permission that is missing; on template.yaml as it is, that permission is granted."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.iam.proof import Finding, Subject, replace_statement, statement
from tests.iam.roles import Role

pytestmark = pytest.mark.iam


def subject_of(subjects: list[Subject], function: str) -> Subject:
    """The function on the stack its own flows ran on (the flows run a builtin and an a2i stack: the
    one with the most recorded requirements), with what the function needed on either stack."""
    found = [subject for subject in subjects if subject.principal == function]
    assert found, function
    chosen = max(found, key=lambda subject: len(subject.required))
    # Both stacks get the same physical names (the local provisioner's), so their requirements merge.
    required = {key: value for subject in found for key, value in subject.required.items()}
    return dataclasses.replace(chosen, required=required)


def missing(subject: Subject, role: Role | None = None) -> list[Finding]:
    return subject.findings(role)


def needs(findings: list[Finding], action: str, resource: str, why: str = "") -> list[Finding]:
    return [
        f
        for f in findings
        if f.requirement.request.action == action
        and resource in f.requirement.request.resource
        and why in f.requirement.why
    ]


def test_describe_projects_needs_resource_star(subjects: list[Subject]) -> None:
    retrain = subject_of(subjects, "RetrainFunction")
    train = statement(retrain.role, "Train")
    # As it was: DescribeProjects among the training actions, scoped to the project ARNs.
    old = replace_statement(retrain.role, "ListProjects")
    old = replace_statement(
        old, "Train", {**train, "Action": [*train["Action"], "rekognition:DescribeProjects"]}
    )
    assert needs(missing(retrain, old), "rekognition:DescribeProjects", "*")
    assert not needs(missing(retrain), "rekognition:DescribeProjects", "*")


def test_training_reads_the_images_its_manifests_reference_with_the_callers_rights(
    subjects: list[Subject],
) -> None:
    retrain = subject_of(subjects, "RetrainFunction")
    read = statement(retrain.role, "ReadTrainingData")
    bucket = read["Resource"].removesuffix("/*")
    # As it was: only the label lines and the manifests were readable.
    old = replace_statement(
        retrain.role,
        "ReadTrainingData",
        {**read, "Resource": [f"{bucket}/labels/*", f"{bucket}/manifests/*"]},
    )
    images = needs(missing(retrain, old), "s3:GetObject", f"{bucket}/incoming/", "references")
    assert images, "no image of a manifest was found unreadable"
    assert not needs(missing(retrain), "s3:GetObject", f"{bucket}/incoming/")


def test_training_writes_its_output_with_the_callers_rights(subjects: list[Subject]) -> None:
    retrain = subject_of(subjects, "RetrainFunction")
    old = replace_statement(retrain.role, "WriteTrainingOutput")  # as it was: no such grant
    assert needs(missing(retrain, old), "s3:PutObject", "/training-output/*", "writes the training output")
    assert not needs(missing(retrain), "s3:PutObject", "/training-output/")


def test_detect_reads_back_its_prediction_when_it_publishes_a_review_request_again(
    subjects: list[Subject],
) -> None:
    detect = subject_of(subjects, "DetectFunction")
    predictions = statement(detect.role, "Predictions")
    old = replace_statement(
        detect.role, "Predictions", {**predictions, "Action": ["s3:PutObject"]}
    )  # as it was
    assert needs(missing(detect, old), "s3:GetObject", "/predictions/")
    assert not needs(missing(detect), "s3:GetObject", "/predictions/")


def _prefix_conditioned(listing: dict[str, Any]) -> dict[str, Any]:
    return {**listing, "Condition": {"StringLike": {"s3:prefix": ["labels/*", "manifests/*"]}}}


def test_retrain_sees_a_missing_base_or_test_manifest_only_with_unconditioned_list_bucket(
    subjects: list[Subject],
) -> None:
    retrain = subject_of(subjects, "RetrainFunction")
    listing = statement(retrain.role, "SeeMissingObjects")
    # As it was: ListBucket conditioned on s3:prefix, which a HEAD request never carries.
    old = replace_statement(retrain.role, "SeeMissingObjects", _prefix_conditioned(listing))
    assert needs(missing(retrain, old), "s3:ListBucket", listing["Resource"], "HeadObject")
    assert not needs(missing(retrain), "s3:ListBucket", listing["Resource"])


def test_detect_sees_a_deleted_upload_only_with_list_bucket(subjects: list[Subject]) -> None:
    detect = subject_of(subjects, "DetectFunction")
    listing = statement(detect.role, "SeeMissingObjects")
    old = replace_statement(detect.role, "SeeMissingObjects")  # as it was: no ListBucket at all
    assert needs(missing(detect, old), "s3:ListBucket", listing["Resource"], "NoSuchVersion")
    conditioned = replace_statement(detect.role, "SeeMissingObjects", _prefix_conditioned(listing))
    assert needs(missing(detect, conditioned), "s3:ListBucket", listing["Resource"])
    assert not needs(missing(detect), "s3:ListBucket", listing["Resource"])
