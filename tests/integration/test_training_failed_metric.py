"""The TrainingsFailed alarm has something to watch: Promote emits the metric when a training failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from labelloop_core.adapters.ledger import TrainingLedger
from labelloop_local.stack.provision import Stack
from tests.support.flows import stubbed

pytestmark = pytest.mark.integration


def _emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format documents a handler printed."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_failed_training_emits_trainings_failed_with_the_alarms_namespace_and_dimension(
    aws_stack: Stack, invoke: Callable[[str, dict[str, Any]], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    env = aws_stack.env_for("PromoteFunction")
    version = f"{env['PROJECT_ARN'].rsplit('/', 1)[0]}/version/labelloop-20260101T000000Z/1"
    ledger = TrainingLedger(aws_stack.table, boto3.client("dynamodb", region_name="us-east-1"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.claim("window", now)
    ledger.mark_training(
        "window", version, "labelloop-20260101T000000Z", "manifests/train.manifest", None, now
    )
    alarm = aws_stack.template.resource("TrainingsFailedAlarm")["Properties"]
    capsys.readouterr()

    with stubbed("rekognition") as rekognition:
        rekognition.add_response(
            "describe_project_versions",
            {"ProjectVersionDescriptions": [{"ProjectVersionArn": version, "Status": "TRAINING_FAILED"}]},
            {"ProjectArn": env["PROJECT_ARN"], "VersionNames": ["labelloop-20260101T000000Z"]},
        )
        event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": "2026-01-01T01:00:00Z"}
        result = invoke("PromoteFunction", {**event, "id": "tick", "detail": {}})

    assert result["action"] == "rejected"
    (document,) = [d for d in _emitted_metrics(capsys.readouterr().out) if alarm["MetricName"] in d]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm["Namespace"]
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert directive["Dimensions"] == [sorted(dimensions)]
    assert {name: document[name] for name in dimensions} == dimensions
    assert document[alarm["MetricName"]] == [1.0]
