"""Lazy boto3 clients, created once per container and shared by every adapter.

Region and endpoints come from boto3's standard settings (`AWS_REGION`/`AWS_DEFAULT_REGION`,
`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), which is how the local stack redirects calls:
there is no local-only branch here. The cache is keyed by those settings so a process that points
boto3 somewhere else (tests switching between moto in-process and a moto server) gets a new client.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_RETRIES = {"mode": "standard", "max_attempts": 5}
_ONE_ATTEMPT = {"mode": "standard", "max_attempts": 1}
_lock = threading.Lock()
_clients: dict[tuple[str, ...], Any] = {}


def client(service: str, *, sdk_retries: bool = True) -> Any:
    """The shared boto3 client for `service` (e.g. "s3", "sagemaker-a2i-runtime"); `sdk_retries`
    False: one attempt per call, for an adapter that retries in its own way."""
    key = (*_cache_key(service), str(sdk_retries))
    cached = _clients.get(key)
    if cached is not None:
        return cached
    with _lock:  # boto3 session creation is not thread-safe
        if key not in _clients:
            _clients[key] = _create(service, sdk_retries)
        return _clients[key]


class LazyClient:
    """`client = LazyClient("s3")` on an adapter: the client given to its constructor (`self._client`),
    else the shared one, fetched at first use (so constructing an adapter makes no AWS call)."""

    def __init__(self, service: str, *, sdk_retries: bool = True) -> None:
        self.service, self.sdk_retries = service, sdk_retries

    def __get__(self, adapter: Any, owner: type | None = None) -> Any:
        if adapter is None:
            return self
        if adapter._client is None:
            adapter._client = client(self.service, sdk_retries=self.sdk_retries)
        return adapter._client


def reset() -> None:
    """Forget every cached client (tests that swap endpoints or credentials)."""
    with _lock:
        _clients.clear()


def s3() -> Any:
    return client("s3")


def dynamodb() -> Any:
    return client("dynamodb")


def events() -> Any:
    return client("events")


def ssm() -> Any:
    return client("ssm")


def rekognition() -> Any:
    return client("rekognition")


def a2i_runtime() -> Any:
    return client("sagemaker-a2i-runtime")


def sagemaker() -> Any:
    return client("sagemaker")


def _cache_key(service: str) -> tuple[str, ...]:
    env_suffix = service.upper().replace("-", "_")
    return (
        service,
        os.environ.get("AWS_REGION", ""),
        os.environ.get("AWS_DEFAULT_REGION", ""),
        os.environ.get("AWS_ENDPOINT_URL", ""),
        os.environ.get(f"AWS_ENDPOINT_URL_{env_suffix}", ""),
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
    )


def config_for(service: str, sdk_retries: bool = True) -> Any:
    """The client configuration of `service`: standard retries. S3 signs with SigV4, pre-signed links
    included (botocore would pre-sign with the legacy signature, which newer regions refuse), and on AWS
    addresses the bucket's regional virtual host (botocore would pre-sign for the global endpoint, which
    redirects, and so breaks the signature, for a new bucket outside us-east-1). An explicit endpoint
    (`AWS_ENDPOINT_URL[_S3]`, e.g. the local stack's) keeps botocore's automatic addressing."""
    from botocore.config import Config

    retries = _RETRIES if sdk_retries else _ONE_ATTEMPT
    if service == "s3":
        explicit = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        style = "auto" if explicit else "virtual"
        return Config(retries=retries, signature_version="s3v4", s3={"addressing_style": style})
    return Config(retries=retries)


def _create(service: str, sdk_retries: bool = True) -> Any:
    import boto3

    session = boto3.session.Session()
    return session.client(service, config=config_for(service, sdk_retries))
