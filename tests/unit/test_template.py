"""template.yaml is the single source of truth: check the contracts other parts rely on."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from labelloop_core.config import defaults, variables
from labelloop_local.stack.handlers import load_handler
from tests.support.paths import REPO_ROOT as REPO
from tests.support.paths import TEMPLATE_PATH
from tests.support.template import template_document

# Invoked by EventBridge (rules, schedules): retries and dead-letter queues of asynchronous invocation.
EVENT_FUNCTIONS = {
    "StartReviewFunction": "functions/start_review/",
    "AppendLabelsFunction": "functions/append_labels/",
    "RetrainFunction": "functions/retrain/",
    "PromoteFunction": "functions/promote/",
    "ModelControllerFunction": "functions/model_controller/",
}
# Consumes the DetectQueue through its SQS event source mapping.
QUEUE_FUNCTIONS = {"DetectFunction": "functions/detect/"}
ALL_FUNCTIONS = {**EVENT_FUNCTIONS, **QUEUE_FUNCTIONS, "A2ISetupFunction": "functions/a2i_setup/"}

# Read by Powertools itself, not by a settings class.
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
# The AWS SDK's standard endpoint settings, declared empty in Globals so that `sam local invoke
# --env-vars` may point a function at the local stack; no settings class reads them (boto3 does).
SDK_ENDPOINT_ENV = {
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_REKOGNITION",
    "AWS_ENDPOINT_URL_SAGEMAKER",
    "AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME",
}
# Set by the Lambda runtime (or boto3's standard endpoint settings), never by the template.
RUNTIME_ENV = re.compile(r"^(AWS_|_X_AMZN_|LAMBDA_|_HANDLER$|TZ$)")


def load_template() -> dict[str, Any]:
    return template_document()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """Environment variables of a function after SAM merges Globals (maps merge key by key)."""
    global_env = template["Globals"]["Function"]["Environment"]["Variables"]
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {**global_env, **own}


def get_att(resource: str, attribute: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource, attribute]}


def test_contract_logical_ids_have_the_agreed_types(resources: dict[str, Any]) -> None:
    expected = {
        "ImageBucket": "AWS::S3::Bucket",
        "AppEventBus": "AWS::Events::EventBus",
        "LedgerTable": "AWS::DynamoDB::Table",
        "ActiveModelParameter": "AWS::SSM::Parameter",
        "PreviousModelParameter": "AWS::SSM::Parameter",
        "CustomLabelsProject": "AWS::Rekognition::Project",
        "A2IResources": "Custom::A2IResources",
        "AppBusArchive": "AWS::Events::Archive",
        "DefaultBusArchive": "AWS::Events::Archive",
        "CoreLayer": "AWS::Serverless::LayerVersion",
        **{function: "AWS::Serverless::Function" for function in ALL_FUNCTIONS},
        **{
            f"{function}DeadLetterQueue": "AWS::SQS::Queue"
            for function in {**EVENT_FUNCTIONS, **QUEUE_FUNCTIONS}
        },
        "DetectQueue": "AWS::SQS::Queue",
        "DetectQueueMapping": "AWS::Lambda::EventSourceMapping",
        "ImageUploadedRule": "AWS::Events::Rule",
    }
    actual = {logical_id: resources.get(logical_id, {}).get("Type") for logical_id in expected}
    assert actual == expected


def test_functions_use_their_directory_the_layer_and_the_runtime_parameter(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == {"Ref": "PythonRuntime"}
    assert globals_["Handler"] == "app.lambda_handler"
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "CoreLayer"}]
    for logical_id, code_uri in ALL_FUNCTIONS.items():
        properties = template["Resources"][logical_id]["Properties"]
        assert properties["CodeUri"] == code_uri, logical_id
        assert (REPO / code_uri).is_dir(), f"{logical_id}: {code_uri} does not exist"


def test_runtime_parameter_allows_the_supported_pythons_and_selects_the_layer_build(
    template: dict[str, Any],
) -> None:
    runtime = template["Parameters"]["PythonRuntime"]
    assert runtime["Default"] == "python3.12"
    assert runtime["AllowedValues"] == ["python3.11", "python3.12", "python3.13"]
    layer = template["Resources"]["CoreLayer"]
    assert layer["Properties"]["CompatibleRuntimes"] == [{"Ref": "PythonRuntime"}]
    # sam build resolves the parameter in Metadata and runs runtimes/<runtime>/Makefile.
    assert layer["Metadata"]["ContextPath"] == {"Fn::Sub": "layers/core/runtimes/${PythonRuntime}"}
    for name in runtime["AllowedValues"]:
        makefile = REPO / "layers/core/runtimes" / name / "Makefile"
        assert f"LAMBDA_RUNTIME := {name}\n" in makefile.read_text(encoding="utf-8"), name


def test_every_parameter_is_described_and_constrained(template: dict[str, Any]) -> None:
    constraints = {"AllowedPattern", "AllowedValues", "MinValue", "MaxValue"}
    for name, parameter in template["Parameters"].items():
        assert parameter.get("Description"), f"{name} has no Description"
        assert constraints & set(parameter), f"{name} has no constraint"
        if "Default" in parameter and "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], str(parameter["Default"])), name


@pytest.mark.parametrize("function", sorted(EVENT_FUNCTIONS))
def test_function_errors_go_to_its_own_dead_letter_queue(resources: dict[str, Any], function: str) -> None:
    queue = f"{function}DeadLetterQueue"
    queue_properties = resources[queue]["Properties"]
    assert queue_properties["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue_properties["SqsManagedSseEnabled"] is True
    invoke_config = resources[function]["Properties"]["EventInvokeConfig"]
    # A failed controller tick is not retried: the next tick, a minute later, decides afresh.
    assert invoke_config["MaximumRetryAttempts"] == (0 if function == "ModelControllerFunction" else 2)
    assert invoke_config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": get_att(queue, "Arn"),
    }


@pytest.mark.parametrize("function", sorted(EVENT_FUNCTIONS))
def test_every_rule_retries_and_dead_letters_into_the_function_queue(
    resources: dict[str, Any], function: str
) -> None:
    events = resources[function]["Properties"]["Events"]
    assert events, f"{function} has no trigger"
    queue = f"{function}DeadLetterQueue"
    for event_name, event in events.items():
        assert event["Type"] in {"EventBridgeRule", "Schedule"}
        properties = event["Properties"]
        retry = properties["RetryPolicy"]
        assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86400, event_name
        assert 0 <= retry["MaximumRetryAttempts"] <= 185, event_name
        assert properties["DeadLetterConfig"] == {"Arn": get_att(queue, "Arn")}
        # EventBridge may only send to the queue for this rule (SAM names the rule <Function><Event>).
        statement = resources[f"{queue}Policy"]["Properties"]["PolicyDocument"]["Statement"][0]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        sources = sources if isinstance(sources, list) else [sources]
        assert get_att(f"{function}{event_name}", "Arn") in sources, event_name
        assert len(sources) == len(events), "only the function's own rules may send to its queue"


def _only_event(resources: dict[str, Any], function: str) -> dict[str, Any]:
    (event,) = resources[function]["Properties"]["Events"].values()
    return dict(event)


def _event(resources: dict[str, Any], function: str, name: str) -> dict[str, Any]:
    return dict(resources[function]["Properties"]["Events"][name])


# The flow definitions of this stack: the custom resource's prefix with A2I, else the names it would have.
FLOW_PREFIX = {
    "Fn::If": [
        "UseA2I",
        get_att("A2IResources", "FlowDefinitionArnPrefix"),
        {
            "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}"
            ":flow-definition/${AWS::StackName}-flow-"
        },
    ]
}


UPLOAD_PATTERN = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {
        "bucket": {"name": [{"Ref": "ImageBucket"}]},
        "object": {"key": [{"prefix": "incoming/"}]},
    },
}


def test_uploads_under_incoming_wait_in_the_detect_queue(resources: dict[str, Any]) -> None:
    rule = resources["ImageUploadedRule"]["Properties"]
    assert "EventBusName" not in rule  # S3 notifications arrive on the default bus
    assert rule["EventPattern"] == UPLOAD_PATTERN
    (target,) = rule["Targets"]
    assert target["Arn"] == get_att("DetectQueue", "Arn")
    assert target["DeadLetterConfig"] == {"Arn": get_att("DetectFunctionDeadLetterQueue", "Arn")}
    assert 60 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86400
    for queue in ("DetectQueue", "DetectFunctionDeadLetterQueue"):  # only this rule may send there
        (statement,) = resources[f"{queue}Policy"]["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == get_att(queue, "Arn")
        assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == get_att("ImageUploadedRule", "Arn")
    assert "Events" not in resources["DetectFunction"]["Properties"]  # the queue is its only trigger
    assert "EventInvokeConfig" not in resources["DetectFunction"]["Properties"]


def test_the_detect_queue_dead_letters_after_max_receive_count_and_keeps_uploads_14_days(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = resources["DetectQueue"]["Properties"]
    settings = template["Mappings"]["DetectQueue"]["Settings"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": get_att("DetectFunctionDeadLetterQueue", "Arn"),
        "maxReceiveCount": {"Fn::FindInMap": ["DetectQueue", "Settings", "MaxReceiveCount"]},
    }
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600  # waiting for a stopped model expires nothing
    assert queue["SqsManagedSseEnabled"] is True
    # Lambda: the visibility timeout must be at least six times the function's timeout.
    assert queue["VisibilityTimeout"] == {"Fn::FindInMap": ["DetectQueue", "Settings", "VisibilityTimeout"]}
    assert settings["VisibilityTimeout"] >= 6 * resources["DetectFunction"]["Properties"]["Timeout"]
    # Detect dead-letters a failing message itself on the last receive SQS allows (with the reason).
    detect_env = function_environment(template, "DetectFunction")
    assert detect_env["MAX_RECEIVE_COUNT"] == {
        "Fn::FindInMap": ["DetectQueue", "Settings", "MaxReceiveCount"]
    }
    assert detect_env["DETECT_QUEUE_URL"] == {"Ref": "DetectQueue"}
    assert detect_env["DEAD_LETTER_QUEUE_URL"] == {"Ref": "DetectFunctionDeadLetterQueue"}


def test_detect_consumes_the_queue_in_batches_with_partial_failures_and_bounded_concurrency(
    resources: dict[str, Any],
) -> None:
    mapping = resources["DetectQueueMapping"]["Properties"]
    assert mapping["FunctionName"] == {"Ref": "DetectFunction"}
    assert mapping["EventSourceArn"] == get_att("DetectQueue", "Arn")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "DetectConcurrency"}}
    assert mapping["BatchSize"] == {"Fn::FindInMap": ["DetectQueue", "Settings", "BatchSize"]}
    # Created paused: the model controller enables it once the model runs.
    assert mapping["Enabled"] is False
    # Reserved concurrency equal to the mapping's maximum: Lambda never throttles the mapping itself.
    assert resources["DetectFunction"]["Properties"]["ReservedConcurrentExecutions"] == {
        "Ref": "DetectConcurrency"
    }


def test_the_model_controller_runs_every_minute_and_after_each_promotion(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    events = resources["ModelControllerFunction"]["Properties"]["Events"]
    assert events["ControlSchedule"]["Properties"]["Schedule"] == "rate(1 minute)"
    promoted = events["ModelPromoted"]["Properties"]
    assert promoted["EventBusName"] == {"Ref": "AppEventBus"}
    assert promoted["Pattern"] == {"source": ["labelloop"], "detail-type": ["ModelPromoted"]}
    environment = function_environment(template, "ModelControllerFunction")
    assert environment["EVENT_SOURCE_MAPPING_UUID"] == {"Ref": "DetectQueueMapping"}
    assert environment["DETECT_QUEUE_URL"] == {"Ref": "DetectQueue"}
    for variable, parameter in (
        ("MODEL_IDLE_MINUTES", "ModelIdleMinutes"),
        ("MIN_INFERENCE_UNITS", "MinInferenceUnits"),
        ("MAX_INFERENCE_UNITS", "MaxInferenceUnits"),
        ("INFERENCE_UNIT_HOUR_PRICE", "InferenceUnitHourPrice"),
    ):
        assert environment[variable] == {"Ref": parameter}, variable
    assert function_environment(template, "PromoteFunction")["MAX_INFERENCE_UNITS"] == {
        "Ref": "MaxInferenceUnits"
    }


def test_inference_on_demand_parameters_say_what_they_cost(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["ModelIdleMinutes"]["Default"] == 15 and parameters["ModelIdleMinutes"]["MinValue"] == 0
    assert "0" in parameters["ModelIdleMinutes"]["Description"]
    assert parameters["MaxInferenceUnits"]["Default"] == ""  # no auto-scaling unless asked for
    assert re.fullmatch(parameters["MaxInferenceUnits"]["AllowedPattern"], "4")
    assert not re.fullmatch(parameters["MaxInferenceUnits"]["AllowedPattern"], "0")
    assert parameters["DetectConcurrency"]["MinValue"] == 2  # SQS mappings' MaximumConcurrency minimum
    assert parameters["InferenceUnitHourPrice"]["Default"] == 4  # us-east-1, README "Costs"


def test_start_review_listens_to_review_requests_on_the_app_bus(resources: dict[str, Any]) -> None:
    event = _event(resources, "StartReviewFunction", "ReviewRequested")
    assert event["Properties"]["EventBusName"] == {"Ref": "AppEventBus"}
    assert event["Properties"]["Pattern"] == {"source": ["labelloop"], "detail-type": ["ReviewRequested"]}


def test_append_labels_listens_to_final_statuses_of_our_flow_only(resources: dict[str, Any]) -> None:
    event = _event(resources, "AppendLabelsFunction", "HumanLoopStatusChange")
    assert "EventBusName" not in event["Properties"]
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker A2I HumanLoop Status Change"]
    # Every flow definition of this stack, so loops of a replaced one still complete.
    assert pattern["detail"]["flowDefinitionArn"] == [{"prefix": FLOW_PREFIX}]
    assert sorted(pattern["detail"]["humanLoopStatus"]) == ["Completed", "Failed", "Stopped"]


@pytest.mark.parametrize(
    ("function", "parameter"),
    [("RetrainFunction", "RetrainSchedule"), ("PromoteFunction", "PromoteSchedule")],
)
def test_schedules_come_from_parameters(template: dict[str, Any], function: str, parameter: str) -> None:
    event = _only_event(template["Resources"], function)
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": parameter}
    assert re.fullmatch(template["Parameters"][parameter]["AllowedPattern"], "cron(0 3 * * ? *)")
    assert not re.fullmatch(template["Parameters"][parameter]["AllowedPattern"], "every day")


def test_archives_cover_the_app_bus_and_only_our_default_bus_events(resources: dict[str, Any]) -> None:
    app = resources["AppBusArchive"]["Properties"]
    assert app["SourceArn"] == get_att("AppEventBus", "Arn")
    assert app["EventPattern"] == {"source": ["labelloop"]}
    default = resources["DefaultBusArchive"]["Properties"]
    assert default["SourceArn"]["Fn::Sub"].endswith(":event-bus/default")
    s3_pattern, a2i_pattern = default["EventPattern"]["$or"]
    assert s3_pattern == resources["ImageUploadedRule"]["Properties"]["EventPattern"] == UPLOAD_PATTERN
    assert a2i_pattern["source"] == ["aws.sagemaker"]
    assert a2i_pattern["detail"]["flowDefinitionArn"] == [{"prefix": FLOW_PREFIX}]


def test_the_builtin_backend_s_events_reach_their_functions(resources: dict[str, Any]) -> None:
    completed = _event(resources, "AppendLabelsFunction", "ReviewCompleted")["Properties"]
    assert completed["EventBusName"] == {"Ref": "AppEventBus"}
    assert completed["Pattern"] == {"source": ["labelloop"], "detail-type": ["ReviewCompleted"]}
    waiting = _event(resources, "StartReviewFunction", "OpenWaitingReviews")
    assert waiting["Type"] == "Schedule"


def test_bucket_is_private_versioned_encrypted_and_feeds_eventbridge(resources: dict[str, Any]) -> None:
    bucket = resources["ImageBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    # A2I's worker UI needs a CORS rule; the built-in portal's <img> makes no CORS request: none.
    condition, with_a2i, builtin = bucket["CorsConfiguration"]["Fn::If"]
    assert condition == "UseA2I" and builtin == {"Ref": "AWS::NoValue"}
    (cors,) = with_a2i["CorsRules"]
    assert cors["AllowedMethods"] == ["GET"]
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in rule for rule in rules)
    statements = resources["ImageBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    tls = [
        s for s in statements if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert tls and tls[0]["Effect"] == "Deny"


def test_ledger_table_matches_the_contract(resources: dict[str, Any]) -> None:
    table = resources["LedgerTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"pk": "S", "sk": "S", "pending": "S", "created_at": "S", "queue": "S", "rank": "S"}
    index, waiting = table["GlobalSecondaryIndexes"]
    assert waiting["IndexName"] == "WaitingReviews"
    assert [k["AttributeName"] for k in waiting["KeySchema"]] == ["queue", "rank"]
    assert index["IndexName"] == "PendingLabels"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["pending", "created_at"]
    assert {"label_key", "source_ref"} <= set(index["Projection"].get("NonKeyAttributes", []))
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


def test_active_model_starts_at_the_initial_version_or_none(resources: dict[str, Any]) -> None:
    value = resources["ActiveModelParameter"]["Properties"]["Value"]
    assert value == {"Fn::If": ["HasInitialModel", {"Ref": "InitialModelVersionArn"}, "none"]}
    assert resources["CustomLabelsProject"]["Condition"] == "CreateProject"


def declared_settings(function: str) -> type[Any]:
    """The settings class the function's handler declares (its typed environment)."""
    handler = load_handler(REPO / ALL_FUNCTIONS[function])
    settings_type: type[Any] = handler.settings_type  # type: ignore[attr-defined]
    return settings_type


@pytest.mark.parametrize("function", sorted(ALL_FUNCTIONS))
def test_each_function_gets_exactly_the_variables_its_settings_declare(
    template: dict[str, Any], function: str
) -> None:
    environment = set(function_environment(template, function)) - SDK_ENDPOINT_ENV
    declared = set(variables(declared_settings(function)).values())
    undeclared = sorted(environment - POWERTOOLS_ENV - declared)
    assert environment - POWERTOOLS_ENV == declared, (
        f"{function}: set in template.yaml but not declared: {undeclared}; "
        f"declared but not set: {sorted(declared - environment)}"
    )
    assert environment >= POWERTOOLS_ENV


@pytest.mark.parametrize("function", sorted(ALL_FUNCTIONS))
def test_code_defaults_agree_with_the_template_parameter_defaults(
    template: dict[str, Any], function: str
) -> None:
    settings_type = declared_settings(function)
    parsers = {field.metadata["env"]: field.metadata["parse"] for field in dataclasses.fields(settings_type)}
    environment = function_environment(template, function)
    compared = 0
    for variable, code_default in defaults(settings_type).items():
        value = environment.get(variable)
        if not (isinstance(value, dict) and set(value) == {"Ref"}):
            continue
        parameter = template["Parameters"].get(value["Ref"])
        if parameter is None or "Default" not in parameter:
            continue
        assert parsers[variable](str(parameter["Default"])) == code_default, (
            f"{function}: {variable} defaults to {code_default!r} in code but parameter "
            f"{value['Ref']} defaults to {parameter['Default']!r}"
        )
        compared += 1
    if defaults(settings_type):
        assert compared, f"{function}: no default compared: the check no longer matches the template"


def test_the_fixed_test_manifest_is_a_manifest_key_that_never_triggers_detect(
    template: dict[str, Any],
) -> None:
    # That Retrain may read it, and see 404 when it is absent, is proven by tests/iam.
    parameters = template["Parameters"]
    test_key = parameters["TestManifestKey"]
    assert test_key["Default"] == "manifests/test.manifest" != parameters["BaseManifestKey"]["Default"]
    assert re.fullmatch(test_key["AllowedPattern"], "manifests/holdout.manifest")
    assert not re.fullmatch(test_key["AllowedPattern"], "incoming/test.manifest")  # never triggers Detect
    environment = function_environment(template, "RetrainFunction")
    assert environment["TEST_MANIFEST_KEY"] == {"Ref": "TestManifestKey"}


def test_retrain_has_room_in_tmp_for_the_largest_manifest_rekognition_accepts(
    resources: dict[str, Any],
) -> None:
    properties = resources["RetrainFunction"]["Properties"]
    assert properties["EphemeralStorage"]["Size"] > 1024  # MB: the merged manifest may reach 1 GB


def test_wildcard_resources_carry_a_justifying_comment() -> None:
    lines = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()
    inline = re.compile(r"""^\s*(-\s*)?Resource:\s*["']?\*["']?\s*(#.*)?$""")
    listed = re.compile(r"""^\s*-\s*["']?\*["']?\s*(#.*)?$""")
    offenders = []
    for number, line in enumerate(lines):
        previous = lines[number - 1] if number else ""
        in_resource_list = listed.match(line) and "Resource:" in previous
        if inline.match(line) or in_resource_list:
            commented = "#" in line or previous.strip().startswith("#")
            if not commented:
                offenders.append(f"line {number + 1}: {line.strip()}")
    assert not offenders, f'Resource "*" without a comment saying why: {offenders}'


def _statements(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if "Effect" in node and ("Action" in node or "NotAction" in node) else []
        return found + [s for value in node.values() for s in _statements(value)]
    if isinstance(node, list):
        return [s for item in node for s in _statements(item)]
    return []


def test_no_statement_allows_everything(template: dict[str, Any]) -> None:
    for statement in _statements(template["Resources"]):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        assert not any(action in {"*", "s3:*", "dynamodb:*", "sagemaker:*"} for action in actions) or (
            statement["Effect"] == "Deny"
        ), statement
        if statement.get("Principal") == "*":
            assert statement["Effect"] == "Deny", statement


def test_a2i_custom_resource_carries_everything_the_setup_needs(resources: dict[str, Any]) -> None:
    a2i = resources["A2IResources"]["Properties"]
    assert a2i["ServiceToken"] == get_att("A2ISetupFunction", "Arn")
    assert a2i["RoleArn"] == get_att("A2IExecutionRole", "Arn")
    assert a2i["WorkteamArn"] == {"Ref": "WorkteamArn"}
    assert a2i["S3OutputPath"] == {"Fn::Sub": "s3://${ImageBucket}/reviews"}
    assert re.fullmatch(r"[0-9a-f]{64}", a2i["TaskUiTemplateSha256"])
    role = resources["A2IExecutionRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    granted = {
        (tuple(s["Action"]), s["Resource"]["Fn::Sub"])
        for s in role["Policies"][0]["PolicyDocument"]["Statement"]
    }
    assert (("s3:PutObject",), "${ImageBucket.Arn}/reviews/*") in granted
    assert any(resource == "${ImageBucket.Arn}/incoming/*" for _, resource in granted)


def test_layer_is_built_by_its_makefile_with_the_sdk_pinned_like_the_dev_environment(
    resources: dict[str, Any],
) -> None:
    layer = resources["CoreLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/core/"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (REPO / "layers/core/Makefile").read_text(encoding="utf-8")
    assert "build-CoreLayer:" in makefile
    requirements = (REPO / "layers/core/requirements.txt").read_text(encoding="utf-8")
    pinned = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:[0-9a-f]{64}", requirements, re.M)
    )
    assert {"aws-lambda-powertools", "aws-xray-sdk", "fastjsonschema", "orjson"} <= set(pinned)
    assert {"jmespath", "s3transfer", "python-dateutil", "six", "urllib3"} <= set(pinned)
    dev = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements/dev.txt").read_text(), re.M))
    for package in ("boto3", "botocore", "orjson"):  # PutObject(IfNoneMatch) needs botocore >= 1.35.10
        assert pinned.get(package) == dev.get(package), package


def test_outputs_tell_the_user_where_things_are(template: dict[str, Any]) -> None:
    expected = {
        "BucketName",
        "UploadPrefix",
        "AppEventBusName",
        "FlowDefinitionArn",
        "WorkerPortalHint",
        "LedgerTableName",
        "ActiveModelParameterName",
        "RollbackHint",
        *(f"{function}DeadLetterQueueUrl" for function in {**EVENT_FUNCTIONS, **QUEUE_FUNCTIONS}),
        "DetectQueueUrl",
    }
    assert expected <= set(template["Outputs"])
    assert template["Outputs"]["UploadPrefix"]["Value"] == {"Fn::Sub": "s3://${ImageBucket}/incoming/"}


def test_the_readme_explains_every_parameter_a_deployer_is_asked_for(template: dict[str, Any]) -> None:
    deploy = (REPO / "README.md").read_text(encoding="utf-8").split("## Deploy to AWS", 1)[1]
    missing = [name for name in template["Parameters"] if f"`{name}`" not in deploy]
    assert not missing, f"README's Deploy section does not name {missing}"
