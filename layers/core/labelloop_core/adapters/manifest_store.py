"""Training manifests in the image bucket, streamed line by line in both directions.

A base manifest can hold a million lines: it is never read into memory, and merged manifests are
written to a local file first and uploaded from there (multipart for large files).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from labelloop_core.adapters.s3store import ObjectMissing
from labelloop_core.errors import TransientError

_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"}


class ManifestStore:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from labelloop_core.adapters import clients

            self._client = clients.s3()
        return self._client

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if _error_code(error) in _MISSING_CODES:
                return False
            raise _translate(error, self.bucket, key) from error
        return True

    def iter_lines(self, key: str) -> Iterator[str]:
        """The object's lines (UTF-8, without line breaks), streamed; ObjectMissing if it is absent."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as error:
            raise _translate(error, self.bucket, key) from error
        try:
            for raw in body.iter_lines(chunk_size=1024 * 1024):
                yield raw.decode("utf-8")
        finally:
            body.close()

    def upload_file(self, path: str, key: str) -> None:
        self.client.upload_file(path, self.bucket, key, ExtraArgs={"ContentType": "application/x-ndjson"})


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _translate(error: Exception, bucket: str, key: str) -> Exception:
    code = _error_code(error)
    if code in _MISSING_CODES:
        return ObjectMissing(f"manifest s3://{bucket}/{key} does not exist ({code})")
    if code in _TRANSIENT_CODES:
        return TransientError(f"S3 {code} on manifest s3://{bucket}/{key}")
    return error
