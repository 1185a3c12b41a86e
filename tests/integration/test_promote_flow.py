"""Promote on moto: evaluate a finished training, start it, switch the SSM parameters, stop the old model.

DynamoDB, S3, SSM, EventBridge and SQS are moto (the template's resources); Rekognition Custom Labels
is a botocore Stubber on the shared client the handler uses, so every Rekognition call is asserted
and an unexpected one fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from labelloop_core.adapters import clients
from labelloop_core.adapters.ledger import TrainingLedger
from labelloop_core.config import settings_from_env
from labelloop_core.evaluation import EvaluationMetrics
from labelloop_core.ledger import ClaimResult, Decision
from labelloop_core.services.promote import PromoteSettings, rollback
from labelloop_local.stack.provision import Stack
from tests.support.flows import EventSpy

pytestmark = pytest.mark.integration

Invoke = Callable[[str, dict[str, Any]], Any]
ACTIVE_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"  # conftest's model
PIZZA_PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1690000000000"
LABEL = "pepperoni pizza slice"


def schedule_event(time: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"promote-{time}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/labelloop-promote"],
        "detail": {},
    }


def summary(f1: float, per_label: float) -> dict[str, Any]:
    """An evaluation summary as Rekognition writes it for object detection."""
    return {
        "Version": 1,
        "AggregatedEvaluationResults": {
            "ConfusionMatrix": [],
            "Metrics": {"Precision": f1, "Recall": f1, "F1Score": f1, "AveragePrecision": f1},
        },
        "EvaluationDetails": {"NumberOfTestingImages": 12, "NumberOfTrainingImages": 48},
        "LabelEvaluationResults": [
            {"Label": LABEL, "NumberOfTestingImages": 12, "Metrics": {"F1Score": per_label, "Threshold": 0.4}}
        ],
    }


@dataclass
class World:
    stack: Stack
    env: dict[str, str]
    rekognition: Stubber
    spy: EventSpy

    @property
    def project_arn(self) -> str:
        return self.env["PROJECT_ARN"]

    def version_arn(self, name: str) -> str:
        return f"{self.project_arn.rsplit('/', 1)[0]}/version/{name}/1714557600000"

    def ledger(self) -> TrainingLedger:
        return TrainingLedger(self.stack.table, boto3.client("dynamodb", region_name="us-east-1"))

    def training_started(self, name: str) -> str:
        """The lock as Retrain leaves it after starting training `name`."""
        arn = self.version_arn(name)
        now = datetime(2024, 5, 1, 10, tzinfo=UTC)
        assert self.ledger().claim(f"window-{name}", now) is ClaimResult.CLAIMED
        self.ledger().mark_training(
            f"window-{name}", arn, name, f"manifests/train-{name}.manifest", None, now
        )
        return arn

    def put_summary(self, name: str, f1: float, per_label: float) -> dict[str, str]:
        key = f"training-output/{name}/EvaluationSummary-{name}.json"
        boto3.client("s3", region_name="us-east-1").put_object(
            Bucket=self.stack.bucket, Key=key, Body=json.dumps(summary(f1, per_label)).encode()
        )
        return {"Bucket": self.stack.bucket, "Name": key}

    def expect_describe(
        self, arn: str, status: str, summary_object: dict[str, str] | None = None, **extra: Any
    ) -> None:
        description: dict[str, Any] = {"ProjectVersionArn": arn, "Status": status, **extra}
        if summary_object is not None:
            description["EvaluationResult"] = {"F1Score": 0.5, "Summary": {"S3Object": summary_object}}
        name = arn.split("/version/")[1].split("/")[0]
        self.rekognition.add_response(
            "describe_project_versions",
            {"ProjectVersionDescriptions": [description]},
            {"ProjectArn": self.project_arn, "VersionNames": [name]},
        )

    def expect_active_status(self, status: str, arn: str = ACTIVE_ARN) -> None:
        """Whether the active model runs (Promote replaces a running one without downtime, switches
        a stopped one at once): found in whichever project it lives (DescribeProjects by name, for a
        model of another project: the stack's own project is known)."""
        project = self.project_arn
        if arn == ACTIVE_ARN:
            project = PIZZA_PROJECT
            self.rekognition.add_response(
                "describe_projects",
                {"ProjectDescriptions": [{"ProjectArn": project, "Status": "CREATED"}]},
                {"ProjectNames": ["pizza"]},
            )
        name = arn.split("/version/")[1].split("/")[0]
        self.rekognition.add_response(
            "describe_project_versions",
            {"ProjectVersionDescriptions": [{"ProjectVersionArn": arn, "Status": status}]},
            {"ProjectArn": project, "VersionNames": [name]},
        )

    def parameter(self, key: str) -> str:
        ssm = boto3.client("ssm", region_name="us-east-1")
        return str(ssm.get_parameter(Name=self.env[key])["Parameter"]["Value"])

    def lock_status(self) -> str:
        lock = self.ledger().read_lock()
        assert lock is not None
        return lock.status

    def published(self) -> list[dict[str, Any]]:
        return self.spy.fresh()


@pytest.fixture
def world(aws_stack: Stack) -> Iterator[World]:
    clients.reset()
    spy = EventSpy(aws_stack)
    stubber = Stubber(clients.rekognition())
    stubber.activate()
    yield World(aws_stack, aws_stack.env_for("PromoteFunction"), stubber, spy)
    stubber.deactivate()
    clients.reset()


def test_nothing_to_do_without_a_training(world: World, invoke: Invoke) -> None:
    assert invoke("PromoteFunction", schedule_event("2024-05-01T10:00:00Z"))["action"] == "idle"
    world.rekognition.assert_no_pending_responses()


def test_training_in_progress_waits(world: World, invoke: Invoke) -> None:
    candidate = world.training_started("labelloop-20240501T100000Z")
    world.expect_describe(candidate, "TRAINING_IN_PROGRESS")

    result = invoke("PromoteFunction", schedule_event("2024-05-01T10:05:00Z"))

    assert result["action"] == "waiting"
    assert world.lock_status() == "TRAINING"
    assert world.published() == []


def test_better_model_is_started_then_switched_and_the_old_one_stopped(world: World, invoke: Invoke) -> None:
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.9, 0.88))
    world.expect_describe(ACTIVE_ARN, "RUNNING", world.put_summary("pizza.v1", 0.8, 0.79))
    world.expect_active_status("RUNNING")
    world.rekognition.add_response(
        "start_project_version",
        {"Status": "STARTING"},
        {"ProjectVersionArn": candidate, "MinInferenceUnits": int(world.env["MIN_INFERENCE_UNITS"])},
    )

    started = invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))

    assert started["action"] == "starting"
    assert world.lock_status() == "STARTING"
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == ACTIVE_ARN  # not switched before RUNNING

    world.expect_describe(candidate, "STARTING")
    assert invoke("PromoteFunction", schedule_event("2024-05-01T11:05:00Z"))["action"] == "waiting"
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == ACTIVE_ARN

    world.expect_describe(candidate, "RUNNING")
    world.rekognition.add_response(
        "stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": ACTIVE_ARN}
    )
    promoted = invoke("PromoteFunction", schedule_event("2024-05-01T11:10:00Z"))

    world.rekognition.assert_no_pending_responses()
    assert promoted["action"] == "promoted"
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == candidate
    assert world.parameter("PREVIOUS_MODEL_PARAMETER") == ACTIVE_ARN
    assert world.lock_status() == "PROMOTED"
    decision = world.ledger().read_decision(name)
    assert decision is not None and decision.decision == "PROMOTED"
    assert decision.metrics is not None and decision.metrics.f1 == 0.9
    [event] = world.published()
    assert event["detail-type"] == "ModelPromoted"
    assert event["detail"] == {
        "schemaVersion": "1",
        "versionArn": candidate,
        "previousArn": ACTIVE_ARN,
        "f1": 0.9,
        "previousF1": 0.8,
        "perLabelF1": {LABEL: 0.88},
    }

    # A duplicated or replayed schedule event changes nothing (no Rekognition call is stubbed).
    assert invoke("PromoteFunction", schedule_event("2024-05-01T11:10:00Z"))["action"] == "idle"
    assert world.published() == []


def test_promoting_over_a_model_trained_here_stops_that_model(world: World, invoke: Invoke) -> None:
    """The model being replaced was itself trained and promoted in the stack's project."""
    old_name = "labelloop-20240501T100000Z"
    old_arn = world.version_arn(old_name)
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=world.env["ACTIVE_MODEL_PARAMETER"], Value=old_arn, Type="String", Overwrite=True
    )
    world.ledger().record_decision(
        old_name,
        Decision(
            "PROMOTED",
            "better",
            old_arn,
            "2024-05-01T11:00:00+00:00",
            EvaluationMetrics(0.8, None, None, {LABEL: 0.8}),
        ),
    )
    name = "labelloop-20240502T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.9, 0.9))
    world.expect_active_status("RUNNING", old_arn)
    world.rekognition.add_response("start_project_version", {"Status": "STARTING"})
    assert invoke("PromoteFunction", schedule_event("2024-05-02T11:00:00Z"))["action"] == "starting"
    world.expect_describe(candidate, "RUNNING")
    world.rekognition.add_response(
        "stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": old_arn}
    )

    promoted = invoke("PromoteFunction", schedule_event("2024-05-02T11:05:00Z"))

    world.rekognition.assert_no_pending_responses()
    assert promoted["action"] == "promoted"
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == candidate
    assert world.parameter("PREVIOUS_MODEL_PARAMETER") == old_arn


def test_first_model_is_switched_to_at_once_and_not_started(world: World, invoke: Invoke) -> None:
    """No model runs: the parameter is switched and nothing started (the model controller starts the
    model when images arrive)."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=world.env["ACTIVE_MODEL_PARAMETER"], Value="none", Type="String", Overwrite=True)
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.72, 0.72))

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))

    world.rekognition.assert_no_pending_responses()  # no StartProjectVersion, nothing to stop
    assert result["action"] == "promoted"
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == candidate
    assert world.parameter("PREVIOUS_MODEL_PARAMETER") == "none"
    [event] = world.published()
    assert (event["detail"]["previousArn"], event["detail"]["previousF1"]) == (None, None)


def test_a_promotion_while_the_model_is_idle_stopped_switches_the_parameter_without_starting(
    world: World, invoke: Invoke
) -> None:
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.9, 0.88))
    world.expect_describe(ACTIVE_ARN, "STOPPED", world.put_summary("pizza.v1", 0.8, 0.79))
    world.expect_active_status("STOPPED")  # the model controller stopped it: no work

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))

    world.rekognition.assert_no_pending_responses()  # neither StartProjectVersion nor StopProjectVersion
    assert result["action"] == "promoted" and "switched without starting" in result["reason"]
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == candidate
    assert world.parameter("PREVIOUS_MODEL_PARAMETER") == ACTIVE_ARN
    assert world.lock_status() == "PROMOTED"
    [event] = world.published()
    assert (event["detail-type"], event["detail"]["versionArn"]) == ("ModelPromoted", candidate)
    # A replay changes nothing (no Rekognition call is stubbed).
    assert invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))["action"] == "idle"


def test_a_first_model_below_the_minimum_f1_is_rejected_and_nothing_starts(
    world: World, invoke: Invoke
) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=world.env["ACTIVE_MODEL_PARAMETER"], Value="none", Type="String", Overwrite=True)
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.0, 0.0))

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))

    world.rekognition.assert_no_pending_responses()  # no StartProjectVersion for a useless model
    assert result["action"] == "rejected" and "below the minimum 0.500" in result["reason"]
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == "none"


def test_worse_model_is_rejected_with_the_reason(world: World, invoke: Invoke) -> None:
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.6, 0.6))
    world.expect_describe(ACTIVE_ARN, "RUNNING", world.put_summary("pizza.v1", 0.8, 0.8))

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))

    world.rekognition.assert_no_pending_responses()  # never started
    assert result["action"] == "rejected"
    assert "candidate F1 0.600 vs active 0.800" in result["reason"]
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == ACTIVE_ARN
    assert world.lock_status() == "REJECTED"
    [event] = world.published()
    assert event["detail-type"] == "ModelRejected"
    assert event["detail"]["reason"] == result["reason"]
    assert (event["detail"]["f1"], event["detail"]["activeF1"]) == (0.6, 0.8)


def test_failed_training_is_rejected_and_frees_the_lock(world: World, invoke: Invoke) -> None:
    candidate = world.training_started("labelloop-20240501T100000Z")
    message = "The manifest file contains too many invalid data objects."
    world.expect_describe(candidate, "TRAINING_FAILED", StatusMessage=message)

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))

    assert result["action"] == "rejected"
    assert message in result["reason"]
    assert world.lock_status() == "REJECTED"
    [event] = world.published()
    assert event["detail"] == {
        "schemaVersion": "1",
        "versionArn": candidate,
        "reason": result["reason"],
        "f1": None,
        "activeF1": None,
    }


def test_candidate_that_fails_to_start_is_rejected(world: World, invoke: Invoke) -> None:
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.9, 0.9))
    world.expect_describe(ACTIVE_ARN, "RUNNING", world.put_summary("pizza.v1", 0.8, 0.8))
    world.expect_active_status("RUNNING")
    world.rekognition.add_response("start_project_version", {"Status": "STARTING"})
    invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))
    world.expect_describe(candidate, "FAILED", StatusMessage="Not enough capacity")

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:05:00Z"))

    assert result["action"] == "rejected"
    assert "Not enough capacity" in result["reason"]
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == ACTIVE_ARN
    assert world.lock_status() == "REJECTED"


def test_next_candidate_is_compared_with_the_recorded_metrics_of_the_active_model(
    world: World, invoke: Invoke
) -> None:
    first = "labelloop-20240501T100000Z"
    first_arn = world.training_started(first)
    world.expect_describe(first_arn, "TRAINING_COMPLETED", world.put_summary(first, 0.9, 0.9))
    world.expect_describe(ACTIVE_ARN, "RUNNING", world.put_summary("pizza.v1", 0.8, 0.8))
    world.expect_active_status("RUNNING")
    world.rekognition.add_response("start_project_version", {"Status": "STARTING"})
    invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))
    world.expect_describe(first_arn, "RUNNING")
    world.rekognition.add_response("stop_project_version", {"Status": "STOPPING"})
    assert invoke("PromoteFunction", schedule_event("2024-05-01T11:05:00Z"))["action"] == "promoted"
    world.published()

    second = "labelloop-20240502T100000Z"
    second_arn = world.training_started(second)
    world.expect_describe(second_arn, "TRAINING_COMPLETED", world.put_summary(second, 0.905, 0.9))

    result = invoke("PromoteFunction", schedule_event("2024-05-02T11:00:00Z"))

    world.rekognition.assert_no_pending_responses()  # the active model was not described again
    assert result["action"] == "rejected"
    assert "vs active 0.900" in result["reason"] and "at least +0.010" in result["reason"]


def test_rollback_swaps_active_and_previous(world: World, invoke: Invoke) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    current = world.version_arn("labelloop-20240501T100000Z")
    ssm.put_parameter(Name=world.env["ACTIVE_MODEL_PARAMETER"], Value=current, Type="String", Overwrite=True)
    ssm.put_parameter(
        Name=world.env["PREVIOUS_MODEL_PARAMETER"], Value=ACTIVE_ARN, Type="String", Overwrite=True
    )
    world.rekognition.add_response(
        "start_project_version",
        {"Status": "STARTING"},
        {"ProjectVersionArn": ACTIVE_ARN, "MinInferenceUnits": 1},
    )
    world.expect_describe(ACTIVE_ARN, "STARTING")
    world.expect_describe(ACTIVE_ARN, "RUNNING")
    world.rekognition.add_response(
        "stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": current}
    )
    waits: list[float] = []

    result = rollback(settings_from_env(PromoteSettings, world.env), sleep=waits.append)

    world.rekognition.assert_no_pending_responses()
    assert (result.active_arn, result.previous_arn) == (ACTIVE_ARN, current)
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == ACTIVE_ARN
    assert world.parameter("PREVIOUS_MODEL_PARAMETER") == current
    assert len(waits) == 1  # switched only once the previous model was RUNNING


def test_old_model_that_cannot_be_stopped_does_not_block_the_switch(world: World, invoke: Invoke) -> None:
    name = "labelloop-20240501T100000Z"
    candidate = world.training_started(name)
    world.expect_describe(candidate, "TRAINING_COMPLETED", world.put_summary(name, 0.9, 0.9))
    world.expect_describe(ACTIVE_ARN, "RUNNING", world.put_summary("pizza.v1", 0.8, 0.8))
    world.expect_active_status("RUNNING")
    world.rekognition.add_response("start_project_version", {"Status": "STARTING"})
    invoke("PromoteFunction", schedule_event("2024-05-01T11:00:00Z"))
    world.expect_describe(candidate, "RUNNING")
    world.rekognition.add_client_error(
        "stop_project_version", service_error_code="AccessDeniedException", service_message="not allowed"
    )

    result = invoke("PromoteFunction", schedule_event("2024-05-01T11:05:00Z"))

    assert result["action"] == "promoted"
    assert "previous model NOT stopped" in result["reason"] and "not allowed" in result["reason"]
    assert world.parameter("ACTIVE_MODEL_PARAMETER") == candidate
    assert world.lock_status() == "PROMOTED"
