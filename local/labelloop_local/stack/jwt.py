"""JWT validation as an API Gateway HTTP API JWT authorizer does it, for the local HTTP API.

API Gateway (developer guide, "Control access to HTTP APIs with JWT authorizers"): the token comes
from the identity source, alone or after `Bearer `; its signature is checked with the issuer's JWKS
key named by `kid` (RSA only); `iss` must equal the authorizer's issuer; `aud` must be one of the
audiences, or, when the token has no `aud` (a Cognito access token), `client_id` must be; `exp` must
be in the future, `nbf` and `iat` not. Anything else is 401 Unauthorized.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_ALGORITHMS: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}


class Unauthorized(Exception):
    """The request's token is missing or invalid; the message says why (API Gateway's error_description)."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_int(text: str) -> int:
    return int.from_bytes(_b64url(text), "big")


class JwtAuthorizer:
    def __init__(
        self,
        issuer: str,
        audience: Sequence[str],
        jwks: Callable[[], Mapping[str, Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = set(audience)
        self._jwks = jwks
        self._clock = clock

    def claims(self, authorization: str | None) -> dict[str, Any]:
        """The validated token's claims; Unauthorized otherwise."""
        if not authorization:
            raise Unauthorized("the request has no token")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            header_part, payload_part, signature_part = token.split(".")
            header = json.loads(_b64url(header_part))
            claims = json.loads(_b64url(payload_part))
            signature = _b64url(signature_part)
        except ValueError:
            raise Unauthorized("the token is not a JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise Unauthorized("the token is not a JWT")
        algorithm = _ALGORITHMS.get(str(header.get("alg")))
        if algorithm is None:
            raise Unauthorized(f"the token's algorithm {header.get('alg')!r} is not supported")
        key = self._key(str(header.get("kid")))
        try:
            key.verify(signature, f"{header_part}.{payload_part}".encode(), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise Unauthorized("the token's signature is invalid") from None
        self._check_claims(claims)
        return claims

    def _key(self, kid: str) -> rsa.RSAPublicKey:
        for jwk in self._jwks().get("keys", []):
            if jwk.get("kid") == kid and jwk.get("kty") == "RSA":
                numbers = rsa.RSAPublicNumbers(_b64url_int(jwk["e"]), _b64url_int(jwk["n"]))
                return numbers.public_key()
        raise Unauthorized("the token's kid matches no key of the issuer")

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.issuer:
            raise Unauthorized("the token does not have a valid issuer")
        audience = claims.get("aud")
        if audience is not None:
            audiences = set(audience) if isinstance(audience, list) else {audience}
            if not audiences & self.audience:
                raise Unauthorized("the token does not have a valid audience")
        elif claims.get("client_id") not in self.audience:
            raise Unauthorized("the token does not have a valid audience")
        now = self._clock()
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise Unauthorized("the token has expired")
        for name in ("nbf", "iat"):
            if isinstance(claims.get(name), int | float) and claims[name] > now + 1:
                raise Unauthorized(f"the token's {name} is in the future")


class JwksCache:
    """The issuer's JWKS, fetched once (and again when a token names an unknown key)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: Mapping[str, Any] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Mapping[str, Any]:
        with self._lock:
            if self._keys is None:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    self._keys = json.loads(response.read())
            return self._keys


def api_gateway_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway passes them in `requestContext.authorizer.jwt.claims`: as strings."""
    passed = {}
    for name, value in claims.items():
        if isinstance(value, list):
            passed[name] = "[" + " ".join(str(item) for item in value) + "]"
        elif isinstance(value, bool):
            passed[name] = "true" if value else "false"
        else:
            passed[name] = str(value)
    return passed
