"""Create the data-plane resources of template.yaml on an emulated AWS (moto, in-process or server).

Only what the handlers touch is created: the bucket, buses, archives, ledger and task tables, SSM
parameters, SQS queues and the reviewers' Cognito user pool and app client. Functions are not
deployed (the local stack runs them in-process), the Rekognition project and the A2I custom resource
get their physical ids from the local services (``resolved``).
IAM roles, policies and other control-plane resources (alarms, the alarm topic and its key, log
groups) are recorded with placeholder ids in AWS's shape so that references to them still resolve.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labelloop_local.stack.template import (
    DEFAULT_ACCOUNT,
    DEFAULT_BUS,
    NO_VALUE,
    FunctionSpec,
    HttpApiSpec,
    HttpRouteSpec,
    Resolver,
    RuleSpec,
    SamTemplate,
    TemplateError,
    UnresolvedReference,
    as_text,
)

# The order matters: archives need buses, SSM values may reference the project or the bucket.
_PROVISION_ORDER = (
    "AWS::S3::Bucket",
    "AWS::Events::EventBus",
    "AWS::SQS::Queue",
    "AWS::DynamoDB::Table",
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
    "AWS::Rekognition::Project",
    "AWS::SSM::Parameter",
    "AWS::Events::Archive",
)


@dataclass
class Stack:
    template: SamTemplate
    session: Any  # boto3.Session
    stack_name: str
    region: str
    account: str
    params: dict[str, Any]
    physical: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Resources waiting for a physical value from outside moto: logical id → the missing reference.
    deferred: dict[str, str] = field(default_factory=dict)

    def create_deferred(self) -> None:
        """Create the deferred resources once ``set_resolved`` supplied what they reference."""
        for logical_id in list(self.deferred):
            del self.deferred[logical_id]
            _create_or_defer(self, logical_id, self.template.resource(logical_id))
        if self.deferred:
            missing = ", ".join(f"{lid} needs {ref}" for lid, ref in self.deferred.items())
            raise TemplateError(f"resources still unresolved: {missing}")

    def exists(self, logical_id: str) -> bool:
        """The resource is part of this stack: its Condition holds and it has a physical id."""
        resource = self.template.resources.get(logical_id)
        return resource is not None and logical_id in self.physical and _condition_holds(self, resource)

    @property
    def resolver(self) -> Resolver:
        return Resolver(
            self.template,
            self.params,
            self.physical,
            self.attributes,
            region=self.region,
            account=self.account,
            stack_name=self.stack_name,
        )

    def _single(self, resource_type: str) -> str:
        ids = list(self.template.resources_of_type(resource_type))
        if len(ids) != 1:
            raise TemplateError(f"expected exactly one {resource_type} in the template, found {ids}")
        return str(self.physical[ids[0]])

    @property
    def bucket(self) -> str:
        return (
            str(self.physical["ImageBucket"])
            if "ImageBucket" in self.physical
            else self._single("AWS::S3::Bucket")
        )

    @property
    def table(self) -> str:
        return (
            str(self.physical["LedgerTable"])
            if "LedgerTable" in self.physical
            else self._single("AWS::DynamoDB::Table")
        )

    @property
    def bus_name(self) -> str:
        return (
            str(self.physical["AppEventBus"])
            if "AppEventBus" in self.physical
            else self._single("AWS::Events::EventBus")
        )

    def bus_for(self, bus: str) -> str:
        """Physical bus name for a rule's bus (a logical id or "default")."""
        return DEFAULT_BUS if bus == DEFAULT_BUS else str(self.physical.get(bus, bus))

    def queue_url(self, logical_id: str) -> str:
        if logical_id not in self.physical:
            raise KeyError(f"no provisioned queue {logical_id}")
        return str(self.physical[logical_id])

    def queue_arn(self, logical_id: str) -> str:
        return str(self.attributes[logical_id]["Arn"])

    def function_name(self, function_logical_id: str) -> str:
        return str(self.physical[function_logical_id])

    def function_arn(self, function_logical_id: str) -> str:
        return str(self.attributes[function_logical_id]["Arn"])

    def env_for(self, function_logical_id: str) -> dict[str, str]:
        """The function's environment variables (Globals merged), intrinsics resolved, as strings."""
        spec = self.functions().get(function_logical_id)
        if spec is None:
            raise TemplateError(f"no function {function_logical_id} in {self.template.path}")
        resolver = self.resolver
        env = {}
        for name, raw in spec.environment.items():
            try:
                value = resolver.resolve(raw)
            except TemplateError as exc:
                raise TemplateError(f"{function_logical_id} env {name}: {exc}") from exc
            if value is not None and value is not NO_VALUE:
                env[name] = as_text(value)
        return env

    def rules(self) -> list[RuleSpec]:
        return self.template.rules(self.resolver)

    def functions(self) -> dict[str, FunctionSpec]:
        """The functions that exist for this stack's parameters (their Condition holds)."""
        return self.template.functions(self.resolver)

    def http_routes(self) -> list[HttpRouteSpec]:
        return self.template.http_routes(self.resolver)

    def http_apis(self) -> dict[str, HttpApiSpec]:
        return self.template.http_apis(self.resolver)

    def set_resolved(self, resolved: Mapping[str, Any]) -> None:
        """Record physical ids/attributes produced outside moto (e.g. by the local services).

        Keys: ``LogicalId`` (physical id), ``LogicalId.Attribute``, or a bare attribute name such as
        ``FlowDefinitionArn``, which is attached to every ``Custom::`` resource of the template.
        """
        for key, value in resolved.items():
            logical_id, _, attribute = key.partition(".")
            if attribute:
                self.attributes.setdefault(logical_id, {})[attribute] = value
            elif key in self.template.resources:
                self.physical[key] = value
            else:
                for custom_id in self._custom_resources():
                    self.attributes.setdefault(custom_id, {})[key] = value
        for custom_id in self._custom_resources():
            if custom_id in self.attributes:
                self.physical.setdefault(custom_id, f"{self.stack_name}-{custom_id}")

    def _custom_resources(self) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.template.resources.items()
            if str(resource.get("Type", "")).startswith("Custom::")
        ]


def provision(
    template: SamTemplate,
    session: Any,
    params: Mapping[str, Any] | None = None,
    stack_name: str = "labelloop-local",
    resolved: Mapping[str, Any] | None = None,
) -> Stack:
    """Create the template's resources on the endpoint ``session`` points at; returns the Stack.

    ``resolved`` pre-sets physical ids/attributes not created here, e.g.
    ``{"FlowDefinitionArn": arn}`` or ``{"A2IResources.FlowDefinitionArn": arn}`` or
    ``{"CustomLabelsProject": project_arn}``.
    """
    region = session.region_name or "us-east-1"
    stack = Stack(
        template=template,
        session=session,
        stack_name=stack_name,
        region=region,
        account=_account_id(session),
        params=template.parameter_values(params),
    )
    if resolved:
        stack.set_resolved(resolved)
    _assign_placeholders(stack)
    for resource_type in _PROVISION_ORDER:
        for logical_id, resource in template.resources_of_type(resource_type).items():
            if _condition_holds(stack, resource):
                _create_or_defer(stack, logical_id, resource)
    _create_sam_managed_queues(stack)
    return stack


def _create_or_defer(stack: Stack, logical_id: str, resource: Mapping[str, Any]) -> None:
    """Create now, or later when it references something created outside moto (e.g. the A2I flow)."""
    try:
        _CREATORS[str(resource["Type"])](stack, logical_id, resource.get("Properties") or {})
    except UnresolvedReference as exc:
        stack.deferred[logical_id] = exc.reference


def _account_id(session: Any) -> str:
    try:
        return str(session.client("sts").get_caller_identity()["Account"])
    except Exception:  # an endpoint without STS: moto's default account is what everything else uses
        return DEFAULT_ACCOUNT


def _condition_holds(stack: Stack, resource: Mapping[str, Any]) -> bool:
    condition = resource.get("Condition")
    return condition is None or stack.resolver.condition(str(condition))


def _generated_name(stack: Stack, logical_id: str, max_length: int = 80, lower: bool = False) -> str:
    """CloudFormation-like generated name, deterministic so that reruns find the same resources."""
    name = f"{stack.stack_name}-{logical_id}"
    if lower:
        name = re.sub(r"[^a-z0-9.-]", "-", name.lower())
    return name[:max_length]


def _assign_placeholders(stack: Stack) -> None:
    """Physical ids for resources that are not emulated: functions, roles and layers, and the
    operations resources (alarm topic and its key, log groups, alarms), which nothing reads locally.

    Each gets what ``!Ref`` and ``!GetAtt`` return on AWS, in AWS's shape (a topic's Ref is its ARN,
    a key's its id), so references to them resolve as they would after a deployment.
    """
    for logical_id, resource in stack.template.resources.items():
        if logical_id in stack.physical or resource.get("Type") in _CREATORS:
            continue
        physical, attributes = _placeholder(stack, logical_id, str(resource.get("Type", "")))
        stack.physical[logical_id] = physical
        for name, value in attributes.items():
            stack.attributes.setdefault(logical_id, {}).setdefault(name, value)


def _placeholder(stack: Stack, logical_id: str, resource_type: str) -> tuple[str, dict[str, str]]:
    """(Ref value, attributes) of a resource the local stack does not create."""
    props = stack.template.resource(logical_id).get("Properties") or {}
    prefix = f"arn:aws:{{}}:{stack.region}:{stack.account}"

    def name(key: str, max_length: int = 80) -> str:
        try:
            explicit = _explicit_name(stack, props, key)
        except UnresolvedReference:  # named after something not known yet: a generated name will do
            explicit = None
        return explicit or _generated_name(stack, logical_id, max_length)

    if resource_type == "AWS::Serverless::Function":
        function = name("FunctionName", 64)
        return function, {"Arn": f"{prefix.format('lambda')}:function:{function}"}
    if resource_type in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
        role = _generated_name(stack, logical_id, 64)
        return role, {"Arn": f"arn:aws:iam::{stack.account}:role/{role}"}
    if resource_type == "AWS::SNS::Topic":
        topic = name("TopicName", 256)
        arn = f"{prefix.format('sns')}:{topic}"
        return arn, {"TopicArn": arn, "TopicName": topic}
    if resource_type == "AWS::KMS::Key":
        key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stack.stack_name}/{logical_id}"))
        return key_id, {"Arn": f"{prefix.format('kms')}:key/{key_id}", "KeyId": key_id}
    if resource_type == "AWS::Logs::LogGroup":
        group = name("LogGroupName", 512)
        return group, {"Arn": f"{prefix.format('logs')}:log-group:{group}:*"}
    if resource_type == "AWS::Lambda::EventSourceMapping":  # its Ref is the mapping's UUID
        mapping = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stack.stack_name}/{logical_id}"))
        return mapping, {"Arn": f"{prefix.format('lambda')}:event-source-mapping:{mapping}"}
    if resource_type == "AWS::Events::Rule":  # created by the local stack under this name
        rule = name("Name", 64)
        try:
            bus = props.get("EventBusName")
            path = rule if bus is None else f"{as_text(stack.resolver.resolve(bus))}/{rule}"
        except UnresolvedReference:
            path = rule
        return rule, {"Arn": f"{prefix.format('events')}:rule/{path}"}
    if resource_type == "AWS::CloudWatch::Alarm":
        alarm = name("AlarmName", 255)
        return alarm, {"Arn": f"{prefix.format('cloudwatch')}:alarm:{alarm}"}
    if resource_type == "AWS::Serverless::HttpApi":  # Ref: the API id (10 characters)
        api_id = hashlib.sha256(f"{stack.stack_name}/{logical_id}".encode()).hexdigest()[:10]
        return api_id, {"ApiEndpoint": f"https://{api_id}.execute-api.{stack.region}.amazonaws.com"}
    return _generated_name(stack, logical_id), {
        "Arn": f"{prefix.format('cloudformation')}:placeholder/{logical_id}"
    }


def _explicit_name(stack: Stack, props: Mapping[str, Any], key: str) -> str | None:
    if props.get(key) is None:
        return None
    value = stack.resolver.resolve(props[key])
    return None if value is NO_VALUE else as_text(value)


# -- creators ---------------------------------------------------------------------------------------


def _create_bucket(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    name = _explicit_name(stack, props, "BucketName") or _generated_name(stack, logical_id, 63, lower=True)
    s3 = stack.session.client("s3")
    kwargs: dict[str, Any] = {"Bucket": name}
    if stack.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": stack.region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(**kwargs)
    resolve = stack.resolver.resolve
    versioning = resolve(props.get("VersioningConfiguration") or {})
    if versioning.get("Status"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    cors = resolve(props.get("CorsConfiguration") or {})
    cors_rules = (cors.get("CorsRules") if isinstance(cors, dict) else None) or []
    if cors_rules:
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(r) for r in cors_rules]})
    notification = resolve(props.get("NotificationConfiguration") or {})
    if (notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled") in (True, "true"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    public_access = resolve(props.get("PublicAccessBlockConfiguration") or {})
    if public_access:
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={k: v in (True, "true") for k, v in public_access.items()},
        )
    stack.physical[logical_id] = name
    stack.attributes[logical_id] = {
        "Arn": f"arn:aws:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{stack.region}.amazonaws.com",
    }


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation CorsRule → S3 API CORSRule (three properties are named differently)."""
    renamed = {"MaxAge": "MaxAgeSeconds", "ExposedHeaders": "ExposeHeaders", "Id": "ID"}
    converted = {renamed.get(k, k): v for k, v in rule.items()}
    if "MaxAgeSeconds" in converted:
        converted["MaxAgeSeconds"] = int(converted["MaxAgeSeconds"])
    return converted


def _create_event_bus(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    name = _explicit_name(stack, props, "Name") or _generated_name(stack, logical_id, 256)
    events = stack.session.client("events")
    try:
        arn = events.create_event_bus(Name=name)["EventBusArn"]
    except events.exceptions.ResourceAlreadyExistsException:
        arn = events.describe_event_bus(Name=name)["Arn"]
    stack.physical[logical_id] = name
    stack.attributes[logical_id] = {"Arn": arn, "Name": name}


def _create_queue(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    resolve = stack.resolver.resolve
    name = _explicit_name(stack, props, "QueueName") or _generated_name(stack, logical_id, 80)
    names = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "FifoQueue",
        "ContentBasedDeduplication",
    )
    attributes = {key: as_text(resolve(props[key])) for key in names if key in props}
    if props.get("RedrivePolicy") is not None:  # its dead-letter queue must exist first (else deferred)
        redrive = resolve(props["RedrivePolicy"])
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
        )
    _create_named_queue(stack, logical_id, name, attributes)


def _create_named_queue(stack: Stack, logical_id: str, name: str, attributes: dict[str, str]) -> None:
    sqs = stack.session.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.physical[logical_id] = url
    stack.attributes[logical_id] = {"Arn": arn, "QueueName": name, "QueueUrl": url}


def _create_sam_managed_queues(stack: Stack) -> None:
    """DLQs that SAM itself creates (``DeadLetterConfig: {Type: SQS}``) and are not in Resources."""
    for rule in stack.template.rules():  # only the DLQ ids are needed: no pattern resolution
        if rule.dlq and rule.dlq not in stack.physical:
            _create_named_queue(stack, rule.dlq, _generated_name(stack, rule.dlq, 80), {})


def _create_table(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    definition = stack.resolver.resolve(dict(props))
    name = _explicit_name(stack, props, "TableName") or _generated_name(stack, logical_id, 255)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": definition["AttributeDefinitions"],
    }
    on_demand = definition.get("BillingMode", "PROVISIONED") == "PAY_PER_REQUEST"
    if on_demand:
        kwargs["BillingMode"] = "PAY_PER_REQUEST"
    else:
        kwargs["ProvisionedThroughput"] = _throughput(definition.get("ProvisionedThroughput"))
    indexes = []
    for index in definition.get("GlobalSecondaryIndexes") or []:
        gsi = {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
        if not on_demand:
            gsi["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
        indexes.append(gsi)
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    dynamodb = stack.session.client("dynamodb")
    try:
        description = dynamodb.create_table(**kwargs)["TableDescription"]
    except dynamodb.exceptions.ResourceInUseException:
        description = dynamodb.describe_table(TableName=name)["Table"]
    ttl = definition.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") in (True, "true"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    stack.physical[logical_id] = name
    stack.attributes[logical_id] = {"Arn": description["TableArn"]}


def _throughput(value: Mapping[str, Any] | None) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _create_project(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    """Project ARN: pre-set by the local Rekognition service (``resolved``) or a stable placeholder."""
    name = _explicit_name(stack, props, "ProjectName") or _generated_name(stack, logical_id, 255)
    if logical_id not in stack.physical:
        stack.physical[logical_id] = (
            f"arn:aws:rekognition:{stack.region}:{stack.account}:project/{name}/1700000000000"
        )
    stack.attributes.setdefault(logical_id, {}).setdefault("Arn", stack.physical[logical_id])


def _create_parameter(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    """Create the parameter; one that exists (a restored stack) keeps its value, as CloudFormation
    leaves a parameter alone that a function changed since (the active model after a promotion)."""
    name = _explicit_name(stack, props, "Name") or f"CFN-{_generated_name(stack, logical_id, 200)}"
    value = as_text(stack.resolver.resolve(props.get("Value")))
    param_type = as_text(stack.resolver.resolve(props.get("Type", "String")))
    ssm = stack.session.client("ssm")
    with contextlib.suppress(ssm.exceptions.ParameterAlreadyExists):
        ssm.put_parameter(Name=name, Value=value, Type=param_type)
    stack.physical[logical_id] = name
    stack.attributes[logical_id] = {"Type": param_type, "Value": value}


def _create_archive(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    resolve = stack.resolver.resolve
    # Archive names are limited to 48 characters.
    name = _explicit_name(stack, props, "ArchiveName") or _generated_name(stack, logical_id, 48)
    source_arn = as_text(resolve(props["SourceArn"]))
    kwargs: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": source_arn}
    if props.get("EventPattern") is not None:
        kwargs["EventPattern"] = json.dumps(resolve(props["EventPattern"]))
    if props.get("RetentionDays") is not None:
        kwargs["RetentionDays"] = int(resolve(props["RetentionDays"]))
    events = stack.session.client("events")
    try:
        arn = events.create_archive(**kwargs)["ArchiveArn"]
    except events.exceptions.ResourceAlreadyExistsException:
        arn = events.describe_archive(ArchiveName=name)["ArchiveArn"]
    stack.physical[logical_id] = name
    stack.attributes[logical_id] = {"Arn": arn}


def _create_user_pool(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    """A Cognito user pool on moto (found again by name when it exists: a restored stack)."""
    definition = stack.resolver.resolve(dict(props))
    name = as_text(definition.get("UserPoolName") or _generated_name(stack, logical_id, 128))
    cognito = stack.session.client("cognito-idp")
    pools = cognito.list_user_pools(MaxResults=60)["UserPools"]
    pool_id = next((pool["Id"] for pool in pools if pool["Name"] == name), None)
    if pool_id is None:
        kwargs: dict[str, Any] = {"PoolName": name}
        for key in ("Policies", "AdminCreateUserConfig", "UsernameAttributes", "AutoVerifiedAttributes"):
            if key in definition:
                kwargs[key] = _cfn_typed(definition[key])
        if "AccountRecoverySetting" in definition:
            kwargs["AccountRecoverySetting"] = _cfn_typed(definition["AccountRecoverySetting"])
        pool_id = cognito.create_user_pool(**kwargs)["UserPool"]["Id"]
        mfa = as_text(definition.get("MfaConfiguration", "OFF"))
        if mfa != "OFF":
            cognito.set_user_pool_mfa_config(
                UserPoolId=pool_id,
                SoftwareTokenMfaConfiguration={"Enabled": True},
                MfaConfiguration=mfa,
            )
    stack.physical[logical_id] = pool_id
    stack.attributes[logical_id] = {
        "Arn": f"arn:aws:cognito-idp:{stack.region}:{stack.account}:userpool/{pool_id}",
        "ProviderName": f"cognito-idp.{stack.region}.amazonaws.com/{pool_id}",
        "ProviderURL": f"https://cognito-idp.{stack.region}.amazonaws.com/{pool_id}",
        "UserPoolId": pool_id,
    }


def _create_user_pool_client(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    definition = stack.resolver.resolve(dict(props))
    pool_id = as_text(definition["UserPoolId"])
    name = as_text(definition.get("ClientName") or _generated_name(stack, logical_id, 128))
    cognito = stack.session.client("cognito-idp")
    clients = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    client_id = next((client["ClientId"] for client in clients if client["ClientName"] == name), None)
    if client_id is None:
        kwargs: dict[str, Any] = {"UserPoolId": pool_id, "ClientName": name}
        for key in (
            "GenerateSecret",
            "ExplicitAuthFlows",
            "PreventUserExistenceErrors",
            "EnableTokenRevocation",
        ):
            if key in definition:
                kwargs[key] = _cfn_typed(definition[key])
        for key in ("AccessTokenValidity", "IdTokenValidity", "RefreshTokenValidity"):
            if key in definition:
                kwargs[key] = int(definition[key])
        if "TokenValidityUnits" in definition:
            kwargs["TokenValidityUnits"] = dict(definition["TokenValidityUnits"])
        client_id = cognito.create_user_pool_client(**kwargs)["UserPoolClient"]["ClientId"]
    stack.physical[logical_id] = client_id
    stack.attributes[logical_id] = {"ClientId": client_id, "Name": name}


def _cfn_typed(value: Any) -> Any:
    """CloudFormation values as the API takes them: "true"/"false" as booleans, digit strings as ints."""
    if isinstance(value, dict):
        return {key: _cfn_typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cfn_typed(item) for item in value]
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


_CREATORS = {
    "AWS::S3::Bucket": _create_bucket,
    "AWS::Events::EventBus": _create_event_bus,
    "AWS::SQS::Queue": _create_queue,
    "AWS::DynamoDB::Table": _create_table,
    "AWS::Rekognition::Project": _create_project,
    "AWS::SSM::Parameter": _create_parameter,
    "AWS::Events::Archive": _create_archive,
    "AWS::Cognito::UserPool": _create_user_pool,
    "AWS::Cognito::UserPoolClient": _create_user_pool_client,
}
