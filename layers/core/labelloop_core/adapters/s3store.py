"""S3 access for the image bucket: image headers, JSON documents, create-only writes, manifests.

Manifests can hold a million lines: they are streamed line by line, never read into memory, and
merged manifests are written to a local file first and uploaded from there (multipart when large).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import AccessDenied, ObjectMissing, TransientError
from labelloop_core.ports import ObjectHead, ObjectVersion

_CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)$")
_LINES_CHUNK_BYTES = 1024 * 1024


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


class S3Store:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    client = LazyClient("s3")

    def read_head(self, key: str, length: int, version_id: str | None = None) -> ObjectHead:
        """Ranged GET of the first `length` bytes; an empty object gives `ObjectHead(b"", 0)`."""
        params = self._object_params(key, version_id)
        try:
            response = self.client.get_object(Range=f"bytes=0-{length - 1}", **params)
        except Exception as error:
            if aws_errors.error_code(error) == aws_errors.S3_EMPTY_RANGE:  # 416 for a 0-byte object
                return ObjectHead(b"", 0)
            raise self._translate(error, key) from error
        data = response["Body"].read()
        return ObjectHead(data, _total_size(response, len(data)))

    def read_tail(self, key: str, length: int, version_id: str | None = None) -> bytes:
        """The last `length` bytes (a suffix ranged GET; the whole object when it is shorter)."""
        params = self._object_params(key, version_id)
        try:
            response = self.client.get_object(Range=f"bytes=-{length}", **params)
        except Exception as error:
            if aws_errors.error_code(error) == aws_errors.S3_EMPTY_RANGE:
                return b""
            raise self._translate(error, key) from error
        data: bytes = response["Body"].read()
        return data

    def get_json(self, key: str, bucket: str | None = None) -> Any:
        """Parse a JSON object; raises ObjectMissing or ValueError (not JSON)."""
        try:
            response = self.client.get_object(Bucket=bucket or self.bucket, Key=key)
        except Exception as error:
            raise self._translate(error, key, bucket) from error
        return json.loads(response["Body"].read())

    def put_json(self, key: str, document: Any) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, **_json_body(document))
        except Exception as error:
            raise self._translate(error, key) from error

    def create_json(self, key: str, document: Any) -> bool:
        """Write `document` only if `key` does not exist yet; False when it already exists."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, IfNoneMatch="*", **_json_body(document))
        except Exception as error:
            code = aws_errors.error_code(error)
            if code in aws_errors.S3_PRECONDITION_FAILED:
                return False
            if code == aws_errors.S3_CONDITIONAL_CONFLICT:  # a concurrent conditional write is in flight
                raise TransientError(f"concurrent create of s3://{self.bucket}/{key}, retry") from error
            raise self._translate(error, key) from error
        return True

    def exists(self, key: str) -> bool:
        return self.current_version(key) is not None

    def current_version(self, key: str) -> ObjectVersion | None:
        """The version the key names now (HeadObject), or None when it does not exist (any more)."""
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if aws_errors.error_code(error) in aws_errors.S3_MISSING:
                return None
            raise self._translate(error, key) from error
        return ObjectVersion(response.get("VersionId"), str(response.get("ETag", "")).strip('"') or None)

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

    def _translate(self, error: Exception, key: str, bucket: str | None = None) -> Exception:
        code = aws_errors.error_code(error)
        where = f"s3://{bucket or self.bucket}/{key}"
        if code in aws_errors.S3_MISSING:
            return ObjectMissing(f"{where} does not exist ({code})")
        if code in aws_errors.S3_ACCESS_DENIED:
            # Also what S3 answers for a missing key when the role may not s3:ListBucket the bucket.
            return AccessDenied(f"access to {where} denied ({code}): check the function's role")
        if aws_errors.is_retryable(error):
            return TransientError(f"S3 {code or aws_errors.http_status(error)} on {where}")
        return error


def _json_body(document: Any) -> dict[str, Any]:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return {"Body": body.encode("utf-8"), "ContentType": "application/json"}


def _total_size(response: dict[str, Any], read: int) -> int:
    match = _CONTENT_RANGE_TOTAL.search(response.get("ContentRange") or "")
    return int(match.group(1)) if match else read
