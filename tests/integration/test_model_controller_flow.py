"""ModelController on moto, provisioned from template.yaml: the DetectQueue, the ledger and the active model
parameter are moto's; Rekognition Custom Labels and Lambda's event source mapping API are botocore
Stubbers on the shared clients the handler uses, so every call is asserted (and recorded for the IAM
proof) and an unexpected one fails the test.

The stack starts with a model trained elsewhere (InitialModelVersionArn, project `pizza`): the
controller finds its project by name (DescribeProjects) before it can describe it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from labelloop_core.adapters import clients
from labelloop_core.adapters.ledger import ModelLedger, TrainingLedger
from labelloop_core.ledger import ControlState, OpenRun, iso
from labelloop_local.stack.provision import Stack
from tests.support.flows import ledger_item, ledger_items
from tests.support.moto_stack import FAKE_MODEL_ARN

pytestmark = pytest.mark.integration

Invoke = Callable[[str, dict[str, Any]], Any]
CONTROLLER = "ModelControllerFunction"
PIZZA_PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1690000000000"


def tick(moment: datetime | None = None) -> dict[str, Any]:
    at = (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": f"control-{at}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at,
        "region": "us-east-1",
        "resources": [
            "arn:aws:events:us-east-1:123456789012:rule/labelloop-ModelControllerFunctionControlSchedule"
        ],
        "detail": {},
    }


@dataclass
class World:
    stack: Stack
    rekognition: Stubber
    lambda_: Stubber

    @property
    def mapping(self) -> str:
        return str(self.stack.physical["DetectQueueMapping"])

    @property
    def project_arn(self) -> str:
        return self.stack.env_for(CONTROLLER)["PROJECT_ARN"]

    def candidate_arn(self, name: str) -> str:
        return f"{self.project_arn.rsplit('/', 1)[0]}/version/{name}/1714557600000"

    def expect_status(self, status: str, arn: str = FAKE_MODEL_ARN, units: int = 1) -> None:
        """DescribeProjects (for the foreign initial model) and DescribeProjectVersions."""
        project = PIZZA_PROJECT
        if arn == FAKE_MODEL_ARN:
            self.rekognition.add_response(
                "describe_projects",
                {"ProjectDescriptions": [{"ProjectArn": PIZZA_PROJECT, "Status": "CREATED"}]},
                {"ProjectNames": ["pizza"]},
            )
        else:
            project = self.project_arn
        name = arn.split("/version/")[1].split("/")[0]
        description: dict[str, Any] = {"ProjectVersionArn": arn, "Status": status}
        if status in ("STARTING", "RUNNING"):
            description["MinInferenceUnits"] = units
        self.rekognition.add_response(
            "describe_project_versions",
            {"ProjectVersionDescriptions": [description]},
            {"ProjectArn": project, "VersionNames": [name]},
        )

    def expect_mapping(self, state: str, then: bool | None = None) -> None:
        self.lambda_.add_response(
            "get_event_source_mapping", {"UUID": self.mapping, "State": state}, {"UUID": self.mapping}
        )
        if then is not None:
            self.lambda_.add_response(
                "update_event_source_mapping",
                {"UUID": self.mapping, "State": "Enabling" if then else "Disabling"},
                {"UUID": self.mapping, "Enabled": then},
            )

    def work(self, messages: int) -> None:
        sqs = clients.client("sqs")
        for n in range(messages):
            sqs.send_message(QueueUrl=self.stack.physical["DetectQueue"], MessageBody=json.dumps({"n": n}))

    def model_ledger(self) -> ModelLedger:
        return ModelLedger(self.stack.table)

    def runs(self) -> list[dict[str, Any]]:
        return ledger_items(self.stack, "MODELRUN")

    def done(self) -> None:
        self.rekognition.assert_no_pending_responses()
        self.lambda_.assert_no_pending_responses()


@pytest.fixture
def world(aws_stack: Stack) -> Iterator[World]:
    clients.reset()
    rekognition, lambda_ = Stubber(clients.rekognition()), Stubber(clients.client("lambda"))
    rekognition.activate()
    lambda_.activate()
    yield World(aws_stack, rekognition, lambda_)
    rekognition.deactivate()
    lambda_.deactivate()
    clients.reset()


def test_images_waiting_for_a_stopped_model_start_it_and_detection_stays_off(
    world: World, invoke: Invoke
) -> None:
    world.work(3)
    world.expect_status("STOPPED")
    world.rekognition.add_response(
        "start_project_version",
        {"Status": "STARTING"},
        {"ProjectVersionArn": FAKE_MODEL_ARN, "MinInferenceUnits": 1},
    )
    world.expect_mapping("Disabled")  # already off: no change

    outcome = invoke(CONTROLLER, tick())

    world.done()
    assert (outcome["action"], outcome["model"], outcome["waiting"], outcome["consuming"]) == (
        "start",
        "STOPPED",
        3,
        "Disabled",
    )
    control = ledger_item(world.stack, "MODEL", "CONTROL")
    assert control is not None and FAKE_MODEL_ARN in control["start_requested"]


def test_a_running_model_turns_detection_on_and_its_running_interval_is_recorded(
    world: World, invoke: Invoke
) -> None:
    world.work(2)
    world.expect_status("RUNNING", units=2)
    world.expect_mapping("Disabled", then=True)

    outcome = invoke(CONTROLLER, tick())

    world.done()
    assert (outcome["action"], outcome["consuming"]) == ("none", "Enabling")
    [run] = world.runs()
    assert (run["version_arn"], run["min_units"], run.get("stopped_at")) == (FAKE_MODEL_ARN, 2, None)


def test_an_idle_model_is_stopped_detection_first_and_its_interval_closed(
    world: World, invoke: Invoke
) -> None:
    long_ago = iso(datetime.now(UTC) - timedelta(hours=1))
    run = OpenRun(long_ago, 1, None, long_ago)
    world.model_ledger().open_run(FAKE_MODEL_ARN, run)
    world.model_ledger().save_control(ControlState(last_work_at=long_ago, open_runs={FAKE_MODEL_ARN: run}))
    world.expect_status("RUNNING")
    world.expect_mapping("Enabled", then=False)  # disabled before the model is asked to stop
    world.rekognition.add_response(
        "stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": FAKE_MODEL_ARN}
    )

    outcome = invoke(CONTROLLER, tick())

    world.done()
    assert outcome["action"] == "stop"
    [closed] = world.runs()
    assert closed["stopped_at"] > long_ago and "ModelIdleMinutes" in closed["stop_reason"]
    control = ledger_item(world.stack, "MODEL", "CONTROL")
    assert control is not None and control["open_runs"] == {}


def test_no_stop_while_promote_starts_a_candidate_whose_running_time_is_recorded_too(
    world: World, invoke: Invoke
) -> None:
    long_ago = iso(datetime.now(UTC) - timedelta(hours=1))
    world.model_ledger().save_control(ControlState(last_work_at=long_ago))
    candidate = world.candidate_arn("labelloop-20240501T100000Z")
    ledger = TrainingLedger(world.stack.table)
    assert ledger.claim("w", datetime(2024, 5, 1, 10, tzinfo=UTC)).value == "claimed"
    ledger.mark_training(
        "w", candidate, "labelloop-20240501T100000Z", None, None, datetime(2024, 5, 1, tzinfo=UTC)
    )
    ledger.mark_starting(candidate, FAKE_MODEL_ARN, {"f1": 0.9}, datetime(2024, 5, 1, 11, tzinfo=UTC))
    world.expect_status("RUNNING")  # the active model, idle for an hour
    world.expect_status("RUNNING", arn=candidate)  # the candidate, in the stack's own project
    world.expect_mapping("Enabled")

    outcome = invoke(CONTROLLER, tick())

    world.done()
    assert outcome["action"] == "none" and "promotion" in outcome["reason"]
    assert {run["version_arn"] for run in world.runs()} == {FAKE_MODEL_ARN, candidate}


def test_a_promotion_event_triggers_the_controller_on_demand(world: World, invoke: Invoke) -> None:
    promoted = {
        "version": "0",
        "id": "promoted-1",
        "detail-type": "ModelPromoted",
        "source": "labelloop",
        "account": "123456789012",
        "time": "2024-05-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [FAKE_MODEL_ARN],
        "detail": {
            "schemaVersion": "1",
            "versionArn": FAKE_MODEL_ARN,
            "previousArn": None,
            "f1": 0.9,
            "previousF1": None,
            "perLabelF1": {},
        },
    }
    world.expect_status("STOPPED")
    world.expect_mapping("Enabled", then=False)  # nothing runs: nothing is consumed

    outcome = invoke(CONTROLLER, promoted)

    world.done()
    assert (outcome["trigger"], outcome["action"]) == ("ModelPromoted", "none")
