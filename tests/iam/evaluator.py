"""Identity-policy evaluation, as the IAM User Guide's "Policy evaluation logic" describes it for one
account: an explicit Deny in any statement wins, else an Allow that matches grants, else the
request is implicitly denied.

A statement matches a request when its Action (or NotAction) matches the action, its Resource (or
NotResource) matches the resource, and every condition holds. Action names are matched without
regard to case; resource ARNs and string condition values with regard to it; `*` matches any run of
characters and `?` any one character. Condition operators: String(Not)Equals(IgnoreCase),
String(Not)Like, Arn(Not)Equals, Arn(Not)Like, Bool, Null, Numeric*, each with an `IfExists` form
and the `ForAllValues:` / `ForAnyValue:` set prefixes. An operator this module does not know
raises, so a policy is never judged by guesswork.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

ContextValue = str | bool | int | float | Sequence[str]


class UnsupportedPolicy(Exception):
    """The policy uses an element or operator this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for an action without resource types
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def describe(self) -> str:
        context = ", ".join(f"{key}={value!r}" for key, value in sorted(self.context.items()))
        return f"{self.action} on {self.resource}" + (f" with {context}" if context else "")


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (operator, key, values)
    source: str = ""  # e.g. "DetectFunctionRolePolicy0/Ledger" (policy name / Sid or index)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], source: str = "") -> Statement:
        unknown = set(raw) - {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
        if unknown:
            raise UnsupportedPolicy(f"{source}: identity policy statement with {sorted(unknown)}")
        effect = str(raw.get("Effect"))
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"{source}: Effect must be Allow or Deny, got {effect!r}")
        conditions = []
        for operator, block in (raw.get("Condition") or {}).items():
            _operator(operator)  # fail early on an unknown operator
            for key, values in block.items():
                conditions.append((operator, key, tuple(str(v) for v in _as_list(values))))
        return cls(
            effect=effect,
            actions=tuple(_as_list(raw.get("Action"))),
            not_actions=tuple(_as_list(raw.get("NotAction"))),
            resources=tuple(_as_list(raw.get("Resource"))),
            not_resources=tuple(_as_list(raw.get("NotResource"))),
            conditions=tuple(conditions),
            source=source,
        )

    def applies(self, request: Request) -> bool:
        return (
            self._matches_action(request.action)
            and self._matches_resource(request.resource)
            and all(condition_holds(op, key, values, request.context) for op, key, values in self.conditions)
        )

    def _matches_action(self, action: str) -> bool:
        if self.actions:
            return any(_glob(pattern, action, ignore_case=True) for pattern in self.actions)
        return bool(self.not_actions) and not any(
            _glob(pattern, action, ignore_case=True) for pattern in self.not_actions
        )

    def _matches_resource(self, resource: str) -> bool:
        if self.resources:
            return any(_resource_matches(pattern, resource) for pattern in self.resources)
        return bool(self.not_resources) and not any(
            _resource_matches(pattern, resource) for pattern in self.not_resources
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[Statement, ...] = ()
    denied_by: tuple[Statement, ...] = ()


def evaluate(statements: Sequence[Statement], request: Request) -> Decision:
    applying = [statement for statement in statements if statement.applies(request)]
    denies = tuple(s for s in applying if s.effect == "Deny")
    allows = tuple(s for s in applying if s.effect == "Allow")
    return Decision(allowed=bool(allows) and not denies, allowed_by=allows, denied_by=denies)


def parse_document(document: Mapping[str, Any], source: str) -> list[Statement]:
    raw = document.get("Statement") or []
    statements = raw if isinstance(raw, list) else [raw]
    return [
        Statement.parse(statement, f"{source}/{statement.get('Sid') or index}")
        for index, statement in enumerate(statements)
    ]


# --- matching ----------------------------------------------------------------------------------
@cache
def _glob_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    if "${" in pattern:
        raise UnsupportedPolicy(f"policy variables are not supported: {pattern}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _glob_regex(pattern, ignore_case).fullmatch(value) is not None


def _resource_matches(pattern: str, resource: str) -> bool:
    # A request on "*" (an action without resource types) is granted only by a statement whose
    # Resource is "*": a statement naming ARNs does not apply to it.
    if resource == "*":
        return set(pattern) == {"*"}
    return _glob(pattern, resource)


def _arn_like(pattern: str, arn: str) -> bool:
    """ArnLike: each of the six colon-separated parts is matched separately."""
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(_glob(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _numeric(operator: str) -> Any:
    comparisons = {
        "NumericEquals": lambda a, b: a == b,
        "NumericNotEquals": lambda a, b: a != b,
        "NumericLessThan": lambda a, b: a < b,
        "NumericLessThanEquals": lambda a, b: a <= b,
        "NumericGreaterThan": lambda a, b: a > b,
        "NumericGreaterThanEquals": lambda a, b: a >= b,
    }
    compare = comparisons[operator]
    return lambda value, expected: compare(float(value), float(expected))


_MATCHERS: dict[str, Any] = {
    "StringEquals": lambda value, expected: value == expected,
    "StringNotEquals": lambda value, expected: value == expected,
    "StringEqualsIgnoreCase": lambda value, expected: value.lower() == expected.lower(),
    "StringNotEqualsIgnoreCase": lambda value, expected: value.lower() == expected.lower(),
    "StringLike": lambda value, expected: _glob(expected, value),
    "StringNotLike": lambda value, expected: _glob(expected, value),
    "ArnEquals": lambda value, expected: _arn_like(expected, value),
    "ArnLike": lambda value, expected: _arn_like(expected, value),
    "ArnNotEquals": lambda value, expected: _arn_like(expected, value),
    "ArnNotLike": lambda value, expected: _arn_like(expected, value),
    "Bool": lambda value, expected: value.lower() == expected.lower(),
    **{name: _numeric(name) for name in ("NumericEquals", "NumericLessThan", "NumericLessThanEquals")},
    **{name: _numeric(name) for name in ("NumericGreaterThan", "NumericGreaterThanEquals")},
    "NumericNotEquals": _numeric("NumericEquals"),
}
# Negated operators: the condition holds when no value matches (and when the key is absent).
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
_NEGATED |= {"NumericNotEquals"}


def _operator(operator: str) -> tuple[str, str, bool]:
    """(set prefix, base operator, if-exists) of a condition operator; unknown ones raise."""
    prefix, _, rest = operator.rpartition(":")
    if prefix not in ("", "ForAllValues", "ForAnyValue"):
        raise UnsupportedPolicy(f"unknown condition set operator {operator}")
    if_exists = rest.endswith("IfExists")
    base = rest.removesuffix("IfExists")
    if base != "Null" and base not in _MATCHERS:
        raise UnsupportedPolicy(f"unknown condition operator {operator}")
    return prefix, base, if_exists


def _context_values(context: Mapping[str, ContextValue], key: str) -> list[str] | None:
    for name, value in context.items():
        if name.lower() == key.lower():
            if isinstance(value, bool):
                return ["true" if value else "false"]
            if isinstance(value, str | int | float):
                return [str(value)]
            return [str(item) for item in value]
    return None


def condition_holds(
    operator: str, key: str, expected: Sequence[str], context: Mapping[str, ContextValue]
) -> bool:
    prefix, base, if_exists = _operator(operator)
    values = _context_values(context, key)
    if base == "Null":
        return all((values is None) == (e.lower() == "true") for e in expected)
    if values is None:
        if prefix == "ForAllValues":
            return True  # an empty set: every (none) of its values matches
        return if_exists or (base in _NEGATED and prefix == "")
    match = _MATCHERS[base]
    negated = base in _NEGATED

    def value_matches(value: str) -> bool:
        hit = any(match(value, e) for e in expected)
        return not hit if negated else hit

    if prefix == "ForAllValues":
        return all(value_matches(value) for value in values)
    if prefix == "ForAnyValue":
        return any(value_matches(value) for value in values)
    if negated:
        return all(value_matches(value) for value in values)
    return any(value_matches(value) for value in values)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
