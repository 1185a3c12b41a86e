"""Local Amazon A2I runtime (REST-JSON, `/human-loops`) and the review submission the portal uses.

Semantics kept from the real service:
- StartHumanLoop validates the name pattern, InputContent (valid JSON, ≤3,145,728 characters) and
  that the flow definition exists and is Active. A loop name that exists with a *different* input
  (or flow) is a ConflictException. The *same* name with the *same* input and flow answers 200 with
  the existing loop's ARN: a retried call after a lost response must not fail (documented choice).
- A loop takes the answers of `TaskCount` distinct workers (the flow definition's HumanLoopConfig);
  the last one writes `output.json` in A2I's format, one `humanAnswers` entry per worker, to
  `<S3OutputPath>/<flow>/YYYY/MM/DD/hh/mm/ss/<loop>/output.json` (loop creation time, UTC), marks the
  loop Completed and emits `SageMaker A2I HumanLoop Status Change` on the default event bus.
  StopHumanLoop goes through Stopping to Stopped and emits the same event with status Stopped.
- Events go through a persisted outbox: a failed PutEvents is retried until EventBridge accepts it
  (at-least-once, like A2I), so no completed review is lost to a transient EventBridge error.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from labelloop_local.emulators.common import (
    ACCOUNT_ID,
    AwsEndpoints,
    AwsError,
    JsonStore,
    iso,
    now,
    parse_iso,
    parse_s3_uri,
    schema_violation,
)
from labelloop_local.emulators.sagemaker import SageMakerService

LOG = logging.getLogger(__name__)

LOOP_NAME_PATTERN = r"^[a-z0-9](-*[a-z0-9])*$"
MAX_INPUT_CHARS = 3_145_728
MAX_BOXES = 50  # Custom Labels accepts at most 50 boxes per image: tell the reviewer now, not at training
EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
TERMINAL = {"Completed", "Failed", "Stopped"}
HEADER_BYTES = 65536


class SubmissionError(Exception):
    """A portal submission the service refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class A2IService:
    def __init__(
        self,
        data_dir: Path,
        region: str,
        sagemaker: SageMakerService,
        aws: AwsEndpoints,
        transition_seconds: float,
    ) -> None:
        self.region = region
        self.sagemaker = sagemaker
        self._aws = aws
        self._transition = timedelta(seconds=transition_seconds)
        self.store = JsonStore(data_dir / "a2i.json", lambda: {"loops": {}, "outbox": []})
        self._flush_lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    def _client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self._aws.client(service)
            return self._clients[service]

    # -- REST routing ---------------------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[str, Callable[..., dict[str, Any]], str | None]:
        """(operation name, handler, loop name in the path) for a `/human-loops` request."""
        parts = [part for part in path.split("/") if part]
        if parts == ["human-loops"] and method == "POST":
            return "StartHumanLoop", self.start_human_loop, None
        if parts == ["human-loops"] and method == "GET":
            return "ListHumanLoops", self.list_human_loops, None
        if parts == ["human-loops", "stop"] and method == "POST":
            return "StopHumanLoop", self.stop_human_loop, None
        if len(parts) == 2 and parts[0] == "human-loops" and method == "GET":
            return "DescribeHumanLoop", self.describe_human_loop, parts[1]
        if len(parts) == 2 and parts[0] == "human-loops" and method == "DELETE":
            return "DeleteHumanLoop", self.delete_human_loop, parts[1]
        raise AwsError("UnknownOperationException", f"No A2I operation for {method} {path}", 404)

    # -- runtime API ----------------------------------------------------------------------------
    def start_human_loop(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        name = _loop_name(body.get("HumanLoopName"))
        flow_arn = body.get("FlowDefinitionArn")
        flow = self.sagemaker.flow_by_arn(flow_arn) if isinstance(flow_arn, str) else None
        if flow is None or flow["arn"] != flow_arn:
            raise AwsError("ValidationException", f"Flow definition {flow_arn!r} does not exist")
        if flow["status"] != "Active":
            raise AwsError(
                "ValidationException", f"Flow definition {flow_arn} is {flow['status']}, not Active"
            )
        input_content = (body.get("HumanLoopInput") or {}).get("InputContent")
        parsed = _validated_input(input_content)
        with self.store.lock:
            existing = self.store.data["loops"].get(name)
            if existing is not None:
                if existing["input_content"] != input_content or existing["flow_arn"] != flow_arn:
                    raise AwsError(
                        "ConflictException",
                        f"A human loop named {name} already exists with a different input",
                        409,
                    )
                return {"HumanLoopArn": existing["arn"]}
            created = now()
            self.store.data["loops"][name] = {
                "name": name,
                "arn": f"arn:aws:sagemaker:{self.region}:{ACCOUNT_ID}:human-loop/{name}",
                "flow_arn": flow_arn,
                "flow_name": flow["name"],
                "output_path": flow["output_config"]["S3OutputPath"],
                "answer_element": self.sagemaker.answer_element(flow),
                "input_content": input_content,
                "task_object": parsed["taskObject"],
                "task_version": (parsed.get("image") or {}).get("versionId"),
                "task_count": int((flow.get("human_loop_config") or {}).get("TaskCount", 1)),
                "status": "InProgress",
                "created": created.isoformat(),
                "output_uri": _output_uri(flow["output_config"]["S3OutputPath"], flow["name"], created, name),
            }
            self.store.save()
            return {"HumanLoopArn": self.store.data["loops"][name]["arn"]}

    def describe_human_loop(self, body: dict[str, Any], query: dict[str, str], name: str) -> dict[str, Any]:
        loop = self._loop(_loop_name(name))
        response: dict[str, Any] = {
            "CreationTime": iso(parse_iso(loop["created"])),
            "HumanLoopStatus": loop["status"],
            "HumanLoopName": loop["name"],
            "HumanLoopArn": loop["arn"],
            "FlowDefinitionArn": loop["flow_arn"],
        }
        if loop["status"] == "Completed":
            response["HumanLoopOutput"] = {"OutputS3Uri": loop["output_uri"]}
        if loop.get("failure_reason"):
            response["FailureReason"] = loop["failure_reason"]
            response["FailureCode"] = loop.get("failure_code", "InternalError")
        return response

    def stop_human_loop(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        name = _loop_name(body.get("HumanLoopName"))
        with self.store.lock:
            loop = self._loop(name)
            if loop["status"] in ("Stopping", "Stopped"):
                return {}
            if loop["status"] != "InProgress":
                raise AwsError(
                    "ValidationException", f"Human loop {name} is {loop['status']} and cannot be stopped"
                )
            live = self.store.data["loops"][name]
            live["status"] = "Stopping"
            live["stopped_at"] = (now() + self._transition).isoformat()
            self.store.save()
        return {}

    def delete_human_loop(self, body: dict[str, Any], query: dict[str, str], name: str) -> dict[str, Any]:
        with self.store.lock:
            loop = self._loop(_loop_name(name))
            if loop["status"] not in TERMINAL:
                raise AwsError(
                    "ValidationException",
                    f"Human loop {name} is {loop['status']}; stop it before deleting it",
                )
            del self.store.data["loops"][loop["name"]]
            self.store.save()
        return {}

    def list_human_loops(self, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        flow_arn = query.get("FlowDefinitionArn")
        if not flow_arn:
            raise AwsError("ValidationException", "FlowDefinitionArn is required")
        if self.sagemaker.flow_by_arn(flow_arn) is None:
            raise AwsError("ResourceNotFoundException", f"Flow definition {flow_arn} does not exist", 404)
        after = _query_time(query, "CreationTimeAfter")
        before = _query_time(query, "CreationTimeBefore")
        with self.store.lock:
            loops = [
                dict(loop)
                for loop in self.store.data["loops"].values()
                if loop["flow_arn"] == flow_arn
                and (after is None or parse_iso(loop["created"]) > after)
                and (before is None or parse_iso(loop["created"]) < before)
            ]
        loops.sort(
            key=lambda loop: (loop["created"], loop["name"]), reverse=query.get("SortOrder") != "Ascending"
        )
        start, size = _page(query)
        page = loops[start : start + size]
        response: dict[str, Any] = {
            "HumanLoopSummaries": [
                {
                    "HumanLoopName": loop["name"],
                    "HumanLoopStatus": loop["status"],
                    "CreationTime": iso(parse_iso(loop["created"])),
                    "FlowDefinitionArn": loop["flow_arn"],
                    **({"FailureReason": loop["failure_reason"]} if loop.get("failure_reason") else {}),
                }
                for loop in page
            ]
        }
        if start + size < len(loops):
            response["NextToken"] = str(start + size)
        return response

    def _loop(self, name: str) -> dict[str, Any]:
        with self.store.lock:
            loop = self.store.data["loops"].get(name)
            if loop is None:
                raise AwsError("ResourceNotFoundException", f"Human loop {name} does not exist", 404)
            return dict(loop)

    # -- portal support ---------------------------------------------------------------------------
    def loops(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [dict(loop) for loop in self.store.data["loops"].values()]

    def find(self, name: str) -> dict[str, Any] | None:
        with self.store.lock:
            loop = self.store.data["loops"].get(name)
            return None if loop is None else dict(loop)

    def mark_accepted(self, name: str) -> None:
        """The first time a worker opens a task is A2I's `acceptanceTime`."""
        with self.store.lock:
            loop = self.store.data["loops"].get(name)
            if loop is not None and "accepted_at" not in loop and loop["status"] == "InProgress":
                loop["accepted_at"] = now().isoformat()
                self.store.save()

    def read_image(self, name: str) -> tuple[bytes, str]:
        """The task image's bytes and content type, read from S3 (the portal proxies it)."""
        loop = self.find(name)
        if loop is None:
            raise KeyError(name)
        response = self._client("s3").get_object(**_image_request(loop))
        return response["Body"].read(), str(response.get("ContentType") or "application/octet-stream")

    def image_size(self, name: str) -> tuple[int, int] | None:
        """(width, height) of the task image from its header (cached on the loop); None if unreadable."""
        loop = self.find(name)
        if loop is None:
            return None
        if loop.get("image_size"):
            return int(loop["image_size"][0]), int(loop["image_size"][1])
        size = self._probe_size(loop)
        if size is not None:
            with self.store.lock:
                live = self.store.data["loops"].get(name)
                if live is not None:
                    live["image_size"] = list(size)
                    self.store.save()
        return size

    def _probe_size(self, loop: dict[str, Any]) -> tuple[int, int] | None:
        from PIL import Image, UnidentifiedImageError

        request = _image_request(loop)
        try:
            s3 = self._client("s3")
            header = s3.get_object(**request, Range=f"bytes=0-{HEADER_BYTES - 1}")["Body"].read()
            try:
                with Image.open(io.BytesIO(header)) as image:
                    return int(image.width), int(image.height)
            except (UnidentifiedImageError, OSError, SyntaxError):
                # A JPEG whose size marker sits after a large EXIF block: read the whole object.
                whole = s3.get_object(**request)["Body"].read()
                with Image.open(io.BytesIO(whole)) as image:
                    return int(image.width), int(image.height)
        except Exception as error:  # the portal shows the task with a clear "image unavailable" note
            LOG.warning("cannot read the size of %s: %s", loop["task_object"], error)
            return None

    def submit(self, name: str, body: Any) -> dict[str, Any]:
        """Record a reviewer's boxes as A2I would: output.json, Completed, status-change event."""
        loop = self.find(name)
        if loop is None:
            raise SubmissionError(404, f"no human loop named {name!r}")
        if not isinstance(body, dict):
            raise SubmissionError(400, "the body must be a JSON object {boundingBoxes: [...], workerId}")
        worker_id = _worker_id(body.get("workerId"))
        if loop["status"] != "InProgress":
            return self._repeat_submission(loop, body, worker_id)
        size = self.image_size(name)
        if size is None:
            raise SubmissionError(
                409, f"the image {loop['task_object']} of loop {name} cannot be read from S3"
            )
        labels = _task_labels(loop)
        boxes = validated_boxes(body.get("boundingBoxes"), labels, size[0], size[1])
        submitted = now()
        with self.store.lock:
            live = self.store.data["loops"].get(name)
            if live is None or live["status"] != "InProgress":
                return self._repeat_submission(live or loop, body, worker_id)
            answers = live.setdefault("answers", [])
            mine = next((answer for answer in answers if answer["worker_id"] == worker_id), None)
            if mine is not None:
                if mine["boxes"] == boxes:
                    return _progress(live)
                raise SubmissionError(409, f"{worker_id} has already answered human loop {name}")
            accepted = live.get("accepted_at") or submitted.isoformat()
            answers.append(
                {
                    "worker_id": worker_id,
                    "boxes": boxes,
                    "accepted": accepted,
                    "submitted": submitted.isoformat(),
                }
            )
            if len(answers) < int(live.get("task_count", 1)):
                self.store.save()
                return _progress(live)
            document = _output_document(live, answers, size, self.region)
            problem = schema_violation("a2i-output", document)
            if problem is not None:
                raise SubmissionError(400, f"the review does not form a valid A2I output: {problem}")
            bucket, key = parse_s3_uri(live["output_uri"])
            self._client("s3").put_object(
                Bucket=bucket,
                Key=key,
                Body=json.dumps(document).encode("utf-8"),
                ContentType="application/json",
            )
            live.update(
                status="Completed",
                completed_at=submitted.isoformat(),
                answer=answers[0]["boxes"],
                worker_id=answers[0]["worker_id"],
            )
            self.store.data["outbox"].append(_status_event(live))
            self.store.save()
            output_uri = str(live["output_uri"])
        self.flush_events()
        return {"outputS3Uri": output_uri, "humanLoopStatus": "Completed"}

    def _repeat_submission(
        self, loop: dict[str, Any], body: dict[str, Any], worker_id: str
    ) -> dict[str, Any]:
        if loop["status"] == "Completed":
            try:
                size = tuple(loop.get("image_size") or (0, 0))
                boxes = validated_boxes(
                    body.get("boundingBoxes"), _task_labels(loop), int(size[0]), int(size[1])
                )
            except SubmissionError:
                boxes = None
            if boxes == loop.get("answer") and worker_id == loop.get("worker_id"):
                return {"outputS3Uri": loop["output_uri"], "humanLoopStatus": "Completed"}
            raise SubmissionError(409, f"human loop {loop['name']} is already Completed with another answer")
        raise SubmissionError(409, f"human loop {loop['name']} is {loop['status']} and takes no more answers")

    # -- events ---------------------------------------------------------------------------------
    def flush_events(self) -> None:
        """Send pending status-change events; entries EventBridge refuses stay for the next tick."""
        with self._flush_lock:
            with self.store.lock:
                pending = list(self.store.data["outbox"])
            if not pending:
                return
            sent: list[dict[str, Any]] = []
            for start in range(0, len(pending), 10):
                batch = pending[start : start + 10]
                try:
                    response = self._client("events").put_events(Entries=[_entry(item) for item in batch])
                except Exception as error:
                    LOG.warning("PutEvents of %d A2I status events failed, will retry: %s", len(batch), error)
                    break
                results = response.get("Entries", [])
                sent.extend(item for item, result in zip(batch, results, strict=False) if "EventId" in result)
            with self.store.lock:
                self.store.data["outbox"] = [item for item in self.store.data["outbox"] if item not in sent]
                self.store.save()

    def tick(self) -> None:
        """Finish stops that are due (emitting their event) and retry pending events."""
        with self.store.lock:
            changed = False
            for loop in self.store.data["loops"].values():
                if loop["status"] == "Stopping" and parse_iso(loop["stopped_at"]) <= now():
                    loop["status"] = "Stopped"
                    self.store.data["outbox"].append(_status_event(loop))
                    changed = True
            if changed:
                self.store.save()
            has_pending = bool(self.store.data["outbox"])
        if has_pending:
            self.flush_events()


def _image_request(loop: dict[str, Any]) -> dict[str, str]:
    """GetObject arguments for the task image: the exact version the model saw, when known."""
    bucket, key = parse_s3_uri(loop["task_object"])
    request = {"Bucket": bucket, "Key": key}
    if loop.get("task_version") and loop["task_version"] != "null":
        request["VersionId"] = loop["task_version"]
    return request


def _loop_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 63 or not re.fullmatch(LOOP_NAME_PATTERN, value):
        raise AwsError(
            "ValidationException",
            f"HumanLoopName {value!r} must be 1-63 characters matching {LOOP_NAME_PATTERN}",
        )
    return value


def _validated_input(input_content: Any) -> dict[str, Any]:
    if not isinstance(input_content, str):
        raise AwsError("ValidationException", "HumanLoopInput.InputContent is required and must be a string")
    if len(input_content) > MAX_INPUT_CHARS:
        raise AwsError(
            "ValidationException",
            f"InputContent has {len(input_content)} characters, more than {MAX_INPUT_CHARS}",
        )
    try:
        parsed = json.loads(input_content)
    except ValueError as error:
        raise AwsError("ValidationException", f"InputContent is not valid JSON: {error}") from error
    if not isinstance(parsed, dict):
        raise AwsError("ValidationException", "InputContent must be a JSON object")
    problem = schema_violation("a2i-input-content", parsed)
    if problem is not None:
        raise AwsError("ValidationException", f"InputContent does not match the task's input: {problem}")
    # The bounding-box task UI needs these to render; check them even without the project schemas.
    task_object = parsed.get("taskObject")
    if not isinstance(task_object, str) or not task_object.startswith("s3://"):
        raise AwsError("ValidationException", "InputContent.taskObject must be the s3:// URI of the image")
    labels = parsed.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise AwsError("ValidationException", "InputContent.labels must be a non-empty list of label names")
    return parsed


def _output_uri(output_path: str, flow_name: str, created: datetime, loop_name: str) -> str:
    stamp = created.strftime("%Y/%m/%d/%H/%M/%S")
    return f"{output_path.rstrip('/')}/{flow_name}/{stamp}/{loop_name}/output.json"


def _query_time(query: dict[str, str], name: str) -> datetime | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError as error:
        raise AwsError("ValidationException", f"{name} {value!r} is not an ISO 8601 timestamp") from error


def _page(query: dict[str, str]) -> tuple[int, int]:
    token = query.get("NextToken") or "0"
    size_text = query.get("MaxResults") or "100"
    if not token.isdigit():
        raise AwsError("ValidationException", f"NextToken {token!r} is not valid")
    if not size_text.isdigit() or not 1 <= int(size_text) <= 100:
        raise AwsError("ValidationException", f"MaxResults must be 1-100, got {size_text!r}")
    return int(token), int(size_text)


def _task_labels(loop: dict[str, Any]) -> list[str]:
    return [str(label) for label in json.loads(loop["input_content"]).get("labels", [])]


def _worker_id(value: Any) -> str:
    if value is None:
        return "local-reviewer"
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", value):
        raise SubmissionError(400, "workerId must be 1-64 characters of letters, digits, _ . @ -")
    return value


def validated_boxes(raw: Any, labels: list[str], width: int, height: int) -> list[dict[str, Any]]:
    """Boxes in whole image pixels, or SubmissionError(400) naming the first bad box and why (the same
    checks as the built-in backend's review API)."""
    from labelloop_core.review_tasks import InvalidAnswer, validate_boxes

    try:
        return validate_boxes(raw, labels, width, height)
    except InvalidAnswer as invalid:
        raise SubmissionError(400, str(invalid)) from None


def _progress(loop: dict[str, Any]) -> dict[str, Any]:
    """A submission that does not complete the loop yet (it waits for more workers)."""
    return {
        "outputS3Uri": loop["output_uri"],
        "humanLoopStatus": loop["status"],
        "answers": len(loop.get("answers", [])),
        "answersNeeded": int(loop.get("task_count", 1)),
    }


def _output_document(
    loop: dict[str, Any], answers: list[dict[str, Any]], size: tuple[int, int], region: str
) -> dict[str, Any]:
    pool = f"{region}_labelloop"
    human_answers = []
    for answer in answers:
        accepted, submitted = parse_iso(answer["accepted"]), parse_iso(answer["submitted"])
        human_answers.append(
            {
                "acceptanceTime": iso(accepted),
                "answerContent": {
                    loop["answer_element"]: {
                        "boundingBoxes": answer["boxes"],
                        "inputImageProperties": {"height": size[1], "width": size[0]},
                    }
                },
                "submissionTime": iso(submitted),
                "timeSpentInSeconds": round(max(0.0, (submitted - accepted).total_seconds()), 3),
                "workerId": answer["worker_id"],
                "workerMetadata": {
                    "identityData": {
                        "identityProviderType": "Cognito",
                        "issuer": f"https://cognito-idp.{region}.amazonaws.com/{pool}",
                        "sub": str(
                            uuid.uuid5(uuid.NAMESPACE_URL, f"labelloop-local-worker:{answer['worker_id']}")
                        ),
                    }
                },
            }
        )
    return {
        "flowDefinitionArn": loop["flow_arn"],
        "humanAnswers": human_answers,
        "humanLoopName": loop["name"],
        "inputContent": json.loads(loop["input_content"]),
    }


def _status_event(loop: dict[str, Any]) -> dict[str, Any]:
    detail = {
        "creationTime": iso(parse_iso(loop["created"])),
        "failureCode": loop.get("failure_code"),
        "failureReason": loop.get("failure_reason"),
        "flowDefinitionArn": loop["flow_arn"],
        "humanLoopArn": loop["arn"],
        "humanLoopName": loop["name"],
        "humanLoopOutput": {"outputS3Uri": loop["output_uri"]},
        "humanLoopStatus": loop["status"],
    }
    return {"resources": [loop["arn"]], "detail": detail, "time": now().isoformat(), "id": str(uuid.uuid4())}


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Resources": item["resources"],
        "Detail": json.dumps(item["detail"]),
        "Time": parse_iso(item["time"]),
    }
