"""CloudFormation custom resource `Custom::A2IResources`: the A2I human task UI and flow definition.

CloudFormation has no resource types for them, so this use case creates, replaces and deletes them
with the stack, and ALWAYS answers CloudFormation (a custom resource that never answers leaves the
stack hanging for an hour):
- Create: task UI from the shipped liquid template, then the flow definition, polled until Active.
- Update: the same as Create with the new properties. Physical names carry a hash of the
  properties, so changed properties give new resources and a new PhysicalResourceId, and
  CloudFormation deletes the old ones during cleanup; unchanged properties find the existing ones.
- Delete: flow definition first (it references the UI), then the task UI; not-found is success.
  A flow definition still in use (human loops started on it run, e.g. after a replacement) is retried
  until shortly before the deadline, then left in place and reported (log + `A2IResourcesRetained`
  metric): the loops still complete, since AppendLabels accepts every flow definition of this stack by
  name prefix, and a stack update or delete never fails for it (README: how to delete it later).
- Labels: the A2I `crowd-bounding-box` element offers at most 10 labels, so more is refused with a
  clear reason at deploy time (the built-in review backend has no such limit).
Errors become a FAILED answer with the reason; `labelloop_core.cfn_response` makes sure
CloudFormation always hears back in time.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from labelloop_core import observability
from labelloop_core.adapters.sagemaker import (
    FLOW_ACTIVE,
    FLOW_FAILED,
    FlowDefinitionInUse,
    FlowDefinitionSpec,
    SageMakerA2I,
)
from labelloop_core.cfn_response import Answer, Deadline, RunOptions, answer_request
from labelloop_core.errors import LabelloopError
from labelloop_core.inbound.custom_resource import CustomResourceRequest

MAX_NAME_LENGTH = 63
HASH_LENGTH = 8
MAX_UI_LABELS = 10  # crowd-bounding-box `labels`: at most 10
IN_USE_RETRIES = 5  # polls to wait for a flow definition whose last loops are ending
_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9]+")
_PHYSICAL_ID = re.compile(r"^a2i:([a-z0-9](?:-*[a-z0-9])*)/([a-z0-9](?:-*[a-z0-9])*)$")
_WORKTEAM_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:workteam/private-crowd/[\w.-]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
_S3_PATH = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class InvalidProperties(LabelloopError):
    """A ResourceProperties value is missing or outside what SageMaker accepts."""


class SetupFailed(LabelloopError):
    """SageMaker refused or did not finish creating or deleting a resource in time."""


@dataclass(frozen=True)
class A2IProperties:
    """The ResourceProperties of Custom::A2IResources, parsed (CloudFormation sends strings)."""

    human_task_ui_name: str
    flow_definition_name: str
    workteam_arn: str
    role_arn: str
    s3_output_path: str
    task_title: str
    task_description: str
    task_count: int
    task_time_limit_seconds: int
    task_availability_lifetime_seconds: int
    task_ui_sha256: str
    labels: tuple[str, ...]
    fingerprint: str = field(compare=False)

    @classmethod
    def parse(cls, properties: Mapping[str, Any]) -> A2IProperties:
        reader = _PropertyReader(properties)
        parsed = cls(
            human_task_ui_name=reader.base_name("HumanTaskUiName"),
            flow_definition_name=reader.base_name("FlowDefinitionName"),
            workteam_arn=reader.matching("WorkteamArn", _WORKTEAM_ARN, "a private workteam ARN"),
            role_arn=reader.matching("RoleArn", _ROLE_ARN, "an IAM role ARN"),
            s3_output_path=reader.matching("S3OutputPath", _S3_PATH, "an s3://bucket/prefix path"),
            task_title=reader.text("TaskTitle", 1, 128),
            task_description=reader.text("TaskDescription", 1, 255),
            task_count=reader.integer("TaskCount", 1, 3),
            task_time_limit_seconds=reader.integer("TaskTimeLimitInSeconds", 30, 28_800),
            task_availability_lifetime_seconds=reader.integer(
                "TaskAvailabilityLifetimeInSeconds", 60, 864_000
            ),
            task_ui_sha256=reader.matching("TaskUiTemplateSha256", _SHA256, "a hex SHA-256"),
            labels=reader.labels("Labels"),
            fingerprint=properties_fingerprint(properties),
        )
        return parsed

    @property
    def flow_name(self) -> str:
        """Physical flow definition name: the requested name made valid, plus the properties hash."""
        return physical_name(self.flow_definition_name, self.fingerprint)

    @property
    def ui_name(self) -> str:
        return physical_name(self.human_task_ui_name, self.fingerprint)

    @property
    def physical_id(self) -> str:
        return format_physical_id(self.flow_name, self.ui_name)

    @property
    def flow_name_prefix(self) -> str:
        """What the name of every flow definition this stack creates starts with (whatever the hash)."""
        return name_prefix(self.flow_definition_name)


class _PropertyReader:
    def __init__(self, properties: Mapping[str, Any]) -> None:
        self._properties = properties

    def _raw(self, key: str) -> str:
        value = self._properties.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidProperties(f"ResourceProperties.{key} is required")
        if isinstance(value, dict | list | bool):
            raise InvalidProperties(f"ResourceProperties.{key} must be a string or number, got {value!r}")
        return str(value).strip()

    def text(self, key: str, min_length: int, max_length: int) -> str:
        value = self._raw(key)
        if not min_length <= len(value) <= max_length:
            raise InvalidProperties(
                f"ResourceProperties.{key} must have {min_length}-{max_length} characters"
            )
        return value

    def matching(self, key: str, pattern: re.Pattern[str], what: str) -> str:
        value = self._raw(key)
        if not pattern.match(value):
            raise InvalidProperties(f"ResourceProperties.{key} must be {what}, got {value!r}")
        return value

    def base_name(self, key: str) -> str:
        """A requested name that the physical names keep verbatim (plus `-<hash>`): the function's IAM
        policy allows `<StackName>-flow-*` and `<StackName>-ui-*`, and IAM cannot lower-case."""
        value = self.text(key, 1, 128)
        if name_prefix(value) != value + "-":
            raise InvalidProperties(
                f"ResourceProperties.{key} {value!r} must be lower-case letters, digits and dashes, at most "
                f"{MAX_NAME_LENGTH - HASH_LENGTH - 1} characters: SageMaker names are [a-z0-9-], and the "
                "custom resource may only manage names that start with the stack name (use a lower-case "
                "stack name of at most 49 characters for the A2I review backend)"
            )
        return value

    def labels(self, key: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in self._raw(key).split(",") if part.strip())
        if len(names) > MAX_UI_LABELS:
            raise InvalidProperties(
                f"Labels has {len(names)} names, but the A2I worker UI (crowd-bounding-box) offers at most "
                f"{MAX_UI_LABELS}: use the built-in review backend, or at most {MAX_UI_LABELS} labels"
            )
        return names

    def integer(self, key: str, minimum: int, maximum: int) -> int:
        raw = self._raw(key)
        try:
            value = int(raw)
        except ValueError:
            raise InvalidProperties(f"ResourceProperties.{key} must be an integer, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise InvalidProperties(
                f"ResourceProperties.{key} must be between {minimum} and {maximum}, got {value}"
            )
        return value


# Properties that do not change the task UI or the flow definition: a change must not replace them.
# (A new function is a new ServiceToken; labels reach the task UI with each loop's input.)
_UNHASHED_PROPERTIES = frozenset({"ServiceToken", "Labels"})


def properties_fingerprint(properties: Mapping[str, Any]) -> str:
    """Short hash of every property that defines the resources (see _UNHASHED_PROPERTIES)."""
    relevant = {key: value for key, value in properties.items() if key not in _UNHASHED_PROPERTIES}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def name_prefix(requested: str) -> str:
    """What every physical name made from `requested` starts with: `requested` lowered to [a-z0-9-],
    shortened to leave room for the hash, and a dash."""
    base = _INVALID_NAME_CHARS.sub("-", requested.lower()).strip("-")
    return (base[: MAX_NAME_LENGTH - HASH_LENGTH - 1].rstrip("-") or "labelloop") + "-"


def physical_name(requested: str, fingerprint: str) -> str:
    """`name_prefix(requested)` + the properties hash: ≤63 characters, SageMaker's name pattern."""
    return name_prefix(requested) + fingerprint


def format_physical_id(flow_name: str, ui_name: str) -> str:
    return f"a2i:{flow_name}/{ui_name}"


def parse_physical_id(physical_id: str | None) -> tuple[str, str] | None:
    """(flow name, task UI name), or None for an id this resource never created anything under."""
    match = _PHYSICAL_ID.match(physical_id or "")
    return (match.group(1), match.group(2)) if match else None


class A2ISetup:
    """Creates and deletes the task UI and flow definition."""

    def __init__(
        self,
        sagemaker: SageMakerA2I,
        template: str,
        deadline: Deadline,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sagemaker = sagemaker
        self._template = template
        self._deadline = deadline
        self._poll_seconds = poll_seconds
        self._sleep = sleep

    def create(self, properties: A2IProperties) -> Answer:
        """Create (or find) both resources; SetupFailed when the flow definition does not become Active."""
        self._check_template(properties)
        ui_arn = self._sagemaker.create_human_task_ui(properties.ui_name, self._template)
        observability.logger().info("human task UI ready", extra={"human_task_ui": properties.ui_name})
        flow_arn = self._sagemaker.create_flow_definition(
            FlowDefinitionSpec(
                name=properties.flow_name,
                role_arn=properties.role_arn,
                workteam_arn=properties.workteam_arn,
                human_task_ui_arn=ui_arn,
                task_title=properties.task_title,
                task_description=properties.task_description,
                task_count=properties.task_count,
                task_time_limit_seconds=properties.task_time_limit_seconds,
                task_availability_lifetime_seconds=properties.task_availability_lifetime_seconds,
                s3_output_path=properties.s3_output_path,
            )
        )
        self._wait_until_active(properties.flow_name)
        return Answer(
            physical_id=properties.physical_id,
            data={
                "FlowDefinitionArn": flow_arn,
                # Loops started on a replaced flow definition complete under its ARN: consumers accept
                # every flow definition of this stack by this prefix.
                "FlowDefinitionArnPrefix": flow_arn.rsplit("/", 1)[0] + "/" + properties.flow_name_prefix,
                "FlowDefinitionName": properties.flow_name,
                "HumanTaskUiArn": ui_arn,
                "HumanTaskUiName": properties.ui_name,
            },
        )

    def delete(self, physical_id: str | None) -> None:
        """Delete both resources named by `physical_id`; ids this resource never used need nothing."""
        names = parse_physical_id(physical_id)
        if names is None:
            observability.logger().info(
                "nothing to delete for this physical id", extra={"physical_id": physical_id}
            )
            return
        flow_name, ui_name = names
        try:
            deleted = self._delete_flow_definition(flow_name)
        except FlowDefinitionInUse as in_use:
            # Never a failed stack update: the loops still running on it complete (AppendLabels
            # accepts this stack's flow definitions by prefix); it can be deleted once they are done.
            observability.logger().warning(
                "flow definition still in use: left in place with its task UI, delete it later",
                extra={"flow_definition": flow_name, "human_task_ui": ui_name, "reason": str(in_use)},
            )
            observability.count("A2IResourcesRetained")
            return
        if deleted:
            self._wait_until_gone(flow_name)
        self._sagemaker.delete_human_task_ui(ui_name)
        observability.logger().info(
            "A2I resources deleted", extra={"flow_definition": flow_name, "human_task_ui": ui_name}
        )

    def _delete_flow_definition(self, flow_name: str) -> bool:
        """Delete, retrying a few polls while in use (loops that are just ending); FlowDefinitionInUse
        then: loops can run for days, and CloudFormation must hear back in time."""
        for _ in range(IN_USE_RETRIES):
            try:
                return self._sagemaker.delete_flow_definition(flow_name)
            except FlowDefinitionInUse:
                if not self._pause():
                    break
        return self._sagemaker.delete_flow_definition(flow_name)

    def _check_template(self, properties: A2IProperties) -> None:
        actual = hashlib.sha256(self._template.encode("utf-8")).hexdigest()
        if actual != properties.task_ui_sha256:
            raise InvalidProperties(
                f"TaskUiTemplateSha256 {properties.task_ui_sha256} does not match the shipped task UI "
                f"template ({actual}): update it in template.yaml so template edits reach the deployed UI"
            )

    def _wait_until_active(self, flow_name: str) -> None:
        while True:
            state = self._sagemaker.describe_flow_definition(flow_name)
            if state is not None and state.status == FLOW_ACTIVE:
                return
            if state is not None and state.status == FLOW_FAILED:
                raise SetupFailed(
                    f"flow definition {flow_name} failed: {state.failure_reason or 'no reason given'}"
                )
            status = state.status if state else "not visible yet"
            if not self._pause():
                raise SetupFailed(
                    f"timed out waiting for flow definition {flow_name} to become Active ({status})"
                )

    def _wait_until_gone(self, flow_name: str) -> None:
        while self._sagemaker.describe_flow_definition(flow_name) is not None:
            if not self._pause():
                observability.logger().warning("flow definition still deleting; deleting the task UI anyway")
                return

    def _pause(self) -> bool:
        """Sleep one poll interval if the deadline allows; False when time is up."""
        left = self._deadline.seconds_left()
        if left <= 0:
            return False
        self._sleep(min(self._poll_seconds, left))
        return True


@dataclass(frozen=True)
class A2ISetupSettings:
    """The custom resource reads everything from the request's ResourceProperties."""


@dataclass(frozen=True)
class CustomResourceOutcome:
    body: Mapping[str, Any]  # what was sent to ResponseURL

    def to_dict(self) -> dict[str, Any]:
        return {"Status": self.body["Status"], "PhysicalResourceId": self.body["PhysicalResourceId"]}


class A2ISetupService:
    settings_type: ClassVar[type[A2ISetupSettings]] = A2ISetupSettings

    def __init__(
        self, sagemaker: SageMakerA2I, template: str | None = None, options: RunOptions | None = None
    ) -> None:
        self.sagemaker = sagemaker
        self.template = template
        self.options = options or RunOptions()

    @classmethod
    def from_settings(cls, settings: A2ISetupSettings) -> A2ISetupService:
        return cls(SageMakerA2I())

    def handle(self, request: CustomResourceRequest) -> CustomResourceOutcome:
        return CustomResourceOutcome(
            handle_request(request.event, request.remaining_ms, self.sagemaker, self.template, self.options)
        )


def handle_request(
    event: Mapping[str, Any],
    remaining_ms: Callable[[], int],
    sagemaker: SageMakerA2I | None = None,
    template: str | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Process one CloudFormation request and answer it; returns the body sent to ResponseURL."""
    from labelloop_core.schemas import validate

    options = options or RunOptions()
    if not isinstance(event, Mapping) or not isinstance(event.get("ResponseURL"), str):
        raise InvalidProperties("not a CloudFormation custom resource request: no ResponseURL to answer")

    def work(deadline: Deadline) -> Answer:
        validate("cfn-custom-resource-request", dict(event))
        setup = A2ISetup(
            sagemaker or SageMakerA2I(),
            template if template is not None else _shipped_template(),
            deadline,
            poll_seconds=options.poll_seconds,
            sleep=options.sleep,
        )
        return _dispatch(event, setup)

    return answer_request(event, remaining_ms, work, _fallback_physical_id(event), options)


def _dispatch(event: Mapping[str, Any], setup: A2ISetup) -> Answer:
    request_type = event["RequestType"]
    if request_type != "Create" and not event.get("PhysicalResourceId"):
        raise InvalidProperties(f"a {request_type} request needs the PhysicalResourceId of the resource")
    if request_type == "Delete":
        setup.delete(event.get("PhysicalResourceId"))
        return Answer(physical_id=str(event.get("PhysicalResourceId")), data={})
    properties = A2IProperties.parse(event["ResourceProperties"])
    try:
        return setup.create(properties)
    except Exception:
        if request_type == "Update" and properties.physical_id != event.get("PhysicalResourceId"):
            # A FAILED update keeps the old id, so nothing else would remove what was created here.
            _discard(setup, properties.physical_id)
        raise


def _discard(setup: A2ISetup, physical_id: str) -> None:
    try:
        setup.delete(physical_id)
    except Exception:
        observability.logger().exception(
            "could not remove the resources of the failed update", extra={"physical_id": physical_id}
        )


def _fallback_physical_id(event: Mapping[str, Any]) -> str:
    """Physical id for a FAILED answer: keep the existing one, else the names Create would have used."""
    existing = event.get("PhysicalResourceId")
    if isinstance(existing, str) and existing:
        return existing
    try:
        # Rollback then sends Delete with this id, which removes anything created before the failure.
        properties = event.get("ResourceProperties")
        return A2IProperties.parse(properties if isinstance(properties, Mapping) else {}).physical_id
    except InvalidProperties:
        return f"a2i-not-created-{event.get('RequestId', 'unknown')}"


def _shipped_template() -> str:
    from labelloop_core.task_ui import task_ui_template

    return task_ui_template()
