"""Every sample in events/ is valid for its function (both validators agree); env.json fits the template."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

import jsonschema
import pytest

from labelloop_core import schemas
from labelloop_core.task_ui import template_sha256
from tests.support.paths import REPO_ROOT as REPO
from tests.support.template import template_document

EVENTS = REPO / "events"

# sample file -> (function logical id, schema of the whole event, schema of its detail, or of each
# message body of an SQS batch, or None)
SAMPLES = {
    "detect-object-created.json": ("DetectFunction", "sqs-batch-event", "s3-object-created-event"),
    "detect-key-with-spaces.json": ("DetectFunction", "sqs-batch-event", "s3-object-created-event"),
    "start-review.json": ("StartReviewFunction", "app-event", "review-requested"),
    "append-labels-completed.json": ("AppendLabelsFunction", "a2i-status-change-event", None),
    "append-labels-failed.json": ("AppendLabelsFunction", "a2i-status-change-event", None),
    "retrain-schedule.json": ("RetrainFunction", "scheduled-event", None),
    "promote-schedule.json": ("PromoteFunction", "scheduled-event", None),
    "model-controller-schedule.json": ("ModelControllerFunction", "scheduled-event", None),
    "a2i-setup-create.json": ("A2ISetupFunction", "cfn-custom-resource-request", None),
    "a2i-setup-update.json": ("A2ISetupFunction", "cfn-custom-resource-request", None),
    "a2i-setup-delete.json": ("A2ISetupFunction", "cfn-custom-resource-request", None),
    "append-labels-review-completed.json": ("AppendLabelsFunction", "app-event", "review-completed"),
    "review-api-next-task.json": ("ReviewApiFunction", "http-api-event", None),
    "portal-page.json": ("PortalFunction", "http-api-event", None),
    "review-sweeper-schedule.json": ("ReviewSweeperFunction", "scheduled-event", None),
}


def _template() -> dict[str, Any]:
    return template_document()


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return document


def _upload(name: str) -> dict[str, Any]:
    """The S3 event in the (only) message of a Detect sample batch."""
    (record,) = _load(name)["Records"]
    body: dict[str, Any] = json.loads(record["body"])
    return body


def _valid_in_both_engines(schema_name: str, document: Any) -> None:
    schemas.validate(schema_name, document)
    jsonschema.Draft202012Validator(schemas.load_schema(schema_name)).validate(document)


def test_every_sample_file_is_known() -> None:
    present = {path.name for path in EVENTS.glob("*.json")} - {"env.json"}
    assert present == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_event_is_valid(name: str) -> None:
    function, event_schema, detail_schema = SAMPLES[name]
    event = _load(name)
    _valid_in_both_engines(event_schema, event)
    if detail_schema and "Records" in event:
        for record in event["Records"]:
            _valid_in_both_engines(detail_schema, json.loads(record["body"]))
    elif detail_schema:
        _valid_in_both_engines(detail_schema, event["detail"])
    assert function in _template()["Resources"]


def test_every_function_has_a_sample_event() -> None:
    resources = _template()["Resources"]
    functions = {lid for lid, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == {function for function, _, _ in SAMPLES.values()}


def test_url_encoded_key_sample_decodes_to_a_key_with_spaces() -> None:
    raw = _upload("detect-key-with-spaces.json")["detail"]["object"]["key"]
    assert " " not in raw and "+" in raw
    assert unquote_plus(raw) == "incoming/pizza/my pizza slice (1).jpg"


def test_a2i_samples_follow_the_flow_in_env_json() -> None:
    env = _load("env.json")
    flow = env["StartReviewFunction"]["FLOW_DEFINITION_ARN"]
    assert flow.startswith(env["AppendLabelsFunction"]["FLOW_DEFINITION_ARN_PREFIX"])
    for name in ("append-labels-completed.json", "append-labels-failed.json"):
        assert _load(name)["detail"]["flowDefinitionArn"] == flow
    completed = _load("append-labels-completed.json")["detail"]
    assert completed["humanLoopOutput"]["outputS3Uri"].endswith(f"/{completed['humanLoopName']}/output.json")


def test_a2i_samples_use_the_values_aws_documents() -> None:
    """The output path is dated by the loop's creation time; an expired loop's FailureCode is Expired."""
    completed = _load("append-labels-completed.json")["detail"]
    created = datetime.fromisoformat(completed["creationTime"].replace("Z", "+00:00"))
    assert (
        f"/{created:%Y/%m/%d/%H/%M/%S}/{completed['humanLoopName']}/"
        in completed["humanLoopOutput"]["outputS3Uri"]
    )
    failed = _load("append-labels-failed.json")["detail"]
    assert failed["failureCode"] in {"ValidationError", "Expired", "InternalError"}


def test_samples_use_the_bucket_in_env_json() -> None:
    bucket = _load("env.json")["DetectFunction"]["BUCKET_NAME"]
    assert _upload("detect-object-created.json")["detail"]["bucket"]["name"] == bucket
    assert _load("start-review.json")["detail"]["bucket"] == bucket


def test_a2i_setup_samples_carry_the_shipped_task_ui_hash() -> None:
    for name in ("a2i-setup-create.json", "a2i-setup-update.json", "a2i-setup-delete.json"):
        assert _load(name)["ResourceProperties"]["TaskUiTemplateSha256"] == template_sha256(), name
    update = _load("a2i-setup-update.json")
    assert update["ResourceProperties"] != update["OldResourceProperties"]


def test_env_json_sets_only_variables_the_template_declares() -> None:
    # `sam local invoke --env-vars` ignores variables a function does not declare in the template.
    template = _template()
    global_names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    env = _load("env.json")
    for function, variables in env.items():
        properties = template["Resources"][function]["Properties"]
        declared = global_names | set(properties.get("Environment", {}).get("Variables", {}))
        assert set(variables) == declared, function
        assert all(isinstance(value, str) for value in variables.values()), function
