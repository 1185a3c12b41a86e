"""Custom::A2IResources: SageMaker calls checked with botocore's Stubber, answers received by a real
HTTP server on 127.0.0.1 standing in for CloudFormation's pre-signed ResponseURL."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from labelloop_core import cfn_response
from labelloop_core.adapters.sagemaker import FlowDefinitionSpec, FlowDefinitionState, SageMakerA2I
from labelloop_core.cfn_response import RunOptions
from labelloop_core.services import a2i_setup
from labelloop_core.services.a2i_setup import A2IProperties, handle_request
from labelloop_core.task_ui import task_ui_template, template_sha256
from tests.support import cfn as stubs
from tests.support.cfn import (
    ResponseEndpoint,
    arns,
    custom_resource_request,
    expect_delete,
    expect_describe,
    response_endpoint,
)
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
ACCOUNT = "123456789012"
NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
TEMPLATE = "<crowd-form><crowd-bounding-box name='annotatedResult'></crowd-bounding-box></crowd-form>"
PROPERTIES = {
    "ServiceToken": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:a2i-setup",
    "HumanTaskUiName": "pizzastack-ui",
    "FlowDefinitionName": "pizzastack-flow",
    "WorkteamArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/reviewers",
    "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/a2i-role",
    "S3OutputPath": "s3://my-bucket/reviews",
    "TaskTitle": "Check the boxes",
    "TaskDescription": "Correct the boxes",
    "TaskCount": "1",
    "TaskTimeLimitInSeconds": "600",
    "TaskAvailabilityLifetimeInSeconds": "86400",
    "TaskUiTemplateSha256": template_sha256(TEMPLATE),
    "Labels": "pepperoni pizza slice,cheese pizza slice",
}


# ---------------------------------------------------------------- the stand-in for CloudFormation
@pytest.fixture
def endpoint() -> Iterator[ResponseEndpoint]:
    with response_endpoint() as state:
        yield state


# ---------------------------------------------------------------- helpers
@pytest.fixture
def sagemaker() -> Iterator[tuple[SageMakerA2I, Stubber]]:
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with Stubber(client) as stubber:
        yield SageMakerA2I(client), stubber
        stubber.assert_no_pending_responses()


def request(kind: str, endpoint: ResponseEndpoint, **extra: Any) -> dict[str, Any]:
    stack_id = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/PizzaStack/guid"
    return custom_resource_request(kind, endpoint, copy.deepcopy(PROPERTIES), stack_id, **extra)


def options(sleeps: list[float] | None = None, **overrides: Any) -> RunOptions:
    recorded = sleeps if sleeps is not None else []
    return RunOptions(poll_seconds=2.0, sleep=recorded.append, **overrides)


def plenty_of_time() -> int:
    return 170_000


def expect_create(
    stubber: Stubber, properties: dict[str, Any], statuses: tuple[str, ...] = ("Active",)
) -> None:
    stubs.expect_create(stubber, properties, statuses, template=TEMPLATE)


def run(
    event: dict[str, Any], adapter: SageMakerA2I, run_options: RunOptions | None = None
) -> dict[str, Any]:
    return handle_request(event, plenty_of_time, adapter, TEMPLATE, run_options or options())


# ---------------------------------------------------------------- create
def test_create_makes_ui_then_flow_waits_until_active_and_answers_success(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    expect_create(stubber, PROPERTIES, statuses=("Initializing", "Initializing", "Active"))
    sleeps: list[float] = []

    body = run(request("Create", endpoint), adapter, options(sleeps))

    parsed, flow_arn, ui_arn = arns(PROPERTIES)
    assert endpoint.received == [body]
    assert endpoint.content_types == [""]  # the pre-signed URL is signed without a content type
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == f"a2i:{parsed.flow_name}/{parsed.ui_name}"
    assert body["Data"]["FlowDefinitionArn"] == flow_arn
    assert body["Data"]["HumanTaskUiArn"] == ui_arn
    prefix = body["Data"]["FlowDefinitionArnPrefix"]
    assert flow_arn.startswith(prefix) and prefix.endswith(":flow-definition/pizzastack-flow-")
    assert (body["StackId"], body["RequestId"], body["LogicalResourceId"]) == (
        request("Create", endpoint)["StackId"],
        "request-create",
        "A2IResources",
    )
    assert sleeps == [2.0, 2.0]  # polled while Initializing
    assert len(json.dumps(body)) <= cfn_response.MAX_RESPONSE_BYTES


def test_create_of_existing_resources_reuses_them(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    # CloudFormation can re-send a Create: the same properties give the same names.
    adapter, stubber = sagemaker
    parsed, flow_arn, ui_arn = arns(PROPERTIES)
    stubs.expect_existing(stubber, PROPERTIES)

    body = run(request("Create", endpoint), adapter)

    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {
        "FlowDefinitionArn": flow_arn,
        "FlowDefinitionArnPrefix": flow_arn.removesuffix(parsed.fingerprint),
        "FlowDefinitionName": parsed.flow_name,
        "HumanTaskUiArn": ui_arn,
        "HumanTaskUiName": parsed.ui_name,
    }


def test_flow_definition_failure_is_reported_with_its_reason(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    expect_create(stubber, PROPERTIES, statuses=())
    parsed, flow_arn, _ = arns(PROPERTIES)
    expect_describe(stubber, parsed.flow_name, flow_arn, "Failed", reason="Workteam not found")

    body = run(request("Create", endpoint), adapter)

    assert body["Status"] == "FAILED"
    assert "Workteam not found" in body["Reason"]
    # Rollback sends Delete with this id, which removes what was created before the failure.
    assert body["PhysicalResourceId"] == parsed.physical_id
    assert endpoint.received == [body]


def test_flow_that_stays_initializing_fails_before_the_lambda_timeout(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    clock = {"remaining_ms": 21_000}

    def remaining() -> int:
        return clock["remaining_ms"]

    def sleep(seconds: float) -> None:
        clock["remaining_ms"] -= int(seconds * 1000)

    # work margin 15 s: 6 s of polling at 2 s per poll, then stop and answer.
    expect_create(stubber, PROPERTIES, statuses=("Initializing",) * 4)

    body = handle_request(request("Create", endpoint), remaining, adapter, TEMPLATE, RunOptions(sleep=sleep))

    assert body["Status"] == "FAILED"
    assert "timed out waiting for flow definition" in body["Reason"]
    assert "Initializing" in body["Reason"]
    assert clock["remaining_ms"] >= 15_000  # stopped with the margin left to answer
    assert endpoint.received == [body]


def test_unexpected_sagemaker_error_still_answers_failed(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    stubber.add_client_error(
        "create_human_task_ui", "AccessDeniedException", "not authorized to CreateHumanTaskUi"
    )

    body = run(request("Create", endpoint), adapter)

    assert body["Status"] == "FAILED"
    assert "AccessDeniedException" in body["Reason"] and "CreateHumanTaskUi" in body["Reason"]
    assert endpoint.received == [body]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TaskCount": "5"}, "TaskCount must be between 1 and 3"),
        ({"TaskTimeLimitInSeconds": "ten"}, "TaskTimeLimitInSeconds must be an integer"),
        ({"WorkteamArn": "arn:aws:sagemaker:us-east-1:1:workteam/public-crowd/x"}, "WorkteamArn"),
        ({"S3OutputPath": "reviews/"}, "S3OutputPath"),
        ({"TaskTitle": ""}, "TaskTitle is required"),
        ({"TaskUiTemplateSha256": "0" * 64}, "does not match the shipped task UI"),
    ],
)
def test_bad_properties_fail_with_a_clear_reason_and_no_sagemaker_call(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber], change: dict[str, str], message: str
) -> None:
    adapter, _ = sagemaker  # no stubbed responses: any SageMaker call would raise
    event = request("Create", endpoint)
    event["ResourceProperties"].update(change)

    body = run(event, adapter)

    assert body["Status"] == "FAILED"
    assert message in body["Reason"]
    assert endpoint.received == [body]


def test_malformed_request_is_answered_failed(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, _ = sagemaker
    event = request("Create", endpoint)
    event["RequestType"] = "Upsert"

    body = run(event, adapter)

    assert body["Status"] == "FAILED"
    assert "RequestType" in body["Reason"]
    assert body["PhysicalResourceId"]


def test_request_without_response_url_cannot_be_answered() -> None:
    with pytest.raises(a2i_setup.InvalidProperties, match="no ResponseURL"):
        handle_request({"RequestType": "Create"}, plenty_of_time, None, TEMPLATE, options())


# ---------------------------------------------------------------- update
def test_update_with_new_properties_creates_new_resources_under_new_names(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    old_id = A2IProperties.parse(PROPERTIES).physical_id
    new_properties = {**PROPERTIES, "TaskCount": "2"}
    expect_create(stubber, new_properties)

    body = run(
        request(
            "Update",
            endpoint,
            PhysicalResourceId=old_id,
            ResourceProperties=new_properties,
            OldResourceProperties=PROPERTIES,
        ),
        adapter,
    )

    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] != old_id  # CloudFormation then deletes the old resources
    assert body["PhysicalResourceId"] == A2IProperties.parse(new_properties).physical_id


def test_update_with_only_a_new_service_token_keeps_the_resources(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    old_id = A2IProperties.parse(PROPERTIES).physical_id
    new_properties = {**PROPERTIES, "ServiceToken": PROPERTIES["ServiceToken"] + "-v2"}
    stubs.expect_existing(stubber, PROPERTIES)

    body = run(
        request("Update", endpoint, PhysicalResourceId=old_id, ResourceProperties=new_properties), adapter
    )

    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == old_id


def test_failed_update_keeps_the_old_id_and_removes_what_it_created(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    old_id = A2IProperties.parse(PROPERTIES).physical_id
    new_properties = {**PROPERTIES, "TaskCount": "3"}
    expect_create(stubber, new_properties, statuses=())
    new, flow_arn, _ = arns(new_properties)
    expect_describe(stubber, new.flow_name, flow_arn, "Failed", reason="Role cannot be assumed")
    expect_delete(stubber, new.flow_name, new.ui_name)

    body = run(
        request("Update", endpoint, PhysicalResourceId=old_id, ResourceProperties=new_properties), adapter
    )

    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"] == old_id
    assert "Role cannot be assumed" in body["Reason"]


# ---------------------------------------------------------------- delete
def test_delete_removes_flow_then_ui(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    parsed = A2IProperties.parse(PROPERTIES)
    expect_delete(stubber, parsed.flow_name, parsed.ui_name)

    body = run(request("Delete", endpoint, PhysicalResourceId=parsed.physical_id), adapter)

    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == parsed.physical_id
    assert endpoint.received == [body]


def test_delete_of_resources_already_gone_succeeds(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    parsed = A2IProperties.parse(PROPERTIES)
    expect_delete(stubber, parsed.flow_name, parsed.ui_name, exists=False)

    body = run(request("Delete", endpoint, PhysicalResourceId=parsed.physical_id), adapter)

    assert body["Status"] == "SUCCESS"


def test_delete_after_a_create_that_never_got_names_does_nothing(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, _ = sagemaker
    event = request("Create", endpoint)
    event["ResourceProperties"]["TaskCount"] = "0"
    failed = run(event, adapter)

    body = run(request("Delete", endpoint, PhysicalResourceId=failed["PhysicalResourceId"]), adapter)

    assert (failed["Status"], body["Status"]) == ("FAILED", "SUCCESS")
    assert body["PhysicalResourceId"] == failed["PhysicalResourceId"]


def test_delete_waits_for_the_flow_before_removing_the_ui(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    parsed, flow_arn, _ = arns(PROPERTIES)
    stubber.add_response("delete_flow_definition", {}, {"FlowDefinitionName": parsed.flow_name})
    expect_describe(stubber, parsed.flow_name, flow_arn, "Deleting")
    stubber.add_client_error("describe_flow_definition", "ResourceNotFound")
    stubber.add_response("delete_human_task_ui", {}, {"HumanTaskUiName": parsed.ui_name})
    sleeps: list[float] = []

    body = run(request("Delete", endpoint, PhysicalResourceId=parsed.physical_id), adapter, options(sleeps))

    assert body["Status"] == "SUCCESS"
    assert sleeps == [2.0]


# ---------------------------------------------------------------- always answering
class _BlockingSageMaker(SageMakerA2I):
    """Hangs in CreateHumanTaskUi until released, like a call stuck until the Lambda timeout."""

    def __init__(self) -> None:
        super().__init__(client=object())
        self.release = threading.Event()
        self.calls: list[str] = []

    def create_human_task_ui(self, name: str, content: str) -> str:
        self.calls.append("create_human_task_ui")
        self.release.wait(timeout=30)
        return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-task-ui/{name}"

    def create_flow_definition(self, spec: FlowDefinitionSpec) -> str:
        self.calls.append("create_flow_definition")
        return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/{spec.name}"

    def describe_flow_definition(self, name: str) -> FlowDefinitionState | None:
        return FlowDefinitionState(
            f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/{name}", "Active", None
        )


def test_watchdog_answers_failed_before_the_timeout_and_only_once(endpoint: ResponseEndpoint) -> None:
    adapter = _BlockingSageMaker()
    run_options = RunOptions(watchdog_margin_seconds=8.0, sleep=lambda _: None)
    answered = threading.Event()
    original_send: Callable[..., None] = run_options.send

    def send(url: str, body: Any) -> None:
        original_send(url, body)
        answered.set()
        adapter.release.set()  # the stuck call returns only after CloudFormation got its answer

    run_options.send = send

    body = handle_request(request("Create", endpoint), lambda: 8_050, adapter, TEMPLATE, run_options)

    assert answered.is_set()
    assert body["Status"] == "FAILED"
    assert "timed out" in body["Reason"]
    assert body["PhysicalResourceId"] == A2IProperties.parse(PROPERTIES).physical_id
    assert endpoint.received == [body]  # the work finished later, but CloudFormation heard once
    assert adapter.calls == ["create_human_task_ui", "create_flow_definition"]


def test_answer_is_retried_when_the_response_url_fails_once(endpoint: ResponseEndpoint) -> None:
    endpoint.statuses = [500]
    cfn_response.send_response(endpoint.url, {"Status": "SUCCESS"}, sleep=lambda _: None)
    assert endpoint.received == [{"Status": "SUCCESS"}]


def test_undeliverable_answer_fails_the_invocation_so_lambda_retries(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    endpoint.statuses = [500, 500, 500]
    adapter, _ = sagemaker
    parsed = A2IProperties.parse({**PROPERTIES, "TaskCount": "2"})
    event = request("Delete", endpoint, PhysicalResourceId=f"x-{parsed.flow_name}")  # nothing to delete
    with pytest.raises(Exception, match="500"):
        handle_request(event, plenty_of_time, adapter, TEMPLATE, RunOptions(send=_send_without_backoff))
    assert endpoint.received == []


def _send_without_backoff(url: str, body: Any) -> None:
    cfn_response.send_response(url, body, sleep=lambda _: None)


# ---------------------------------------------------------------- names
def test_physical_names_are_valid_sagemaker_names_that_keep_the_stack_name() -> None:
    parsed = A2IProperties.parse(PROPERTIES)
    for name in (parsed.flow_name, parsed.ui_name):
        assert len(name) <= 63
        assert NAME_PATTERN.match(name), name
    assert parsed.flow_name.startswith("pizzastack-flow-") and parsed.ui_name.startswith("pizzastack-ui-")
    assert a2i_setup.parse_physical_id(parsed.physical_id) == (parsed.flow_name, parsed.ui_name)


@pytest.mark.parametrize(
    "requested", ["PizzaStack-flow", "a-very-long-stack-name-of-much-more-than-fifty-characters-flow"]
)
def test_a_stack_name_the_iam_policy_could_not_match_fails_with_the_reason(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber], requested: str
) -> None:
    """The role may manage only `<StackName>-flow-*`: a name SageMaker would need lowered or cut would
    fail later with AccessDenied; it fails the deployment here, saying what to do."""
    adapter, _ = sagemaker
    event = request("Create", endpoint)
    event["ResourceProperties"]["FlowDefinitionName"] = requested

    body = run(event, adapter)  # no SageMaker call is stubbed: none may be made

    assert body["Status"] == "FAILED"
    assert "lower-case stack name of at most 49 characters" in body["Reason"]


def test_names_change_with_any_property_except_the_service_token() -> None:
    base = A2IProperties.parse(PROPERTIES)
    changes = {
        "TaskTitle": "Check the slices",
        "WorkteamArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/others",
        "TaskUiTemplateSha256": "f" * 64,
    }
    for key, value in changes.items():
        changed = {**PROPERTIES, key: value}
        assert A2IProperties.parse(changed).flow_name != base.flow_name, key
    token = {**PROPERTIES, "ServiceToken": "arn:aws:lambda:us-east-1:1:function:other"}
    assert A2IProperties.parse(token).physical_id == base.physical_id
    labels = {**PROPERTIES, "Labels": "pepperoni pizza slice,cheese pizza slice,crust"}
    assert A2IProperties.parse(labels).physical_id == base.physical_id  # labels travel with each loop


def test_more_labels_than_the_worker_ui_offers_fail_the_deployment_with_the_reason(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, _ = sagemaker
    event = request("Create", endpoint)
    event["ResourceProperties"]["Labels"] = ",".join(f"label {n}" for n in range(11))

    body = run(event, adapter)  # the stubber holds no response: no SageMaker call may be made

    assert body["Status"] == "FAILED"
    assert "Labels has 11 names" in body["Reason"] and "at most 10" in body["Reason"]


def test_a_flow_definition_still_in_use_is_left_in_place_and_the_delete_succeeds(
    endpoint: ResponseEndpoint, sagemaker: tuple[SageMakerA2I, Stubber]
) -> None:
    adapter, stubber = sagemaker
    parsed = A2IProperties.parse(PROPERTIES)
    for _ in range(a2i_setup.IN_USE_RETRIES + 1):
        stubber.add_client_error(
            "delete_flow_definition",
            "ResourceInUse",
            expected_params={"FlowDefinitionName": parsed.flow_name},
        )
    sleeps: list[float] = []

    body = run(request("Delete", endpoint, PhysicalResourceId=parsed.physical_id), adapter, options(sleeps))

    assert body["Status"] == "SUCCESS"  # a stack update or delete never fails for it
    assert len(sleeps) == a2i_setup.IN_USE_RETRIES
    stubber.assert_no_pending_responses()  # and the task UI it references was not deleted


# ---------------------------------------------------------------- the deployed handler
def _load_handler() -> Any:
    spec = importlib.util.spec_from_file_location(
        "a2i_setup_app_under_test", REPO / "functions/a2i_setup/app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


class _Context:
    function_name = "a2i-setup"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:a2i-setup"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 170_000


def test_handler_answers_cloudformation(endpoint: ResponseEndpoint) -> None:
    handler = _load_handler()
    event = request("Delete", endpoint, PhysicalResourceId="a2i-not-created-request-create")

    result = handler(event, _Context())

    assert result == {"Status": "SUCCESS", "PhysicalResourceId": "a2i-not-created-request-create"}
    assert [body["Status"] for body in endpoint.received] == ["SUCCESS"]


def test_shipped_template_is_what_create_uploads() -> None:
    # The deployed function reads the template from the layer; its hash is in template.yaml.
    assert template_sha256(task_ui_template()) == template_sha256()
