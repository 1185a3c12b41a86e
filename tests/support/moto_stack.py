"""Flow-test fixtures: template.yaml's resources on moto (in-process), handlers invoked as Lambda would.

Registered for every test by `tests/conftest.py` (`pytest_plugins`).

``aws_stack``: moto ``mock_aws`` active, fake credentials, us-east-1, resources of template.yaml
provisioned, the active model parameter pointing at a fake model, the A2I flow definition resolved.
``invoke(function_logical_id, event)``: runs the unchanged handler with exactly that function's env;
its AWS calls are attributed to that function when they are recorded (tests/support/aws_calls.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from labelloop_local.stack.handlers import Handler, lambda_context, load_handler
from labelloop_local.stack.local_stack import LOCAL_PARAMETERS
from labelloop_local.stack.moto_fixes import apply_moto_fixes
from labelloop_local.stack.provision import Stack, provision
from labelloop_local.stack.template import SamTemplate
from tests.support.aws_calls import acting_as
from tests.support.template import repo_template

REGION = "us-east-1"
FAKE_MODEL_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
FLOW_DEFINITION_ARN_PREFIX = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/labelloop-local-flow-"
FAKE_FLOW_DEFINITION_ARN = FLOW_DEFINITION_ARN_PREFIX + "3f9a1c2e"
# A flow definition this stack replaced since (its loops still complete under its own ARN).
REPLACED_FLOW_DEFINITION_ARN = FLOW_DEFINITION_ARN_PREFIX + "0badc0de"
FAKE_HUMAN_TASK_UI_ARN = "arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/labelloop-local"

Invoke = Callable[[str, dict[str, Any]], Any]


@pytest.fixture(scope="session")
def sam_template() -> SamTemplate:
    return repo_template()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; no endpoint overrides or profiles leaking in from the shell."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture
def review_backend() -> str:
    """The stack's ReviewBackend; A2I's flow tests override this fixture with "a2i"."""
    return "builtin"


@pytest.fixture
def aws_stack(aws_env: None, sam_template: SamTemplate, review_backend: str) -> Iterator[Stack]:
    apply_moto_fixes()  # S3 → EventBridge events shaped like AWS's (see labelloop_local.stack.moto_fixes)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        stack = provision(
            sam_template,
            session,
            # The stack starts with a model trained elsewhere, as a deployment with the
            # InitialModelVersionArn parameter does (its project is not the stack's new project).
            params={
                **LOCAL_PARAMETERS,
                "InitialModelVersionArn": FAKE_MODEL_ARN,
                "ReviewBackend": review_backend,
            },
            resolved={
                "FlowDefinitionArn": FAKE_FLOW_DEFINITION_ARN,
                "FlowDefinitionArnPrefix": FLOW_DEFINITION_ARN_PREFIX,
                "HumanTaskUiArn": FAKE_HUMAN_TASK_UI_ARN,
            },
        )
        session.client("ssm").put_parameter(
            Name=stack.physical["ActiveModelParameter"], Value=FAKE_MODEL_ARN, Type="String", Overwrite=True
        )
        yield stack


def new_container() -> None:
    """Forget settings and services built from a previous environment (a new Lambda container);
    boto3 clients stay: they are keyed by endpoint settings, and moto intercepts them all."""
    from labelloop_core import state

    state.reset(clients=False)


@pytest.fixture
def invoke(aws_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    functions = aws_stack.template.functions()
    template_variables = {name for spec in functions.values() for name in spec.environment}
    handlers: dict[str, Handler] = {}

    def _invoke(function_logical_id: str, event: dict[str, Any]) -> Any:
        if function_logical_id not in functions:
            raise KeyError(f"no function {function_logical_id} in template.yaml")
        spec = functions[function_logical_id]
        env = aws_stack.env_for(function_logical_id)
        for name in template_variables - set(env):
            monkeypatch.delenv(name, raising=False)  # another function's variable must not leak in
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        function_name = aws_stack.function_name(function_logical_id)
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", function_name)
        new_container()
        if function_logical_id not in handlers:  # one warm container per function per test
            handlers[function_logical_id] = load_handler(spec.code_dir, spec.handler)
        with acting_as(function_logical_id, aws_stack):  # its AWS calls are its role's (tests/iam)
            return handlers[function_logical_id](event, lambda_context(function_name))

    return _invoke
