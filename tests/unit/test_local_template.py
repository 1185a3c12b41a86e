"""The local stack reads template.yaml like CloudFormation/SAM: short tags, Globals, intrinsics, events."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from labelloop_local.stack.handlers import HandlerLoadError, lambda_context, load_handler
from labelloop_local.stack.moto_fixes import apply_moto_fixes
from labelloop_local.stack.provision import provision
from labelloop_local.stack.template import (
    Resolver,
    SamTemplate,
    TemplateError,
    UnresolvedReference,
    load_template,
)

FIXTURE_TEMPLATE = textwrap.dedent(
    """
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Labels:
        Type: CommaDelimitedList
        Default: "pepperoni pizza slice,cheese pizza slice"
      ReviewThreshold:
        Type: Number
        Default: 60
      Stage:
        Type: String
        Default: dev
        AllowedValues: [dev, prod]
      WorkteamArn:
        Type: String
        Default: ""
    Mappings:
      StageMap:
        dev: {LogLevel: DEBUG}
        prod: {LogLevel: INFO}
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      NotProd: !Not [!Condition IsProd]
      HasWorkteam: !Not [!Equals [!Ref WorkteamArn, ""]]
    Globals:
      Function:
        Runtime: python3.11
        Layers: [!Ref CoreLayer]
        Environment:
          Variables:
            BUCKET_NAME: !Ref ImageBucket
            EVENT_BUS_NAME: !Ref AppEventBus
            LEDGER_TABLE: !Ref LedgerTable
            LABELS: !Join [",", !Ref Labels]
            POWERTOOLS_LOG_LEVEL: !FindInMap [StageMap, !Ref Stage, LogLevel]
            ACTIVE_MODEL_PARAMETER: !Ref ActiveModelParameter
    Resources:
      CoreLayer:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/core}
      ImageBucket:
        Type: AWS::S3::Bucket
        Properties:
          BucketName: !Sub "${AWS::StackName}-images-${AWS::AccountId}"
          VersioningConfiguration: {Status: Enabled}
          NotificationConfiguration:
            EventBridgeConfiguration: {EventBridgeEnabled: true}
          CorsConfiguration:
            CorsRules:
              - AllowedMethods: [GET]
                AllowedOrigins: ["*"]
                MaxAge: 3000
      AppEventBus:
        Type: AWS::Events::EventBus
        Properties:
          Name: !Sub "${AWS::StackName}-app"
      AppBusArchive:
        Type: AWS::Events::Archive
        Properties:
          SourceArn: !GetAtt AppEventBus.Arn
          EventPattern: {source: [labelloop]}
          RetentionDays: 30
      LedgerTable:
        Type: AWS::DynamoDB::Table
        Properties:
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions:
            - {AttributeName: pk, AttributeType: S}
            - {AttributeName: sk, AttributeType: S}
            - {AttributeName: pending, AttributeType: S}
            - {AttributeName: created_at, AttributeType: S}
          KeySchema:
            - {AttributeName: pk, KeyType: HASH}
            - {AttributeName: sk, KeyType: RANGE}
          GlobalSecondaryIndexes:
            - IndexName: PendingLabels
              KeySchema:
                - {AttributeName: pending, KeyType: HASH}
                - {AttributeName: created_at, KeyType: RANGE}
              Projection: {ProjectionType: KEYS_ONLY}
      ActiveModelParameter:
        Type: AWS::SSM::Parameter
        Properties:
          Name: !Sub "/${AWS::StackName}/active-model"
          Type: String
          Value: none
      DetectFunctionDeadLetterQueue:
        Type: AWS::SQS::Queue
        Properties:
          MessageRetentionPeriod: 1209600
      A2IResources:
        Type: Custom::A2IResources
        Properties:
          ServiceToken: !GetAtt A2ISetupFunction.Arn
      A2ISetupFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/a2i_setup/
          Handler: app.lambda_handler
      DetectFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/detect/
          Handler: app.lambda_handler
          Layers: [arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:1]
          Environment:
            Variables:
              REVIEW_THRESHOLD: !Ref ReviewThreshold
              REVIEW_WHEN_EMPTY: true
              AUDIT_RATE: 0.05
              LABEL_THRESHOLDS: '{"cheese pizza slice": 70}'
              EXTRA: !If [IsProd, prod-only, !Ref AWS::NoValue]
              NOT_PROD: !If [NotProd, "yes", "no"]
              QUEUE: !Select [1, !Split ["/", !Sub "a/${DetectFunctionDeadLetterQueue.QueueName}/b"]]
              LITERAL: !Sub "${!NotAVariable}-${Stage}"
              LIST_SUB: !Sub
                - "${Bucket}/incoming/"
                - {Bucket: !Ref ImageBucket}
          EventInvokeConfig:
            MaximumRetryAttempts: 1
            DestinationConfig:
              OnFailure:
                Type: SQS
                Destination: !GetAtt DetectFunctionDeadLetterQueue.Arn
          Events:
            ImageUploaded:
              Type: EventBridgeRule
              Properties:
                Pattern:
                  source: [aws.s3]
                  detail-type: [Object Created]
                  detail:
                    bucket: {name: [!Ref ImageBucket]}
                    object: {key: [{prefix: incoming/}]}
                RetryPolicy:
                  MaximumRetryAttempts: 3
                  MaximumEventAgeInSeconds: 3600
                DeadLetterConfig:
                  Arn: !GetAtt DetectFunctionDeadLetterQueue.Arn
      AppendLabelsFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/append_labels/
          Handler: app.lambda_handler
          Environment:
            Variables:
              FLOW_DEFINITION_ARN: !GetAtt A2IResources.FlowDefinitionArn
          Events:
            ReviewDone:
              Type: EventBridgeRule
              Properties:
                EventBusName: default
                Pattern:
                  source: [aws.sagemaker]
                  detail:
                    flowDefinitionArn: [!GetAtt A2IResources.FlowDefinitionArn]
            OnAppBus:
              Type: EventBridgeRule
              Properties:
                EventBusName: !Ref AppEventBus
                Pattern: {source: [labelloop], detail-type: [ReviewRequested]}
                DeadLetterConfig: {Type: SQS}
            Nightly:
              Type: Schedule
              Properties:
                Schedule: rate(1 hour)
                Enabled: false
    """
)


@pytest.fixture
def template(tmp_path: Path) -> SamTemplate:
    path = tmp_path / "template.yaml"
    path.write_text(FIXTURE_TEMPLATE)
    return load_template(path)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def test_short_tags_load_as_long_form_intrinsics(template: SamTemplate) -> None:
    bucket = template.resource("ImageBucket")["Properties"]["BucketName"]
    assert bucket == {"Fn::Sub": "${AWS::StackName}-images-${AWS::AccountId}"}
    archive = template.resource("AppBusArchive")["Properties"]
    assert archive["SourceArn"] == {"Fn::GetAtt": ["AppEventBus", "Arn"]}


def test_parameters_expose_defaults(template: SamTemplate) -> None:
    params = template.parameters()
    assert params["ReviewThreshold"] == 60
    assert params["Stage"] == "dev"


def test_globals_are_merged_into_each_function(template: SamTemplate) -> None:
    detect = template.functions()["DetectFunction"]
    assert detect.code_dir == template.base_dir / "functions" / "detect"
    assert {"BUCKET_NAME", "LEDGER_TABLE", "REVIEW_THRESHOLD"} <= set(detect.environment)
    assert len(detect.properties["Layers"]) == 2  # lists concatenate: global layer + own layer
    assert detect.properties["Runtime"] == "python3.11"
    assert detect.dead_letter_queue == "DetectFunctionDeadLetterQueue"
    assert detect.maximum_retry_attempts == 1
    assert template.functions()["AppendLabelsFunction"].maximum_retry_attempts == 2  # Lambda default


def test_rules_carry_pattern_bus_retry_policy_and_dlq(template: SamTemplate) -> None:
    rules = {rule.name: rule for rule in template.rules()}
    assert set(rules) == {
        "DetectFunctionImageUploaded",
        "AppendLabelsFunctionReviewDone",
        "AppendLabelsFunctionOnAppBus",
        "AppendLabelsFunctionNightly",
    }
    uploaded = rules["DetectFunctionImageUploaded"]
    assert uploaded.kind == "EventBridgeRule" and uploaded.bus == "default"
    assert uploaded.pattern is not None
    assert uploaded.pattern["detail"]["object"]["key"] == [{"prefix": "incoming/"}]
    assert uploaded.pattern["detail"]["bucket"]["name"] == ["<ImageBucket>"]  # placeholder without a stack
    assert uploaded.maximum_retry_attempts == 3 and uploaded.maximum_event_age_seconds == 3600
    assert uploaded.dlq == "DetectFunctionDeadLetterQueue"
    assert rules["AppendLabelsFunctionOnAppBus"].bus == "AppEventBus"
    assert rules["AppendLabelsFunctionOnAppBus"].dlq == "AppendLabelsFunctionOnAppBusQueue"
    nightly = rules["AppendLabelsFunctionNightly"]
    assert nightly.kind == "Schedule" and nightly.schedule == "rate(1 hour)" and not nightly.enabled


def test_resolver_evaluates_intrinsics_and_pseudo_parameters(template: SamTemplate) -> None:
    resolver = Resolver(
        template,
        params={"Stage": "prod"},
        physical={"ImageBucket": "my-bucket"},
        attributes={"DetectFunctionDeadLetterQueue": {"QueueName": "dlq"}},
        stack_name="s1",
    )
    env = template.functions()["DetectFunction"].environment
    assert resolver.resolve(env["EXTRA"]) == "prod-only"
    assert resolver.resolve(env["NOT_PROD"]) == "no"
    assert resolver.resolve(env["QUEUE"]) == "dlq"
    assert resolver.resolve(env["LITERAL"]) == "${NotAVariable}-prod"
    assert resolver.resolve(env["LIST_SUB"]) == "my-bucket/incoming/"
    assert resolver.resolve({"Fn::Sub": "${AWS::Region}:${AWS::AccountId}:${AWS::Partition}"}) == (
        "us-east-1:123456789012:aws"
    )
    labels = resolver.resolve({"Fn::Join": [",", {"Ref": "Labels"}]})
    assert labels == "pepperoni pizza slice,cheese pizza slice"


def test_sub_keeps_escaped_literals(template: SamTemplate) -> None:
    resolver = Resolver(template)
    assert resolver.resolve({"Fn::Sub": "${!Literal}/${AWS::StackName}"}) == "${Literal}/labelloop-local"


def test_unresolved_reference_names_the_reference(template: SamTemplate) -> None:
    resolver = Resolver(template)
    with pytest.raises(UnresolvedReference, match=r"A2IResources\.FlowDefinitionArn"):
        resolver.resolve({"Fn::GetAtt": ["A2IResources", "FlowDefinitionArn"]})
    with pytest.raises(TemplateError, match="NoSuchThing"):
        resolver.resolve({"Ref": "NoSuchThing"})


def test_bad_parameter_value_is_rejected(template: SamTemplate) -> None:
    with pytest.raises(TemplateError, match="Stage"):
        Resolver(template, params={"Stage": "qa"})
    with pytest.raises(TemplateError, match="Nope"):
        Resolver(template, params={"Nope": "1"})


def test_missing_or_broken_template_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"missing\.yaml"):
        load_template(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources: [unclosed\n")
    with pytest.raises(TemplateError, match=r"broken\.yaml"):
        load_template(broken)


def test_provision_creates_resources_from_the_template(template: SamTemplate, aws: boto3.Session) -> None:
    flow_arn = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/x"
    stack = provision(template, aws, resolved={"FlowDefinitionArn": flow_arn}, stack_name="s1")

    assert stack.bucket == "s1-images-123456789012"
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket=stack.bucket)["Status"] == "Enabled"
    assert s3.get_bucket_cors(Bucket=stack.bucket)["CORSRules"][0]["MaxAgeSeconds"] == 3000

    table = aws.client("dynamodb").describe_table(TableName=stack.table)["Table"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "PendingLabels"
    assert stack.bus_name == "s1-app"
    archive = aws.client("events").describe_archive(ArchiveName=stack.physical["AppBusArchive"])
    assert json.loads(archive["EventPattern"]) == {"source": ["labelloop"]}
    assert archive["EventSourceArn"].endswith(":event-bus/s1-app")
    assert aws.client("ssm").get_parameter(Name="/s1/active-model")["Parameter"]["Value"] == "none"
    assert stack.queue_url("DetectFunctionDeadLetterQueue").endswith("/s1-DetectFunctionDeadLetterQueue")
    aws.client("sqs").get_queue_attributes(QueueUrl=stack.queue_url("AppendLabelsFunctionOnAppBusQueue"))

    env = stack.env_for("DetectFunction")
    assert env["BUCKET_NAME"] == stack.bucket
    assert env["LABELS"] == "pepperoni pizza slice,cheese pizza slice"
    assert env["REVIEW_THRESHOLD"] == "60" and env["REVIEW_WHEN_EMPTY"] == "true"
    assert env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert "EXTRA" not in env  # AWS::NoValue removes the variable
    assert stack.env_for("AppendLabelsFunction")["FLOW_DEFINITION_ARN"] == flow_arn

    rules = {rule.name: rule for rule in stack.rules()}
    uploaded, review_done = rules["DetectFunctionImageUploaded"], rules["AppendLabelsFunctionReviewDone"]
    assert uploaded.pattern is not None and review_done.pattern is not None
    assert uploaded.pattern["detail"]["bucket"]["name"] == [stack.bucket]
    assert review_done.pattern["detail"]["flowDefinitionArn"] == [flow_arn]
    assert stack.bus_for(rules["AppendLabelsFunctionOnAppBus"].bus) == "s1-app"


def test_uploads_reach_the_default_bus_shaped_like_s3_events(
    template: SamTemplate, aws: boto3.Session
) -> None:
    apply_moto_fixes()
    stack = provision(template, aws)
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="probe")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    events.put_rule(Name="probe", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="probe", Targets=[{"Id": "q", "Arn": queue_arn}])

    aws.client("s3").put_object(Bucket=stack.bucket, Key="incoming/a slice (1).jpg", Body=b"x")

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert event["detail-type"] == "Object Created"
    assert event["time"].endswith("Z")
    obj = event["detail"]["object"]
    assert obj["key"] == "incoming/a+slice+%281%29.jpg"
    assert obj["etag"] and obj["version-id"] and obj["size"] == 1
    assert event["detail"]["reason"] == "PutObject"


def test_env_for_without_flow_definition_names_the_missing_attribute(
    template: SamTemplate, aws: boto3.Session
) -> None:
    stack = provision(template, aws)
    with pytest.raises(TemplateError, match=r"FLOW_DEFINITION_ARN.*A2IResources\.FlowDefinitionArn"):
        stack.env_for("AppendLabelsFunction")


def test_provision_is_idempotent(template: SamTemplate, aws: boto3.Session) -> None:
    first = provision(template, aws)
    second = provision(template, aws)
    assert first.physical["LedgerTable"] == second.physical["LedgerTable"]
    assert first.bucket == second.bucket


def test_load_handler_gives_each_load_its_own_module(tmp_path: Path) -> None:
    function_dir = tmp_path / "functions" / "echo"
    function_dir.mkdir(parents=True)
    (function_dir / "helper.py").write_text("PREFIX = 'echo:'\n")
    (function_dir / "app.py").write_text(
        "import helper\nCALLS = []\n"
        "def lambda_handler(event, context):\n"
        "    CALLS.append(event)\n"
        "    return helper.PREFIX + context.function_name + ':' + str(len(CALLS))\n"
    )
    first = load_handler(function_dir)
    second = load_handler(function_dir)
    assert first({}, lambda_context("fn")) == "echo:fn:1"
    assert first({}, lambda_context("fn")) == "echo:fn:2"
    assert second({}, lambda_context("fn")) == "echo:fn:1"  # a fresh container
    assert str(function_dir) not in __import__("sys").path


def test_load_handler_names_the_missing_module(tmp_path: Path) -> None:
    with pytest.raises(HandlerLoadError, match=r"app\.py"):
        load_handler(tmp_path)


def test_lambda_context_looks_like_lambdas() -> None:
    context = lambda_context("labelloop-local-DetectFunction")
    assert context.invoked_function_arn.endswith(":function:labelloop-local-DetectFunction")
    assert 0 < context.get_remaining_time_in_millis() <= 60_000
    assert context.aws_request_id


def test_real_template_when_present() -> None:
    path = Path(__file__).resolve().parents[2] / "template.yaml"
    if not path.is_file():
        pytest.skip("template.yaml not written yet")
    template = load_template(path)
    functions = template.functions()
    expected = {"DetectFunction", "StartReviewFunction", "AppendLabelsFunction", "RetrainFunction"}
    assert expected <= set(functions)
    for rule in template.rules():
        assert rule.dlq is not None, f"{rule.name} has no dead-letter queue"
        assert rule.retry_policy, f"{rule.name} has no RetryPolicy"


def test_a_delete_marker_is_announced_without_size_or_etag(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete marker has no size or ETag (S3 sends neither): the S3 → EventBridge fix must not fail."""
    import types

    import moto.events.models

    from labelloop_local.stack import moto_fixes

    sent: list[list[dict[str, Any]]] = []
    backend = types.SimpleNamespace(put_events=sent.append)
    monkeypatch.setattr(moto.events.models, "events_backends", {"123456789012": {"us-east-1": backend}})
    bucket = types.SimpleNamespace(name="images", arn="arn:aws:s3:::images", region_name="us-east-1")
    marker = types.SimpleNamespace(name="incoming/a b.png", version_id="v2")

    moto_fixes._send_s3_event_like_aws("123456789012", bucket, "s3:ObjectRemoved:DeleteMarkerCreated", marker)

    ((entry,),) = sent
    detail = json.loads(entry["Detail"])
    assert detail["object"]["key"] == "incoming/a+b.png" and "size" not in detail["object"]
    assert detail["reason"] == "DeleteObject"
