"""`labelloop reviewers add|list|remove --stack NAME` on the stack's Cognito user pool (moto).

Its AWS calls are the operator's: they are attributed to the ReviewerAdminPolicy of template.yaml,
which the IAM proof (tests/iam) checks them against.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from labelloop_local.cli import main
from labelloop_local.stack.provision import Stack
from tests.support.aws_calls import acting_as

pytestmark = pytest.mark.integration

OPERATOR = "ReviewerAdminPolicy"  # the managed policy in template.yaml an operator attaches
EMAIL = "ada@example.com"


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch, aws_stack: Stack) -> Iterator[Stubber]:
    """CloudFormation (which moto holds no stack of) as a Stubber on the client the CLI creates."""
    client = boto3.client("cloudformation", region_name="us-east-1")
    create = boto3.client

    def client_for(service: str, *args: Any, **kwargs: Any) -> Any:
        return client if service == "cloudformation" else create(service, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", client_for)
    with Stubber(client) as stubber:
        yield stubber


def expect_pool(stubber: Stubber, stack: Stack) -> None:
    stubber.add_response(
        "describe_stack_resource",
        {
            "StackResourceDetail": {
                "LogicalResourceId": "ReviewerUserPool",
                "PhysicalResourceId": stack.physical["ReviewerUserPool"],
                "ResourceType": "AWS::Cognito::UserPool",
                "LastUpdatedTimestamp": "2026-02-01T00:00:00Z",
                "ResourceStatus": "CREATE_COMPLETE",
            }
        },
        {"StackName": stack.stack_name, "LogicalResourceId": "ReviewerUserPool"},
    )


def run(stack: Stack, stubber: Stubber, *args: str) -> int:
    expect_pool(stubber, stack)
    with acting_as(OPERATOR, stack):
        return main(["reviewers", *args, "--stack", stack.stack_name])


def test_reviewers_are_invited_once_listed_and_removed(
    aws_stack: Stack, cloudformation: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(aws_stack, cloudformation, "add", EMAIL, "--temporary-password", "Tmp-Passw0rd!x") == 0
    assert f"invited {EMAIL} (FORCE_CHANGE_PASSWORD)" in capsys.readouterr().out
    assert run(aws_stack, cloudformation, "add", EMAIL) == 0  # again: nothing changes
    assert "already a reviewer" in capsys.readouterr().out

    assert run(aws_stack, cloudformation, "list", "--json") == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["email"] == EMAIL and listed["status"] == "FORCE_CHANGE_PASSWORD"

    assert run(aws_stack, cloudformation, "remove", EMAIL) == 0
    assert run(aws_stack, cloudformation, "remove", EMAIL) == 1
    assert f"{EMAIL} is not a reviewer of this stack" in capsys.readouterr().err
    cloudformation.assert_no_pending_responses()


def test_a_stack_without_the_builtin_backend_is_named_in_the_error(
    aws_stack: Stack, cloudformation: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation.add_client_error(
        "describe_stack_resource",
        service_error_code="ValidationError",
        service_message="Resource ReviewerUserPool does not exist for stack labelloop-local",
    )
    assert main(["reviewers", "list", "--stack", aws_stack.stack_name]) == 1
    assert "is its ReviewBackend builtin?" in capsys.readouterr().err
