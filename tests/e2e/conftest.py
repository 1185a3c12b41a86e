"""Real-AWS tests: opt-in. They run only with LABELLOOP_E2E_STACK=<deployed stack name> and credentials."""

from __future__ import annotations

import os

import pytest


def _credentials_available() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


@pytest.fixture(scope="session")
def deployed_stack() -> dict[str, str]:
    stack_name = os.environ.get("LABELLOOP_E2E_STACK")
    if not stack_name:
        pytest.skip("real-AWS tests are opt-in: set LABELLOOP_E2E_STACK to a deployed labelloop stack name")
    if os.environ.get("AWS_ENDPOINT_URL"):
        pytest.skip("AWS_ENDPOINT_URL is set: e2e tests talk to real AWS only")
    if not _credentials_available():
        pytest.skip("no AWS credentials found for the real-AWS tests")
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
