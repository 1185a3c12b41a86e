"""The local stack's review API checks tokens as API Gateway's JWT authorizer does: only a valid token
of the stack's own user pool and portal app client gets through; any other is 401 (issue 8)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labelloop_local.stack.local_stack import LocalStack
from labelloop_local.stack.persistence import _cognito_signing_key
from tests.support.flows import png_bytes
from tests.support.paths import TEMPLATE_PATH
from tests.support.reviewers import api, request_review, sign_in

pytestmark = pytest.mark.integration

NEXT = "/api/tasks/next"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The built-in backend (the default) with one open review."""
    work: Path = tmp_path_factory.mktemp("http-api-auth")
    with LocalStack(TEMPLATE_PATH, data_dir=work, time_scale=1 / 6000, schedules={}) as local:
        assert local.review_backend == "builtin"
        request_review(
            local,
            "uploads/first.png",
            png_bytes(400, 300),
            (400, 300),
            [("pepperoni pizza slice", 30.0, (10, 10, 90, 60))],
        )
        yield local


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _resigned(token: str, **changes: Any) -> str:
    """The token with its claims changed, signed again with the key the local Cognito signs with."""
    from joserfc import jwt

    header, claims = _parts(token)
    return jwt.encode(
        {"alg": header["alg"], "kid": header["kid"]}, {**claims, **changes}, _cognito_signing_key()
    )


def test_the_review_api_refuses_a_request_without_a_token(stack: LocalStack) -> None:
    status, body = api(stack, "GET", NEXT)
    assert status == 401 and body == {"message": "Unauthorized"}
    assert api(stack, "GET", NEXT, token="not-a-jwt")[0] == 401


def test_tokens_of_another_user_pool_or_app_client_are_refused(stack: LocalStack) -> None:
    assert stack.stack is not None
    cognito = stack.client("cognito-idp")
    pool_id = str(stack.stack.physical["ReviewerUserPool"])
    other_client = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="not-the-portal", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    other_pool = cognito.create_user_pool(PoolName="someone-elses-pool")["UserPool"]["Id"]
    other_pool_client = cognito.create_user_pool_client(
        UserPoolId=other_pool, ClientName="their-app", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(
        UserPoolId=other_pool, Username="mallory@example.com", TemporaryPassword="Tmp-pass-123!"
    )

    same_pool_other_client = sign_in(stack, "eve@example.com", client_id=other_client)
    for token in (same_pool_other_client["AccessToken"], same_pool_other_client["IdToken"]):
        assert api(stack, "GET", NEXT, token)[0] == 401

    started = cognito.initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH",
        ClientId=other_pool_client,
        AuthParameters={"USERNAME": "mallory@example.com", "PASSWORD": "Tmp-pass-123!"},
    )
    foreign = cognito.respond_to_auth_challenge(
        ClientId=other_pool_client,
        ChallengeName="NEW_PASSWORD_REQUIRED",
        Session=started["Session"],
        ChallengeResponses={"USERNAME": "mallory@example.com", "NEW_PASSWORD": "Another-pass-456!"},
    )["AuthenticationResult"]
    # Signed by the same (moto's) key, so only the issuer tells it apart: it must still be refused.
    assert _parts(foreign["AccessToken"])[1]["iss"] != _parts(same_pool_other_client["AccessToken"])[1]["iss"]
    for token in (foreign["AccessToken"], foreign["IdToken"]):
        assert api(stack, "GET", NEXT, token)[0] == 401


def test_expired_and_tampered_tokens_are_refused_and_a_valid_one_gets_the_task(stack: LocalStack) -> None:
    tokens = sign_in(stack, "rita@example.com")
    access = tokens["AccessToken"]
    expired = _resigned(access, exp=int(time.time()) - 5, iat=int(time.time()) - 3605)
    assert api(stack, "GET", NEXT, expired)[0] == 401

    header, payload, signature = access.split(".")
    claims = _parts(access)[1]
    someone_else = _b64({**claims, "sub": "00000000-0000-4000-8000-000000000000"})
    assert api(stack, "GET", NEXT, f"{header}.{someone_else}.{signature}")[0] == 401
    unsigned = _b64({"alg": "none", "kid": _parts(access)[0]["kid"]})
    assert api(stack, "GET", NEXT, f"{unsigned}.{payload}.")[0] == 401
    assert api(stack, "GET", NEXT, f"{header}.{payload}.{signature[:-4]}AAAA")[0] == 401

    status, task = api(stack, "GET", NEXT, access)
    assert status == 200 and task["taskId"] == stack.review_tasks()[0]["task_id"]
    assert api(stack, "POST", f"/api/tasks/{task['taskId']}/release", access)[0] == 200
    status, again = api(stack, "GET", NEXT, tokens["IdToken"])  # an id token of the portal's client too
    assert status == 200 and again["taskId"] == task["taskId"]
