"""SageMaker control-plane calls for A2I: human task UIs and flow definitions.

Only the calls the A2I setup custom resource needs. Creating a resource that already exists with
the same name returns the existing ARN (a re-sent CloudFormation request is not an error: names
carry a hash of the properties, so the same name means the same definition); deleting a resource
that is already gone is success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import LabelloopError

FLOW_ACTIVE = "Active"
FLOW_FAILED = "Failed"


class FlowDefinitionInUse(LabelloopError):
    """Human loops started on the flow definition still run: it cannot be deleted yet."""


@dataclass(frozen=True)
class FlowDefinitionSpec:
    name: str
    role_arn: str
    workteam_arn: str
    human_task_ui_arn: str
    task_title: str
    task_description: str
    task_count: int
    task_time_limit_seconds: int
    task_availability_lifetime_seconds: int
    s3_output_path: str


@dataclass(frozen=True)
class FlowDefinitionState:
    arn: str
    status: str
    failure_reason: str | None


class SageMakerA2I:
    """Thin wrapper over the boto3 `sagemaker` client (created lazily when none is given)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    client = LazyClient("sagemaker")

    def create_human_task_ui(self, name: str, content: str) -> str:
        """Create the worker task UI from liquid `content`; returns its ARN (existing one if present)."""
        try:
            response = self.client.create_human_task_ui(HumanTaskUiName=name, UiTemplate={"Content": content})
        except self.client.exceptions.ResourceInUse:
            response = self.client.describe_human_task_ui(HumanTaskUiName=name)
        return str(response["HumanTaskUiArn"])

    def delete_human_task_ui(self, name: str) -> bool:
        """Delete the task UI; False when it did not exist."""
        try:
            self.client.delete_human_task_ui(HumanTaskUiName=name)
        except self.client.exceptions.ResourceNotFound:
            return False
        return True

    def create_flow_definition(self, spec: FlowDefinitionSpec) -> str:
        """Start creating the flow definition (asynchronous); returns its ARN (existing one if present)."""
        try:
            response = self.client.create_flow_definition(
                FlowDefinitionName=spec.name,
                RoleArn=spec.role_arn,
                HumanLoopConfig={
                    "WorkteamArn": spec.workteam_arn,
                    "HumanTaskUiArn": spec.human_task_ui_arn,
                    "TaskTitle": spec.task_title,
                    "TaskDescription": spec.task_description,
                    "TaskCount": spec.task_count,
                    "TaskTimeLimitInSeconds": spec.task_time_limit_seconds,
                    "TaskAvailabilityLifetimeInSeconds": spec.task_availability_lifetime_seconds,
                },
                OutputConfig={"S3OutputPath": spec.s3_output_path},
            )
        except self.client.exceptions.ResourceInUse:
            response = self.client.describe_flow_definition(FlowDefinitionName=spec.name)
        return str(response["FlowDefinitionArn"])

    def describe_flow_definition(self, name: str) -> FlowDefinitionState | None:
        """Current state of the flow definition, None when it does not exist (any more)."""
        try:
            response = self.client.describe_flow_definition(FlowDefinitionName=name)
        except self.client.exceptions.ResourceNotFound:
            return None
        return FlowDefinitionState(
            arn=str(response["FlowDefinitionArn"]),
            status=str(response["FlowDefinitionStatus"]),
            failure_reason=response.get("FailureReason"),
        )

    def delete_flow_definition(self, name: str) -> bool:
        """Start deleting the flow definition (asynchronous); False when it did not exist.

        Raises FlowDefinitionInUse while human loops started on it are still running."""
        try:
            self.client.delete_flow_definition(FlowDefinitionName=name)
        except self.client.exceptions.ResourceNotFound:
            return False
        except self.client.exceptions.ResourceInUse as error:
            raise FlowDefinitionInUse(f"flow definition {name} is in use: {error}") from error
        return True
