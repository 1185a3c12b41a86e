"""The policy evaluator on the cases the IAM User Guide documents ("Policy evaluation logic",
"IAM JSON policy elements: Condition operators", "Single-valued vs. multivalued context keys")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.iam.evaluator import Request, UnsupportedPolicy, evaluate, parse_document

pytestmark = pytest.mark.iam

BUCKET = "arn:aws:s3:::amzn-s3-demo-bucket"


def allowed(statements: list[dict[str, Any]], action: str, resource: str, **context: Any) -> bool:
    policy = parse_document({"Version": "2012-10-17", "Statement": statements}, "test")
    return evaluate(policy, Request(action, resource, context)).allowed


def allow(action: Any, resource: Any, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


def test_nothing_is_allowed_without_a_matching_allow() -> None:
    assert not allowed([], "s3:GetObject", f"{BUCKET}/a")
    assert not allowed([allow("s3:PutObject", f"{BUCKET}/*")], "s3:GetObject", f"{BUCKET}/a")


def test_an_explicit_deny_overrides_any_allow() -> None:
    statements = [
        allow("s3:*", f"{BUCKET}/*"),
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": f"{BUCKET}/*"},
    ]
    assert allowed(statements, "s3:GetObject", f"{BUCKET}/a")
    assert not allowed(statements, "s3:DeleteObject", f"{BUCKET}/a")


def test_actions_match_without_regard_to_case_and_with_wildcards() -> None:
    statements = [allow("s3:Get*", f"{BUCKET}/*")]
    assert allowed(statements, "S3:getobject", f"{BUCKET}/a")
    assert allowed(statements, "s3:GetObjectVersion", f"{BUCKET}/a")
    assert not allowed(statements, "s3:PutObject", f"{BUCKET}/a")
    assert allowed([allow("s3:?etObject", "*")], "s3:GetObject", f"{BUCKET}/a")


def test_resources_match_with_regard_to_case() -> None:
    statements = [allow("s3:GetObject", f"{BUCKET}/incoming/*")]
    assert allowed(statements, "s3:GetObject", f"{BUCKET}/incoming/deep/a.png")
    assert not allowed(statements, "s3:GetObject", f"{BUCKET}/Incoming/a.png")
    assert not allowed(statements, "s3:GetObject", f"{BUCKET}/predictions/a.json")


def test_not_action_and_not_resource_match_everything_else() -> None:
    deny_all_but_iam = {"Effect": "Deny", "NotAction": "iam:*", "Resource": "*"}
    assert not allowed([allow("*", "*"), deny_all_but_iam], "s3:GetObject", f"{BUCKET}/a")
    assert allowed([allow("*", "*"), deny_all_but_iam], "iam:ListRoles", "*")
    not_resource = {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/private/*"}
    assert allowed([not_resource], "s3:GetObject", f"{BUCKET}/public/a")
    assert not allowed([not_resource], "s3:GetObject", f"{BUCKET}/private/a")


def test_an_action_without_resource_types_is_granted_only_by_resource_star() -> None:
    assert allowed([allow("rekognition:DescribeProjects", "*")], "rekognition:DescribeProjects", "*")
    project = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/*"
    assert not allowed([allow("rekognition:DescribeProjects", project)], "rekognition:DescribeProjects", "*")


def test_string_like_on_s3_prefix_as_in_the_s3_user_guide() -> None:
    statements = [
        allow("s3:ListBucket", BUCKET, {"StringLike": {"s3:prefix": ["", "home/", "home/David/*"]}})
    ]
    assert allowed(statements, "s3:ListBucket", BUCKET, **{"s3:prefix": "home/David/photos/"})
    assert not allowed(statements, "s3:ListBucket", BUCKET, **{"s3:prefix": "home/Erik/"})
    # A GET or HEAD of an object carries no s3:prefix: the conditioned grant does not apply.
    assert not allowed(statements, "s3:ListBucket", BUCKET)


def test_condition_keys_match_without_regard_to_case_values_with_it() -> None:
    statements = [allow("events:PutEvents", "*", {"StringEquals": {"events:detail-type": "ReviewRequested"}})]
    assert allowed(statements, "events:PutEvents", "*", **{"EVENTS:Detail-Type": "ReviewRequested"})
    assert not allowed(statements, "events:PutEvents", "*", **{"events:detail-type": "reviewrequested"})
    ignore_case = [allow("events:PutEvents", "*", {"StringEqualsIgnoreCase": {"events:source": "LabelLoop"}})]
    assert allowed(ignore_case, "events:PutEvents", "*", **{"events:source": "labelloop"})


def test_several_keys_must_all_hold_and_several_values_of_one_key_any() -> None:
    condition = {"StringEquals": {"events:source": "labelloop", "events:detail-type": ["A", "B"]}}
    statements = [allow("events:PutEvents", "*", condition)]
    assert allowed(
        statements, "events:PutEvents", "*", **{"events:source": "labelloop", "events:detail-type": "B"}
    )
    assert not allowed(
        statements, "events:PutEvents", "*", **{"events:source": "other", "events:detail-type": "B"}
    )
    assert not allowed(statements, "events:PutEvents", "*", **{"events:source": "labelloop"})


def test_negated_operators_hold_when_the_key_is_absent() -> None:
    statements = [allow("s3:GetObject", "*", {"StringNotEquals": {"s3:ExistingObjectTag/secret": "yes"}})]
    assert allowed(statements, "s3:GetObject", f"{BUCKET}/a")
    assert not allowed(statements, "s3:GetObject", f"{BUCKET}/a", **{"s3:ExistingObjectTag/secret": "yes"})


def test_if_exists_and_null() -> None:
    if_exists = [
        allow("ec2:RunInstances", "*", {"StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*"]}})
    ]
    assert allowed(if_exists, "ec2:RunInstances", "*")
    assert allowed(if_exists, "ec2:RunInstances", "*", **{"ec2:InstanceType": "t2.micro"})
    assert not allowed(if_exists, "ec2:RunInstances", "*", **{"ec2:InstanceType": "m5.large"})
    null = [allow("s3:GetObject", "*", {"Null": {"aws:TokenIssueTime": "true"}})]
    assert allowed(null, "s3:GetObject", f"{BUCKET}/a")
    assert not allowed(null, "s3:GetObject", f"{BUCKET}/a", **{"aws:TokenIssueTime": "2024-01-01T00:00:00Z"})


def test_bool_secure_transport_deny_as_in_the_s3_user_guide() -> None:
    statements = [
        allow("s3:GetObject", f"{BUCKET}/*"),
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": [BUCKET, f"{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]
    assert allowed(statements, "s3:GetObject", f"{BUCKET}/a", **{"aws:SecureTransport": True})
    assert not allowed(statements, "s3:GetObject", f"{BUCKET}/a", **{"aws:SecureTransport": False})


def test_arn_like_matches_each_arn_part() -> None:
    statements = [
        allow("sqs:SendMessage", "*", {"ArnLike": {"aws:SourceArn": "arn:aws:events:*:123456789012:rule/*"}})
    ]
    rule = "arn:aws:events:us-east-1:123456789012:rule/labelloop-retrain"
    assert allowed(statements, "sqs:SendMessage", "*", **{"aws:SourceArn": rule})
    other_account = "arn:aws:events:us-east-1:999999999999:rule/x"
    assert not allowed(statements, "sqs:SendMessage", "*", **{"aws:SourceArn": other_account})
    assert not allowed(statements, "sqs:SendMessage", "*", **{"aws:SourceArn": "not-an-arn"})


def test_set_operators_on_multivalued_keys() -> None:
    all_values = [
        allow("dynamodb:GetItem", "*", {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "sk"]}})
    ]
    assert allowed(all_values, "dynamodb:GetItem", "*", **{"dynamodb:Attributes": ["pk"]})
    assert not allowed(all_values, "dynamodb:GetItem", "*", **{"dynamodb:Attributes": ["pk", "secret"]})
    assert allowed(all_values, "dynamodb:GetItem", "*")  # no values: every one of none matches
    any_value = [allow("ec2:CreateTags", "*", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}})]
    assert allowed(any_value, "ec2:CreateTags", "*", **{"aws:TagKeys": ["owner", "env"]})
    assert not allowed(any_value, "ec2:CreateTags", "*", **{"aws:TagKeys": ["owner"]})
    assert not allowed(any_value, "ec2:CreateTags", "*")


def test_unknown_operators_and_policy_variables_are_refused() -> None:
    with pytest.raises(UnsupportedPolicy, match="StringSortOf"):
        allowed([allow("s3:GetObject", "*", {"StringSortOf": {"s3:prefix": "x"}})], "s3:GetObject", "*")
    with pytest.raises(UnsupportedPolicy, match="policy variables"):
        allowed([allow("s3:GetObject", f"{BUCKET}/${{aws:username}}/*")], "s3:GetObject", f"{BUCKET}/a")
    with pytest.raises(UnsupportedPolicy, match="Principal"):
        allowed([{**allow("s3:GetObject", "*"), "Principal": "*"}], "s3:GetObject", "*")
