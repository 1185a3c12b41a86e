"""DESIGN §11: every AWS call each function makes in its flows is allowed by its role in the
SAM-translated template.yaml (action, resource ARN and conditions), and the flows reach every AWS
operation each function's code makes."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.iam.proof import Finding, Recording, Subject
from tests.support.template import repo_template

pytestmark = pytest.mark.iam

FUNCTIONS = sorted(repo_template().functions())
# Principals that are not functions: the operators of `labelloop model rollback` and `labelloop reviewers`.
OPERATORS = ["ModelRollbackPolicy", "ReviewerAdminPolicy"]

# Every AWS operation each function's code can make (see the adapters its service uses): a flow
# that stops reaching one of them leaves that permission unproven, so it fails here.
OPERATIONS = {
    "DetectFunction": {
        "s3.GetObject",
        "s3.PutObject",
        "ssm.GetParameter",
        "rekognition.DetectCustomLabels",
        "dynamodb.GetItem",
        "dynamodb.UpdateItem",
        "events.PutEvents",
        "sqs.SendMessageBatch",  # back to the DetectQueue to wait, or to the DLQ with the reason
    },
    "StartReviewFunction": {
        "s3.HeadObject",
        "sagemaker-a2i-runtime.StartHumanLoop",
        "sagemaker-a2i-runtime.DescribeHumanLoop",
        "dynamodb.GetItem",
        "dynamodb.UpdateItem",
        "dynamodb.PutItem",  # a review task (built-in backend)
        "dynamodb.Query",  # the reviews waiting for budget
        "dynamodb.TransactWriteItems",  # a waiting review admitted against the day's budget
    },
    "AppendLabelsFunction": {
        "s3.GetObject",
        "s3.HeadObject",
        "s3.PutObject",
        "dynamodb.GetItem",
        "dynamodb.UpdateItem",
        "dynamodb.TransactWriteItems",
        "events.PutEvents",
    },
    "RetrainFunction": {
        "dynamodb.GetItem",
        "dynamodb.Query",
        "dynamodb.TransactWriteItems",
        "s3.GetObject",
        "s3.HeadObject",
        "s3.PutObject",
        "rekognition.DescribeProjects",
        "rekognition.DescribeDataset",
        "rekognition.UpdateDatasetEntries",
        "rekognition.CreateProjectVersion",
        "rekognition.DescribeProjectVersions",
        "events.PutEvents",
    },
    "PromoteFunction": {
        "dynamodb.GetItem",
        "dynamodb.PutItem",
        "dynamodb.UpdateItem",
        "s3.GetObject",
        "rekognition.DescribeProjects",  # the project of the model the stack started with
        "rekognition.DescribeProjectVersions",
        "rekognition.StartProjectVersion",
        "rekognition.StopProjectVersion",
        "ssm.GetParameter",
        "ssm.PutParameter",
        "events.PutEvents",
    },
    "ModelControllerFunction": {
        "ssm.GetParameter",
        "sqs.GetQueueAttributes",
        "lambda.GetEventSourceMapping",
        "lambda.UpdateEventSourceMapping",
        "rekognition.DescribeProjects",
        "rekognition.DescribeProjectVersions",
        "rekognition.StartProjectVersion",
        "rekognition.StopProjectVersion",
        "dynamodb.GetItem",
        "dynamodb.PutItem",
        "dynamodb.UpdateItem",
    },
    "ModelRollbackPolicy": {
        "cloudformation.DescribeStackResource",
        "lambda.GetFunctionConfiguration",
        "ssm.GetParameter",
        "ssm.PutParameter",
        "rekognition.StartProjectVersion",
        "rekognition.DescribeProjectVersions",
        "rekognition.StopProjectVersion",
    },
    "ReviewerAdminPolicy": {
        "cloudformation.DescribeStackResource",
        "cognito-idp.AdminCreateUser",
        "cognito-idp.ListUsers",
        "cognito-idp.AdminDeleteUser",
    },
    "ReviewApiFunction": {
        "dynamodb.GetItem",
        "dynamodb.UpdateItem",
        "dynamodb.Query",
        "s3.GetObject",  # the pre-signed link of the task's image version (recorded as the GET it signs)
        "s3.PutObject",
        "events.PutEvents",
    },
    "ReviewSweeperFunction": {
        "dynamodb.GetItem",
        "dynamodb.Query",
    },
    "PortalFunction": set(),
    "A2ISetupFunction": {
        "sagemaker.CreateHumanTaskUi",
        "sagemaker.DescribeHumanTaskUi",
        "sagemaker.DeleteHumanTaskUi",
        "sagemaker.CreateFlowDefinition",
        "sagemaker.DescribeFlowDefinition",
        "sagemaker.DeleteFlowDefinition",
    },
}

# Functions whose code calls no AWS service (their flows still run them: see the test below).
CALLS_NOTHING = {function for function, operations in OPERATIONS.items() if not operations}


def report(findings: list[Finding], limit: int = 25) -> str:
    """Findings grouped by the permission that is missing (one example call each)."""
    grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        request = finding.requirement.request
        grouped[(request.action, request.describe())].append(finding)
    lines = [f"{len(findings)} required permissions are not granted:"]
    for (_, _), same in list(grouped.items())[:limit]:
        lines.append(same[0].describe())
    if len(grouped) > limit:
        lines.append(f"... and {len(grouped) - limit} more")
    return "\n".join(lines)


def test_the_flows_exercise_every_function_of_the_template(recording: Recording) -> None:
    assert set(FUNCTIONS + OPERATORS) == set(OPERATIONS), (
        "a function was added or removed: list its operations"
    )
    assert set(FUNCTIONS + OPERATORS) - CALLS_NOTHING <= recording.principals()
    # The portal only serves files: a call it started making would need a grant its role lacks.
    assert not CALLS_NOTHING & recording.principals()


@pytest.mark.parametrize("function", FUNCTIONS + OPERATORS)
def test_the_flows_reach_every_aws_operation_the_function_makes(recording: Recording, function: str) -> None:
    reached = {f"{c['service']}.{c['operation']}" for c in recording.calls if c["principal"] == function}
    assert OPERATIONS[function] <= reached, (
        f"never reached by a flow: {sorted(OPERATIONS[function] - reached)}"
    )


@pytest.mark.parametrize("function", [f for f in FUNCTIONS + OPERATORS if f not in CALLS_NOTHING])
def test_every_recorded_call_is_allowed_by_the_functions_role(subjects: list[Subject], function: str) -> None:
    mine = [subject for subject in subjects if subject.principal == function]
    assert mine, f"no recorded call of {function}"
    findings = [finding for subject in mine for finding in subject.findings()]
    assert not findings, report(findings)
