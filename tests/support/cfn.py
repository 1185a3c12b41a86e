"""Custom::A2IResources under test: CloudFormation's ResponseURL stand-in and the SageMaker calls the
setup makes, as botocore Stubber expectations (shared by the unit tests and the flow tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.stub import ANY, Stubber

from labelloop_core.services.a2i_setup import A2IProperties


@dataclass
class ResponseEndpoint:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str | None] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # status codes to answer with, then 200


@contextmanager
def response_endpoint() -> Iterator[ResponseEndpoint]:
    """A real HTTP server on 127.0.0.1 standing in for CloudFormation's pre-signed ResponseURL."""
    state = ResponseEndpoint(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.received.append(json.loads(body))
                state.content_types.append(self.headers.get("Content-Type"))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/stack-response?X-Amz-Signature=abc"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def arns(properties: Mapping[str, Any], region: str = "us-east-1") -> tuple[A2IProperties, str, str]:
    """The parsed properties and the flow definition and task UI ARNs they give."""
    parsed = A2IProperties.parse(properties)
    account = str(properties["WorkteamArn"]).split(":")[4]
    prefix = f"arn:aws:sagemaker:{region}:{account}"
    return parsed, f"{prefix}:flow-definition/{parsed.flow_name}", f"{prefix}:human-task-ui/{parsed.ui_name}"


def expect_create(
    stubber: Stubber,
    properties: Mapping[str, Any],
    statuses: tuple[str, ...] = ("Active",),
    template: Any = ANY,
) -> None:
    parsed, flow_arn, ui_arn = arns(properties)
    stubber.add_response(
        "create_human_task_ui",
        {"HumanTaskUiArn": ui_arn},
        {"HumanTaskUiName": parsed.ui_name, "UiTemplate": {"Content": template}},
    )
    stubber.add_response(
        "create_flow_definition",
        {"FlowDefinitionArn": flow_arn},
        {
            "FlowDefinitionName": parsed.flow_name,
            "RoleArn": properties["RoleArn"],
            "HumanLoopConfig": {
                "WorkteamArn": properties["WorkteamArn"],
                "HumanTaskUiArn": ui_arn,
                "TaskTitle": properties["TaskTitle"],
                "TaskDescription": properties["TaskDescription"],
                "TaskCount": int(properties["TaskCount"]),
                "TaskTimeLimitInSeconds": int(properties["TaskTimeLimitInSeconds"]),
                "TaskAvailabilityLifetimeInSeconds": int(properties["TaskAvailabilityLifetimeInSeconds"]),
            },
            "OutputConfig": {"S3OutputPath": properties["S3OutputPath"]},
        },
    )
    for status in statuses:
        expect_describe(stubber, parsed.flow_name, flow_arn, status)


def expect_existing(stubber: Stubber, properties: Mapping[str, Any]) -> None:
    """A create of resources that exist under these names: both are described instead."""
    parsed, flow_arn, ui_arn = arns(properties)
    stubber.add_client_error("create_human_task_ui", "ResourceInUse")
    stubber.add_response(
        "describe_human_task_ui",
        {
            "HumanTaskUiArn": ui_arn,
            "HumanTaskUiName": parsed.ui_name,
            "CreationTime": "2024-03-01T12:00:00Z",
            "UiTemplate": {"Url": "https://x", "ContentSha256": "y"},
        },
        {"HumanTaskUiName": parsed.ui_name},
    )
    stubber.add_client_error("create_flow_definition", "ResourceInUse")
    expect_describe(stubber, parsed.flow_name, flow_arn, "Active")
    expect_describe(stubber, parsed.flow_name, flow_arn, "Active")


def expect_describe(stubber: Stubber, flow_name: str, flow_arn: str, status: str, reason: str = "") -> None:
    response: dict[str, Any] = {
        "FlowDefinitionArn": flow_arn,
        "FlowDefinitionName": flow_name,
        "FlowDefinitionStatus": status,
        "CreationTime": "2024-03-01T12:00:00Z",
        "OutputConfig": {"S3OutputPath": "s3://my-bucket/reviews"},
        "RoleArn": "arn:aws:iam::123456789012:role/a2i-role",
    }
    if reason:
        response["FailureReason"] = reason
    stubber.add_response("describe_flow_definition", response, {"FlowDefinitionName": flow_name})


def expect_delete(stubber: Stubber, flow_name: str, ui_name: str, exists: bool = True) -> None:
    if exists:
        stubber.add_response("delete_flow_definition", {}, {"FlowDefinitionName": flow_name})
        stubber.add_client_error(
            "describe_flow_definition", "ResourceNotFound", expected_params={"FlowDefinitionName": flow_name}
        )
        stubber.add_response("delete_human_task_ui", {}, {"HumanTaskUiName": ui_name})
    else:
        stubber.add_client_error(
            "delete_flow_definition", "ResourceNotFound", expected_params={"FlowDefinitionName": flow_name}
        )
        stubber.add_client_error(
            "delete_human_task_ui", "ResourceNotFound", expected_params={"HumanTaskUiName": ui_name}
        )


def custom_resource_request(
    kind: str, endpoint: ResponseEndpoint, properties: Mapping[str, Any], stack_id: str, **extra: Any
) -> dict[str, Any]:
    event = {
        "RequestType": kind,
        "ResponseURL": endpoint.url,
        "StackId": stack_id,
        "RequestId": f"request-{kind.lower()}",
        "ResourceType": "Custom::A2IResources",
        "LogicalResourceId": "A2IResources",
        "ResourceProperties": dict(properties),
    }
    event.update(extra)
    return event
