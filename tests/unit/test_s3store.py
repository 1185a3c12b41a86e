"""S3Store.iter_lines: a manifest streamed from S3 gives the lines botocore's own iter_lines gives."""

import io
import random
from typing import Any

import pytest
from botocore.response import StreamingBody

from labelloop_core.adapters import s3store
from labelloop_core.adapters.s3store import S3Store


class _Client:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # boto3 spells them so
        return {"Body": StreamingBody(io.BytesIO(self.data), len(self.data))}


def botocore_lines(data: bytes) -> list[str]:
    body = StreamingBody(io.BytesIO(data), len(data))
    return [line.decode("utf-8") for line in body.iter_lines(chunk_size=len(data) + 1)]


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}\n{"b": 2}\n',
        b'{"a": 1}\r\n{"b": 2}',  # Windows line breaks, no final one
        b"one\rtwo\r\rthree\r",  # lone CRs
        "caf\u00e9 \u2028 \u0085 \u2603\n\n\u00e9".encode(),  # multi-byte characters, U+2028 is not a break
        b"",
        b"\n",
        b"\r",
    ],
)
def test_lines_are_those_botocore_gives_whatever_the_read_size(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    for read_size in (1, 2, 3, 1024):  # chunk boundaries inside characters and inside CR LF
        monkeypatch.setattr(s3store, "_LINES_CHUNK_BYTES", read_size)
        assert list(S3Store("bucket", _Client(data)).iter_lines("key")) == botocore_lines(data)


def test_random_manifests_split_like_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = ["{}", "é", "☃", "\n", "\r", "\r\n", "x y", "\u2028", ""]
    generator = random.Random(7)
    for _ in range(2000):
        data = "".join(generator.choices(pieces, k=generator.randint(0, 25))).encode()
        monkeypatch.setattr(s3store, "_LINES_CHUNK_BYTES", generator.randint(1, 9))
        lines = S3Store("bucket", _Client(data)).iter_lines("key")
        assert list(lines) == botocore_lines(data)
        blocks = list(lines.text_blocks())  # type: ignore[attr-defined]
        assert all(block.endswith("\n") for block in blocks)
        assert "".join(blocks).split("\n")[:-1] == botocore_lines(data)
