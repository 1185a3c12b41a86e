"""The local stack: moto server + local Rekognition/A2I services + in-process rule delivery, the
template's HTTP APIs in front of their functions (`labelloop_local.stack.http_api`), and the stack's own
CloudFormation and Lambda APIs (`labelloop_local.stack.apis`) for operator commands.

With `persist=True` the AWS state (moto's backends) is saved in the data directory when the stack
stops, and every 30 seconds while it runs, and restored at the next start
(`labelloop_local.stack.persistence`); the local services keep their own state there too.

The fidelity fixes applied to moto live in `labelloop_local.stack.moto_fixes`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from labelloop_local.stack import persistence
from labelloop_local.stack.apis import StackApis
from labelloop_local.stack.dispatcher import DEFAULT_TIME_SCALE, Dispatcher, Route
from labelloop_local.stack.handlers import make_environ_reads_consistent
from labelloop_local.stack.http_api import LocalHttpApi
from labelloop_local.stack.logs import logs_in
from labelloop_local.stack.moto_fixes import apply_moto_fixes
from labelloop_local.stack.provision import Stack, provision
from labelloop_local.stack.state import StackError
from labelloop_local.stack.template import (
    DEFAULT_REGION,
    Resolver,
    as_text,
    load_template,
    referenced_logical_id,
)

LOG = logging.getLogger(__name__)

# -- the stack ---------------------------------------------------------------------------------------

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
CUSTOM_RESOURCE_TIMEOUT_SECONDS = 120
SNAPSHOT_INTERVAL_SECONDS = 30.0
# Parameters without a default that the local stack must still fill: the local A2I service accepts
# any private workteam ARN of this shape.
LOCAL_PARAMETERS = {
    "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/labelloop-local"
}
# Schedules the local stack fires on its own clock, in seconds: the model controller's rate(1 minute)
# compressed to a second, so images uploaded to a stopped model are detected without a manual step.
DEFAULT_SCHEDULES = {"ModelControllerFunction": 1.0}
# How long a local Custom Labels model takes to start and to stop (minutes on AWS).
DEFAULT_MODEL_TRANSITION_SECONDS = 1.0


@dataclass
class ReplayReport:
    events_replayed: int
    new_reviews: int
    new_label_lines: int
    new_trainings: int
    new_predictions: int
    new_dlq_messages: int
    drained: bool
    replays: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_replayed": self.events_replayed,
            "new_reviews": self.new_reviews,
            "new_label_lines": self.new_label_lines,
            "new_trainings": self.new_trainings,
            "new_predictions": self.new_predictions,
            "new_dlq_messages": self.new_dlq_messages,
            "drained": self.drained,
        }


class LocalStack:
    """moto server + local services + template resources + rule delivery, all in this process.

    The process environment is left alone: the handlers see the local endpoints through boto3's
    standard settings (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``), set only while a handler
    runs (as Lambda's runtime would), and ``client()`` gives clients pointed at the stack.
    """

    def __init__(
        self,
        template_path: str | Path = "template.yaml",
        *,
        params: Mapping[str, Any] | None = None,
        stack_name: str = "labelloop-local",
        region: str = DEFAULT_REGION,
        host: str = "127.0.0.1",
        moto_port: int = 0,
        services_port: int = 0,
        api_port: int = 0,
        data_dir: str | Path | None = None,
        persist: bool = False,
        time_scale: float = DEFAULT_TIME_SCALE,
        transition_seconds: float = 0.2,
        detector: Any = None,
        logs_on_console: bool = False,
        schedules: Mapping[str, float] | None = None,
        model_start_seconds: float = DEFAULT_MODEL_TRANSITION_SECONDS,
        model_stop_seconds: float = DEFAULT_MODEL_TRANSITION_SECONDS,
        inference_tps_per_unit: float | None = None,
    ) -> None:
        """`logs_on_console`: also show the functions' and the platform's logs on stderr (they are
        always written to `<data_dir>/logs/`, see `labelloop_local.stack.logs`); `persist`: keep the
        AWS state in `data_dir` across restarts (it must be given); `schedules`: seconds
        between firings of these functions' Schedule rules (default DEFAULT_SCHEDULES; `{}` for
        none); the local Custom Labels model takes `model_start_seconds` and `model_stop_seconds` to
        start and stop and serves `inference_tps_per_unit` images per second per inference unit (None:
        no limit)."""
        if persist and data_dir is None:
            raise StackError("a persistent local stack needs its data directory")
        self.template = load_template(template_path)
        self.params = {
            name: value for name, value in LOCAL_PARAMETERS.items() if name in self.template.parameters()
        }
        self.params.update(params or {})
        self.stack_name = stack_name
        self.region = region
        self.host = host
        self._moto_port = moto_port
        self._services_port = services_port
        self._api_port = api_port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._persist = persist
        self.restored = False
        self.http_apis: dict[str, LocalHttpApi] = {}
        self._time_scale = time_scale
        self._transition_seconds = transition_seconds
        self._detector = detector
        self._logs_on_console = logs_on_console
        self._model_timing = {
            "model_start_seconds": model_start_seconds,
            "model_stop_seconds": model_stop_seconds,
            "inference_tps_per_unit": inference_tps_per_unit,
        }
        wanted = DEFAULT_SCHEDULES if schedules is None else dict(schedules)
        functions = self.template.functions()
        self.schedules = {function: seconds for function, seconds in wanted.items() if function in functions}
        self._tickers: list[threading.Thread] = []
        self._logs: contextlib.ExitStack | None = None
        self.logs_dir: Path | None = None
        self._moto: Any = None
        self.services: Any = None
        self.stack: Stack | None = None
        self.dispatcher: Dispatcher | None = None
        self.session: Any = None
        self.moto_url = ""
        self._schedule_stop = threading.Event()
        self._schedule_thread: threading.Thread | None = None
        self._snapshot_thread: threading.Thread | None = None
        self._replay_counter = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from moto.server import ThreadedMotoServer

        from labelloop_local.emulators import LocalServices

        apply_moto_fixes()
        make_environ_reads_consistent()  # functions' variables are swapped while other threads run
        check_rules(
            self.template,
            Resolver(self.template, self.params, region=self.region, stack_name=self.stack_name),
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per moto request otherwise
        self._moto = ThreadedMotoServer(ip_address=self.host, port=self._moto_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        # moto's backends are process-global: a stack started earlier in this process (tests) left
        # its buckets and queues behind. Every stack starts empty, like a fresh account, or from the
        # snapshot its data directory holds.
        _post(f"{self.moto_url}/moto-api/reset")
        data_dir = self._data_dir or Path(tempfile.mkdtemp(prefix="labelloop-stack-"))
        if self._persist:
            self.restored = persistence.restore(data_dir)
        self._logs = contextlib.ExitStack()
        self.logs_dir = self._logs.enter_context(logs_in(data_dir / "logs", self._logs_on_console))
        self.services = LocalServices(
            s3_endpoint_url=self.moto_url,
            region=self.region,
            data_dir=data_dir / "services",
            transition_seconds=self._transition_seconds,
            detector=self._detector,
            model_start_seconds=self._model_timing["model_start_seconds"],
            model_stop_seconds=self._model_timing["model_stop_seconds"],
            inference_tps_per_unit=self._model_timing["inference_tps_per_unit"],
        )
        self.services.start(host=self.host, port=self._services_port)
        _reset_layer_state()

        import boto3

        self.session = _LocalSession(
            boto3.Session(region_name=self.region, **_boto3_credentials()), self.endpoint_url
        )
        project_arn = self._create_project()
        self.stack = provision(
            self.template,
            self.session,
            params=self.params,
            stack_name=self.stack_name,
            resolved={"CustomLabelsProject": project_arn},
        )
        self.dispatcher = Dispatcher(
            self.stack,
            self.client("sqs"),
            time_scale=self._time_scale,
            platform_env={**self.endpoint_env(), "POWERTOOLS_TRACE_DISABLED": "true"},
            background=frozenset(self.schedules),
        )
        self._create_custom_resources()
        self.stack.create_deferred()  # e.g. the default-bus archive, filtered on the flow definition ARN
        for route in self._create_routes():
            self.dispatcher.add_route(route)
        self._create_queue_rules()
        for mapping in self._mappings():
            self.dispatcher.add_mapping(mapping)
        self.dispatcher.start()
        self._start_http_apis()
        for function_id, seconds in self.schedules.items():
            self._tick(function_id, seconds)
        # CloudFormation and Lambda calls (operator commands: `labelloop dlq`, `model rollback`)
        # are answered from this stack from now on.
        self.services.attach_stack(StackApis(self.stack, self.dispatcher))
        if self._persist:
            self._snapshot_thread = threading.Thread(
                target=self._snapshot_loop, name="labelloop-snapshots", daemon=True
            )
            self._snapshot_thread.start()

    def _start_http_apis(self) -> None:
        assert self.stack is not None and self.dispatcher is not None
        routes = self.stack.http_routes()
        for index, (logical_id, api) in enumerate(sorted(self.stack.http_apis().items())):
            local = LocalHttpApi(
                api,
                routes,
                self.dispatcher.invoke,
                self._jwks_url,
                self.stack.account,
                str(self.stack.physical[logical_id]),
            )
            local.start(self.host, self._api_port + index if self._api_port else 0)
            self.http_apis[logical_id] = local

    def _jwks_url(self, issuer: str) -> str:
        """Where the issuer's keys are: here, the local Cognito (moto) serves them for each pool."""
        pool_id = issuer.rstrip("/").rsplit("/", 1)[-1]
        return f"{self.endpoint_url('cognito-idp')}/{pool_id}/.well-known/jwks.json"

    @property
    def api_url(self) -> str | None:
        """The first HTTP API's base URL (the review portal and API of the built-in backend)."""
        return next((api.url for api in self.http_apis.values()), None)

    @property
    def portal_url(self) -> str:
        """Where reviewers review: the built-in portal (HTTP API) if the stack has one, else the local
        A2I emulation's portal."""
        return f"{self.api_url}/" if self.api_url else str(self.services.portal_url)

    @property
    def review_backend(self) -> str:
        return as_text(self.stack.params.get("ReviewBackend", "a2i")) if self.stack else "a2i"

    def save(self) -> Path | None:
        """Snapshot the AWS state into the data directory (a persistent stack only)."""
        if not self._persist or self._moto is None or self._data_dir is None:
            return None
        return persistence.save(self._data_dir)

    def _snapshot_loop(self) -> None:
        while not self._schedule_stop.wait(SNAPSHOT_INTERVAL_SECONDS):
            try:
                assert self.dispatcher is not None
                with self.dispatcher.quiet():
                    self.save()
            except Exception as error:  # a busy moment: the next one, or the final save, will do
                LOG.debug("periodic snapshot skipped: %s", error)

    def stop(self) -> None:
        self._schedule_stop.set()
        if self._schedule_thread is not None:
            self._schedule_thread.join(timeout=5)
            self._schedule_thread = None
        for ticker in self._tickers:
            ticker.join(timeout=5)
        self._tickers.clear()
        if self._snapshot_thread is not None:
            self._snapshot_thread.join(timeout=5)
            self._snapshot_thread = None
        for api in self.http_apis.values():
            api.stop()
        self.http_apis = {}
        if self.dispatcher is not None:
            if self._persist and self._moto is not None:
                self.dispatcher.drain(timeout=30)  # events in Lambda's (in-memory) queue finish first
            self.dispatcher.stop()
        if self._persist and self._moto is not None and self.stack is not None:
            try:
                path = self.save()
                LOG.info("saved the local stack's AWS state to %s", path)
            except Exception:
                LOG.exception("the local stack's AWS state could not be saved")
        if self.services is not None:
            self.services.attach_stack(None)
            self.services.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        _reset_layer_state()
        if self._logs is not None:
            self._logs.close()
            self._logs = None

    def endpoint_env(self) -> dict[str, str]:
        """boto3's standard settings that send every call of this process (and its handlers) here."""
        env = {
            "AWS_ENDPOINT_URL": self.moto_url,
            **self.services.endpoint_env(),
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }
        return env

    def endpoint_url(self, service: str) -> str:
        """Where this stack serves `service` (boto3 service name): as `endpoint_env()` says."""
        variable = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
        return self.endpoint_env().get(variable, self.moto_url)

    def client(self, service: str) -> Any:
        from botocore.config import Config

        if self.session is None:
            raise StackError("the local stack is not started")
        return self.session.client(service, config=Config(retries={"mode": "standard", "max_attempts": 5}))

    # -- resources ---------------------------------------------------------------------------------
    def _create_project(self) -> str:
        projects = self.template.resources_of_type("AWS::Rekognition::Project")
        if not projects:
            raise StackError(f"{self.template.path}: no AWS::Rekognition::Project resource")
        logical_id, resource = next(iter(projects.items()))
        resolver = Resolver(self.template, self.params, region=self.region, stack_name=self.stack_name)
        raw_name = (resource.get("Properties") or {}).get("ProjectName")
        name = (
            as_text(resolver.resolve(raw_name)) if raw_name is not None else f"{self.stack_name}-{logical_id}"
        )
        rekognition = self.client("rekognition")
        try:
            return str(rekognition.create_project(ProjectName=name)["ProjectArn"])
        except rekognition.exceptions.ResourceInUseException:
            for project in rekognition.describe_projects(ProjectNames=[name])["ProjectDescriptions"]:
                return str(project["ProjectArn"])
            raise StackError(f"project {name} exists but cannot be described") from None

    def _create_custom_resources(self) -> None:
        """Create each ``Custom::`` resource as CloudFormation does: invoke its ServiceToken function
        with a Create request and wait for the answer PUT to a local ResponseURL."""
        assert self.stack is not None and self.dispatcher is not None
        for logical_id, resource in self.template.resources.items():
            resource_type = str(resource.get("Type", ""))
            if not resource_type.startswith("Custom::"):
                continue
            if not self.template.condition_holds(logical_id, self.stack.resolver):
                continue
            props = resource.get("Properties") or {}
            function_id = referenced_logical_id(props.get("ServiceToken"))
            if function_id not in self.stack.functions():
                raise StackError(f"{logical_id}: ServiceToken does not reference a function of the template")
            data, physical_id = self._invoke_custom_resource(logical_id, resource_type, function_id, props)
            self.stack.set_resolved({logical_id: physical_id})
            self.stack.attributes.setdefault(logical_id, {}).update(data)

    def _invoke_custom_resource(
        self, logical_id: str, resource_type: str, function_id: str, props: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str]:
        assert self.stack is not None and self.dispatcher is not None
        properties = _cfn_strings(self.stack.resolver.resolve(dict(props)))
        with _ResponseCollector(self.host) as collector:
            request = {
                "RequestType": "Create",
                "ServiceToken": properties.get("ServiceToken"),
                "ResponseURL": collector.url,
                "StackId": self.stack.resolver.pseudo("AWS::StackId"),
                "RequestId": str(uuid.uuid4()),
                "LogicalResourceId": logical_id,
                "ResourceType": resource_type,
                "ResourceProperties": properties,
            }
            try:
                self.dispatcher.invoke(function_id, request)
            except Exception as exc:
                raise StackError(f"{logical_id}: {function_id} failed: {type(exc).__name__}: {exc}") from exc
            answer = collector.wait(CUSTOM_RESOURCE_TIMEOUT_SECONDS)
        if answer is None:
            raise StackError(f"{logical_id}: {function_id} returned without answering CloudFormation")
        if answer.get("Status") != "SUCCESS":
            raise StackError(f"{logical_id}: creation FAILED: {answer.get('Reason', 'no reason given')}")
        return dict(answer.get("Data") or {}), str(answer.get("PhysicalResourceId", logical_id))

    def _create_routes(self) -> list[Route]:
        assert self.stack is not None
        events, sqs = self.client("events"), self.client("sqs")
        routes = []
        for rule in self.stack.rules():
            bus = self.stack.bus_for(rule.bus)
            rule_name = f"{self.stack_name}-{rule.name}"[:64]
            rule_arn = _rule_arn(self.region, self.stack.account, bus, rule_name)
            kwargs: dict[str, Any] = {"Name": rule_name, "EventBusName": bus}
            if rule.kind == "Schedule":
                # Scheduled events are put on the default bus by fire_schedule(); this pattern picks
                # exactly this rule's events (resources = the rule ARN, as EventBridge sets it).
                kwargs["ScheduleExpression"] = rule.schedule
                kwargs["EventPattern"] = json.dumps(
                    {"source": ["aws.events"], "detail-type": ["Scheduled Event"], "resources": [rule_arn]}
                )
            else:
                kwargs["EventPattern"] = json.dumps(rule.pattern)
            kwargs["State"] = "ENABLED" if rule.enabled else "DISABLED"
            events.put_rule(**kwargs)
            queue_name = f"{self.stack_name}-deliver-{rule.name}"[:80]
            queue_url = sqs.create_queue(QueueName=queue_name, Attributes={"VisibilityTimeout": "300"})[
                "QueueUrl"
            ]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            if rule.enabled or rule.kind == "Schedule":  # a disabled schedule still fires on demand
                target: dict[str, Any] = {"Id": "LocalDelivery", "Arn": queue_arn}
                if rule.retry_policy:
                    target["RetryPolicy"] = rule.retry_policy
                if rule.dlq:
                    target["DeadLetterConfig"] = {"Arn": self.stack.queue_arn(rule.dlq)}
                events.put_targets(Rule=rule_name, EventBusName=bus, Targets=[target])
            routes.append(Route(rule, rule_name, rule_arn, bus, queue_url))
        return routes

    def _create_queue_rules(self) -> None:
        """Rules whose target is a queue of the template deliver there directly (moto's SQS target,
        with the message body EventBridge would send: `moto_fixes`)."""
        assert self.stack is not None
        events = self.client("events")
        for rule in self.template.queue_rules(self.stack.resolver):
            bus = self.stack.bus_for(rule.bus)
            name = str(self.stack.physical[rule.logical_id])
            events.put_rule(
                Name=name,
                EventBusName=bus,
                EventPattern=json.dumps(rule.pattern),
                State="ENABLED" if rule.enabled else "DISABLED",
            )
            target: dict[str, Any] = {"Id": rule.queue, "Arn": self.stack.queue_arn(rule.queue)}
            if rule.retry_policy:
                target["RetryPolicy"] = rule.retry_policy
            if rule.dlq:
                target["DeadLetterConfig"] = {"Arn": self.stack.queue_arn(rule.dlq)}
            events.put_targets(Rule=name, EventBusName=bus, Targets=[target])

    def _mappings(self) -> list[Any]:
        from labelloop_local.stack.mappings import RunningMapping

        assert self.stack is not None
        sqs = self.client("sqs")
        found = []
        for spec in self.template.event_source_mappings(self.stack.resolver):
            url = self.stack.queue_url(spec.queue)
            visibility = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
            found.append(
                RunningMapping(
                    spec=spec,
                    uuid=str(self.stack.physical[spec.logical_id]),
                    function_arn=self.stack.function_arn(spec.function),
                    queue_url=url,
                    queue_arn=self.stack.queue_arn(spec.queue),
                    visibility_timeout=int(visibility["Attributes"].get("VisibilityTimeout", 30)),
                )
            )
        return found

    # -- schedules ---------------------------------------------------------------------------------
    def schedule_routes(self, function_id: str | None = None) -> list[Route]:
        assert self.dispatcher is not None
        return [
            route
            for route in self.dispatcher.routes
            if route.rule.kind == "Schedule" and (function_id is None or route.rule.function == function_id)
        ]

    def fire_schedule(self, function_id: str) -> list[str]:
        """Fire the function's schedule rule(s) now: a real Scheduled Event on the default bus."""
        routes = self.schedule_routes(function_id)
        if not routes:
            raise StackError(f"{function_id} has no Schedule event in {self.template.path}")
        entries = [
            {
                "Source": "aws.events",
                "DetailType": "Scheduled Event",
                "Detail": "{}",
                "Resources": [route.rule_arn],
                "EventBusName": "default",
            }
            for route in routes
        ]
        result = self.client("events").put_events(Entries=entries)
        failed = [entry for entry in result["Entries"] if "ErrorCode" in entry]
        if failed:
            raise StackError(f"firing the schedule of {function_id} failed: {failed}")
        return [entry["EventId"] for entry in result["Entries"]]

    def _tick(self, function_id: str, seconds: float) -> None:
        """Fire `function_id`'s schedule every `seconds` until the stack stops."""

        def loop() -> None:
            while not self._schedule_stop.wait(seconds):
                try:
                    self.fire_schedule(function_id)
                except Exception:
                    if not self._schedule_stop.is_set():
                        LOG.exception("scheduled run of %s failed", function_id)

        thread = threading.Thread(target=loop, name=f"labelloop-clock-{function_id}", daemon=True)
        self._tickers.append(thread)
        thread.start()

    def start_schedules(self, interval_seconds: float) -> None:
        """Fire every enabled schedule every ``interval_seconds`` (a compressed clock for local use)."""
        routes = [
            route
            for route in self.schedule_routes()
            if route.rule.enabled and route.rule.function not in self.schedules
        ]

        def loop() -> None:
            while not self._schedule_stop.wait(interval_seconds):
                for function_id in sorted({route.rule.function for route in routes}):
                    try:
                        self.fire_schedule(function_id)
                    except Exception:
                        LOG.exception("scheduled run of %s failed", function_id)

        self._schedule_thread = threading.Thread(target=loop, name="labelloop-schedules", daemon=True)
        self._schedule_thread.start()

    # -- observation -------------------------------------------------------------------------------
    def drain(self, timeout: float = 120.0) -> bool:
        assert self.dispatcher is not None
        return self.dispatcher.drain(timeout)

    def count_objects(self, prefix: str) -> int:
        assert self.stack is not None
        paginator = self.client("s3").get_paginator("list_objects_v2")
        return sum(
            page.get("KeyCount", 0) for page in paginator.paginate(Bucket=self.stack.bucket, Prefix=prefix)
        )

    def human_loops(self) -> list[dict[str, Any]]:
        return list(self.services.a2i.loops())

    def review_tasks(self) -> list[dict[str, Any]]:
        """Every task of the built-in backend (none without its task table)."""
        from labelloop_core.adapters.dynamodb_codec import decode_item

        assert self.stack is not None
        if not self.stack.exists("ReviewTaskTable"):
            return []
        pages = (
            self.client("dynamodb")
            .get_paginator("scan")
            .paginate(TableName=self.stack.physical["ReviewTaskTable"])
        )
        return [decode_item(item) for page in pages for item in page["Items"]]

    def review_count(self) -> int:
        """Reviews opened, in either backend."""
        return len(self.human_loops()) + len(self.review_tasks())

    def project_versions(self) -> list[dict[str, Any]]:
        assert self.stack is not None
        project_arn = self.stack.physical["CustomLabelsProject"]
        paginator = self.client("rekognition").get_paginator("describe_project_versions")
        return [
            v
            for page in paginator.paginate(ProjectArn=project_arn)
            for v in page["ProjectVersionDescriptions"]
        ]

    def dlq_messages(self) -> dict[str, int]:
        """Messages waiting in each dead-letter queue of the template (by logical id)."""
        assert self.stack is not None
        sqs = self.client("sqs")
        counts = {}
        for logical_id in self._dead_letter_queue_ids():
            attributes = sqs.get_queue_attributes(
                QueueUrl=self.stack.queue_url(logical_id),
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            counts[logical_id] = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
        return counts

    def read_dlq(self, logical_id: str) -> list[dict[str, Any]]:
        """Every message of a dead-letter queue (body + attributes); they stay in the queue."""
        assert self.stack is not None
        sqs = self.client("sqs")
        url = self.stack.queue_url(logical_id)
        messages: list[dict[str, Any]] = []
        while True:
            # Hidden while we read (so each is seen once), visible again shortly after.
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=5, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                attributes = {
                    k: v.get("StringValue") for k, v in message.get("MessageAttributes", {}).items()
                }
                messages.append(
                    {"queue": logical_id, "body": json.loads(message["Body"]), "attributes": attributes}
                )
        return messages

    def dead_letters(self) -> list[dict[str, Any]]:
        return [
            message for logical_id in self._dead_letter_queue_ids() for message in self.read_dlq(logical_id)
        ]

    def _dead_letter_queue_ids(self) -> list[str]:
        assert self.stack is not None
        ids = {
            spec.dead_letter_queue for spec in self.template.functions().values() if spec.dead_letter_queue
        }
        ids |= {rule.dlq for rule in self.template.rules() if rule.dlq}
        ids |= {rule.dlq for rule in self.template.queue_rules() if rule.dlq}
        return sorted(i for i in ids if i in self.stack.physical)

    def snapshot(self) -> dict[str, int]:
        return {
            "reviews": self.review_count(),
            "label_lines": self.count_objects("labels/"),
            "predictions": self.count_objects("predictions/"),
            "trainings": len(self.project_versions()),
            "dlq_messages": sum(self.dlq_messages().values()),
        }

    # -- replay ------------------------------------------------------------------------------------
    def replay(self, since: datetime | None = None, timeout: float = 300.0) -> ReplayReport:
        """Replay every archive of the template through EventBridge and report what changed."""
        from moto.events.models import events_backends

        assert self.stack is not None
        self.drain(timeout)
        before = self.snapshot()
        events = self.client("events")
        start = since or datetime(1970, 1, 2, tzinfo=UTC)
        end = datetime.now(UTC) + timedelta(seconds=1)
        replayed, names = 0, []
        for logical_id in self.template.resources_of_type("AWS::Events::Archive"):
            if logical_id not in self.stack.physical:
                continue
            archive = events.describe_archive(ArchiveName=self.stack.physical[logical_id])
            name = f"{self.stack_name}-replay-{int(time.time())}-{next(self._replay_counter)}"[:64]
            events.start_replay(
                ReplayName=name,
                EventSourceArn=archive["ArchiveArn"],
                EventStartTime=start,
                EventEndTime=end,
                Destination={"Arn": archive["EventSourceArn"]},
            )
            names.append(name)
            replay = events_backends[self.stack.account][self.region].replays.get(name)
            replayed += int(getattr(replay, "labelloop_events_replayed", 0))
        drained = self.drain(timeout)
        after = self.snapshot()
        return ReplayReport(
            events_replayed=replayed,
            new_reviews=after["reviews"] - before["reviews"],
            new_label_lines=after["label_lines"] - before["label_lines"],
            new_trainings=after["trainings"] - before["trainings"],
            new_predictions=after["predictions"] - before["predictions"],
            new_dlq_messages=after["dlq_messages"] - before["dlq_messages"],
            drained=drained,
            replays=names,
        )

    # -- state file for `labelloop local upload/replay` -------------------------------------------
    def state(self, control_url: str | None = None) -> dict[str, Any]:
        assert self.stack is not None
        return {
            "pid": os.getpid(),
            "stack_name": self.stack_name,
            "region": self.region,
            "bucket": self.stack.bucket,
            "review_backend": self.review_backend,
            "moto_url": self.moto_url,
            "services_url": self.services.base_url,
            "portal_url": self.portal_url,
            "api_url": self.api_url,
            "control_url": control_url,
            "data_dir": str(self._data_dir) if self._data_dir else None,
            "env": self.endpoint_env(),
        }

    def env_vars(self) -> dict[str, dict[str, str]]:
        """A `sam local invoke --env-vars` file for this stack: every function's variables as the
        template declares them (SAM sets no others), with this stack's names and endpoints."""
        assert self.stack is not None
        endpoints = {
            name: value for name, value in self.endpoint_env().items() if name.startswith("AWS_ENDPOINT_URL")
        }
        found = {}
        for function_id, spec in self.stack.functions().items():
            env = self.stack.env_for(function_id)
            for name in spec.environment:
                if not env.get(name) and name in endpoints:
                    env[name] = endpoints[name]
            found[function_id] = {name: env[name] for name in spec.environment if name in env}
        return found


class _ResponseCollector:
    """A one-shot HTTP server on 127.0.0.1 standing in for CloudFormation's pre-signed ResponseURL."""

    def __init__(self, host: str) -> None:
        self._host = host
        self._answer: dict[str, Any] | None = None
        self._received = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> _ResponseCollector:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    collector._answer = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    collector._answer = {"Status": "FAILED", "Reason": "the response body is not JSON"}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                collector._received.set()

            def log_message(self, format: str, *args: Any) -> None:
                LOG.debug("cfn response: " + format, *args)

        self._server = ThreadingHTTPServer((self._host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self._host}:{self._server.server_address[1]}/cloudformation-response"

    def wait(self, timeout: float) -> dict[str, Any] | None:
        self._received.wait(timeout)
        return self._answer

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def check_rules(template: Any, resolver: Resolver) -> None:
    """The template's `Rules` as CloudFormation checks them before creating anything: StackError with
    the failed assertion's description."""
    for name, rule in (template.document.get("Rules") or {}).items():
        condition = rule.get("RuleCondition")
        if condition is not None and not resolver.resolve(condition):
            continue
        for assertion in rule.get("Assertions") or []:
            if not resolver.resolve(assertion["Assert"]):
                description = assertion.get("AssertDescription") or f"rule {name} failed"
                raise StackError(f"template rule {name}: {description}")


def _cfn_strings(value: Any) -> Any:
    """CloudFormation passes custom resource property scalars as strings."""
    if isinstance(value, dict):
        return {k: _cfn_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cfn_strings(v) for v in value]
    return as_text(value)


def _post(url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30) as response:
        response.read()


def _rule_arn(region: str, account: str, bus: str, rule_name: str) -> str:
    path = rule_name if bus == "default" else f"{bus}/{rule_name}"
    return f"arn:aws:events:{region}:{account}:rule/{path}"


def _reset_layer_state() -> None:
    """A new stack is a new set of containers: forget the layer's process-wide state."""
    from labelloop_core import state

    state.reset()


class _LocalSession:
    """A boto3 Session whose clients talk to the local stack (explicit endpoint, local credentials)."""

    def __init__(self, session: Any, endpoint_url: Any) -> None:
        self._session = session
        self._endpoint_url = endpoint_url
        self.region_name = session.region_name

    def client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self._endpoint_url(service))
        return self._session.client(service, **kwargs)


def _boto3_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
