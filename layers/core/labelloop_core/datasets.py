"""What a training manifest holds, tallied while the merge writes it (never by reading it again).

`ManifestTally` sits between `manifest.merge` and the file it writes: it passes every block through
and keeps a SHA-256 of the bytes, the byte, line and box counts, and per label the images and boxes.
The merge writes only validated Ground Truth lines with the canonical class ids of the stack's labels,
so a line's boxes are its `"class_id": N` members (a JSON string cannot hold that text unescaped).
"""

from __future__ import annotations

import hashlib
import re
from typing import TextIO

from labelloop_core.ledger import LabelCount
from labelloop_core.manifest import ClassMap

_CLASS_ID = re.compile(r'"class_id"\s*:\s*([0-9]+)')  # the merge writes canonical lines; spacing tolerated


class ManifestTally:
    """A write-through wrapper of the merge's output file."""

    def __init__(self, out: TextIO, class_map: ClassMap) -> None:
        self.out = out
        self.class_map = class_map
        self._hash = hashlib.sha256()
        self.size_bytes = 0
        self.images = 0
        self.boxes = 0
        self._label_images = [0] * len(class_map)
        self._label_boxes = [0] * len(class_map)
        self._tail = ""

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._hash.update(data)
        self.size_bytes += len(data)
        lines = (self._tail + text).split("\n")  # not splitlines: JSON strings may hold U+2028
        self._tail = lines.pop()
        for line in lines:
            self._count(line)
        return self.out.write(text)

    def _count(self, line: str) -> None:
        if not line.strip():
            return
        self.images += 1
        ids = _CLASS_ID.findall(line)
        self.boxes += len(ids)
        for class_id in ids:
            self._label_boxes[int(class_id)] += 1
        for class_id in set(ids):
            self._label_images[int(class_id)] += 1

    def flush(self) -> None:
        self.out.flush()

    def finish(self) -> None:
        """Count a last line without a line break (the merge ends every line with one)."""
        self._count(self._tail)
        self._tail = ""

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def per_label(self) -> dict[str, LabelCount]:
        return {
            label: LabelCount(self._label_images[index], self._label_boxes[index])
            for index, label in enumerate(self.class_map.labels)
        }
