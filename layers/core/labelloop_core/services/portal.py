"""The review portal (built-in backend): its static front end and `config.json`, served by the stack
through the HTTP API (HTTPS, no bucket), with a strict Content-Security-Policy.

The front end is one copy, the repository's `portal/` (shipped in the layer as `labelloop_core/portal`);
the local stack serves it through this same function, and its A2I emulation serves the same files for
its own worker flow. No inline script or style: `script-src 'self'`; the only other origins the page
may reach are Cognito's JSON API (sign-in) and the S3 origin of the pre-signed image links, both
derived from the SDK's endpoint settings, so the local stack's endpoints need no special case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from labelloop_core import config
from labelloop_core.config import setting
from labelloop_core.http import HttpResponse, json_response, problem
from labelloop_core.inbound.http_api import HttpRequest

PORTAL_DIR = Path(__file__).resolve().parents[1] / "portal"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
API_BASE = "/api"


def user_pool_id(raw: str) -> str:
    region, separator, suffix = raw.partition("_")
    if not separator or not region or not suffix:
        raise ValueError("must be a Cognito user pool id such as us-east-1_AbCdEf123")
    return raw


@dataclass(frozen=True, kw_only=True)
class PortalSettings:
    bucket_name: str = config.bucket_name()
    user_pool_id: str = setting("USER_POOL_ID", user_pool_id)
    user_pool_client_id: str = setting("USER_POOL_CLIENT_ID", config.text)


@dataclass(frozen=True)
class PortalOrigins:
    """Where the browser may connect besides the portal's own origin."""

    cognito: str  # Cognito's JSON API endpoint (InitiateAuth, RespondToAuthChallenge)
    images: str  # the origin of the pre-signed image links


def content_security_policy(origins: PortalOrigins) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' {origins.images}",
            f"connect-src 'self' {_origin(origins.cognito)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(origins: PortalOrigins) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(origins),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Strict-Transport-Security": "max-age=31536000",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class PortalService:
    settings_type: ClassVar[type[PortalSettings]] = PortalSettings

    def __init__(self, settings: PortalSettings, origins: PortalOrigins) -> None:
        self.settings = settings
        self.origins = origins
        self.headers = security_headers(origins)

    @classmethod
    def from_settings(cls, settings: PortalSettings) -> PortalService:
        from labelloop_core.adapters import clients
        from labelloop_core.adapters.s3store import S3Store

        origins = PortalOrigins(
            cognito=str(clients.client("cognito-idp").meta.endpoint_url),
            images=S3Store(settings.bucket_name).link_origin(),
        )
        return cls(settings, origins)

    def config(self) -> dict[str, Any]:
        """What the front end needs to sign in and find the API (nothing secret: a public client)."""
        return {
            "mode": "builtin",
            "region": self.settings.user_pool_id.split("_", 1)[0],
            "userPoolId": self.settings.user_pool_id,
            "clientId": self.settings.user_pool_client_id,
            "cognitoEndpoint": self.origins.cognito.rstrip("/") + "/",
            "apiBase": API_BASE,
        }

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return problem(405, f"{request.method} is not allowed here")
        path = request.path
        if path in ("/", "/index.html"):
            return self._file("index.html")
        if path == "/config.json":
            return json_response(200, self.config(), self.headers)
        if path.startswith("/static/"):
            return self._file(path.removeprefix("/static/"))
        return problem(404, "not found")

    def _file(self, name: str) -> HttpResponse:
        found = portal_file(name)
        if found is None:
            return problem(404, "not found")
        text, content_type = found
        cache = "no-cache" if name == "index.html" else "max-age=300"
        return HttpResponse(200, text, {"Content-Type": content_type, "Cache-Control": cache, **self.headers})


@cache
def portal_file(name: str) -> tuple[str, str] | None:
    """A file of the portal front end and its content type (None for anything else)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in CONTENT_TYPES or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = PORTAL_DIR / name
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8"), CONTENT_TYPES[suffix]


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def config_json(mode: str, **extra: Any) -> str:
    """config.json for a front end served elsewhere (the local A2I emulation's worker flow)."""
    return json.dumps({"mode": mode, **extra})
