"""S3 access for the image bucket: image headers, JSON documents, create-only writes, manifests.

Manifests can hold a million lines: they are streamed line by line, never read into memory, and
merged manifests are written to a local file first and uploaded from there (multipart when large).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from labelloop_core.errors import LabelloopError, TransientError

_CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)$")
_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_LINES_CHUNK_BYTES = 1024 * 1024
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"}


class ObjectMissing(LabelloopError):
    """The object (or that version of it) does not exist, e.g. it was deleted after upload."""


class _ObjectLines:
    """S3Store.iter_lines: iterable once per read of the object."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key

    def __iter__(self) -> Iterator[str]:
        for block in self.store.text_blocks(self.key):
            lines = block.split("\n")
            lines.pop()  # after the block's last line break
            yield from lines

    def text_blocks(self) -> Iterator[str]:
        return self.store.text_blocks(self.key)


@dataclass(frozen=True)
class ObjectHead:
    """The first bytes of an object and its total size."""

    data: bytes
    size: int


class S3Store:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from labelloop_core.adapters import clients

            self._client = clients.s3()
        return self._client

    def read_head(self, key: str, length: int, version_id: str | None = None) -> ObjectHead:
        """Ranged GET of the first `length` bytes; an empty object gives `ObjectHead(b"", 0)`."""
        params = self._object_params(key, version_id)
        try:
            response = self.client.get_object(Range=f"bytes=0-{length - 1}", **params)
        except Exception as error:
            if _error_code(error) == "InvalidRange":  # S3 answers 416 for any range of a 0-byte object
                return ObjectHead(b"", 0)
            raise self._translate(error, key) from error
        data = response["Body"].read()
        return ObjectHead(data, _total_size(response, len(data)))

    def get_json(self, key: str, bucket: str | None = None) -> Any:
        """Parse a JSON object; raises ObjectMissing or ValueError (not JSON)."""
        try:
            response = self.client.get_object(Bucket=bucket or self.bucket, Key=key)
        except Exception as error:
            raise self._translate(error, key) from error
        return json.loads(response["Body"].read())

    def put_json(self, key: str, document: Any) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, **_json_body(document))

    def create_json(self, key: str, document: Any) -> bool:
        """Write `document` only if `key` does not exist yet; False when it already exists."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, IfNoneMatch="*", **_json_body(document))
        except Exception as error:
            code = _error_code(error)
            if code in {"PreconditionFailed", "412"}:
                return False
            if code == "ConditionalRequestConflict":  # a concurrent conditional write is in flight
                raise TransientError(f"concurrent create of s3://{self.bucket}/{key}, retry") from error
            raise
        return True

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if _error_code(error) in _MISSING_CODES:
                return False
            raise self._translate(error, key) from error
        return True

    def iter_lines(self, key: str) -> Iterable[str]:
        """The object's lines (UTF-8, without line breaks), streamed; ObjectMissing if it is absent.

        Lines end at LF, CR LF or CR. `text_blocks()` gives the same lines as blocks of about a megabyte
        of whole lines, each ending in LF: the manifest merge reads them so, with no step per line."""
        return _ObjectLines(self, key)

    def text_blocks(self, key: str) -> Iterator[str]:
        """The object's text in blocks of whole lines, each line ending in LF (see iter_lines)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as error:
            raise self._translate(error, key) from error
        decoder = codecs.getincrementaldecoder("utf-8")()
        pending = ""  # the start of a line continued in the next chunk
        after_cr = False  # the last chunk ended with CR: an LF starting this one is the same line break
        try:
            while chunk := body.read(_LINES_CHUNK_BYTES):
                text = decoder.decode(chunk)
                if after_cr and text:  # the character after that CR
                    text, after_cr = text.removeprefix("\n"), False
                if text:
                    after_cr = text.endswith("\r")
                if "\r" in text:
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
                text = pending + text
                cut = text.rfind("\n") + 1
                if cut:
                    yield text[:cut]
                pending = text[cut:]
            pending += decoder.decode(b"", final=True)
            if pending:
                yield pending + "\n"
        finally:
            body.close()

    def upload_file(self, path: str, key: str) -> None:
        self.client.upload_file(path, self.bucket, key, ExtraArgs={"ContentType": "application/x-ndjson"})

    def _object_params(self, key: str, version_id: str | None) -> dict[str, str]:
        params = {"Bucket": self.bucket, "Key": key}
        if version_id and version_id != "null":
            params["VersionId"] = version_id
        return params

    def _translate(self, error: Exception, key: str) -> Exception:
        code = _error_code(error)
        if code in _MISSING_CODES:
            return ObjectMissing(f"s3://{self.bucket}/{key} does not exist ({code})")
        if code in _TRANSIENT_CODES:
            return TransientError(f"S3 {code} reading s3://{self.bucket}/{key}")
        return error


def _json_body(document: Any) -> dict[str, Any]:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return {"Body": body.encode("utf-8"), "ContentType": "application/json"}


def _total_size(response: dict[str, Any], read: int) -> int:
    match = _CONTENT_RANGE_TOTAL.search(response.get("ContentRange") or "")
    return int(match.group(1)) if match else read


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
