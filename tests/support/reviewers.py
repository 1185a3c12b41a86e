"""A reviewer of the local stack's built-in backend: invited to its user pool (moto), signed in through
Cognito as the portal does it (USER_PASSWORD_AUTH, then the new password the first sign-in asks for)."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

from PIL import Image, ImageDraw

from labelloop_local.cli.reviewers import Reviewers, temporary_password
from labelloop_local.stack.local_stack import LocalStack


def photo_with_slices(size: tuple[int, int], boxes: list[tuple[int, int, int, int]], quality: int) -> bytes:
    """A JPEG with a pizza-coloured rectangle at each (left, top, width, height) box: what reviewers see."""
    image = Image.new("RGB", size, (150, 100, 60))
    draw = ImageDraw.Draw(image)
    for left, top, width, height in boxes:
        draw.rectangle([left, top, left + width, top + height], fill=(244, 200, 90))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def invite(stack: LocalStack, email: str) -> str:
    """Invite `email` to the stack's reviewer pool; its temporary password."""
    assert stack.stack is not None
    password = temporary_password()
    Reviewers(stack.client("cognito-idp"), str(stack.stack.physical["ReviewerUserPool"])).add(email, password)
    return password


def sign_in(stack: LocalStack, email: str, client_id: str | None = None) -> dict[str, Any]:
    """Invite `email` and sign in as them: Cognito's AuthenticationResult (AccessToken, IdToken)."""
    assert stack.stack is not None
    client_id = client_id or str(stack.stack.physical["ReviewerPortalClient"])
    cognito = stack.client("cognito-idp")
    started = cognito.initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH",
        ClientId=client_id,
        AuthParameters={"USERNAME": email, "PASSWORD": invite(stack, email)},
    )
    assert started["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    answered = cognito.respond_to_auth_challenge(
        ClientId=client_id,
        ChallengeName="NEW_PASSWORD_REQUIRED",
        Session=started["Session"],
        ChallengeResponses={"USERNAME": email, "NEW_PASSWORD": temporary_password(20)},
    )
    return dict(answered["AuthenticationResult"])


def api(
    stack: LocalStack, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    """One request to the stack's review API: the status and the JSON body (None when empty)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.api_url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


MODEL_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/labelloop-local/version/labelloop-v1/1"


def request_review(
    stack: LocalStack,
    key: str,
    body: bytes,
    size: tuple[int, int],
    detections: list[tuple[str, float, tuple[int, int, int, int]]],
    threshold: float = 60.0,
) -> str:
    """Upload `body` to `key` (outside incoming/, so no detection runs) and publish the ReviewRequested
    event Detect would have published for these detections (label, confidence, pixel box), with a
    LOW_CONFIDENCE reason for each one below `threshold`; the review's task id once it is open."""
    from labelloop_core.naming import ImageRef, human_loop_name

    assert stack.stack is not None
    bucket = stack.stack.bucket
    put = stack.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/jpeg")
    image = ImageRef(bucket, key, put.get("VersionId"), put["ETag"])
    detail = {
        "schemaVersion": "1",
        "imageId": image.image_id,
        "bucket": bucket,
        "key": key,
        "versionId": image.version_id or "null",
        "etag": image.etag,
        "modelArn": MODEL_ARN,
        "predictionKey": f"predictions/{key}.json",
        "imageSize": {"width": size[0], "height": size[1]},
        "detections": [
            {
                "label": label,
                "confidence": confidence,
                "pixelBox": dict(zip(("left", "top", "width", "height"), box, strict=True)),
            }
            for label, confidence, box in detections
        ],
        "reasons": [
            {"code": "LOW_CONFIDENCE", "label": label, "confidence": confidence, "threshold": threshold}
            for label, confidence, _ in detections
            if confidence < threshold
        ],
    }
    entry = {
        "Source": "labelloop",
        "DetailType": "ReviewRequested",
        "Detail": json.dumps(detail),
        "EventBusName": str(stack.stack.physical["AppEventBus"]),
    }
    assert stack.client("events").put_events(Entries=[entry])["FailedEntryCount"] == 0
    task_id = human_loop_name(image, MODEL_ARN)
    deadline = time.monotonic() + 60
    while task_id not in {task["task_id"] for task in stack.review_tasks()}:
        assert time.monotonic() < deadline, f"no review task {task_id} within 60 s"
        time.sleep(0.05)
    return task_id


def token_subject(token: str) -> str:
    """The `sub` claim of a Cognito token (the reviewer's id, the `workerId` of their answers)."""
    import base64

    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


class BusSpy:
    """Every labelloop event put on the local stack's app bus, received through a rule -> SQS target
    of its own (the test's set-up, beside the stack's rules)."""

    def __init__(self, stack: LocalStack, name: str = "spy") -> None:
        assert stack.stack is not None
        self.sqs = stack.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        bus = str(stack.stack.physical["AppEventBus"])
        events = stack.client("events")
        pattern = json.dumps({"source": ["labelloop"]})
        events.put_rule(Name=f"{name}-events", EventBusName=bus, EventPattern=pattern)
        target = {"Id": name, "Arn": queue_arn["Attributes"]["QueueArn"]}
        events.put_targets(Rule=f"{name}-events", EventBusName=bus, Targets=[target])
        self.seen: list[dict[str, Any]] = []

    def events(self, detail_type: str) -> list[dict[str, Any]]:
        """Every event of `detail_type` seen so far."""
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return [event for event in self.seen if event["detail-type"] == detail_type]
