"""The recorded calls for the IAM proof: recorded once per session by running the flow tests, or read
from LABELLOOP_IAM_CALLS (a file an earlier `make iam` wrote) to check a template edit quickly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.iam.proof import Recording, Subject
from tests.iam.proof import subjects as build_subjects
from tests.iam.recording import DEFAULT_PATH, record_flows
from tests.support.paths import TEMPLATE_PATH


@pytest.fixture(scope="session")
def recording() -> Recording:
    configured = os.environ.get("LABELLOOP_IAM_CALLS")
    if configured:
        return Recording.load(Path(configured))
    result = record_flows(DEFAULT_PATH)
    if result.returncode != 0 or not DEFAULT_PATH.exists():
        pytest.fail(
            f"the recorded flows failed (exit {result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        )
    return Recording.load(DEFAULT_PATH)


@pytest.fixture(scope="session")
def template_text() -> str:
    return TEMPLATE_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def subjects(recording: Recording, template_text: str) -> list[Subject]:
    """Every principal's role and required permissions, on template.yaml as it is in the working tree."""
    return build_subjects(recording, template_text)
