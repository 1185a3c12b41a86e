"""The local stack answers the CloudFormation and Lambda calls operator commands make of a deployed
stack (`labelloop model rollback --stack`, `labelloop dlq`), from what it provisioned."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labelloop_local.stack.local_stack import LocalStack
from tests.support.paths import TEMPLATE_PATH

pytestmark = pytest.mark.integration

TEMPLATE = TEMPLATE_PATH
DETECT_DLQ = "DetectFunctionDeadLetterQueue"


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    with LocalStack(TEMPLATE, time_scale=1 / 6000) as stack:
        yield stack


def test_local_stack_describes_itself_like_cloudformation_and_lambda(local_stack: LocalStack) -> None:
    """What `labelloop model rollback --stack` and the dlq command read: resources, configuration."""
    assert local_stack.stack is not None
    cloudformation, lambda_ = local_stack.client("cloudformation"), local_stack.client("lambda")
    (stack,) = cloudformation.describe_stacks(StackName=local_stack.stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["BucketName"] == local_stack.stack.bucket
    assert outputs[f"{DETECT_DLQ}Url"] == local_stack.stack.queue_url(DETECT_DLQ)

    detail = cloudformation.describe_stack_resource(
        StackName=local_stack.stack_name, LogicalResourceId="PromoteFunction"
    )["StackResourceDetail"]
    assert detail["ResourceType"] == "AWS::Lambda::Function"
    configuration = lambda_.get_function_configuration(FunctionName=detail["PhysicalResourceId"])
    assert configuration["Environment"]["Variables"] == local_stack.stack.env_for("PromoteFunction")
    assert configuration["LoggingConfig"]["LogGroup"] == local_stack.stack.physical["PromoteFunctionLogGroup"]

    listed = {
        summary["LogicalResourceId"]: summary
        for page in cloudformation.get_paginator("list_stack_resources").paginate(
            StackName=local_stack.stack_name
        )
        for summary in page["StackResourceSummaries"]
    }
    assert listed[DETECT_DLQ]["PhysicalResourceId"] == local_stack.stack.queue_url(DETECT_DLQ)
    assert "AlarmEmailSubscription" not in listed  # its Condition is false without AlarmEmail


def test_request_response_invoke_runs_the_function_and_reports_its_error(local_stack: LocalStack) -> None:
    assert local_stack.dispatcher is not None
    lambda_ = local_stack.client("lambda")
    name = local_stack.stack.function_name("RetrainFunction") if local_stack.stack else ""

    def failing(event: dict[str, Any], context: Any) -> None:
        raise ValueError(f"no {event['what']}")

    local_stack.dispatcher.replace_handler("RetrainFunction", lambda event, context: {"echo": event})
    answer = lambda_.invoke(FunctionName=name, Payload=json.dumps({"what": "labels"}))
    assert (answer["StatusCode"], json.loads(answer["Payload"].read())) == (200, {"echo": {"what": "labels"}})

    local_stack.dispatcher.replace_handler("RetrainFunction", failing)
    answer = lambda_.invoke(FunctionName=name, Payload=json.dumps({"what": "labels"}))
    error = json.loads(answer["Payload"].read())
    assert (answer["FunctionError"], error["errorType"], error["errorMessage"]) == (
        "Unhandled",
        "ValueError",
        "no labels",
    )


def test_event_invoke_of_code_that_cannot_load_ends_in_the_functions_dead_letter_queue(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """As on Lambda, an init failure of an asynchronous invocation is a function error: retried,
    then dead-lettered with the event, not dropped."""
    assert local_stack.dispatcher is not None and local_stack.stack is not None
    functions = local_stack.dispatcher._functions
    original = functions["PromoteFunction"]
    local_stack.dispatcher._handlers.pop("PromoteFunction", None)
    functions["PromoteFunction"] = dataclasses.replace(original, code_dir=tmp_path)  # no app.py there
    try:
        answer = local_stack.client("lambda").invoke(
            FunctionName=local_stack.stack.function_name("PromoteFunction"),
            InvocationType="Event",
            Payload=json.dumps({"id": "cannot-load"}),
        )
        assert answer["StatusCode"] == 202
        assert local_stack.drain(60)
    finally:
        functions["PromoteFunction"] = original
    (letter,) = local_stack.read_dlq("PromoteFunctionDeadLetterQueue")
    assert letter["body"]["requestPayload"] == {"id": "cannot-load"}
    assert letter["body"]["requestContext"]["approximateInvokeCount"] == 3
    assert letter["body"]["responsePayload"]["errorType"] == "HandlerLoadError"
