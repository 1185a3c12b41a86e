"""`labelloop model rollback`: the deployed Promote function's configuration drives the same rollback code.

Its AWS calls are the operator's: they are attributed to the ModelRollbackPolicy of template.yaml,
which the IAM proof (tests/iam) checks them against.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from labelloop_core.adapters import clients
from labelloop_local.cli import main
from labelloop_local.stack.provision import Stack
from tests.support.aws_calls import acting_as
from tests.support.flows import stubbed

pytestmark = pytest.mark.integration

OPERATOR = "ModelRollbackPolicy"  # the managed policy in template.yaml an operator attaches


def _deploy_promote_function(stack: Stack) -> str:
    """The stack's Promote function as Lambda holds it (its name and environment from template.yaml)."""
    role = boto3.client("iam").create_role(
        RoleName="promote-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    function_name = stack.function_name("PromoteFunction")
    boto3.client("lambda").create_function(
        FunctionName=function_name,
        Runtime="python3.12",
        Role=role,
        Handler="app.lambda_handler",
        Code={"ZipFile": package.getvalue()},
        Environment={"Variables": stack.env_for("PromoteFunction")},
    )
    return function_name


def _version_arn(stack: Stack, name: str) -> str:
    project = stack.env_for("PromoteFunction")["PROJECT_ARN"]
    return f"{project.rsplit('/', 1)[0]}/version/{name}/1714557600000"


def _version(arn: str, status: str) -> dict[str, object]:
    return {"ProjectVersionDescriptions": [{"ProjectVersionArn": arn, "Status": status}]}


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """CloudFormation (which moto holds no stack of) as a Stubber on the client the CLI creates."""
    client = boto3.client("cloudformation", region_name="us-east-1")
    create = boto3.client

    def client_for(service: str, *args: Any, **kwargs: Any) -> Any:
        return client if service == "cloudformation" else create(service, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", client_for)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize("target", ["--stack", "--promote-function"])
def test_rollback_starts_the_previous_model_then_swaps_and_stops(
    aws_stack: Stack, capsys: pytest.CaptureFixture[str], cloudformation: Stubber, target: str
) -> None:
    old = _version_arn(aws_stack, "labelloop-20260101T000000Z")
    new = _version_arn(aws_stack, "labelloop-20260201T000000Z")
    ssm = boto3.client("ssm")
    ssm.put_parameter(
        Name=aws_stack.physical["ActiveModelParameter"], Value=new, Type="String", Overwrite=True
    )
    ssm.put_parameter(
        Name=aws_stack.physical["PreviousModelParameter"], Value=old, Type="String", Overwrite=True
    )
    function_name = _deploy_promote_function(aws_stack)
    if target == "--stack":
        cloudformation.add_response(
            "describe_stack_resource",
            {
                "StackResourceDetail": {
                    "LogicalResourceId": "PromoteFunction",
                    "PhysicalResourceId": function_name,
                    "ResourceType": "AWS::Lambda::Function",
                    "LastUpdatedTimestamp": "2026-02-01T00:00:00Z",
                    "ResourceStatus": "UPDATE_COMPLETE",
                }
            },
            {"StackName": aws_stack.stack_name, "LogicalResourceId": "PromoteFunction"},
        )
    clients.reset()

    with stubbed("rekognition") as rekognition, acting_as(OPERATOR, aws_stack):
        rekognition.add_response(
            "start_project_version",
            {"Status": "STARTING"},
            {"ProjectVersionArn": old, "MinInferenceUnits": ANY},
        )
        rekognition.add_response(
            "describe_project_versions",
            _version(old, "RUNNING"),
            {
                "ProjectArn": aws_stack.env_for("PromoteFunction")["PROJECT_ARN"],
                "VersionNames": ["labelloop-20260101T000000Z"],
            },
        )
        rekognition.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": new})
        name = aws_stack.stack_name if target == "--stack" else function_name
        code = main(["model", "rollback", target, name, "--timeout", "0"])

    assert code == 0, capsys.readouterr().err
    assert ssm.get_parameter(Name=aws_stack.physical["ActiveModelParameter"])["Parameter"]["Value"] == old
    assert ssm.get_parameter(Name=aws_stack.physical["PreviousModelParameter"])["Parameter"]["Value"] == new
    assert f"active model:   {old}" in capsys.readouterr().out


def test_rollback_without_a_previous_model_says_so(
    aws_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    function_name = _deploy_promote_function(aws_stack)
    clients.reset()
    with stubbed("rekognition"), acting_as(OPERATOR, aws_stack):
        code = main(["model", "rollback", "--promote-function", function_name])
    assert code == 1
    assert "nothing to roll back to" in capsys.readouterr().err
