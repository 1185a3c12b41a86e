"""The provisioned local stack as CloudFormation and Lambda describe a deployed one (a `StackView`).

Served by `labelloop_local.emulators.control_plane` at the local services' endpoint, so that the
operator commands (`labelloop dlq`, `labelloop model rollback`) read the local stack with the same
CloudFormation and Lambda calls they make on AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labelloop_local.emulators.common import AwsError
from labelloop_local.emulators.control_plane import StackResource
from labelloop_local.stack.dispatcher import Dispatcher
from labelloop_local.stack.provision import Stack
from labelloop_local.stack.template import NO_VALUE, TemplateError, as_text

# What CloudFormation reports for the resources SAM transforms (the rest keep their type).
_DEPLOYED_TYPES = {
    "AWS::Serverless::Function": "AWS::Lambda::Function",
    "AWS::Serverless::LayerVersion": "AWS::Lambda::LayerVersion",
}
_CONFIGURATION = {  # GetFunctionConfiguration field → SAM property (Globals merged), with Lambda's defaults
    "Runtime": ("Runtime", None),
    "Handler": ("Handler", None),
    "Description": ("Description", ""),
    "Timeout": ("Timeout", 3),
    "MemorySize": ("MemorySize", 128),
}


class StackApis:
    """A `StackView` of a provisioned local stack whose functions the dispatcher runs."""

    def __init__(self, stack: Stack, dispatcher: Dispatcher) -> None:
        self._stack = stack
        self._dispatcher = dispatcher
        self.stack_name = stack.stack_name
        self.stack_id = str(stack.resolver.pseudo("AWS::StackId"))
        self.description = str(stack.template.document.get("Description") or "").strip()
        self.created = datetime.now(UTC)

    def resources(self) -> list[StackResource]:
        return [
            StackResource(logical_id, str(self._stack.physical[logical_id]), _deployed_type(resource))
            for logical_id, resource in self._stack.template.resources.items()
            if self._stack.exists(logical_id)
        ]

    def outputs(self) -> list[dict[str, str]]:
        resolver = self._stack.resolver
        outputs = []
        for key, output in (self._stack.template.document.get("Outputs") or {}).items():
            if output.get("Condition") and not resolver.condition(str(output["Condition"])):
                continue
            try:
                value = resolver.resolve(output.get("Value"))
            except TemplateError:  # refers to something the local stack does not have
                continue
            entry = {"OutputKey": key, "OutputValue": as_text(value)}
            if output.get("Description"):
                entry["Description"] = str(output["Description"])
            outputs.append(entry)
        return outputs

    def parameters(self) -> dict[str, str]:
        return {name: as_text(value) for name, value in self._stack.params.items()}

    def function_id(self, name_or_arn: str) -> str | None:
        name = name_or_arn.rsplit(":function:", 1)[-1]
        for logical_id in self._stack.template.functions():
            if name == self._stack.function_name(logical_id):
                return logical_id
        return None

    def configuration(self, function_id: str) -> dict[str, Any]:
        properties = self._stack.template.function_properties(function_id)
        configuration: dict[str, Any] = {
            "FunctionName": self._stack.function_name(function_id),
            "FunctionArn": self._stack.function_arn(function_id),
            "Role": f"arn:aws:iam::{self._stack.account}:role/{self.stack_name}-{function_id}Role",
            "Environment": {"Variables": self._dispatcher.env_for(function_id)},
            "Version": "$LATEST",
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "LastModified": self.created.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        }
        for field, (key, default) in _CONFIGURATION.items():
            value = self._resolved(properties.get(key), default)
            if value is not None:
                configuration[field] = int(value) if isinstance(default, int) else as_text(value)
        architectures = self._resolved(properties.get("Architectures"), ["x86_64"])
        configuration["Architectures"] = list(architectures)
        log_group = self._resolved((properties.get("LoggingConfig") or {}).get("LogGroup"), None)
        configuration["LoggingConfig"] = {
            "LogFormat": "Text",
            "LogGroup": as_text(log_group) if log_group else f"/aws/lambda/{configuration['FunctionName']}",
        }
        return configuration

    def invoke_async(self, function_id: str, event: Any) -> None:
        self._dispatcher.submit(function_id, event)

    def invoke(self, function_id: str, event: Any) -> Any:
        return self._dispatcher.invoke(function_id, event)

    def event_source_mappings(self) -> list[dict[str, Any]]:
        return [mapping.description() for mapping in self._dispatcher.mappings()]

    def update_event_source_mapping(self, uuid: str, enabled: bool | None) -> dict[str, Any]:
        from labelloop_local.stack.mappings import MappingBusy

        try:
            return self._dispatcher.update_mapping(uuid, enabled).description()
        except MappingBusy as busy:
            raise AwsError("ResourceInUseException", str(busy)) from busy

    def _resolved(self, raw: Any, default: Any) -> Any:
        if raw is None:
            return default
        value = self._stack.resolver.resolve(raw)
        return default if value is NO_VALUE else value


def _deployed_type(resource: Mapping[str, Any]) -> str:
    resource_type = str(resource.get("Type", ""))
    return _DEPLOYED_TYPES.get(resource_type, resource_type)
