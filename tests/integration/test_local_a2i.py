"""The local SageMaker/A2I service and review portal, called with real boto3 clients over HTTP."""

from __future__ import annotations

import io
import json
import re
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from labelloop_local.emulators import LocalServices
from labelloop_local.emulators.testing import LocalAws, create_active_flow, local_aws, wait_for

BUCKET = "a2i-test-bucket"
LABELS = ["pepperoni pizza slice", "crust"]
TEMPLATE = (
    '<script src="https://assets.crowd.aws/crowd-html-elements.js"></script><crowd-form>'
    '<crowd-bounding-box name="annotatedResult" src="{{ task.input.taskObject | grant_read_access }}"'
    ' labels="{{ task.input.labels | to_json | escape }}"'
    ' initial-value="{{ task.input.initialValue | to_json }}" '
    'header="Box every slice"></crowd-bounding-box></crowd-form>'
)
IMAGE_SIZE = (320, 200)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    with local_aws(tmp_path_factory.mktemp("a2i-state")) as local:
        s3 = local.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(
            Bucket=BUCKET, Key="incoming/pizza.png", Body=_png(*IMAGE_SIZE), ContentType="image/png"
        )
        yield local


@pytest.fixture(scope="module")
def flow_arn(aws: LocalAws) -> str:
    arn = create_active_flow(
        aws.client("sagemaker"), "pizza-flow", "pizza-ui", f"s3://{BUCKET}/reviews", TEMPLATE
    )
    return str(arn)


@pytest.fixture(scope="module")
def status_queue(aws: LocalAws) -> str:
    """An EventBridge rule on the default bus for A2I status changes, delivering to an SQS queue."""
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="a2i-status")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": ["aws.sagemaker"], "detail-type": ["SageMaker A2I HumanLoop Status Change"]}
    events.put_rule(Name="a2i-status", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="a2i-status", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


def _png(width: int, height: int, color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def _input(initial: list[dict[str, Any]] | None = None, key: str = "incoming/pizza.png") -> str:
    """InputContent as StartReview builds it (`review_input`): the portal is tested on the real shape."""
    from labelloop_core.geometry import PixelBox
    from labelloop_core.naming import ImageRef
    from labelloop_core.policy import ReviewReason
    from labelloop_core.review_input import build_input_content

    default = {"label": LABELS[0], "left": 10, "top": 20, "width": 100, "height": 80}
    boxes: list[dict[str, Any]] = initial if initial is not None else [default]
    content = build_input_content(
        ImageRef(BUCKET, key, version_id=None, etag="abc123"),
        IMAGE_SIZE[0],
        IMAGE_SIZE[1],
        [(box["label"], PixelBox(box["left"], box["top"], box["width"], box["height"])) for box in boxes],
        LABELS,
        [ReviewReason("LOW_CONFIDENCE", LABELS[0], 41.0, 60.0)],
    )
    return json.dumps(content)


def _start(aws: LocalAws, flow_arn: str, name: str, input_content: str | None = None) -> str:
    response = aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn,
        HumanLoopInput={"InputContent": input_content or _input()},
    )
    return str(response["HumanLoopArn"])


def _http(aws: LocalAws, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{aws.services.base_url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _messages(aws: LocalAws, queue_url: str, loop_name: str) -> list[dict[str, Any]]:
    """Status-change events for one loop that reached the queue so far."""
    found = []
    sqs = aws.client("sqs")
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        event = json.loads(message["Body"])
        if event["detail"]["humanLoopName"] == loop_name:
            found.append(event)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def _error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_flow_definition_and_task_ui_are_described_like_sagemaker(aws: LocalAws, flow_arn: str) -> None:
    sagemaker = aws.client("sagemaker")
    flow = sagemaker.describe_flow_definition(FlowDefinitionName="pizza-flow")
    assert (
        flow["FlowDefinitionArn"]
        == flow_arn
        == "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/pizza-flow"
    )
    assert flow["OutputConfig"]["S3OutputPath"] == f"s3://{BUCKET}/reviews"
    ui = sagemaker.describe_human_task_ui(HumanTaskUiName="pizza-ui")
    assert ui["HumanTaskUiStatus"] == "Active"
    with urllib.request.urlopen(ui["UiTemplate"]["Url"]) as response:
        assert response.read().decode() == TEMPLATE
    with pytest.raises(ClientError) as duplicate:
        sagemaker.create_human_task_ui(HumanTaskUiName="pizza-ui", UiTemplate={"Content": TEMPLATE})
    assert _error_code(duplicate) == "ResourceInUse"
    with pytest.raises(ClientError) as missing:
        sagemaker.describe_flow_definition(FlowDefinitionName="no-such-flow")
    assert _error_code(missing) == "ResourceNotFound"


def test_start_describe_and_conflict_semantics(aws: LocalAws, flow_arn: str) -> None:
    a2i = aws.client("sagemaker-a2i-runtime")
    arn = _start(aws, flow_arn, "ll-conflict")
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:human-loop/ll-conflict"
    described = a2i.describe_human_loop(HumanLoopName="ll-conflict")
    assert described["HumanLoopStatus"] == "InProgress"
    assert described["FlowDefinitionArn"] == flow_arn
    assert "HumanLoopOutput" not in described

    # A retried start with the same input is the same loop, not an error and not a second loop.
    assert _start(aws, flow_arn, "ll-conflict") == arn
    with pytest.raises(ClientError) as conflict:
        _start(aws, flow_arn, "ll-conflict", _input(initial=[]))
    assert _error_code(conflict) == "ConflictException"
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


@pytest.mark.parametrize(
    ("name", "input_content", "expected"),
    [
        ("Bad_Name", None, "HumanLoopName"),
        ("ll-bad-json", "{not json", "not valid JSON"),
        ("ll-too-long", json.dumps({"taskObject": "x" * 3_145_728}), "characters"),
        ("ll-no-labels", json.dumps({"taskObject": f"s3://{BUCKET}/a.png", "initialValue": []}), "labels"),
    ],
)
def test_start_rejects_invalid_requests(
    aws: LocalAws, flow_arn: str, name: str, input_content: str | None, expected: str
) -> None:
    with pytest.raises(ClientError) as invalid:
        _start(aws, flow_arn, name, input_content)
    assert _error_code(invalid) == "ValidationException"
    assert expected in invalid.value.response["Error"]["Message"]


def test_start_refuses_an_unknown_flow_definition(aws: LocalAws) -> None:
    unknown = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/nope"
    with pytest.raises(ClientError) as invalid:
        _start(aws, unknown, "ll-unknown-flow")
    assert _error_code(invalid) == "ValidationException"


def test_submit_writes_a2i_output_and_emits_completed_event(
    aws: LocalAws, flow_arn: str, status_queue: str
) -> None:
    _start(aws, flow_arn, "ll-submit")
    status, task = _http(aws, "GET", "/portal/api/tasks/ll-submit")
    assert status == 200
    assert (task["imageWidth"], task["imageHeight"]) == IMAGE_SIZE
    assert task["initialValue"] == [{"label": LABELS[0], "left": 10, "top": 20, "width": 100, "height": 80}]
    boxes = [
        {"label": LABELS[0], "left": 15, "top": 25, "width": 110, "height": 90},
        {"label": LABELS[1], "left": 200, "top": 100, "width": 120, "height": 100},
    ]
    status, result = _http(
        aws, "POST", "/portal/api/tasks/ll-submit/submit", {"boundingBoxes": boxes, "workerId": "ann"}
    )
    assert status == 200

    described = aws.client("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName="ll-submit")
    assert described["HumanLoopStatus"] == "Completed"
    assert described["HumanLoopOutput"]["OutputS3Uri"] == result["outputS3Uri"]
    stamp = described["CreationTime"].strftime("%Y/%m/%d/%H/%M/%S")
    assert result["outputS3Uri"] == f"s3://{BUCKET}/reviews/pizza-flow/{stamp}/ll-submit/output.json"

    key = result["outputS3Uri"].removeprefix(f"s3://{BUCKET}/")
    output = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert set(output) == {"flowDefinitionArn", "humanLoopName", "inputContent", "humanAnswers"}
    assert output["flowDefinitionArn"] == flow_arn
    assert output["humanLoopName"] == "ll-submit"
    assert output["inputContent"] == json.loads(_input())
    (answer,) = output["humanAnswers"]
    assert answer["answerContent"] == {
        "annotatedResult": {"boundingBoxes": boxes, "inputImageProperties": {"height": 200, "width": 320}}
    }
    assert answer["workerId"] == "ann"
    assert set(answer["workerMetadata"]["identityData"]) == {"identityProviderType", "issuer", "sub"}
    assert answer["timeSpentInSeconds"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", answer["submissionTime"])

    (event,) = wait_for(lambda: _messages(aws, status_queue, "ll-submit"), what="Completed event")
    assert event["source"] == "aws.sagemaker"
    assert event["detail-type"] == "SageMaker A2I HumanLoop Status Change"
    assert event["resources"] == [described["HumanLoopArn"]]
    assert event["detail"] == {
        "creationTime": event["detail"]["creationTime"],
        "failureCode": None,
        "failureReason": None,
        "flowDefinitionArn": flow_arn,
        "humanLoopArn": described["HumanLoopArn"],
        "humanLoopName": "ll-submit",
        "humanLoopOutput": {"outputS3Uri": result["outputS3Uri"]},
        "humanLoopStatus": "Completed",
    }

    # The project's own consumers accept both documents, as AppendLabels will.
    from labelloop_core import a2i, schemas

    schemas.validate("a2i-output", output)
    schemas.validate("a2i-status-change-event", event)
    parsed = a2i.parse_output(output)
    assert [(label, box.left, box.top) for label, box in parsed.boxes] == [
        (LABELS[0], 15, 25),
        (LABELS[1], 200, 100),
    ]


def test_resubmission_is_idempotent_and_other_answers_conflict(aws: LocalAws, flow_arn: str) -> None:
    _start(aws, flow_arn, "ll-resubmit")
    answer = {"boundingBoxes": [{"label": LABELS[0], "left": 1, "top": 2, "width": 30, "height": 40}]}
    first = _http(aws, "POST", "/portal/api/tasks/ll-resubmit/submit", answer)
    assert first[0] == 200
    assert _http(aws, "POST", "/portal/api/tasks/ll-resubmit/submit", answer) == first
    status, error = _http(aws, "POST", "/portal/api/tasks/ll-resubmit/submit", {"boundingBoxes": []})
    assert status == 409
    assert "already Completed" in error["error"]
    assert _http(aws, "POST", "/portal/api/tasks/ll-nobody/submit", answer)[0] == 404


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ({"label": "anchovy", "left": 1, "top": 1, "width": 5, "height": 5}, "not one of the task's labels"),
        ({"label": LABELS[0], "left": -3, "top": 1, "width": 5, "height": 5}, "must not be negative"),
        ({"label": LABELS[0], "left": 300, "top": 1, "width": 50, "height": 5}, "outside the 320x200 image"),
        ({"label": LABELS[0], "left": "10", "top": 1, "width": 5, "height": 5}, "must be a number"),
        ({"label": LABELS[0], "left": 1, "top": 1, "width": 0, "height": 5}, "at least 1 pixel"),
    ],
)
def test_invalid_submissions_are_rejected_and_change_nothing(
    aws: LocalAws, flow_arn: str, box: dict[str, Any], expected: str
) -> None:
    name = f"ll-invalid-{zlib.crc32(expected.encode())}"
    _start(aws, flow_arn, name)
    status, error = _http(aws, "POST", f"/portal/api/tasks/{name}/submit", {"boundingBoxes": [box]})
    assert status == 400
    assert expected in error["error"]
    assert (
        aws.client("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName=name)["HumanLoopStatus"]
        == "InProgress"
    )
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="reviews/").get("Contents", [])
    assert not [item for item in listed if f"/{name}/" in item["Key"]]


def test_stop_emits_stopped_event_then_delete_and_list(
    aws: LocalAws, flow_arn: str, status_queue: str
) -> None:
    a2i = aws.client("sagemaker-a2i-runtime")
    _start(aws, flow_arn, "ll-stop")
    with pytest.raises(ClientError) as busy:
        a2i.delete_human_loop(HumanLoopName="ll-stop")
    assert _error_code(busy) == "ValidationException"

    a2i.stop_human_loop(HumanLoopName="ll-stop")
    wait_for(
        lambda: a2i.describe_human_loop(HumanLoopName="ll-stop")["HumanLoopStatus"] == "Stopped",
        what="Stopped",
    )
    (event,) = wait_for(lambda: _messages(aws, status_queue, "ll-stop"), what="Stopped event")
    assert event["detail"]["humanLoopStatus"] == "Stopped"
    assert _http(aws, "POST", "/portal/api/tasks/ll-stop/submit", {"boundingBoxes": []})[0] == 409

    names = [
        loop["HumanLoopName"]
        for loop in a2i.list_human_loops(FlowDefinitionArn=flow_arn)["HumanLoopSummaries"]
    ]
    assert "ll-stop" in names
    a2i.delete_human_loop(HumanLoopName="ll-stop")
    with pytest.raises(ClientError) as gone:
        a2i.describe_human_loop(HumanLoopName="ll-stop")
    assert _error_code(gone) == "ResourceNotFoundException"


def test_portal_lists_open_tasks_and_serves_their_images(aws: LocalAws, flow_arn: str) -> None:
    _start(aws, flow_arn, "ll-portal")
    status, listing = _http(aws, "GET", "/portal/api/tasks")
    assert status == 200
    task = next(task for task in listing["tasks"] if task["loopName"] == "ll-portal")
    assert task["labels"] == LABELS
    assert task["taskObject"] == f"s3://{BUCKET}/incoming/pizza.png"
    assert task["reasons"][0]["code"] == "LOW_CONFIDENCE"
    with urllib.request.urlopen(f"{aws.services.base_url}/portal/") as response:
        page = response.read().decode()
    assert "ll-portal" in page
    assert "pizza.png" in page  # the file name names the task, not only the review hash
    assert "low confidence: 1 detection of" in page and "at 41%" in page  # reasons summarized
    with urllib.request.urlopen(f"{aws.services.base_url}/portal/image/ll-portal") as response:
        assert Image.open(io.BytesIO(response.read())).size == IMAGE_SIZE
    with urllib.request.urlopen(f"{aws.services.base_url}/portal/image/ll-portal?thumb=1") as response:
        assert Image.open(io.BytesIO(response.read())).format == "JPEG"
    assert _http(aws, "GET", "/portal/api/tasks/ll-missing")[0] == 404


@pytest.mark.parametrize(
    ("error", "status"),
    [("ThrottlingException", 429), ("InternalServerException", 500), ("ServiceUnavailable", 503)],
)
def test_injected_faults_reach_boto3_as_real_error_codes(
    aws: LocalAws, flow_arn: str, error: str, status: int
) -> None:
    name = f"ll-fault-{status}"
    assert (
        _http(
            aws,
            "POST",
            "/_labelloop/faults",
            {"service": "a2i", "operation": "StartHumanLoop", "error": error, "count": 1},
        )[0]
        == 200
    )
    with pytest.raises(ClientError) as failed:
        _start(aws, flow_arn, name)
    assert _error_code(failed) == error
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert _start(aws, flow_arn, name).endswith(f"/{name}")  # only the next call failed


def test_retrying_clients_ride_through_a_throttle(aws: LocalAws, flow_arn: str) -> None:
    aws.services.inject_fault("a2i", "DescribeHumanLoop", "ThrottlingException", count=2)
    _start(aws, flow_arn, "ll-throttled")
    client = aws.client("sagemaker-a2i-runtime", max_attempts=3)
    assert client.describe_human_loop(HumanLoopName="ll-throttled")["HumanLoopStatus"] == "InProgress"
    assert aws.services.faults.pending() == []


def test_bad_fault_requests_are_refused(aws: LocalAws) -> None:
    status, error = _http(aws, "POST", "/_labelloop/faults", {"service": "a2i", "error": "Oops", "count": 1})
    assert status == 400
    assert "error for a2i must be one of" in error["error"]


def test_loops_survive_a_restart(aws: LocalAws, flow_arn: str) -> None:
    _start(aws, flow_arn, "ll-restart")
    again = LocalServices(aws.moto_url, aws.region, aws.services.data_dir)
    again.start()
    try:
        other = LocalAws(aws.moto_url, again, aws.region)
        described = other.client("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName="ll-restart")
        assert described["HumanLoopStatus"] == "InProgress"
        flow = other.client("sagemaker").describe_flow_definition(FlowDefinitionName="pizza-flow")
        assert flow["FlowDefinitionArn"] == flow_arn
    finally:
        again.stop()


def test_data_dir_holds_json_state(aws: LocalAws, flow_arn: str) -> None:
    _start(aws, flow_arn, "ll-persisted")
    state = json.loads(Path(aws.services.data_dir, "a2i.json").read_text())
    assert "ll-persisted" in state["loops"]
