"""The IAM proof (DESIGN §11): every recorded call of every principal is allowed by its role.

Inputs: the calls the flows recorded (tests/support/aws_calls.py) and template.yaml. For each stack
the flows ran against, the template is translated by the SAM translator and resolved with that
stack's physical names (tests/iam/roles.py); each call becomes the permissions it needs
(tests/iam/requirements.py), and each permission is evaluated against the principal's role
(tests/iam/evaluator.py), together with the bucket policies' Deny statements. What Lambda itself
does with the execution role is required too: writing the function's logs, sending traces when
tracing is active, and delivering failed asynchronous invocations to the OnFailure destination.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.iam import reference
from tests.iam.evaluator import Request, Statement, evaluate, parse_document
from tests.iam.requirements import Call, Requirement, requirements
from tests.iam.roles import (
    Policy,
    Role,
    StackNames,
    bucket_policies,
    function_roles,
    managed_policy_role,
    resolver,
    translate,
)


@dataclass(frozen=True)
class Finding:
    principal: str
    requirement: Requirement
    role: str

    def describe(self) -> str:
        request = self.requirement.request
        return (
            f"{self.principal}: {self.requirement.why}\n"
            f"    needs {request.describe()}\n"
            f"    which no statement of {self.role} allows"
        )


@dataclass
class Recording:
    calls: list[dict[str, Any]]
    stacks: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> Recording:
        document = json.loads(path.read_text(encoding="utf-8"))
        return cls(document["calls"], document["stacks"])

    def principals(self) -> set[str]:
        return {call["principal"] for call in self.calls}


@dataclass
class Subject:
    """One principal on one stack: its role and everything it must be allowed to do."""

    principal: str
    role: Role
    bucket_denies: tuple[Policy, ...]
    required: dict[tuple[Any, ...], Requirement]

    def statements(self, role: Role | None = None) -> list[Statement]:
        chosen = role or self.role
        return chosen.statements() + [s for policy in self.bucket_denies for s in policy.statements]

    def findings(self, role: Role | None = None) -> list[Finding]:
        statements = self.statements(role)
        return [
            Finding(self.principal, requirement, (role or self.role).role)
            for requirement in self.required.values()
            if not evaluate(statements, requirement.request).allowed
        ]


def _key(request: Request) -> tuple[Any, ...]:
    context = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in request.context.items()))
    return (request.action, request.resource, context)


def subjects(recording: Recording, template_text: str, platform: bool = True) -> list[Subject]:
    """One Subject per principal and stack, from the recorded calls and `template_text`."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in recording.calls:
        grouped.setdefault((record["principal"], record["stack"]), []).append(record)
    found = []
    for (principal, stack_key), records in sorted(grouped.items()):
        names = StackNames.from_snapshot(recording.stacks[stack_key])
        translated = translate(template_text, names)
        role = principal_role(translated, names, principal)
        required: dict[tuple[Any, ...], Requirement] = {}
        for record in records:
            for requirement in requirements(Call.from_record(record, names.account)):
                required.setdefault(_key(requirement.request), requirement)
        if platform and principal in function_roles(translated, names):
            for requirement in lambda_platform_requirements(translated, names, principal):
                required.setdefault(_key(requirement.request), requirement)
        found.append(Subject(principal, role, tuple(bucket_policies(translated, names)), required))
    return found


def principal_role(translated: Mapping[str, Any], names: StackNames, principal: str) -> Role:
    roles = function_roles(translated, names)
    if principal in roles:
        return roles[principal]
    resource = translated["Resources"].get(principal, {})
    if resource.get("Type") == "AWS::IAM::ManagedPolicy":
        return managed_policy_role(translated, names, principal)
    raise KeyError(f"{principal} is neither a function nor a managed policy of template.yaml")


def check(recording: Recording, template_text: str) -> list[Finding]:
    return [finding for subject in subjects(recording, template_text) for finding in subject.findings()]


# --- what Lambda does with the execution role -----------------------------------------------------
def lambda_platform_requirements(
    translated: Mapping[str, Any], names: StackNames, function_id: str
) -> list[Requirement]:
    resources = translated["Resources"]
    resolve = resolver(translated, names).resolve
    properties = resources[function_id]["Properties"]
    found: list[tuple[str, str, str]] = []
    log_group = ((resolve(properties.get("LoggingConfig") or {})) or {}).get("LogGroup")
    log_group = log_group or f"/aws/lambda/{names.physical[function_id]}"
    streams = f"arn:aws:logs:{names.region}:{names.account}:log-group:{log_group}:log-stream:*"
    found += [
        (action, streams, "Lambda writes the function's logs")
        for action in ("logs:CreateLogStream", "logs:PutLogEvents")
    ]
    if (properties.get("TracingConfig") or {}).get("Mode") == "Active":
        found += [
            (a, "*", "active tracing sends segments")
            for a in ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
        ]
    for resource in resources.values():
        function_ref = (resource.get("Properties") or {}).get("FunctionName")
        if function_ref != {"Ref": function_id}:
            continue
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig":
            destinations = (resource["Properties"].get("DestinationConfig") or {}).values()
            for destination in destinations:
                found += _destination(
                    str(resolve(destination["Destination"])), "asynchronous invocation destination"
                )
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            source = str(resolve(resource["Properties"]["EventSourceArn"]))
            if source.startswith("arn:aws:sqs:"):
                polling = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
                found += [(action, source, "the SQS event source mapping polls") for action in polling]
    dead_letter = (properties.get("DeadLetterConfig") or {}).get("TargetArn")
    if dead_letter:
        found += _destination(str(resolve(dead_letter)), "dead-letter queue")
    result = []
    for action, resource_arn, why in found:
        reference.matching_resource_type(action, resource_arn)
        result.append(Requirement(Request(action, resource_arn, {}), f"Lambda platform: {why}"))
    return result


def _destination(arn: str, why: str) -> list[tuple[str, str, str]]:
    service = arn.split(":")[2]
    action = {"sqs": "sqs:SendMessage", "sns": "sns:Publish", "lambda": "lambda:InvokeFunction"}.get(service)
    return [(action or "events:PutEvents", arn, why)]


# --- mutations ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutation:
    principal: str
    description: str
    role: Role


def mutations(role: Role) -> Iterator[Mutation]:
    """Each single action of each statement removed, each whole statement removed, and each AWS
    managed policy detached, one at a time."""
    for index, policy in enumerate(role.policies):
        if policy.kind == "managed" and policy.name.startswith("arn:aws:iam::aws:policy/"):
            yield Mutation(role.principal, f"detach {policy.name}", _replace(role, index, None))
            continue
        for position, statement in enumerate(policy.raw):
            label = f"{policy.name}/{statement.get('Sid') or position}"
            kept = [s for i, s in enumerate(policy.raw) if i != position]
            yield Mutation(role.principal, f"remove statement {label}", _replace(role, index, policy, kept))
            actions = statement.get("Action")
            if isinstance(actions, list) and len(actions) > 1:
                for action in actions:
                    smaller = {**statement, "Action": [a for a in actions if a != action]}
                    changed = [smaller if i == position else s for i, s in enumerate(policy.raw)]
                    yield Mutation(
                        role.principal,
                        f"remove {action} from {label}",
                        _replace(role, index, policy, changed),
                    )


def _replace(
    role: Role, index: int, policy: Policy | None, statements: Sequence[dict[str, Any]] = ()
) -> Role:
    policies = list(role.policies)
    if policy is None:
        del policies[index]
    else:
        document = {"Statement": list(statements)}
        policies[index] = dataclasses.replace(
            policy, statements=tuple(parse_document(document, policy.name)), raw=tuple(statements)
        )
    return dataclasses.replace(role, policies=tuple(policies))


def replace_statement(role: Role, sid: str, *replacements: dict[str, Any]) -> Role:
    """`role` with the statement `sid` replaced by `replacements` (none: removed)."""
    for index, policy in enumerate(role.policies):
        sids = [statement.get("Sid") for statement in policy.raw]
        if sid in sids:
            position = sids.index(sid)
            statements = [*policy.raw[:position], *replacements, *policy.raw[position + 1 :]]
            return _replace(role, index, policy, statements)
    raise KeyError(f"{role.role} has no statement {sid}")


def statement(role: Role, sid: str) -> dict[str, Any]:
    return next(s for policy in role.policies for s in policy.raw if s.get("Sid") == sid)
