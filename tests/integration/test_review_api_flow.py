"""The built-in review backend end to end on moto, each function invoked as Lambda would: Detect ->
StartReview (a task in DynamoDB) -> the review API (claim, task, answer, release) -> ReviewCompleted ->
AppendLabels; the sweeper; the portal. The JWT authorizer is API Gateway's: here the events carry the
claims it passes (requestContext.authorizer.jwt.claims)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelloop_local.stack.provision import Stack
from tests.support.flows import (
    EventSpy,
    detector_stub,
    keys_under,
    png_bytes,
    read_json,
    s3_event,
    sqs_batch,
    upload,
)
from tests.support.moto_stack import Invoke
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.integration

DETECT = "DetectFunction"
START_REVIEW = "StartReviewFunction"
REVIEW_API = "ReviewApiFunction"
APPEND = "AppendLabelsFunction"
SWEEPER = "ReviewSweeperFunction"
PORTAL = "PortalFunction"
ALICE = "5b0c8f2e-1a2b-4c3d-9e8f-0a1b2c3d4e5f"
BOB = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
SCHEDULE = json.loads((REPO_ROOT / "events" / "review-sweeper-schedule.json").read_text(encoding="utf-8"))
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE"


def http_event(method: str, path: str, route: str, worker: str | None, body: Any = None) -> dict[str, Any]:
    context: dict[str, Any] = {"requestId": "req-1", "http": {"method": method, "path": path}}
    if worker:
        context["authorizer"] = {"jwt": {"claims": {"sub": worker, "iss": ISSUER}, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "headers": {},
        "requestContext": context,
        "isBase64Encoded": False,
    }
    task_id = path.split("/")[3] if path.count("/") >= 3 and path != "/api/tasks/next" else None
    if task_id:
        event["pathParameters"] = {"taskId": task_id}
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def call(
    invoke: Invoke, method: str, route: str, worker: str | None, task_id: str = "", body: Any = None
) -> Any:
    path = route.replace("{taskId}", task_id)
    response = invoke(REVIEW_API, http_event(method, path, route, worker, body))
    document = json.loads(response["body"]) if response.get("body") else None
    return response["statusCode"], document


def review_requested(aws_stack: Stack, invoke: Invoke, key: str, confidence: float) -> dict[str, Any]:
    spy = EventSpy(aws_stack)
    uploaded = upload(aws_stack, key, png_bytes(400, 300))
    labels = [label.strip() for label in aws_stack.env_for(START_REVIEW)["LABELS"].split(",")]
    box = {"Width": 0.5, "Height": 0.25, "Left": 0.1, "Top": 0.2}
    with detector_stub() as rekognition:
        rekognition.add_response(
            "detect_custom_labels",
            {
                "CustomLabels": [
                    {"Name": labels[0], "Confidence": confidence, "Geometry": {"BoundingBox": box}}
                ]
            },
        )
        invoke(DETECT, sqs_batch(s3_event(aws_stack, uploaded)))  # as the DetectQueue delivers it
    (event,) = spy.events("ReviewRequested")
    return event


def test_a_review_goes_from_detection_to_a_label_line_through_the_api(
    aws_stack: Stack, invoke: Invoke
) -> None:
    spy = EventSpy(aws_stack)
    first = invoke(START_REVIEW, review_requested(aws_stack, invoke, "incoming/high.png", 55.0))
    second = invoke(START_REVIEW, review_requested(aws_stack, invoke, "incoming/low.png", 21.0))
    assert first["started"] and second["started"]
    assert call(invoke, "GET", "/api/tasks/next", None)[0] == 401

    status, task = call(invoke, "GET", "/api/tasks/next", ALICE)
    assert status == 200 and task["taskId"] == second["loopName"]  # lowest confidence first
    assert set(task) >= {"taskId", "imageUrl", "initialValue", "labels", "reasons", "claimExpiresAt"}
    assert call(invoke, "GET", "/api/tasks/{taskId}", BOB, task["taskId"])[0] == 403
    assert call(invoke, "GET", "/api/tasks/{taskId}", ALICE, task["taskId"])[0] == 200

    # Bob takes the other task, then gives it back: it is claimable again.
    status, other = call(invoke, "GET", "/api/tasks/next", BOB)
    assert status == 200 and other["taskId"] == first["loopName"]
    assert call(invoke, "POST", "/api/tasks/{taskId}/release", BOB, other["taskId"])[0] == 200

    answer = {
        "boundingBoxes": [{"label": task["labels"][0], "left": 41, "top": 60, "width": 198, "height": 75}],
        "inputImageProperties": {"width": 400, "height": 300},
    }
    assert call(invoke, "POST", "/api/tasks/{taskId}/answer", BOB, task["taskId"], answer)[0] == 403
    assert call(invoke, "POST", "/api/tasks/{taskId}/answer", ALICE, task["taskId"], answer)[0] == 200
    assert call(invoke, "POST", "/api/tasks/{taskId}/answer", ALICE, task["taskId"], answer)[0] == 409
    (completed,) = spy.events("ReviewCompleted")
    assert completed["detail"]["status"] == "Completed"

    result = invoke(APPEND, completed)
    again = invoke(APPEND, completed)  # a duplicate delivery appends nothing more
    assert result["status"] == "LABELED" and result["newLabel"] is True
    assert again["newLabel"] is False
    assert keys_under(aws_stack, "labels/") == [result["labelKey"]]
    line = read_json(aws_stack, result["labelKey"])
    assert line["source-ref"].endswith("/incoming/low.png")

    assert invoke(SWEEPER, SCHEDULE) == {"completed": 0, "expired": 0, "open": 1}
    status, again_task = call(invoke, "GET", "/api/tasks/next", ALICE)
    assert status == 200 and again_task["taskId"] == first["loopName"]
    assert call(invoke, "POST", "/api/tasks/{taskId}/release", ALICE, first["loopName"])[0] == 200


def test_the_portal_is_served_with_a_strict_policy_and_its_config(aws_stack: Stack, invoke: Invoke) -> None:
    page = invoke(PORTAL, http_event("GET", "/", "/", None))
    assert page["statusCode"] == 200 and "<script" in page["body"]
    headers = {name.lower(): value for name, value in page["headers"].items()}
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    config = invoke(PORTAL, http_event("GET", "/config.json", "/config.json", None))
    document = json.loads(config["body"])
    assert document["userPoolId"] == aws_stack.env_for(PORTAL)["USER_POOL_ID"]


def test_the_sweeper_expires_an_unfinished_task_with_its_partial_answers(
    aws_stack: Stack, invoke: Invoke
) -> None:
    """TaskCount 2, one answer, then the availability lifetime ends: recorded like A2I's Expired."""
    spy = EventSpy(aws_stack)
    opened = invoke(START_REVIEW, review_requested(aws_stack, invoke, "incoming/late.png", 30.0))
    table = aws_stack.session.client("dynamodb")
    key = {"task_id": {"S": opened["loopName"]}}
    table_name = aws_stack.physical["ReviewTaskTable"]
    # the test's own set-up (not a function's call): two answers needed
    table.update_item(
        TableName=table_name,
        Key=key,
        UpdateExpression="SET answers_needed = :two",
        ExpressionAttributeValues={":two": {"N": "2"}},
    )
    status, task = call(invoke, "GET", "/api/tasks/next", ALICE)
    assert status == 200 and task["answersNeeded"] == 2
    answer = {"boundingBoxes": [], "inputImageProperties": {"width": 400, "height": 300}}
    assert call(invoke, "POST", "/api/tasks/{taskId}/answer", ALICE, task["taskId"], answer)[0] == 200
    assert not spy.events("ReviewCompleted")
    table.update_item(
        TableName=table_name,
        Key=key,
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    assert invoke(SWEEPER, SCHEDULE) == {"completed": 0, "expired": 1, "open": 0}
    (expired,) = spy.events("ReviewCompleted")
    assert expired["detail"]["status"] == "Failed" and expired["detail"]["failureCode"] == "Expired"
    assert expired["detail"]["answers"] == 1 and expired["detail"]["outputS3Uri"].endswith("/output.json")
    assert call(invoke, "POST", "/api/tasks/{taskId}/answer", BOB, task["taskId"], answer)[0] in (403, 409)


def test_beyond_the_review_budget_a_request_waits_and_the_schedule_keeps_it(
    aws_stack: Stack, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MaxReviewsPerDay 1: the second review of the day waits (in the ledger, in priority order); the
    scheduled run finds the budget spent and leaves it waiting: nothing is dropped."""
    env_for = aws_stack.env_for

    def with_budget(function: str) -> dict[str, str]:
        env = env_for(function)
        return {**env, "MAX_REVIEWS_PER_DAY": "1"} if function == START_REVIEW else env

    monkeypatch.setattr(aws_stack, "env_for", with_budget)
    first = invoke(START_REVIEW, review_requested(aws_stack, invoke, "incoming/b1.png", 40.0))
    second = invoke(START_REVIEW, review_requested(aws_stack, invoke, "incoming/b2.png", 20.0))
    assert first["started"] is True
    assert second["started"] is False and second["status"] == "WAITING"
    scheduled = {**SCHEDULE, "resources": ["arn:aws:events:us-east-1:123456789012:rule/OpenWaitingReviews"]}
    assert invoke(START_REVIEW, scheduled) == {"opened": 0, "stillWaiting": 1, "budgetSpent": True}


def test_an_image_deleted_since_detection_opens_no_task(aws_stack: Stack, invoke: Invoke) -> None:
    requested = review_requested(aws_stack, invoke, "incoming/gone.png", 30.0)
    aws_stack.session.client("s3").delete_object(Bucket=aws_stack.bucket, Key="incoming/gone.png")
    outcome = invoke(START_REVIEW, requested)
    assert outcome["started"] is False and outcome["status"] == "SUPERSEDED"
    assert call(invoke, "GET", "/api/tasks/next", ALICE)[0] == 204
