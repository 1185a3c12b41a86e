"""The local HTTP API: the template's `AWS::Serverless::HttpApi` routes in front of the unchanged functions.

What API Gateway does for an HTTP API, and what the functions rely on:
- routes from each function's `HttpApi` events (`GET /api/tasks/{taskId}`: a literal segment beats a
  path variable), 404 `{"message":"Not Found"}` otherwise;
- the JWT authorizer of the route (the API's `DefaultAuthorizer` unless the route says `NONE`): the
  token is checked like API Gateway checks it (`labelloop_local.stack.jwt`) against the issuer's JWKS,
  here served by the local stack's Cognito (moto); 401 `{"message":"Unauthorized"}` with a
  `www-authenticate` header otherwise;
- `DefaultRouteSettings` throttling (a token bucket of that rate and burst): 429 beyond it;
- the event in payload format 2.0 (claims at `requestContext.authorizer.jwt.claims`), a synchronous
  invocation through the dispatcher (the function's own environment), and the 2.0 response format
  (`statusCode`, `headers`, `body`, `isBase64Encoded`, `cookies`; any other value is a 200 JSON body);
  a function error is 500 `{"message":"Internal Server Error"}`.
No CORS configuration is emulated because the template configures none (same-origin portal).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from labelloop_local.stack.jwt import JwksCache, JwtAuthorizer, Unauthorized, api_gateway_claims
from labelloop_local.stack.template import HttpApiSpec, HttpRouteSpec

LOG = logging.getLogger(__name__)
_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes


class TokenBucket:
    """API Gateway's throttling: `rate` requests a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class _Route:
    def __init__(self, spec: HttpRouteSpec) -> None:
        self.spec = spec
        names: list[str] = []
        pattern = ""
        for part in re.split(r"(\{[A-Za-z0-9_]+\+?\})", spec.path):
            match = _VARIABLE.fullmatch(part)
            if match:
                names.append(match.group(1))
                pattern += "(.+)" if part.endswith("+}") else "([^/]+)"
            else:
                pattern += re.escape(part)
        self.names = names
        self.regex = re.compile(pattern)
        self.specificity = (len(spec.path.split("/")) - len(names), -len(names))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.spec.method not in (method, "ANY"):
            return None
        found = self.regex.fullmatch(path)
        return None if found is None else dict(zip(self.names, found.groups(), strict=True))


class LocalHttpApi:
    """One HTTP API of the template, served on 127.0.0.1."""

    def __init__(
        self,
        api: HttpApiSpec,
        routes: list[HttpRouteSpec],
        invoke: Callable[[str, dict[str, Any]], Any],
        jwks_url: Callable[[str], str],
        account: str,
        api_id: str,
    ) -> None:
        self.api = api
        self.routes = sorted(
            (_Route(r) for r in routes if r.api == api.logical_id), key=lambda r: r.specificity, reverse=True
        )
        self.invoke = invoke
        self.account = account
        self.api_id = api_id
        self.authorizers = {
            name: JwtAuthorizer(spec.issuer, spec.audience, JwksCache(jwks_url(spec.issuer)))
            for name, spec in api.authorizers.items()
        }
        self.throttle = (
            TokenBucket(api.rate_limit, api.burst_limit or int(api.rate_limit))
            if api.rate_limit is not None
            else None
        )
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                source = self.client_address[0]
                result = outer.handle(self.command, self.path, dict(self.headers.items()), body, source)
                self.send_response(result.status)
                for name, value in result.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(result.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(result.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                LOG.debug("http api: " + format, *args)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="labelloop-http-api", daemon=True).start()
        self.url = f"http://{host}:{server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- one request ---------------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes | None, source_ip: str
    ) -> HttpResult:
        request_id = base64.b64encode(secrets.token_bytes(9)).decode()
        base = {"apigw-requestid": request_id, "Content-Type": "application/json"}
        split = urlsplit(raw_path)
        found = self._route(method.upper() if method != "HEAD" else "GET", split.path)
        if found is None:
            return HttpResult(404, base, b'{"message":"Not Found"}')
        route, path_parameters = found
        if self.throttle is not None and not self.throttle.take():
            return HttpResult(429, base, b'{"message":"Too Many Requests"}')
        lower = {name.lower(): value for name, value in headers.items()}
        jwt: dict[str, Any] | None = None
        if route.spec.authorizer is not None:
            try:
                claims = self.authorizers[route.spec.authorizer].claims(lower.get("authorization"))
            except Unauthorized as refused:
                challenge = f'Bearer scope="" error="invalid_token" error_description="{refused}"'
                return HttpResult(401, {**base, "www-authenticate": challenge}, b'{"message":"Unauthorized"}')
            scope = claims.get("scope")
            jwt = {
                "claims": api_gateway_claims(claims),
                "scopes": scope.split() if isinstance(scope, str) else None,
            }
        event = self._event(
            method, split, lower, body, route.spec, path_parameters, jwt, request_id, source_ip
        )
        try:
            result = self.invoke(route.spec.function, event)
        except Exception:
            LOG.exception("%s failed on %s %s", route.spec.function, method, split.path)
            return HttpResult(500, base, b'{"message":"Internal Server Error"}')
        return _response(result, request_id)

    def _route(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None

    def _event(
        self,
        method: str,
        split: Any,
        headers: dict[str, str],
        body: bytes | None,
        spec: HttpRouteSpec,
        path_parameters: dict[str, str],
        jwt: dict[str, Any] | None,
        request_id: str,
        source_ip: str,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        context: dict[str, Any] = {
            "accountId": self.account,
            "apiId": self.api_id,
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": self.api_id,
            "http": {
                "method": method,
                "path": split.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": spec.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        if jwt is not None:
            context["authorizer"] = {"jwt": jwt}
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": spec.route_key,
            "rawPath": split.path,
            "rawQueryString": split.query,
            "headers": {name: value for name, value in headers.items() if name != "cookie"},
            "requestContext": context,
            "isBase64Encoded": False,
        }
        if "cookie" in headers:
            event["cookies"] = [part.strip() for part in headers["cookie"].split(";")]
        if split.query:
            event["queryStringParameters"] = dict(parse_qsl(split.query, keep_blank_values=True))
        if path_parameters:
            event["pathParameters"] = path_parameters
        if body is not None:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        return event


def _response(result: Any, request_id: str) -> HttpResult:
    """Payload format 2.0's response: a dict with statusCode, or anything else as a 200 JSON body."""
    headers = {"apigw-requestid": request_id}
    if not isinstance(result, dict) or "statusCode" not in result:
        headers["Content-Type"] = "application/json"
        return HttpResult(200, headers, json.dumps(result).encode())
    headers.update({str(name): str(value) for name, value in (result.get("headers") or {}).items()})
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    for cookie in result.get("cookies") or []:
        headers["Set-Cookie"] = str(cookie)
    return HttpResult(int(result["statusCode"]), headers, raw)
