"""Shared plumbing of the local AWS services: AWS-shaped errors, persisted state, S3 access, clocks."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account: ARNs line up with the rest of the local stack
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class AwsError(Exception):
    """An error answered in the wire shape of the service (`__type` / `x-amzn-ErrorType`)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def now() -> datetime:
    return datetime.now(UTC)


def epoch(moment: datetime | None) -> float | None:
    """JSON 1.1 protocols (Rekognition, SageMaker) send timestamps as epoch seconds."""
    return None if moment is None else moment.timestamp()


def iso(moment: datetime | None) -> str | None:
    """A2I's REST-JSON protocol and EventBridge details use ISO 8601 with milliseconds."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def require_str(
    body: dict[str, Any],
    name: str,
    pattern: str | None = None,
    max_len: int | None = None,
    code: str = "ValidationException",
) -> str:
    """A required string member, checked like the service model (botocore does not check pattern/max)."""
    value = body.get(name)
    if not isinstance(value, str):
        raise AwsError(code, f"{name} is required and must be a string")
    return check_str(name, value, pattern, max_len, code)


def check_str(
    name: str, value: str, pattern: str | None, max_len: int | None, code: str = "ValidationException"
) -> str:
    if not value or (max_len is not None and len(value) > max_len):
        raise AwsError(code, f"{name} must be 1-{max_len} characters, got {len(value)}")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise AwsError(code, f"{name} {value!r} does not match the pattern {pattern}")
    return value


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key); ValueError names the URI when it is not one."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return match.group(1), match.group(2)


class JsonStore:
    """One JSON document per service under data_dir, rewritten atomically after each change.

    A restarted `labelloop local up` reloads projects, versions and loops from it. Callers hold
    `lock` while they read-modify-write `data` and call `save()`.
    """

    def __init__(self, path: Path, initial: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.data: dict[str, Any] = initial()
        if path.exists():
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self.data.update(loaded)

    def save(self) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle, separators=(",", ":"), sort_keys=True)
            os.replace(tmp, self.path)


@dataclass(frozen=True)
class AwsEndpoints:
    """Where the local services find the rest of the local AWS (the moto server)."""

    s3_endpoint_url: str
    events_endpoint_url: str
    region: str

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        endpoint = self.events_endpoint_url if service == "events" else self.s3_endpoint_url
        return boto3.session.Session(**FAKE_CREDENTIALS, region_name=self.region).client(
            service,
            endpoint_url=endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, s3={"addressing_style": "path"}),
        )


def schema_violation(schema_name: str, doc: Any) -> str | None:
    """Validate `doc` with the project's own schema (as the deployed handlers do); the reason or None.

    The local services emulate AWS and must not depend on the domain package to work, so a missing
    `labelloop_core.schemas` skips this extra check instead of failing the service.
    """
    try:
        from labelloop_core import schemas
    except ImportError:
        return None
    try:
        schemas.validate(schema_name, doc)
    except schemas.SchemaViolation as violation:
        return str(violation)
    return None
