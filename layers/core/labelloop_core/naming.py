"""Identity and naming: S3 keys, image identities, human-loop names, object keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from labelloop_core.errors import InvalidEvent

if TYPE_CHECKING:
    import hashlib


def sha256(data: bytes) -> hashlib._Hash:
    """hashlib.sha256, imported on first use: loading OpenSSL's module would be a cold start's cost."""
    import hashlib

    return hashlib.sha256(data)


INCOMING_PREFIX = "incoming/"
PREDICTIONS_PREFIX = "predictions/"
LABELS_PREFIX = "labels/"
LOOP_NAME_PREFIX = "ll-"
LOOP_NAME_MAX = 63
LOOP_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
MAX_KEY_BYTES = 1024  # S3 object keys, UTF-8 encoded
# S3 reports this version id for objects written while versioning was off or suspended.
NULL_VERSION_ID = "null"


def decode_key(raw: str) -> str:
    """Decode an object key as S3 event notifications encode it (`+` is a space). Call exactly once."""
    try:
        return unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"object key {raw!r} has percent-escapes that are not UTF-8") from exc


def _normalize_etag(etag: str | None) -> str | None:
    # HeadObject returns the ETag quoted, events do not: both must give the same identity.
    if etag is None:
        return None
    stripped = etag.strip().strip('"')
    return stripped or None


@dataclass(frozen=True)
class ImageRef:
    """One version of one uploaded image."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket or not self.key:
            raise InvalidEvent(f"image reference needs a bucket and a key, got {self.bucket!r}/{self.key!r}")
        object.__setattr__(self, "etag", _normalize_etag(self.etag))
        if self.version_id == "":
            object.__setattr__(self, "version_id", None)
        if self._version_token() is None:
            raise InvalidEvent(f"image s3://{self.bucket}/{self.key} has neither a version id nor an ETag")

    def _version_token(self) -> str | None:
        if self.version_id and self.version_id != NULL_VERSION_ID:
            return self.version_id
        return self.etag or self.version_id

    @property
    def identity(self) -> str:
        """`bucket/key#version` (or `#etag` when the bucket has no real version ids)."""
        return f"{self.bucket}/{self.key}#{self._version_token()}"

    @property
    def image_id(self) -> str:
        return sha256(self.identity.encode("utf-8")).hexdigest()[:32]

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key` into (bucket, key); the key is taken literally (not URL-decoded)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, sep, key = uri[5:].partition("/")
    if not bucket or not sep or not key:
        raise ValueError(f"{uri!r} is not of the form s3://bucket/key")
    return bucket, key


def human_loop_name(image: ImageRef, model_arn: str) -> str:
    """Deterministic A2I loop name: the same image version and model always give the same loop."""
    if not model_arn:
        raise ValueError("model ARN is required to name a human loop")
    digest = sha256(f"{image.identity}\n{model_arn}".encode()).hexdigest()
    return LOOP_NAME_PREFIX + digest[: LOOP_NAME_MAX - len(LOOP_NAME_PREFIX)]


def is_valid_loop_name(name: str) -> bool:
    return 0 < len(name) <= LOOP_NAME_MAX and LOOP_NAME_PATTERN.match(name) is not None


def is_incoming(key: str) -> bool:
    """True for an object under `incoming/` (folder placeholders ending in `/` are not images)."""
    return key.startswith(INCOMING_PREFIX) and len(key) > len(INCOMING_PREFIX) and not key.endswith("/")


def prediction_key(key: str) -> str:
    """`incoming/a/b.jpg` -> `predictions/a/b.jpg.json`."""
    if not is_incoming(key):
        raise ValueError(f"{key!r} is not an object under {INCOMING_PREFIX}")
    return f"{PREDICTIONS_PREFIX}{key[len(INCOMING_PREFIX) :]}.json"


def fits_s3_key(key: str) -> bool:
    return len(key.encode("utf-8")) <= MAX_KEY_BYTES


def label_key(loop_name: str) -> str:
    if not is_valid_loop_name(loop_name):
        raise ValueError(f"{loop_name!r} is not a valid human loop name")
    return f"{LABELS_PREFIX}{loop_name}.json"


def training_version_name(now: datetime) -> str:
    """Rekognition project version name for a training started at `now` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("training_version_name needs a timezone-aware datetime")
    return "labelloop-" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def version_name_from_arn(version_arn: str) -> str:
    """`arn:...:project/<project>/version/<name>/<timestamp>` → `<name>`."""
    _, separator, rest = version_arn.partition("/version/")
    name = rest.rsplit("/", 1)[0] if "/" in rest else rest
    if not separator or not name:
        raise ValueError(f"not a Rekognition project version ARN: {version_arn!r}")
    return name


def priority_rank(priority: float, at: str, name: str) -> str:
    """A text that sorts reviews in priority order (0-100, lower first), then oldest first, then by name:
    the sort key of the indexes of waiting reviews and of open review tasks."""
    return f"{max(0.0, min(float(priority), 999.999)):07.3f}#{at}#{name}"
