"""Operations in template.yaml (README "Operations"): alarms, their topic, log groups, concurrency, retention.

Every list is derived from template.yaml (functions, dead-letter queues, alarms), so a function or
queue added later without its alarms or log group fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from labelloop_core import observability
from labelloop_local.stack.local_stack import LOCAL_PARAMETERS
from labelloop_local.stack.provision import provision
from labelloop_local.stack.template import SamTemplate
from tests.support.paths import REPO_ROOT
from tests.support.template import repo_template

# AWS::Logs::LogGroup RetentionInDays, as the CloudFormation resource schema lists it.
CLOUDFORMATION_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827]
CLOUDFORMATION_RETENTION_DAYS += [2192, 2557, 2922, 3288, 3653]


@pytest.fixture(scope="module")
def template() -> SamTemplate:
    return repo_template()


@pytest.fixture(scope="module")
def resources(template: SamTemplate) -> dict[str, dict[str, Any]]:
    return template.resources


def _of_type(resources: dict[str, dict[str, Any]], resource_type: str) -> dict[str, dict[str, Any]]:
    return {logical_id: r for logical_id, r in resources.items() if r["Type"] == resource_type}


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    return dict(resource.get("Properties") or {})


def _dead_letter_queues(template: SamTemplate) -> set[str]:
    """Every queue a function's failures, a rule's undeliverable events or a queue's messages received
    maxReceiveCount times go to."""
    queues = {spec.dead_letter_queue for spec in template.functions().values() if spec.dead_letter_queue}
    queues |= {rule.dlq for rule in template.rules() if rule.dlq}
    queues |= {rule.dlq for rule in template.queue_rules() if rule.dlq}
    for queue in template.resources_of_type("AWS::SQS::Queue").values():
        target = ((queue.get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target is not None:
            queues.add(target["Fn::GetAtt"][0])
    return queues


def _alarms(resources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [_props(alarm) for alarm in _of_type(resources, "AWS::CloudWatch::Alarm").values()]


def _alarms_on(resources: dict[str, dict[str, Any]], namespace: str, metric: str) -> list[dict[str, Any]]:
    return [a for a in _alarms(resources) if (a["Namespace"], a["MetricName"]) == (namespace, metric)]


def _only(items: list[Any], what: str) -> Any:
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}"
    return items[0]


def _fires_on_any_datapoint_above_zero(alarm: dict[str, Any]) -> None:
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 0
    # No data means no failure here: absent datapoints must not alarm (nor flap to INSUFFICIENT_DATA).
    assert alarm["TreatMissingData"] == "notBreaching"


def test_every_dead_letter_queue_alarms_on_a_visible_message(
    template: SamTemplate, resources: dict[str, dict[str, Any]]
) -> None:
    queues = _dead_letter_queues(template)
    assert queues, "no dead-letter queues found: the derivation no longer matches the template"
    watched = {}
    for alarm in _alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible"):
        (dimension,) = alarm["Dimensions"]
        assert dimension["Name"] == "QueueName"
        watched[dimension["Value"]["Fn::GetAtt"][0]] = alarm
    assert set(watched) == queues
    for queue, alarm in watched.items():
        assert watched[queue]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
        assert alarm["Statistic"] == "Maximum"
        _fires_on_any_datapoint_above_zero(alarm)


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_alarms_on_its_lambda_metric(
    template: SamTemplate, resources: dict[str, dict[str, Any]], metric: str
) -> None:
    functions = set(template.functions())
    by_function = {}
    for alarm in _alarms_on(resources, "AWS/Lambda", metric):
        (dimension,) = alarm["Dimensions"]
        assert dimension["Name"] == "FunctionName"
        by_function[dimension["Value"]["Ref"]] = alarm
    assert set(by_function) == functions
    for alarm in by_function.values():
        assert alarm["Statistic"] == "Sum"
        _fires_on_any_datapoint_above_zero(alarm)


def test_throttles_of_a_capped_function_alarm_only_when_sustained(
    template: SamTemplate, resources: dict[str, dict[str, Any]]
) -> None:
    """A function capped by a concurrency parameter is throttled on purpose in a burst (events wait in
    Lambda's queue); any other function's throttle is unexpected and alarms at once."""
    throttles = {
        a["Dimensions"][0]["Value"]["Ref"]: a for a in _alarms_on(resources, "AWS/Lambda", "Throttles")
    }
    for function in template.functions():
        capped = isinstance(_props(resources[function]).get("ReservedConcurrentExecutions"), dict)
        alarm = throttles[function]
        periods = (alarm["EvaluationPeriods"], alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]))
        if capped:
            assert alarm["Period"] * periods[1] >= 900, function
            assert periods[0] == periods[1], function
        else:
            assert periods == (1, 1), function


def test_every_alarm_notifies_the_one_encrypted_alarm_topic(resources: dict[str, dict[str, Any]]) -> None:
    (topic_id,) = _of_type(resources, "AWS::SNS::Topic")
    alarms = _alarms(resources)
    assert alarms
    for alarm in alarms:
        assert {"Ref": topic_id} in alarm["AlarmActions"], alarm["AlarmName"]
        assert alarm.get("ActionsEnabled", True) is True
        for ok_action in alarm.get("OKActions", []):
            assert ok_action == {"Ref": topic_id}
    # CloudWatch can publish to an encrypted topic only with a customer managed key it may use.
    key_ref = _props(resources[topic_id])["KmsMasterKeyId"]
    key = resources[key_ref["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"
    assert _props(key)["EnableKeyRotation"] is True
    grants = [
        s
        for s in _props(key)["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    (grant,) = grants
    assert set(grant["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_alarm_topic_policy_lets_only_cloudwatch_of_this_account_publish(
    resources: dict[str, dict[str, Any]],
) -> None:
    (topic_id,) = _of_type(resources, "AWS::SNS::Topic")
    policy = _only(
        [
            p
            for p in map(_props, _of_type(resources, "AWS::SNS::TopicPolicy").values())
            if {"Ref": topic_id} in p["Topics"]
        ],
        "policy of the alarm topic",
    )
    statements = policy["PolicyDocument"]["Statement"]
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert statement["Action"] == "sns:Publish"
        assert statement["Resource"] == {"Ref": topic_id}
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        source_arn = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
        assert source_arn.endswith(":${AWS::AccountId}:alarm:*")


def test_alarm_email_is_subscribed_only_when_given(
    template: SamTemplate, resources: dict[str, dict[str, Any]]
) -> None:
    (topic_id,) = _of_type(resources, "AWS::SNS::Topic")
    subscription = _only(list(_of_type(resources, "AWS::SNS::Subscription").values()), "alarm subscription")
    props = _props(subscription)
    assert props["TopicArn"] == {"Ref": topic_id}
    assert props["Protocol"] == "email"
    parameter = props["Endpoint"]["Ref"]
    condition = template.document["Conditions"][subscription["Condition"]]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
    spec = template.document["Parameters"][parameter]
    assert spec["Default"] == ""
    pattern = spec["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "ops@example.com")
    assert not re.fullmatch(pattern, "not an address") and not re.fullmatch(pattern, "a@b")


def test_every_function_logs_to_its_own_log_group_kept_for_the_retention_parameter(
    template: SamTemplate, resources: dict[str, dict[str, Any]]
) -> None:
    groups: dict[str, str] = {}
    for function in template.functions():
        group_id = template.function_properties(function)["LoggingConfig"]["LogGroup"]["Ref"]
        group = resources[group_id]
        assert group["Type"] == "AWS::Logs::LogGroup", function
        assert _props(group)["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        name = _props(group)["LogGroupName"]["Fn::Sub"]
        # Under /aws/lambda/: where the console looks, and what log policies scoped to Lambda cover.
        assert name.startswith("/aws/lambda/${AWS::StackName}/"), name
        groups[function] = name
    assert len(set(groups.values())) == len(groups), "two functions share a log group"


def test_log_retention_parameter_offers_cloudformations_values_and_keeps_30_days(
    template: SamTemplate,
) -> None:
    spec = template.document["Parameters"]["LogRetentionInDays"]
    assert spec["Type"] == "Number"
    assert spec["Default"] == 30
    assert spec["AllowedValues"] == CLOUDFORMATION_RETENTION_DAYS


def test_scheduled_functions_are_singletons(
    template: SamTemplate, resources: dict[str, dict[str, Any]]
) -> None:
    # Functions only a schedule runs; StartReview's schedule (waiting reviews) sits beside its events
    # and its budget admission is a conditional write, so it keeps its own concurrency parameter.
    rules = list(template.rules())
    scheduled = {rule.function for rule in rules if rule.kind == "Schedule"}
    scheduled -= {rule.function for rule in rules if rule.kind != "Schedule"}
    assert scheduled
    for function in scheduled:
        assert _props(resources[function])["ReservedConcurrentExecutions"] == 1, function


def _consumer_of_uploads(template: SamTemplate) -> str:
    """The function that consumes the queue the upload rule delivers to."""
    (rule,) = [r for r in template.queue_rules() if r.pattern.get("source") == ["aws.s3"]]
    (mapping,) = [m for m in template.event_source_mappings() if m.queue == rule.queue]
    return mapping.function


@pytest.mark.parametrize("trigger", ["uploads", "review-requests"])
def test_flood_driven_functions_are_capped_by_a_parameter(template: SamTemplate, trigger: str) -> None:
    """A burst of uploads (or of the review requests they cause) must not fan out into as many billed
    detections and human reviews at once: the cap is a described parameter with a sane default."""
    if trigger == "uploads":
        function = _consumer_of_uploads(template)
        (mapping,) = template.resources_of_type("AWS::Lambda::EventSourceMapping").values()
        # The mapping's concurrency and the function's reserved concurrency are the same parameter.
        assert (
            mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
            == _props(template.resource(function))["ReservedConcurrentExecutions"]
        )
    else:
        (rule,) = [
            r for r in template.rules() if r.pattern and r.pattern.get("detail-type") == ["ReviewRequested"]
        ]
        function = rule.function
    reserved = _props(template.resource(function))["ReservedConcurrentExecutions"]
    spec = template.document["Parameters"][reserved["Ref"]]
    assert spec["Type"] == "Number" and spec["Description"]
    assert 1 <= spec["MinValue"] <= spec["Default"] <= spec["MaxValue"]


def test_reserved_concurrency_leaves_the_unreserved_pool_lambda_requires(template: SamTemplate) -> None:
    """Lambda keeps 100 unreserved; the README states the account quota the defaults need."""
    total = 0
    for function in template.functions():
        reserved = _props(template.resource(function)).get("ReservedConcurrentExecutions")
        if isinstance(reserved, dict):
            reserved = template.document["Parameters"][reserved["Ref"]]["Default"]
        total += int(reserved or 0)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"at least {total + 100}" in readme


def test_ledger_tables_refuse_deletion(resources: dict[str, dict[str, Any]]) -> None:
    tables = _of_type(resources, "AWS::DynamoDB::Table")
    assert tables
    for logical_id, table in tables.items():
        assert _props(table)["DeletionProtectionEnabled"] is True, logical_id
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain", logical_id


def test_custom_labels_project_is_retained_with_its_models(resources: dict[str, dict[str, Any]]) -> None:
    projects = _of_type(resources, "AWS::Rekognition::Project")
    assert projects
    for logical_id, project in projects.items():
        assert project["DeletionPolicy"] == project["UpdateReplacePolicy"] == "Retain", logical_id


def _counted_metric_names() -> set[str]:
    """Names the layer counts with observability.count("...")."""
    found = set()
    for path in (REPO_ROOT / "layers").rglob("*.py"):
        found |= set(
            re.findall(r"""observability\.count\(\s*["']([A-Za-z0-9]+)["']""", path.read_text("utf-8"))
        )
    return found


@pytest.fixture
def emitted(template: SamTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Serialize what observability.count emits under a function's own Powertools variables."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    def emit(function: str, metric: str) -> dict[str, Any]:
        env = template.function_properties(function)["Environment"]["Variables"]
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", env["POWERTOOLS_SERVICE_NAME"])
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", env["POWERTOOLS_METRICS_NAMESPACE"])
        observability.metrics().clear_metrics()  # what earlier tests of this process counted
        observability.count(metric)
        blob = observability.metrics().serialize_metric_set()
        observability.metrics().clear_metrics()
        return dict(json.loads(json.dumps(blob)))

    yield emit


def test_custom_metric_alarms_watch_exactly_what_powertools_emits(
    template: SamTemplate, resources: dict[str, dict[str, Any]], emitted: Any
) -> None:
    """Namespace, metric name and every dimension (Powertools adds `service`) must match, or the alarm
    watches a metric that never receives a datapoint."""
    counted = _counted_metric_names()
    services = {
        template.function_properties(f)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: f
        for f in template.functions()
    }
    custom = [a for a in _alarms(resources) if not a["Namespace"].startswith("AWS/")]
    assert {a["MetricName"] for a in custom} >= {"TrainingsFailed", "ModelCannotRun"}
    for alarm in custom:
        assert alarm["MetricName"] in counted, f"{alarm['MetricName']} is never counted by the layer"
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        blob = emitted(services[dimensions["service"]], alarm["MetricName"])
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == alarm["Namespace"]
        assert [m["Name"] for m in directive["Metrics"]] == [alarm["MetricName"]]
        assert directive["Dimensions"] == [sorted(dimensions)]
        assert {name: blob[name] for name in dimensions} == dimensions
        _fires_on_any_datapoint_above_zero(alarm)
        assert alarm["Statistic"] == "Sum"


def test_local_stack_gives_operations_resources_the_ids_aws_would(template: SamTemplate) -> None:
    """The provisioner skips alarms, topic, key and log groups but records AWS-shaped placeholders."""
    with mock_aws():
        stack = provision(
            template,
            boto3.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"),
            params=LOCAL_PARAMETERS,
            resolved={"FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/f"},
        )
    (topic_id,) = template.resources_of_type("AWS::SNS::Topic")
    assert re.fullmatch(r"arn:aws:sns:us-east-1:123456789012:[\w-]+", stack.physical[topic_id])
    (key_id,) = template.resources_of_type("AWS::KMS::Key")
    assert (
        stack.attributes[key_id]["Arn"] == f"arn:aws:kms:us-east-1:123456789012:key/{stack.physical[key_id]}"
    )
    for logical_id in template.resources_of_type("AWS::Logs::LogGroup"):
        # Lambda's, and the HTTP API's access log
        assert stack.physical[logical_id].startswith(
            (f"/aws/lambda/{stack.stack_name}/", f"/aws/apigateway/{stack.stack_name}/")
        ), logical_id
    for logical_id in template.resources_of_type("AWS::CloudWatch::Alarm"):
        name = stack.physical[logical_id]
        assert name.startswith(f"{stack.stack_name}-")
        assert stack.attributes[logical_id]["Arn"].endswith(f":alarm:{name}")


def test_every_checkov_suppression_gives_its_reason(resources: dict[str, dict[str, Any]]) -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in resources.items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]
    assert skips, "no checkov suppressions found: the scan no longer matches the template"
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 8, f"{logical_id} {skip['id']}: say why it is accepted"


def test_readme_payload_for_a_manual_run_is_a_valid_scheduled_event() -> None:
    """README "Run Retrain or Promote now": the payload, with $NOW filled in, is what the functions accept."""
    from labelloop_core.schemas import validate

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (payload,) = re.findall(r"--payload '(.+)' \\", readme)
    event = json.loads(payload.replace("'\"$NOW\"'", "2026-12-01T12:00:00Z"))
    validate("scheduled-event", event)
    assert event["time"] == "2026-12-01T12:00:00Z" and event["id"].endswith(event["time"])


def test_images_waiting_too_long_in_the_detect_queue_alarm(resources: dict[str, Any]) -> None:
    """While the model starts images wait minutes; an hour means it cannot start or Detect falls behind."""
    (alarm,) = _alarms_on(resources, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DetectQueue", "QueueName"]}}
    ]
    assert alarm["Threshold"] >= 3600 and alarm["Statistic"] == "Maximum"
    assert alarm["TreatMissingData"] == "notBreaching"
