"""A2ISetup as CloudFormation drives it: the unchanged handler with its env from template.yaml and
the ResourceProperties of template.yaml's Custom::A2IResources, resolved for the provisioned stack.

SageMaker is a botocore Stubber on the shared client the handler uses (every call asserted); the
answer goes to a real HTTP server standing in for the pre-signed ResponseURL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.stub import Stubber

from labelloop_core.adapters import clients
from labelloop_local.stack.provision import Stack
from tests.support.cfn import (
    ResponseEndpoint,
    arns,
    custom_resource_request,
    expect_create,
    expect_delete,
    expect_existing,
    response_endpoint,
)
from tests.support.flows import stubbed
from tests.support.moto_stack import Invoke

pytestmark = pytest.mark.integration


@pytest.fixture
def review_backend() -> str:
    return "a2i"  # these flows are A2I's (the built-in backend's: test_review_api_flow.py)


A2I_SETUP = "A2ISetupFunction"


@pytest.fixture
def endpoint() -> Iterator[ResponseEndpoint]:
    with response_endpoint() as state:
        yield state


@dataclass
class Setup:
    """The stack, the CloudFormation stand-in, the resource's properties and the SageMaker stub."""

    stack: Stack
    invoke: Invoke
    endpoint: ResponseEndpoint
    properties: dict[str, Any]
    sagemaker: Stubber

    def send(self, kind: str, properties: dict[str, Any] | None = None, **extra: Any) -> Any:
        stack_id = self.stack.resolver.pseudo("AWS::StackId")
        event = custom_resource_request(kind, self.endpoint, properties or self.properties, stack_id, **extra)
        return self.invoke(A2I_SETUP, event)


@pytest.fixture
def setup(aws_stack: Stack, invoke: Invoke, endpoint: ResponseEndpoint) -> Iterator[Setup]:
    # Custom::A2IResources' properties as CloudFormation sends them (every value a string).
    resolved = aws_stack.resolver.resolve(aws_stack.template.resource("A2IResources")["Properties"])
    properties = {key: str(value) for key, value in resolved.items()}
    clients.reset()
    with stubbed("sagemaker") as stubber:
        yield Setup(aws_stack, invoke, endpoint, properties, stubber)
    clients.reset()


def test_create_makes_the_task_ui_and_the_flow_definition_and_answers_success(setup: Setup) -> None:
    parsed, flow_arn, ui_arn = arns(setup.properties)
    expect_create(setup.sagemaker, setup.properties)

    result = setup.send("Create")

    [answer] = setup.endpoint.received
    assert result == {"Status": "SUCCESS", "PhysicalResourceId": parsed.physical_id}
    assert answer["Data"]["FlowDefinitionArn"] == flow_arn and answer["Data"]["HumanTaskUiArn"] == ui_arn
    assert parsed.flow_name.startswith(f"{setup.stack.stack_name}-flow-")  # the stack's names, lowered


def test_create_of_resources_that_already_exist_reuses_them(setup: Setup) -> None:
    expect_existing(setup.sagemaker, setup.properties)

    result = setup.send("Create")

    assert result == {"Status": "SUCCESS", "PhysicalResourceId": arns(setup.properties)[0].physical_id}


def test_update_with_new_properties_creates_resources_under_new_names(setup: Setup) -> None:
    old_id = arns(setup.properties)[0].physical_id
    changed = {**setup.properties, "TaskCount": "2"}
    expect_create(setup.sagemaker, changed)

    result = setup.send("Update", changed, PhysicalResourceId=old_id, OldResourceProperties=setup.properties)

    assert result["Status"] == "SUCCESS"
    assert result["PhysicalResourceId"] == arns(changed)[0].physical_id != old_id


@pytest.mark.parametrize("exists", [True, False], ids=["present", "already-gone"])
def test_delete_removes_the_flow_definition_then_the_task_ui(setup: Setup, exists: bool) -> None:
    parsed = arns(setup.properties)[0]
    expect_delete(setup.sagemaker, parsed.flow_name, parsed.ui_name, exists=exists)

    result = setup.send("Delete", PhysicalResourceId=parsed.physical_id)

    assert result == {"Status": "SUCCESS", "PhysicalResourceId": parsed.physical_id}
    assert [answer["Status"] for answer in setup.endpoint.received] == ["SUCCESS"]
