"""`labelloop status --stack NAME`: where the loop of a deployed stack stands, in one screen.

The model (its status, inference units, whether Detect consumes), images waiting in the DetectQueue,
reviews open, labels since the last training, the last trainings and promotions with their F1, and
this month's running hours, inference-unit hours and estimated cost (the running intervals the model
controller records, times the `InferenceUnitHourPrice` parameter), plus the dead letters.

Everything is read, nothing is changed: CloudFormation `ListStackResources` (the stack's names),
Lambda `GetFunctionConfiguration` (the model controller's and Retrain's settings, as deployed) and
`GetEventSourceMapping`, SQS `GetQueueAttributes`, DynamoDB `GetItem`, `Query` (the running
intervals) and `Scan` (open reviews: it reads the whole ledger, about $0.03 per million items), SSM
`GetParameter` and Rekognition `DescribeProjects`/`DescribeProjectVersions`. The same code reads the
local stack (`labelloop local status`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelloop_local.cli import add_command

RECENT_TRAININGS = 5


@dataclass
class Training:
    version: str
    status: str
    f1: float | None
    decision: str | None = None  # PROMOTED | REJECTED (the ledger's record), None while undecided
    compared_f1: float | None = None
    reason: str | None = None
    decided_at: str | None = None


@dataclass
class Status:
    stack: str
    model_arn: str | None
    model_status: str
    min_units: int | None
    max_units: int | None
    consuming: str
    images_waiting: int
    in_flight: int
    delayed: int
    reviews_open: int
    labels_pending: int
    min_new_labels: int | None
    idle_minutes: float
    last_decision: Mapping[str, Any]
    last_detection_at: str | None
    month: str
    running_hours: float
    inference_unit_hours: float
    max_inference_unit_hours: float
    model_starts: int
    price_per_unit_hour: float
    estimated_cost: float
    trainings: list[Training] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StatusError(Exception):
    """The status cannot be read; the message names the cause."""


def read_status(stack: str, clients: Any = None, now: datetime | None = None) -> Status:
    """Everything `labelloop status` prints, read from the deployed stack `stack`."""
    from labelloop_core.adapters.custom_labels import CustomLabelsProject
    from labelloop_core.adapters.ledger import ModelLedger, TrainingLedger
    from labelloop_core.adapters.models import SsmModelRegistry
    from labelloop_core.adapters.queues import SqsQueue
    from labelloop_core.config import settings_from_env
    from labelloop_core.model_control import month_of, usage
    from labelloop_core.services.model_controller import ModelControllerSettings

    clients = clients or _Clients.default()
    now = now or datetime.now(UTC)
    resources = _resources(clients.cloudformation, stack)
    controller = _environment(clients.lambda_, resources, "ModelControllerFunction", stack)
    settings = settings_from_env(ModelControllerSettings, controller)
    retrain = _environment(clients.lambda_, resources, "RetrainFunction", stack, required=False)
    custom_labels = CustomLabelsProject(settings.project_arn, client=clients.rekognition)
    registry = SsmModelRegistry(settings.active_model_parameter, cache_seconds=0, client=clients.ssm)
    active = registry.active_model_arn()
    version = custom_labels.status_of(active) if active else None
    model_status = "NO_MODEL" if active is None else (version.status if version else "MISSING")
    mapping = clients.lambda_.get_event_source_mapping(UUID=settings.event_source_mapping)
    depth = SqsQueue(settings.detect_queue_url, clients.sqs).depth()
    model_ledger = ModelLedger(settings.ledger_table, clients.dynamodb)
    training_ledger = TrainingLedger(settings.ledger_table, clients.dynamodb)
    control = model_ledger.read_control()
    start, end = month_of(now)
    used = usage(model_ledger.runs(), start, min(end, now))
    min_new = retrain.get("MIN_NEW_LABELS")
    trainings = []
    for name, recent in _recent_versions(clients.rekognition, settings.project_arn).items():
        decision = training_ledger.read_decision(name)
        trainings.append(
            Training(
                version=name,
                status=recent["Status"],
                f1=(recent.get("EvaluationResult") or {}).get("F1Score"),
                decision=decision.decision if decision else None,
                compared_f1=decision.compared_f1 if decision else None,
                reason=decision.reason if decision else None,
                decided_at=decision.decided_at if decision else None,
            )
        )
    return Status(
        stack=stack,
        model_arn=active,
        model_status=model_status,
        min_units=version.min_units if version else None,
        max_units=version.max_units if version else None,
        consuming=str(mapping.get("State", "")),
        images_waiting=depth.visible,
        in_flight=depth.in_flight,
        delayed=depth.delayed,
        reviews_open=_open_reviews(clients.dynamodb, settings.ledger_table),
        labels_pending=training_ledger.pending_count(),
        min_new_labels=int(min_new) if min_new else None,
        idle_minutes=settings.model_idle_minutes,
        last_decision=dict(control.last_decision),
        last_detection_at=control.last_detection_at,
        month=start.strftime("%Y-%m"),
        running_hours=used.running_hours,
        inference_unit_hours=used.inference_unit_hours,
        max_inference_unit_hours=used.max_inference_unit_hours,
        model_starts=used.starts,
        price_per_unit_hour=settings.inference_unit_hour_price,
        estimated_cost=used.cost(settings.inference_unit_hour_price),
        trainings=trainings,
        dead_letters=_dead_letters(clients.sqs, resources),
    )


@dataclass(frozen=True)
class _Clients:
    cloudformation: Any
    lambda_: Any
    sqs: Any
    dynamodb: Any
    ssm: Any
    rekognition: Any

    @classmethod
    def default(cls) -> _Clients:
        import boto3

        names = ("cloudformation", "lambda", "sqs", "dynamodb", "ssm", "rekognition")
        return cls(*(boto3.client(name) for name in names))


def _resources(cloudformation: Any, stack: str) -> dict[str, tuple[str, str]]:
    """Logical id -> (physical id, type) of every resource of the stack."""
    found = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
        for resource in page["StackResourceSummaries"]:
            found[resource["LogicalResourceId"]] = (
                str(resource.get("PhysicalResourceId", "")),
                str(resource["ResourceType"]),
            )
    return found


def _environment(
    lambda_: Any, resources: Mapping[str, tuple[str, str]], function: str, stack: str, required: bool = True
) -> dict[str, str]:
    if function not in resources:
        if not required:
            return {}
        raise StatusError(
            f"stack {stack} has no {function}: is it a labelloop stack with inference on demand?"
        )
    configuration = lambda_.get_function_configuration(FunctionName=resources[function][0])
    return dict((configuration.get("Environment") or {}).get("Variables") or {})


def _recent_versions(rekognition: Any, project_arn: str) -> dict[str, dict[str, Any]]:
    """The newest project versions (DescribeProjectVersions lists newest first)."""
    response = rekognition.describe_project_versions(ProjectArn=project_arn, MaxResults=RECENT_TRAININGS)
    found = {}
    for description in response.get("ProjectVersionDescriptions", []):
        name = str(description["ProjectVersionArn"]).split("/version/", 1)[1].rsplit("/", 1)[0]
        found[name] = description
    return found


def _open_reviews(dynamodb: Any, table: str) -> int:
    """Reviews opened and not finished: LOOP# items still IN_PROGRESS (a Scan of the ledger)."""
    request: dict[str, Any] = {
        "TableName": table,
        "Select": "COUNT",
        "FilterExpression": "begins_with(pk, :loop) AND #status = :open",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":loop": {"S": "LOOP#"}, ":open": {"S": "IN_PROGRESS"}},
    }
    count = 0
    while True:
        response = dynamodb.scan(**request)
        count += int(response.get("Count", 0))
        if not response.get("LastEvaluatedKey"):
            return count
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _dead_letters(sqs: Any, resources: Mapping[str, tuple[str, str]]) -> dict[str, int]:
    counts = {}
    for logical_id, (url, kind) in sorted(resources.items()):
        if kind != "AWS::SQS::Queue" or not logical_id.endswith("DeadLetterQueue"):
            continue
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        counts[logical_id] = int(attributes["Attributes"].get("ApproximateNumberOfMessages", 0))
    return counts


# -- text -------------------------------------------------------------------------------------------


def status_text(status: Status) -> str:
    from labelloop_core.evaluation import format_f1

    units = ""
    if status.min_units:
        units = f", {status.min_units} inference unit(s)"
        if status.max_units:
            units += f", auto-scaling to {status.max_units}"
    idle = (
        "always on (ModelIdleMinutes 0)"
        if status.idle_minutes <= 0
        else f"stops after {status.idle_minutes:g} min without work"
    )
    decision = status.last_decision
    lines = [
        f"labelloop status — stack {status.stack}",
        f"  model             {status.model_status}{units}  ({idle})",
        f"                    {status.model_arn or 'none yet: every image goes to review'}",
        f"  detection         event source mapping {status.consuming or '?'}"
        + (" (images wait while the model is not running)" if status.consuming != "Enabled" else ""),
        f"  images waiting    {status.images_waiting} "
        f"(in flight {status.in_flight}, delayed {status.delayed})",
        f"  reviews open      {status.reviews_open}",
        f"  new labels        {status.labels_pending} since the last training"
        + (f" (a training starts at {status.min_new_labels})" if status.min_new_labels else ""),
    ]
    if decision:
        lines.append(
            f"  last decision     {decision.get('action')} at {decision.get('at')}: {decision.get('reason')}"
        )
    lines.append(f"  last detection    {status.last_detection_at or 'never'}")
    cost = f"≈ ${status.estimated_cost:,.2f} at ${status.price_per_unit_hour:g} per inference-unit hour"
    if status.max_inference_unit_hours > status.inference_unit_hours:
        cost += (
            f" (up to ${status.max_inference_unit_hours * status.price_per_unit_hour:,.2f} with auto-scaling)"
        )
    lines += [
        f"  this month        {status.month}: model running {status.running_hours:.2f} h "
        f"({status.model_starts} start(s)), {status.inference_unit_hours:.2f} inference-unit hours",
        f"                    {cost}",
        "  trainings         " + ("none yet" if not status.trainings else ""),
    ]
    for training in status.trainings:
        verdict = training.decision or "undecided"
        compared = f" vs {format_f1(training.compared_f1)}" if training.compared_f1 is not None else ""
        lines.append(
            f"    {training.version:34} {training.status:20} F1 {format_f1(training.f1)}  {verdict}{compared}"
        )
    waiting = {queue: count for queue, count in status.dead_letters.items() if count}
    lines.append(
        "  dead letters      "
        + (", ".join(f"{queue} {count}" for queue, count in waiting.items()) if waiting else "0")
    )
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "status", "where the loop of a deployed stack stands", __doc__)
    add_arguments(parser, stack_argument=True)


def add_arguments(parser: argparse.ArgumentParser, stack_argument: bool, wrap: Any = None) -> None:
    if stack_argument:
        parser.add_argument("--stack", required=True, help="name of the deployed labelloop stack")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(func=wrap(_status) if wrap else _status)


def _status(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    from labelloop_core.config import ConfigError

    try:
        status = read_status(args.stack)
    except StatusError as error:
        message = str(error)
    except NoCredentialsError:
        message = (
            "no AWS credentials (configure a profile, or apply the export lines of `labelloop local up`)"
        )
    except NoRegionError:
        message = "no AWS region (set AWS_REGION or a profile's region)"
    except ConfigError as error:
        message = f"the model controller's configuration: {error}"
    except ClientError as error:
        detail = error.response.get("Error", {})
        message = f"stack {args.stack}: {detail.get('Code', '')}: {detail.get('Message', error)}"
    except BotoCoreError as error:
        message = " ".join(str(error).split())
    else:
        local_stack = getattr(args, "local_stack", None)  # set by `labelloop local status`
        if args.json:
            document = {**status.as_dict(), **({"local_stack": local_stack} if local_stack else {})}
            print(json.dumps(document, default=str))
        else:
            lines = [f"{name.replace('_', ' '):15} {value}" for name, value in (local_stack or {}).items()]
            print("\n".join([*lines, status_text(status)]))
        return 0
    print(f"status failed: {message}", file=sys.stderr)
    return 1
