"""The portal function: the one copy of the front end, config.json, and a strict Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import pytest

from labelloop_core.adapters import clients
from labelloop_core.adapters.s3store import S3Store
from labelloop_core.config import settings_from_env
from labelloop_core.inbound.http_api import HttpRequest
from labelloop_core.naming import ImageRef
from labelloop_core.services.portal import PORTAL_DIR, PortalOrigins, PortalService, PortalSettings
from tests.support.paths import REPO_ROOT

ENV = {"BUCKET_NAME": "images", "USER_POOL_ID": "us-east-1_Pool123", "USER_POOL_CLIENT_ID": "client42"}
ORIGINS = PortalOrigins("https://cognito-idp.us-east-1.amazonaws.com", "https://images.s3.amazonaws.com")


def get(path: str, method: str = "GET") -> Any:
    service = PortalService(settings_from_env(PortalSettings, ENV), ORIGINS)
    request = HttpRequest(f"{method} {path}", method, path, {}, {}, {}, None, {}, "req")
    return service.handle(request)


def test_the_portal_ships_the_repositorys_front_end() -> None:
    assert PORTAL_DIR.resolve() == (REPO_ROOT / "portal").resolve()
    page = get("/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.body == (REPO_ROOT / "portal" / "index.html").read_text(encoding="utf-8")
    for name in ("app.js", "editor.js", "portal.css"):
        assert get(f"/static/{name}").body == (REPO_ROOT / "portal" / name).read_text(encoding="utf-8")


def test_every_answer_carries_a_strict_content_security_policy() -> None:
    policy = get("/").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self' https://cognito-idp.us-east-1.amazonaws.com"
    assert directives["img-src"] == "'self' https://images.s3.amazonaws.com"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    headers = get("/config.json").headers
    assert headers["Content-Security-Policy"] == policy and headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_has_no_inline_script_or_style() -> None:
    for name in ("index.html",):
        html = (REPO_ROOT / "portal" / name).read_text(encoding="utf-8")
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
        assert " style=" not in html and "<style" not in html
        assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def test_config_names_the_pool_the_client_and_the_endpoints() -> None:
    assert get("/config.json").document == {
        "mode": "builtin",
        "region": "us-east-1",
        "userPoolId": "us-east-1_Pool123",
        "clientId": "client42",
        "cognitoEndpoint": "https://cognito-idp.us-east-1.amazonaws.com/",
        "apiBase": "/api",
    }


@pytest.mark.parametrize(
    "path", ["/static/../template.yaml", "/static/.hidden.js", "/static/x.py", "/nothing"]
)
def test_nothing_else_is_served(path: str) -> None:
    assert get(path).status == 404


def test_only_reads_are_allowed() -> None:
    assert get("/", "POST").status == 405


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [(None, "us-east-1"), (None, "eu-west-1"), ("http://127.0.0.1:5123", "us-east-1")],
    ids=["aws-us-east-1", "aws-eu-west-1", "local-stack"],
)
def test_the_image_origin_is_where_the_presigned_links_point(
    endpoint: str | None, region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    if endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name=region)
    client = session.client("s3", config=clients.config_for("s3"))
    store = S3Store("images-bucket", client)
    link = store.link(ImageRef("images-bucket", "incoming/a b.jpg", "v1", "etag"), 60)
    assert link.startswith(store.link_origin() + "/")
    assert "versionId=v1" in link and "X-Amz-Expires=60" in link and "X-Amz-Signature=" in link
