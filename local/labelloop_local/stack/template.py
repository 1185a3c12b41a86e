"""Read template.yaml the way CloudFormation and SAM do, so the local stack needs no second config.

Short tags (``!Ref``, ``!GetAtt``, ``!Sub`` ...) load as their long ``{"Fn::...": ...}`` form; a
:class:`Resolver` evaluates intrinsics against parameters, pseudo parameters and the physical ids of
provisioned resources. ``Globals.Function`` is merged into every ``AWS::Serverless::Function`` as SAM
does (maps merged, environment variables merged key by key, lists concatenated, scalars overridden).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_BUS = "default"

# CloudFormation removes a property whose value is !Ref AWS::NoValue; the resolver returns this marker.
NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "AWS::NoValue"})()

_FUNCTION_TAGS = (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Length",
    "ToJsonString",
)


class TemplateError(Exception):
    """The template is malformed or uses something the local stack cannot evaluate."""


class UnresolvedReference(TemplateError):
    """An intrinsic refers to a resource or attribute that has no physical value (yet)."""

    def __init__(self, reference: str, where: str = "") -> None:
        self.reference = reference
        suffix = f" (in {where})" if where else ""
        super().__init__(f"cannot resolve {reference}: no physical value known{suffix}")


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that also understands CloudFormation short-form intrinsic tags."""


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unsupported YAML node {node!r}")


def _tag_constructor(long_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        return {long_name: _construct_node(loader, node)}

    return construct


def _construct_getatt(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {"Fn::GetAtt": value}


_CfnLoader.add_constructor("!Ref", _tag_constructor("Ref"))
_CfnLoader.add_constructor("!Condition", _tag_constructor("Condition"))
_CfnLoader.add_constructor("!GetAtt", _construct_getatt)
for _name in _FUNCTION_TAGS:
    _CfnLoader.add_constructor(f"!{_name}", _tag_constructor(f"Fn::{_name}"))


def parse_yaml(text: str) -> dict[str, Any]:
    document = yaml.load(text, Loader=_CfnLoader)  # a SafeLoader subclass
    if not isinstance(document, dict):
        raise TemplateError("template is not a YAML mapping")
    return document


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, Any]
    events: dict[str, dict[str, Any]]
    dead_letter_queue: str | None
    event_invoke_config: dict[str, Any]
    properties: dict[str, Any] = field(repr=False)

    @property
    def maximum_retry_attempts(self) -> int:
        """Lambda async invocation retries after a function error (Lambda's default is 2)."""
        return int(self.event_invoke_config.get("MaximumRetryAttempts", 2))

    @property
    def maximum_event_age_seconds(self) -> int:
        return int(self.event_invoke_config.get("MaximumEventAgeInSeconds", 21600))


@dataclass(frozen=True)
class HttpRouteSpec:
    """One `HttpApi` event of a function: a route of an `AWS::Serverless::HttpApi`."""

    function: str
    event_name: str
    api: str  # logical id of the HttpApi
    method: str  # upper case, or ANY
    path: str  # e.g. /api/tasks/{taskId}
    authorizer: str | None  # the authorizer's name, None for a route without one (Auth: NONE)
    payload_format: str = "2.0"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class JwtAuthorizerSpec:
    issuer: str
    audience: tuple[str, ...]
    identity_source: str = "$request.header.Authorization"


@dataclass(frozen=True)
class HttpApiSpec:
    """An `AWS::Serverless::HttpApi`: its JWT authorizers, default authorizer and throttling."""

    logical_id: str
    authorizers: dict[str, JwtAuthorizerSpec]
    default_authorizer: str | None
    rate_limit: float | None
    burst_limit: int | None


@dataclass(frozen=True)
class RuleSpec:
    function: str
    event_name: str
    kind: str  # "EventBridgeRule" | "Schedule"
    bus: str  # logical id of the bus, or "default"
    pattern: dict[str, Any] | None
    schedule: str | None
    retry_policy: dict[str, Any]
    dlq: str | None
    enabled: bool = True
    input: str | None = None

    @property
    def name(self) -> str:
        """Deterministic rule name (SAM derives `<Function><EventName>`)."""
        return f"{self.function}{self.event_name}"

    @property
    def maximum_retry_attempts(self) -> int:
        """EventBridge's default is 185 retries; our template sets it explicitly."""
        return int(self.retry_policy.get("MaximumRetryAttempts", 185))

    @property
    def maximum_event_age_seconds(self) -> int:
        return int(self.retry_policy.get("MaximumEventAgeInSeconds", 86400))


@dataclass(frozen=True)
class QueueRuleSpec:
    """An `AWS::Events::Rule` of the template whose target is an SQS queue of the template."""

    logical_id: str
    bus: str  # logical id of the bus, or "default"
    pattern: dict[str, Any]
    queue: str  # logical id of the target queue
    retry_policy: dict[str, Any]
    dlq: str | None
    enabled: bool = True


@dataclass(frozen=True)
class MappingSpec:
    """An `AWS::Lambda::EventSourceMapping` from an SQS queue of the template to one of its functions."""

    logical_id: str
    function: str
    queue: str
    batch_size: int = 10
    batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None  # None: Lambda's default scaling
    enabled: bool = True


class Resolver:
    """Evaluates CloudFormation intrinsics for one stack."""

    def __init__(
        self,
        template: SamTemplate,
        params: Mapping[str, Any] | None = None,
        physical: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        stack_name: str = "labelloop-local",
        placeholders: bool = False,
    ) -> None:
        self.template = template
        self.params = template.parameter_values(params, strict=not placeholders)
        self.physical = physical if physical is not None else {}
        self.attributes = attributes if attributes is not None else {}
        self.region = region
        self.account = account
        self.stack_name = stack_name
        # With placeholders, unknown resources resolve to "<LogicalId>" / "<LogicalId.Attr>" (for listing).
        self.placeholders = placeholders

    # -- pseudo parameters -------------------------------------------------------------------------
    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/"
                "00000000-0000-0000-0000-000000000000"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    # -- references --------------------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        if name in self.template.resources or self.placeholders:
            if self.placeholders:
                return f"<{name}>"
            raise UnresolvedReference(f"!Ref {name}")
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        attrs = self.attributes.get(logical_id, {})
        if attribute in attrs:
            return attrs[attribute]
        if self.placeholders:
            return f"<{logical_id}.{attribute}>"
        if logical_id not in self.template.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        raise UnresolvedReference(f"!GetAtt {logical_id}.{attribute}")

    # -- conditions --------------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        conditions = self.template.document.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(conditions[name]))

    # -- evaluation --------------------------------------------------------------------------------
    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in (self.resolve(i) for i in node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            handler = self._intrinsics().get(key)
            if handler is not None:
                return handler(value)
        resolved = {}
        for key, value in node.items():
            item = self.resolve(value)
            if item is not NO_VALUE:
                resolved[key] = item
        return resolved

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": lambda v: self.ref(self._scalar(v, "Ref")),
            "Fn::GetAtt": self._fn_get_att,
            "Fn::Sub": self._fn_sub,
            "Fn::Join": self._fn_join,
            "Fn::Select": self._fn_select,
            "Fn::Split": self._fn_split,
            "Fn::If": self._fn_if,
            "Fn::Equals": self._fn_equals,
            "Fn::Not": lambda v: not self._single(v, "Fn::Not"),
            "Fn::And": lambda v: all(bool(self.resolve(c)) for c in v),
            "Fn::Or": lambda v: any(bool(self.resolve(c)) for c in v),
            "Condition": lambda v: self.condition(self._scalar(v, "Condition")),
            "Fn::FindInMap": self._fn_find_in_map,
            "Fn::Base64": lambda v: base64.b64encode(str(self.resolve(v)).encode()).decode(),
            "Fn::GetAZs": lambda v: [f"{self.region}{suffix}" for suffix in "abc"],
            "Fn::Length": lambda v: len(self.resolve(v)),
            "Fn::ToJsonString": lambda v: json.dumps(self.resolve(v), separators=(",", ":")),
            "Fn::ImportValue": self._unsupported("Fn::ImportValue"),
            "Fn::Cidr": self._unsupported("Fn::Cidr"),
            "Fn::Transform": self._unsupported("Fn::Transform"),
        }

    @staticmethod
    def _unsupported(name: str) -> Callable[[Any], Any]:
        def fail(_: Any) -> Any:
            raise TemplateError(f"{name} is not supported by the local stack")

        return fail

    def _scalar(self, value: Any, fn: str) -> str:
        value = self.resolve(value)
        if not isinstance(value, str):
            raise TemplateError(f"{fn} expects a string, got {value!r}")
        return value

    def _single(self, value: Any, fn: str) -> Any:
        if isinstance(value, list):
            if len(value) != 1:
                raise TemplateError(f"{fn} expects one argument, got {value!r}")
            value = value[0]
        return self.resolve(value)

    def _fn_get_att(self, value: Any) -> Any:
        if isinstance(value, str):
            logical_id, _, attribute = value.partition(".")
        elif isinstance(value, list) and len(value) == 2:
            logical_id, attribute = value[0], self.resolve(value[1])
        else:
            raise TemplateError(f"Fn::GetAtt expects [LogicalId, Attribute], got {value!r}")
        return self.get_att(logical_id, attribute)

    _SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")

    def _fn_sub(self, value: Any) -> str:
        if isinstance(value, list):
            if len(value) != 2 or not isinstance(value[1], dict):
                raise TemplateError(f"Fn::Sub list form expects [string, {{vars}}], got {value!r}")
            text, variables = value[0], {k: self.resolve(v) for k, v in value[1].items()}
        else:
            text, variables = value, {}
        if not isinstance(text, str):
            raise TemplateError(f"Fn::Sub expects a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} stays literal
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                return str(self.get_att(logical_id, attribute))
            return _as_text(self.ref(name))

        return self._SUB_VARIABLE.sub(substitute, text)

    def _fn_join(self, value: Any) -> str:
        if not isinstance(value, list) or len(value) != 2:
            raise TemplateError(f"Fn::Join expects [delimiter, [values]], got {value!r}")
        delimiter, items = value[0], self.resolve(value[1])
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Join expects a list of values, got {items!r}")
        return str(delimiter).join(_as_text(item) for item in items)

    def _fn_select(self, value: Any) -> Any:
        if not isinstance(value, list) or len(value) != 2:
            raise TemplateError(f"Fn::Select expects [index, [values]], got {value!r}")
        index, items = int(self.resolve(value[0])), self.resolve(value[1])
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise TemplateError(f"Fn::Select index {index} out of range for {items!r}")
        return items[index]

    def _fn_split(self, value: Any) -> list[str]:
        if not isinstance(value, list) or len(value) != 2:
            raise TemplateError(f"Fn::Split expects [delimiter, string], got {value!r}")
        return str(self.resolve(value[1])).split(str(value[0]))

    def _fn_if(self, value: Any) -> Any:
        if not isinstance(value, list) or len(value) != 3:
            raise TemplateError(f"Fn::If expects [condition, then, else], got {value!r}")
        return self.resolve(value[1] if self.condition(value[0]) else value[2])

    def _fn_equals(self, value: Any) -> bool:
        if not isinstance(value, list) or len(value) != 2:
            raise TemplateError(f"Fn::Equals expects two values, got {value!r}")
        left, right = (self.resolve(v) for v in value)
        return _as_text(left) == _as_text(right)

    def _fn_find_in_map(self, value: Any) -> Any:
        if not isinstance(value, list) or len(value) not in (3, 4):
            raise TemplateError(f"Fn::FindInMap expects [map, key, key], got {value!r}")
        map_name, top, second = (self.resolve(v) for v in value[:3])
        try:
            return self.template.document["Mappings"][map_name][top][second]
        except KeyError:
            if len(value) == 4 and isinstance(value[3], dict) and "DefaultValue" in value[3]:
                return self.resolve(value[3]["DefaultValue"])
            raise TemplateError(f"Fn::FindInMap: no {map_name}.{top}.{second}") from None


def _as_text(value: Any) -> str:
    """How CloudFormation turns a resolved value into a string (env vars, Sub, Join)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def as_text(value: Any) -> str:
    return _as_text(value)


def _merge_globals(global_props: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (recursively), lists concatenate, the resource's scalar wins."""
    merged: dict[str, Any] = copy.deepcopy(dict(global_props))
    for key, value in props.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_intrinsic(node: Mapping[str, Any]) -> bool:
    if len(node) != 1:
        return False
    key = next(iter(node))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def referenced_logical_id(node: Any) -> str | None:
    """The logical id an ARN-valued property points at (``!GetAtt X.Arn``, ``!Ref X``, ``!Sub ${X.Arn}``)."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and isinstance(value, str):
            return value
        if key == "Fn::GetAtt":
            if isinstance(value, str):
                return value.partition(".")[0]
            if isinstance(value, list) and value:
                return str(value[0])
        if key == "Fn::Sub" and isinstance(value, str):
            match = re.fullmatch(r"\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}", value)
            if match:
                return match.group(1)
    return None


class SamTemplate:
    def __init__(self, document: dict[str, Any], path: Path) -> None:
        self.document = document
        self.path = path
        self.resources: dict[str, dict[str, Any]] = document.get("Resources") or {}
        if not self.resources:
            raise TemplateError(f"{path}: template has no Resources")

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    # -- parameters --------------------------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """Parameter name → default value (None when the parameter has no default)."""
        return {name: spec.get("Default") for name, spec in (self.document.get("Parameters") or {}).items()}

    def parameter_values(
        self, overrides: Mapping[str, Any] | None = None, strict: bool = True
    ) -> dict[str, Any]:
        """Values as !Ref sees them: strings, lists for List/CommaDelimitedList parameters.

        Not strict: a parameter without value becomes the placeholder ``<Name>`` (for listings).
        """
        specs = self.document.get("Parameters") or {}
        unknown = set(overrides or {}) - set(specs)
        if unknown:
            raise TemplateError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            value = (overrides or {}).get(name, spec.get("Default"))
            if value is None and not strict:
                values[name] = f"<{name}>"
                continue
            if value is None:
                raise TemplateError(f"parameter {name} has no default and no value was given")
            allowed = spec.get("AllowedValues")
            if allowed is not None and _as_text(value) not in [_as_text(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(str(pattern), _as_text(value)):
                raise TemplateError(f"parameter {name}={value!r} does not match its AllowedPattern {pattern}")
            param_type = str(spec.get("Type", "String"))
            if param_type.startswith("List<") or param_type == "CommaDelimitedList":
                values[name] = (
                    value if isinstance(value, list) else [part.strip() for part in str(value).split(",")]
                )
            else:
                values[name] = _as_text(value)
        return values

    # -- resources ---------------------------------------------------------------------------------
    def resource(self, logical_id: str) -> dict[str, Any]:
        if logical_id not in self.resources:
            raise TemplateError(f"{self.path}: no resource {logical_id}")
        return self.resources[logical_id]

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") == resource_type}

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        resource = self.resource(logical_id)
        if resource.get("Type") != "AWS::Serverless::Function":
            raise TemplateError(f"{logical_id} is not an AWS::Serverless::Function")
        global_props = (self.document.get("Globals") or {}).get("Function") or {}
        return _merge_globals(global_props, resource.get("Properties") or {})

    def functions(self, resolver: Resolver | None = None) -> dict[str, FunctionSpec]:
        """Every function; with `resolver`, only those whose Condition holds for its parameters."""
        specs = {}
        for logical_id in self.resources_of_type("AWS::Serverless::Function"):
            if resolver is not None and not self.condition_holds(logical_id, resolver):
                continue
            props = self.function_properties(logical_id)
            code_uri = props.get("CodeUri")
            if not isinstance(code_uri, str):
                raise TemplateError(f"{logical_id}: CodeUri must be a local path string, got {code_uri!r}")
            invoke_config = props.get("EventInvokeConfig") or {}
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                code_dir=(self.base_dir / code_uri).resolve(),
                handler=str(props.get("Handler", "app.lambda_handler")),
                environment=dict((props.get("Environment") or {}).get("Variables") or {}),
                events=dict(props.get("Events") or {}),
                dead_letter_queue=self._function_dlq(props),
                event_invoke_config=invoke_config,
                properties=props,
            )
        return specs

    def condition_holds(self, logical_id: str, resolver: Resolver) -> bool:
        """The resource exists for these parameters (no Condition, or its Condition is true)."""
        condition = self.resource(logical_id).get("Condition")
        return condition is None or resolver.condition(str(condition))

    def http_apis(self, resolver: Resolver) -> dict[str, HttpApiSpec]:
        """Every `AWS::Serverless::HttpApi` whose Condition holds, resolved with `resolver`."""
        apis = {}
        for logical_id, resource in self.resources_of_type("AWS::Serverless::HttpApi").items():
            if not self.condition_holds(logical_id, resolver):
                continue
            props = resource.get("Properties") or {}
            auth = props.get("Auth") or {}
            authorizers = {}
            for name, config in (auth.get("Authorizers") or {}).items():
                jwt = resolver.resolve(config.get("JwtConfiguration") or {})
                if not jwt:
                    raise TemplateError(
                        f"{logical_id}.Auth.Authorizers.{name}: only JWT authorizers are supported"
                    )
                audience = jwt.get("audience") or jwt.get("Audience") or []
                authorizers[name] = JwtAuthorizerSpec(
                    issuer=as_text(jwt.get("issuer") or jwt.get("Issuer")),
                    audience=tuple(as_text(item) for item in audience),
                    identity_source=as_text(config.get("IdentitySource", "$request.header.Authorization")),
                )
            settings = resolver.resolve(props.get("DefaultRouteSettings") or {})
            rate, burst = settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
            apis[logical_id] = HttpApiSpec(
                logical_id,
                authorizers,
                auth.get("DefaultAuthorizer"),
                float(rate) if rate is not None else None,
                int(burst) if burst is not None else None,
            )
        return apis

    def http_routes(self, resolver: Resolver) -> list[HttpRouteSpec]:
        """Every `HttpApi` event of every function that exists for these parameters."""
        apis = self.http_apis(resolver)
        routes = []
        for function_id, spec in self.functions(resolver).items():
            for event_name, event in spec.events.items():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties") or {}
                api = referenced_logical_id(props.get("ApiId"))
                if api not in apis:
                    raise TemplateError(f"{function_id}.Events.{event_name}: ApiId must reference an HttpApi")
                authorizer = (props.get("Auth") or {}).get("Authorizer", apis[api].default_authorizer)
                routes.append(
                    HttpRouteSpec(
                        function=function_id,
                        event_name=event_name,
                        api=api,
                        method=str(props.get("Method", "ANY")).upper(),
                        path=str(props.get("Path", "/")),
                        authorizer=None if authorizer in (None, "NONE") else str(authorizer),
                        payload_format=str(props.get("PayloadFormatVersion", "2.0")),
                    )
                )
        return routes

    @staticmethod
    def _function_dlq(props: Mapping[str, Any]) -> str | None:
        on_failure = ((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure")
        if on_failure and on_failure.get("Destination") is not None:
            return referenced_logical_id(on_failure["Destination"])
        dead_letter = props.get("DeadLetterQueue") or {}
        if dead_letter.get("TargetArn") is not None:
            return referenced_logical_id(dead_letter["TargetArn"])
        return None

    # -- rules -------------------------------------------------------------------------------------
    def rules(self, resolver: Resolver | None = None) -> list[RuleSpec]:
        """Every EventBridgeRule / Schedule event of every function.

        Patterns are resolved with ``resolver``; without one, parameter defaults are used and
        resource references become ``<LogicalId>`` / ``<LogicalId.Attr>`` placeholders.
        """
        resolver = resolver or Resolver(self, placeholders=True)
        rules = []
        for function_id, spec in self.functions(resolver).items():
            for event_name, event in spec.events.items():
                kind = event.get("Type")
                if kind not in ("EventBridgeRule", "Schedule"):
                    continue
                rules.append(
                    self._rule(function_id, event_name, kind, event.get("Properties") or {}, resolver)
                )
        return rules

    def _rule(
        self, function_id: str, event_name: str, kind: str, props: dict[str, Any], resolver: Resolver
    ) -> RuleSpec:
        where = f"{function_id}.Events.{event_name}"
        bus = DEFAULT_BUS
        if props.get("EventBusName") is not None:
            bus = referenced_logical_id(props["EventBusName"]) or str(resolver.resolve(props["EventBusName"]))
        pattern = schedule = None
        if kind == "EventBridgeRule":
            pattern = resolver.resolve(props.get("Pattern"))
            if not isinstance(pattern, dict) or not pattern:
                raise TemplateError(f"{where}: EventBridgeRule needs a Pattern")
        else:
            schedule = resolver.resolve(props.get("Schedule"))
            if not isinstance(schedule, str):
                raise TemplateError(f"{where}: Schedule needs a Schedule expression")
        enabled = resolver.resolve(props.get("Enabled", True))
        state = resolver.resolve(props.get("State", "ENABLED"))
        input_value = props.get("Input")
        return RuleSpec(
            function=function_id,
            event_name=event_name,
            kind=kind,
            bus=bus,
            pattern=pattern,
            schedule=schedule,
            retry_policy={k: int(v) for k, v in resolver.resolve(props.get("RetryPolicy") or {}).items()},
            dlq=self._rule_dlq(function_id, event_name, props.get("DeadLetterConfig")),
            enabled=_as_text(enabled) == "true" and state == "ENABLED",
            input=None if input_value is None else str(resolver.resolve(input_value)),
        )

    def queue_rules(self, resolver: Resolver | None = None) -> list[QueueRuleSpec]:
        """Every `AWS::Events::Rule` with an SQS queue target (one spec per such target)."""
        resolver = resolver or Resolver(self, placeholders=True)
        specs = []
        for logical_id, resource in self.resources_of_type("AWS::Events::Rule").items():
            props = resource.get("Properties") or {}
            bus = DEFAULT_BUS
            if props.get("EventBusName") is not None:
                bus = referenced_logical_id(props["EventBusName"]) or str(
                    resolver.resolve(props["EventBusName"])
                )
            pattern = resolver.resolve(props.get("EventPattern"))
            for target in props.get("Targets") or []:
                queue = referenced_logical_id(target.get("Arn"))
                if queue is None or self.resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
                    continue
                dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
                retry = resolver.resolve(target.get("RetryPolicy") or {})
                specs.append(
                    QueueRuleSpec(
                        logical_id=logical_id,
                        bus=bus,
                        pattern=pattern,
                        queue=queue,
                        retry_policy={k: int(v) for k, v in retry.items()},
                        dlq=referenced_logical_id(dead_letter) if dead_letter is not None else None,
                        enabled=resolver.resolve(props.get("State", "ENABLED")) == "ENABLED",
                    )
                )
        return specs

    def event_source_mappings(self, resolver: Resolver | None = None) -> list[MappingSpec]:
        """Every `AWS::Lambda::EventSourceMapping` from a queue of the template to a function of it."""
        resolver = resolver or Resolver(self, placeholders=True)
        specs = []
        for logical_id, resource in self.resources_of_type("AWS::Lambda::EventSourceMapping").items():
            props = resource.get("Properties") or {}
            function = referenced_logical_id(props.get("FunctionName"))
            queue = referenced_logical_id(props.get("EventSourceArn"))
            if function not in self.functions() or self.resources.get(str(queue), {}).get("Type") != (
                "AWS::SQS::Queue"
            ):
                raise TemplateError(
                    f"{logical_id}: the local stack runs event source mappings from a queue of the template "
                    "to a function of the template"
                )
            concurrency = (resolver.resolve(props.get("ScalingConfig") or {}) or {}).get("MaximumConcurrency")
            specs.append(
                MappingSpec(
                    logical_id=logical_id,
                    function=str(function),
                    queue=str(queue),
                    batch_size=int(resolver.resolve(props.get("BatchSize", 10))),
                    batching_window_seconds=int(
                        resolver.resolve(props.get("MaximumBatchingWindowInSeconds", 0))
                    ),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (resolver.resolve(props.get("FunctionResponseTypes")) or []),
                    maximum_concurrency=int(concurrency) if concurrency is not None else None,
                    enabled=_as_text(resolver.resolve(props.get("Enabled", True))) == "true",
                )
            )
        return specs

    @staticmethod
    def _rule_dlq(function_id: str, event_name: str, config: Any) -> str | None:
        if not config:
            return None
        if config.get("Arn") is not None:
            return referenced_logical_id(config["Arn"])
        if config.get("Type") == "SQS":
            # SAM creates the queue itself: QueueLogicalId or `<Function><Event>Queue`.
            return str(config.get("QueueLogicalId") or f"{function_id}{event_name}Queue")
        return None


def load_template(path: str | Path = "template.yaml") -> SamTemplate:
    template_path = Path(path)
    try:
        text = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {template_path}: {exc.strerror}") from exc
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{template_path}: invalid YAML: {exc}") from exc
    return SamTemplate(document, template_path.resolve())
