"""`labelloop model rollback`: the deployed Promote function's configuration drives the same rollback code."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from botocore.stub import ANY

from labelloop_core.adapters import clients
from labelloop_local.cli import main
from labelloop_local.stack.provision import Stack
from tests.support.flows import stubbed

PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1700000000000"
OLD = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/labelloop-20260101T000000Z/1"
NEW = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/labelloop-20260201T000000Z/2"


def _deploy_promote_function(stack: Stack) -> str:
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
    environment = {**stack.env_for("PromoteFunction"), "PROJECT_ARN": PROJECT}
    boto3.client("lambda").create_function(
        FunctionName="labelloop-PromoteFunction",
        Runtime="python3.12",
        Role=role,
        Handler="app.lambda_handler",
        Code={"ZipFile": package.getvalue()},
        Environment={"Variables": environment},
    )
    return "labelloop-PromoteFunction"


def _version(arn: str, status: str) -> dict[str, object]:
    return {"ProjectVersionDescriptions": [{"ProjectVersionArn": arn, "Status": status}]}


def test_rollback_starts_the_previous_model_then_swaps_and_stops(
    aws_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(
        Name=aws_stack.physical["ActiveModelParameter"], Value=NEW, Type="String", Overwrite=True
    )
    ssm.put_parameter(
        Name=aws_stack.physical["PreviousModelParameter"], Value=OLD, Type="String", Overwrite=True
    )
    function_name = _deploy_promote_function(aws_stack)
    clients.reset()

    with stubbed("rekognition") as rekognition:
        rekognition.add_response(
            "start_project_version",
            {"Status": "STARTING"},
            {"ProjectVersionArn": OLD, "MinInferenceUnits": ANY},
        )
        rekognition.add_response(
            "describe_project_versions",
            _version(OLD, "RUNNING"),
            {"ProjectArn": PROJECT, "VersionNames": ["labelloop-20260101T000000Z"]},
        )
        rekognition.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": NEW})
        code = main(["model", "rollback", "--promote-function", function_name, "--timeout", "0"])

    assert code == 0, capsys.readouterr().err
    assert ssm.get_parameter(Name=aws_stack.physical["ActiveModelParameter"])["Parameter"]["Value"] == OLD
    assert ssm.get_parameter(Name=aws_stack.physical["PreviousModelParameter"])["Parameter"]["Value"] == NEW
    assert f"active model:   {OLD}" in capsys.readouterr().out


def test_rollback_without_a_previous_model_says_so(
    aws_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    function_name = _deploy_promote_function(aws_stack)
    clients.reset()
    with stubbed("rekognition"):
        code = main(["model", "rollback", "--promote-function", function_name])
    assert code == 1
    assert "nothing to roll back to" in capsys.readouterr().err
