"""Each function's role as CloudFormation would create it: template.yaml translated by the SAM
translator (the one aws-sam-cli uses: SAM policy templates expanded, destination and managed
policies added), then its intrinsics resolved with the physical names of the stack the flows ran
against, so the recorded calls and the policies name the same resources.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from labelloop_local.stack.template import Resolver, SamTemplate
from tests.iam.evaluator import Statement, parse_document
from tests.support import sam_translate

# AWS managed policies the translator attaches, with their documents from the AWS Managed Policy
# Reference. Any other managed policy is treated as granting nothing, so the proof cannot pass by
# an attachment it does not understand.
MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ]
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": ["*"],
            }
        ]
    },
}


@dataclass(frozen=True)
class Policy:
    name: str  # inline policy name, or the managed policy's ARN / logical id
    kind: str  # "inline" | "managed" | "bucket"
    statements: tuple[Statement, ...]
    raw: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # resolved statements


@dataclass(frozen=True)
class Role:
    principal: str  # logical id of the function (or managed policy) whose permissions these are
    role: str  # logical id of the role in the translated template
    policies: tuple[Policy, ...]

    def statements(self) -> list[Statement]:
        return [statement for policy in self.policies for statement in policy.statements]


@dataclass(frozen=True)
class StackNames:
    """The physical names one flow's stack used (tests/support/aws_calls.py `stack_snapshot`)."""

    stack_name: str
    region: str
    account: str
    params: Mapping[str, Any]
    physical: Mapping[str, Any]
    attributes: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> StackNames:
        return cls(**{key: snapshot[key] for key in cls.__dataclass_fields__})


def translate(template_text: str, names: StackNames) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would submit for `template_text`."""
    return copy.deepcopy(
        _translate(template_text, json.dumps(dict(names.params), sort_keys=True), names.region)
    )


@cache
def _translate(template_text: str, params_json: str, region: str) -> dict[str, Any]:
    return sam_translate.translate(template_text, json.loads(params_json), region)


def resolver(translated: Mapping[str, Any], names: StackNames) -> Resolver:
    return Resolver(
        SamTemplate(dict(translated), Path("template.translated.json")),
        dict(names.params),
        names.physical,
        names.attributes,
        region=names.region,
        account=names.account,
        stack_name=names.stack_name,
    )


def function_roles(translated: Mapping[str, Any], names: StackNames) -> dict[str, Role]:
    """Role of every AWS::Lambda::Function, by the function's logical id."""
    resources = translated["Resources"]
    resolve = resolver(translated, names).resolve
    roles = {}
    for function_id, function in resources.items():
        if function.get("Type") != "AWS::Lambda::Function":
            continue
        role_id = _referenced_role(function["Properties"].get("Role"))
        if role_id is None:
            continue
        roles[function_id] = Role(function_id, role_id, tuple(role_policies(resources, role_id, resolve)))
    return roles


def role_policies(resources: Mapping[str, Any], role_id: str, resolve: Any) -> list[Policy]:
    properties = resources[role_id].get("Properties") or {}
    policies = []
    for inline in properties.get("Policies") or []:
        policies.append(_policy(str(inline["PolicyName"]), "inline", resolve(inline["PolicyDocument"])))
    for arn in properties.get("ManagedPolicyArns") or []:
        logical = str(arn.get("Ref")) if isinstance(arn, dict) else ""
        if logical in resources and resources[logical]["Type"] == "AWS::IAM::ManagedPolicy":
            document = resources[logical]["Properties"]["PolicyDocument"]
            policies.append(_policy(logical, "managed", resolve(document)))
        else:
            name = str(resolve(arn))
            policies.append(_policy(name, "managed", MANAGED_POLICIES.get(name, {"Statement": []})))
    for logical, resource in resources.items():  # AWS::IAM::Policy / ManagedPolicy naming the role
        properties = resource.get("Properties") or {}
        if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {
            "Ref": role_id
        } in properties.get("Roles", []):
            policies.append(_policy(logical, "managed", resolve(resource["Properties"]["PolicyDocument"])))
    return policies


def managed_policy_role(translated: Mapping[str, Any], names: StackNames, logical_id: str) -> Role:
    """A customer managed policy of the template as the permissions of whoever it is attached to."""
    document = resolver(translated, names).resolve(translated["Resources"][logical_id]["Properties"])
    return Role(logical_id, logical_id, (_policy(logical_id, "managed", document["PolicyDocument"]),))


def bucket_policies(translated: Mapping[str, Any], names: StackNames) -> list[Policy]:
    """The Deny statements of the template's bucket policies (they bind every caller, roles included)."""
    resolve = resolver(translated, names).resolve
    found = []
    for logical, resource in translated["Resources"].items():
        if resource.get("Type") != "AWS::S3::BucketPolicy":
            continue
        document = resolve(resource["Properties"]["PolicyDocument"])
        denies = [
            {key: value for key, value in statement.items() if key != "Principal"}
            for statement in document.get("Statement", [])
            if statement.get("Effect") == "Deny" and statement.get("Principal") == "*"
        ]
        found.append(_policy(logical, "bucket", {"Statement": denies}))
    return found


def _policy(name: str, kind: str, document: Mapping[str, Any]) -> Policy:
    raw = document.get("Statement") or []
    statements = raw if isinstance(raw, list) else [raw]
    return Policy(name, kind, tuple(parse_document(document, name)), tuple(statements))


def _referenced_role(node: Any) -> str | None:
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None
