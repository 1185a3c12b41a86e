"""The SageMaker calls the A2I setup custom resource makes: human task UIs and flow definitions.

JSON 1.1 protocol (`X-Amz-Target: SageMaker.<Operation>`). Flow definitions are created
`Initializing` and become `Active` shortly after, as on AWS, so callers must poll.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from labelloop_local.emulators.common import (
    ACCOUNT_ID,
    AwsError,
    JsonStore,
    epoch,
    now,
    parse_iso,
    require_str,
)

NAME_PATTERN = r"[a-z0-9](-*[a-z0-9]){0,62}"
ROLE_PATTERN = r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
WORKTEAM_PATTERN = r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:workteam/.*"
MAX_TEMPLATE_CHARS = 128_000
DEFAULT_ANSWER_ELEMENT = "annotatedResult"


class SageMakerService:
    def __init__(
        self, data_dir: Path, region: str, base_url: Callable[[], str], transition_seconds: float
    ) -> None:
        self.region = region
        self._base_url = base_url
        self._transition = timedelta(seconds=transition_seconds)
        self.store = JsonStore(data_dir / "sagemaker.json", lambda: {"task_uis": {}, "flows": {}})
        self.operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateHumanTaskUi": self.create_human_task_ui,
            "DescribeHumanTaskUi": self.describe_human_task_ui,
            "DeleteHumanTaskUi": self.delete_human_task_ui,
            "CreateFlowDefinition": self.create_flow_definition,
            "DescribeFlowDefinition": self.describe_flow_definition,
            "DeleteFlowDefinition": self.delete_flow_definition,
        }

    # -- human task UIs -------------------------------------------------------------------------
    def create_human_task_ui(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "HumanTaskUiName", NAME_PATTERN, 63)
        content = (body.get("UiTemplate") or {}).get("Content")
        if not isinstance(content, str) or not content.strip() or len(content) > MAX_TEMPLATE_CHARS:
            raise AwsError(
                "ValidationException", f"UiTemplate.Content must be 1-{MAX_TEMPLATE_CHARS} characters"
            )
        arn = f"arn:aws:sagemaker:{self.region}:{ACCOUNT_ID}:human-task-ui/{name}"
        with self.store.lock:
            if name in self.store.data["task_uis"]:
                raise AwsError("ResourceInUse", f"Human task UI {arn} already exists")
            self.store.data["task_uis"][name] = {"arn": arn, "content": content, "created": now().isoformat()}
            self.store.save()
        return {"HumanTaskUiArn": arn}

    def describe_human_task_ui(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "HumanTaskUiName", NAME_PATTERN, 63)
        ui = self._task_ui(name)
        content_sha = hashlib.sha256(ui["content"].encode("utf-8")).hexdigest()
        return {
            "HumanTaskUiArn": ui["arn"],
            "HumanTaskUiName": name,
            "HumanTaskUiStatus": "Active",
            "CreationTime": epoch(parse_iso(ui["created"])),
            "UiTemplate": {"Url": f"{self._base_url()}/portal/task-ui/{name}", "ContentSha256": content_sha},
        }

    def delete_human_task_ui(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "HumanTaskUiName", NAME_PATTERN, 63)
        with self.store.lock:
            self._task_ui(name)
            del self.store.data["task_uis"][name]
            self.store.save()
        return {}

    def task_ui_content(self, name: str) -> str | None:
        with self.store.lock:
            ui = self.store.data["task_uis"].get(name)
            return None if ui is None else str(ui["content"])

    def _task_ui(self, name: str) -> dict[str, Any]:
        ui = self.store.data["task_uis"].get(name)
        if ui is None:
            raise AwsError("ResourceNotFound", f"Human task UI {name} does not exist")
        return dict(ui)

    # -- flow definitions -----------------------------------------------------------------------
    def create_flow_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "FlowDefinitionName", NAME_PATTERN, 63)
        role_arn = require_str(body, "RoleArn", ROLE_PATTERN, 2048)
        output_path = require_str(body.get("OutputConfig") or {}, "S3OutputPath", r"s3://([^/]+)/?(.*)", 1024)
        loop_config = self._validated_loop_config(body.get("HumanLoopConfig"))
        arn = f"arn:aws:sagemaker:{self.region}:{ACCOUNT_ID}:flow-definition/{name}"
        created = now()
        with self.store.lock:
            if name in self.store.data["flows"]:
                raise AwsError("ResourceInUse", f"Flow definition {arn} already exists")
            self.store.data["flows"][name] = {
                "arn": arn,
                "name": name,
                "status": "Initializing",
                "active_at": (created + self._transition).isoformat(),
                "created": created.isoformat(),
                "role_arn": role_arn,
                "output_config": dict(body["OutputConfig"], S3OutputPath=output_path),
                "human_loop_config": loop_config,
            }
            self.store.save()
        return {"FlowDefinitionArn": arn}

    def _validated_loop_config(self, config: Any) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise AwsError("ValidationException", "HumanLoopConfig is required for a custom task type")
        require_str(config, "WorkteamArn", WORKTEAM_PATTERN, 256)
        ui_arn = require_str(
            config, "HumanTaskUiArn", r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:[0-9]{12}:human-task-ui/.*"
        )
        require_str(config, "TaskTitle", None, 128)
        require_str(config, "TaskDescription", None, 255)
        count = config.get("TaskCount")
        if not isinstance(count, int) or not 1 <= count <= 3:
            raise AwsError("ValidationException", f"TaskCount must be 1-3, got {count!r}")
        limit = config.get("TaskTimeLimitInSeconds")
        if limit is not None and (not isinstance(limit, int) or limit < 30):
            raise AwsError(
                "ValidationException", f"TaskTimeLimitInSeconds must be at least 30, got {limit!r}"
            )
        ui_name = ui_arn.rsplit("/", 1)[-1]
        with self.store.lock:
            if ui_name not in self.store.data["task_uis"]:
                raise AwsError("ValidationException", f"Human task UI {ui_arn} does not exist")
        return dict(config)

    def describe_flow_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "FlowDefinitionName", NAME_PATTERN, 63)
        flow = self.flow(name)
        if flow is None:
            raise AwsError("ResourceNotFound", f"Flow definition {name} does not exist")
        return {
            "FlowDefinitionArn": flow["arn"],
            "FlowDefinitionName": name,
            "FlowDefinitionStatus": flow["status"],
            "CreationTime": epoch(parse_iso(flow["created"])),
            "HumanLoopConfig": flow["human_loop_config"],
            "OutputConfig": flow["output_config"],
            "RoleArn": flow["role_arn"],
        }

    def delete_flow_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "FlowDefinitionName", NAME_PATTERN, 63)
        with self.store.lock:
            if name not in self.store.data["flows"]:
                raise AwsError("ResourceNotFound", f"Flow definition {name} does not exist")
            del self.store.data["flows"][name]
            self.store.save()
        return {}

    # -- used by the A2I runtime and the portal -------------------------------------------------
    def flow(self, name: str) -> dict[str, Any] | None:
        with self.store.lock:
            flow = self.store.data["flows"].get(name)
            return None if flow is None else dict(flow)

    def flow_by_arn(self, arn: str) -> dict[str, Any] | None:
        return self.flow(arn.rsplit("/", 1)[-1]) if ":flow-definition/" in arn else None

    def answer_element(self, flow: dict[str, Any]) -> str:
        """The name of the `crowd-bounding-box` element in the flow's task UI: A2I keys answers by it."""
        ui_name = str(flow["human_loop_config"]["HumanTaskUiArn"]).rsplit("/", 1)[-1]
        content = self.task_ui_content(ui_name) or ""
        match = re.search(r"<crowd-bounding-box\b[^>]*?\sname\s*=\s*[\"']([^\"']+)[\"']", content)
        return match.group(1) if match else DEFAULT_ANSWER_ELEMENT

    def tick(self) -> None:
        """Advance flow definitions whose initialisation time has passed."""
        with self.store.lock:
            changed = False
            for flow in self.store.data["flows"].values():
                if flow["status"] == "Initializing" and parse_iso(flow["active_at"]) <= now():
                    flow["status"] = "Active"
                    changed = True
            if changed:
                self.store.save()
