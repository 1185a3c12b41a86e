"""The Lambda and CloudFormation APIs of the local stack, so operator commands run unchanged against it.

`labelloop dlq ...`, `labelloop status` and `labelloop model rollback` read a deployed stack through
CloudFormation (`DescribeStacks`, `DescribeStackResource(s)`, `ListStackResources`) and Lambda
(`GetFunctionConfiguration`, `Invoke`, and the event source mappings the model controller switches:
`GetEventSourceMapping`, `UpdateEventSourceMapping` (its `Enabled` state), `ListEventSourceMappings`).
Here those calls are answered from the provisioned local stack (a `StackView`, attached once it
exists), in the real wire protocols:

* Lambda, REST-JSON: `GET /2015-03-31/functions/{name}/configuration`, `POST
  /2015-03-31/functions/{name}/invocations` with `X-Amz-Invocation-Type` `Event` (202: the event joins
  the stack's asynchronous queue, so Lambda's retries and the on-failure queue apply),
  `RequestResponse` (200, the handler's result, `X-Amz-Function-Error` when it raised) or `DryRun` (204);
* Lambda event source mappings, REST-JSON: `GET|PUT /2015-03-31/event-source-mappings/{UUID}`, `GET
  /2015-03-31/event-source-mappings/` (the mappings of template.yaml, run by the dispatcher);
* CloudFormation, query protocol: a form `POST /` with `Action=...`, answered in XML.
"""

from __future__ import annotations

import json
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from labelloop_local.emulators.common import AwsError
from labelloop_local.emulators.portal import Response

LAMBDA_PREFIX = "/2015-03-31/functions/"
MAPPINGS_PATH = "/2015-03-31/event-source-mappings"
CFN_NAMESPACE = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
LIST_PAGE_SIZE = 100  # ListStackResources answers up to 100 summaries a page, as CloudFormation does


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    physical_id: str
    resource_type: str  # as CloudFormation reports it (AWS::Lambda::Function, not AWS::Serverless::...)


class StackView(Protocol):
    """What the local stack exposes to these APIs (implemented by labelloop_local.stack.apis)."""

    stack_name: str
    stack_id: str
    description: str
    created: datetime

    def resources(self) -> Sequence[StackResource]: ...

    def outputs(self) -> Sequence[Mapping[str, str]]: ...  # OutputKey, OutputValue[, Description]

    def parameters(self) -> Mapping[str, str]: ...

    def function_id(self, name_or_arn: str) -> str | None: ...  # logical id of a function, or None

    def configuration(self, function_id: str) -> dict[str, Any]: ...  # GetFunctionConfiguration

    def invoke_async(self, function_id: str, event: Any) -> None: ...

    def invoke(self, function_id: str, event: Any) -> Any: ...

    def event_source_mappings(self) -> Sequence[dict[str, Any]]: ...  # GetEventSourceMapping answers

    def update_event_source_mapping(self, uuid: str, enabled: bool | None) -> dict[str, Any]: ...


class ControlPlane:
    """Answers the Lambda and CloudFormation requests of one local stack."""

    def __init__(self) -> None:
        self.stack: StackView | None = None

    def attach(self, stack: StackView | None) -> None:
        self.stack = stack

    # -- Lambda --------------------------------------------------------------------------------
    def lambda_request(
        self, method: str, path: str, query: Mapping[str, str], headers: Any, body: bytes
    ) -> Response:
        name, _, operation = path[len(LAMBDA_PREFIX) :].partition("/")
        function_id = self._function(unquote(name), query.get("Qualifier"))
        if method == "GET" and operation == "configuration":
            return _json(200, self._view().configuration(function_id))
        if method == "POST" and operation == "invocations":
            return self._invoke(function_id, headers.get("X-Amz-Invocation-Type") or "RequestResponse", body)
        raise AwsError(
            "ResourceNotFoundException", f"{method} {path} is not supported by the local Lambda", 404
        )

    def mappings_request(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Response:
        """`GetEventSourceMapping`, `UpdateEventSourceMapping`, `ListEventSourceMappings`."""
        uuid = unquote(path[len(MAPPINGS_PATH) :].strip("/"))
        mappings = {m["UUID"]: m for m in self._view().event_source_mappings()}
        if not uuid and method == "GET":
            found = [
                m
                for m in mappings.values()
                if query.get("EventSourceArn") in (None, m["EventSourceArn"])
                and self._function_matches(query.get("FunctionName"), m["FunctionArn"])
            ]
            return _json(200, {"EventSourceMappings": found})
        if uuid not in mappings:
            raise AwsError(
                "ResourceNotFoundException", f"The resource you requested does not exist: {uuid}", 404
            )
        if method == "GET":
            return _json(200, mappings[uuid])
        if method == "PUT":
            try:
                update = json.loads(body or b"{}")
            except ValueError as error:
                raise AwsError(
                    "InvalidRequestContentException", f"Could not parse request body: {error}"
                ) from error
            unsupported = sorted(set(update) - {"Enabled", "FunctionName"})
            if unsupported:
                raise AwsError(
                    "InvalidParameterValueException",
                    f"the local stack changes only Enabled (template.yaml sets the rest), not {unsupported}",
                )
            enabled = update.get("Enabled")
            return _json(
                202,
                self._view().update_event_source_mapping(uuid, None if enabled is None else bool(enabled)),
            )
        raise AwsError(
            "ResourceNotFoundException", f"{method} {path} is not supported by the local Lambda", 404
        )

    def _function_matches(self, name: str | None, function_arn: str) -> bool:
        if not name:
            return True
        return (
            name == function_arn
            or name.rsplit(":function:", 1)[-1] == function_arn.rsplit(":function:", 1)[-1]
        )

    def _function(self, name: str, qualifier: str | None) -> str:
        name, _, arn_qualifier = name.partition(":$") if name.startswith("arn:") else (name, "", "")
        if qualifier not in (None, "$LATEST") or arn_qualifier not in ("", "LATEST"):
            raise AwsError(
                "ResourceNotFoundException", f"Function not found: {name} (only $LATEST exists)", 404
            )
        function_id = self._view().function_id(name)
        if function_id is None:
            raise AwsError("ResourceNotFoundException", f"Function not found: {name}", 404)
        return function_id

    def _invoke(self, function_id: str, invocation_type: str, body: bytes) -> Response:
        try:
            event = json.loads(body or b"{}")
        except ValueError as error:
            raise AwsError(
                "InvalidRequestContentException", f"Could not parse request body into json: {error}"
            ) from error
        if invocation_type == "DryRun":
            return Response(204, "application/json", b"")
        if invocation_type == "Event":
            self._view().invoke_async(function_id, event)
            return Response(202, "application/json", b"", {"X-Amz-Executed-Version": "$LATEST"})
        if invocation_type != "RequestResponse":
            raise AwsError("InvalidParameterValueException", f"unknown InvocationType {invocation_type}")
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        try:
            result = self._view().invoke(function_id, event)
        except Exception as error:  # a function error is a 200 with X-Amz-Function-Error, as on AWS
            payload = {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "requestId": str(uuid.uuid4()),
                "stackTrace": traceback.format_exception(error)[-6:],
            }
            return Response(
                200,
                "application/json",
                json.dumps(payload).encode(),
                {**headers, "X-Amz-Function-Error": "Unhandled"},
            )
        return Response(200, "application/json", json.dumps(result).encode(), headers)

    # -- CloudFormation ------------------------------------------------------------------------
    def cloudformation_request(self, body: bytes) -> Response:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        action = form.get("Action", "")
        handlers = {
            "DescribeStacks": self._describe_stacks,
            "DescribeStackResource": self._describe_stack_resource,
            "DescribeStackResources": self._describe_stack_resources,
            "ListStackResources": self._list_stack_resources,
        }
        try:
            if action not in handlers:
                raise AwsError(
                    "InvalidAction", f"{action or 'no Action'} is not supported by the local CloudFormation"
                )
            result = handlers[action](form)
        except AwsError as error:
            return _cfn_error(error)
        return _cfn_response(action, result)

    def _stack(self, form: Mapping[str, str], required: bool = True) -> StackView:
        name = form.get("StackName")
        stack = self.stack
        if stack is None or ((name or required) and name not in (stack.stack_name, stack.stack_id)):
            raise AwsError("ValidationError", f"Stack with id {name} does not exist")
        return stack

    def _describe_stacks(self, form: Mapping[str, str]) -> ET.Element:
        stack = self._stack(form, required=False)
        result = ET.Element("DescribeStacksResult")
        member = ET.SubElement(ET.SubElement(result, "Stacks"), "member")
        _fields(member, StackId=stack.stack_id, StackName=stack.stack_name, Description=stack.description)
        parameters = ET.SubElement(member, "Parameters")
        for key, value in stack.parameters().items():
            _fields(ET.SubElement(parameters, "member"), ParameterKey=key, ParameterValue=value)
        _fields(member, CreationTime=_timestamp(stack.created), StackStatus="CREATE_COMPLETE")
        outputs = ET.SubElement(member, "Outputs")
        for output in stack.outputs():
            _fields(ET.SubElement(outputs, "member"), **output)
        return result

    def _resource_fields(self, stack: StackView, resource: StackResource) -> dict[str, str]:
        return {
            "StackName": stack.stack_name,
            "StackId": stack.stack_id,
            "LogicalResourceId": resource.logical_id,
            "PhysicalResourceId": resource.physical_id,
            "ResourceType": resource.resource_type,
        }

    def _describe_stack_resource(self, form: Mapping[str, str]) -> ET.Element:
        stack = self._stack(form)
        logical_id = form.get("LogicalResourceId")
        found = [r for r in stack.resources() if r.logical_id == logical_id]
        if not found:
            raise AwsError(
                "ValidationError", f"Resource {logical_id} does not exist for stack {stack.stack_name}"
            )
        result = ET.Element("DescribeStackResourceResult")
        detail = ET.SubElement(result, "StackResourceDetail")
        _fields(detail, **self._resource_fields(stack, found[0]))
        _fields(detail, LastUpdatedTimestamp=_timestamp(stack.created), ResourceStatus="CREATE_COMPLETE")
        return result

    def _describe_stack_resources(self, form: Mapping[str, str]) -> ET.Element:
        stack = self._stack(form)
        wanted = {key: form[key] for key in ("LogicalResourceId", "PhysicalResourceId") if form.get(key)}
        result = ET.Element("DescribeStackResourcesResult")
        resources = ET.SubElement(result, "StackResources")
        for resource in stack.resources()[:LIST_PAGE_SIZE]:
            fields = self._resource_fields(stack, resource)
            if all(fields[key] == value for key, value in wanted.items()):
                member = ET.SubElement(resources, "member")
                _fields(member, **fields)
                _fields(member, Timestamp=_timestamp(stack.created), ResourceStatus="CREATE_COMPLETE")
        return result

    def _list_stack_resources(self, form: Mapping[str, str]) -> ET.Element:
        stack = self._stack(form)
        start = int(form.get("NextToken") or 0)
        page = stack.resources()[start : start + LIST_PAGE_SIZE]
        result = ET.Element("ListStackResourcesResult")
        summaries = ET.SubElement(result, "StackResourceSummaries")
        for resource in page:
            member = ET.SubElement(summaries, "member")
            fields = self._resource_fields(stack, resource)
            _fields(
                member,
                **{key: fields[key] for key in ("LogicalResourceId", "PhysicalResourceId", "ResourceType")},
            )
            _fields(member, LastUpdatedTimestamp=_timestamp(stack.created), ResourceStatus="CREATE_COMPLETE")
        if start + LIST_PAGE_SIZE < len(stack.resources()):
            _fields(result, NextToken=str(start + LIST_PAGE_SIZE))
        return result

    def _view(self) -> StackView:
        if self.stack is None:
            raise AwsError("ResourceNotFoundException", "the local stack has no functions yet", 404)
        return self.stack


def _json(status: int, doc: Any) -> Response:
    return Response(status, "application/json", json.dumps(doc).encode("utf-8"))


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _fields(parent: ET.Element, **values: str) -> None:
    for name, value in values.items():
        ET.SubElement(parent, name).text = value


def _cfn_response(action: str, result: ET.Element) -> Response:
    root = ET.Element(f"{action}Response", xmlns=CFN_NAMESPACE)
    root.append(result)
    _fields(ET.SubElement(root, "ResponseMetadata"), RequestId=str(uuid.uuid4()))
    return Response(200, "text/xml", ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _cfn_error(error: AwsError) -> Response:
    root = ET.Element("ErrorResponse", xmlns=CFN_NAMESPACE)
    _fields(ET.SubElement(root, "Error"), Type="Sender", Code=error.code, Message=error.message)
    _fields(root, RequestId=str(uuid.uuid4()))
    return Response(error.status, "text/xml", ET.tostring(root, encoding="utf-8", xml_declaration=True))
