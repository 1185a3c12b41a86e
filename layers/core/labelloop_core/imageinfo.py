"""Image checks from the first bytes of an object (one ranged GET), before calling Rekognition.

`probe(header, size)` reads the format and pixel size of a PNG (IHDR chunk) or JPEG (first SOFn
frame header) from `header`, the first bytes of the object, and applies the Rekognition Custom
Labels limits: PNG or JPEG, at most 15 MB, 64-4096 pixels per side, aspect ratio at most 20:1.

Error codes (`InvalidImage.code`):
- EMPTY: the object has zero bytes.
- NOT_AN_IMAGE: neither PNG nor JPEG magic bytes.
- CORRUPT_HEADER: the header is malformed, or the whole object was read and has no frame header.
- HEADER_TOO_LONG: the frame header lies beyond the bytes we were given (for example a JPEG with a
  large EXIF/ICC block pushing SOF past `HEADER_BYTES`) *and* the object is larger than what was read.
  This is not a verdict on the image: fetch `InvalidImage.needed_bytes` leading bytes (or more) and
  call `probe` again (rarely more than once: the suggestion includes HEADER_BYTES of headroom).
- TOO_LARGE_BYTES, TOO_SMALL, TOO_LARGE_PIXELS, BAD_ASPECT_RATIO: limits above.

`check_complete(info, head, tail, size)` then looks at the end of the object (its last `TAIL_BYTES`, a
second ranged GET) and, when the header bytes hold the whole structure, at what follows the header:
- TRUNCATED: the object does not end like a complete image (no JPEG EOI marker, no PNG IEND chunk),
  as an interrupted upload leaves it;
- NO_IMAGE_DATA: the headers describe an image but no image data follows (no JPEG scan, no PNG IDAT).
A reviewer would otherwise be paid to label an image nobody can see.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from labelloop_core.errors import InvalidImage

HEADER_BYTES = 65536
TAIL_BYTES = 16 * 1024  # covers the trailers some cameras append after the JPEG EOI marker
MAX_BYTES = 15 * 1024 * 1024
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_ASPECT_RATIO = 20.0

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) share the range but do not.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field: TEM, RST0-7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOS, _JPEG_EOI, _JPEG_SOI = 0xDA, 0xD9, 0xD8
_JPEG_END = b"\xff\xd9"  # never inside entropy-coded data, where 0xFF is always followed by 0x00 or RSTn
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its fixed CRC
# PNG colour type -> channels; palette images are stored as RGB.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "PNG" | "JPEG"
    width: int
    height: int
    depth: int = 3  # colour channels, as the manifest's image_size.depth records them


class _Truncated(Exception):
    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


def probe(header: bytes, size: int) -> ImageInfo:
    """Identify and check an image from its first bytes; raises `InvalidImage`."""
    if size <= 0:
        raise InvalidImage("EMPTY", "the object is empty (0 bytes)")
    if not header:
        raise InvalidImage("CORRUPT_HEADER", f"no bytes were read from a {size}-byte object")
    image_format = _sniff(header, size)
    if size > MAX_BYTES:
        raise InvalidImage("TOO_LARGE_BYTES", f"{size} bytes is more than the {MAX_BYTES}-byte limit")
    info = _parse(image_format, header, size)
    _check_dimensions(info)
    return info


def _sniff(header: bytes, size: int) -> str:
    if header.startswith(PNG_MAGIC):
        return "PNG"
    if header.startswith(JPEG_MAGIC):
        return "JPEG"
    if PNG_MAGIC.startswith(header) or JPEG_MAGIC.startswith(header):
        if len(header) < size:
            raise InvalidImage(
                "HEADER_TOO_LONG", f"only {len(header)} bytes read, too few to identify the format", 32
            )
        raise InvalidImage("CORRUPT_HEADER", f"only {len(header)} bytes, too short to be a PNG or JPEG")
    raise InvalidImage("NOT_AN_IMAGE", f"not a PNG or JPEG (starts with {header[:8].hex(' ')})")


def _parse(image_format: str, header: bytes, size: int) -> ImageInfo:
    try:
        return _parse_png(header) if image_format == "PNG" else _parse_jpeg(header)
    except _Truncated as truncated:
        if len(header) < size:
            raise InvalidImage(
                "HEADER_TOO_LONG",
                f"the {image_format} frame header lies beyond the first {len(header)} bytes read; "
                f"read at least {truncated.needed} bytes",
                # Headroom for the segments after the one we know about.
                needed_bytes=min(size, max(truncated.needed, len(header)) + HEADER_BYTES),
            ) from None
        detail = f"the {image_format} data ends after {len(header)} bytes, before its frame header"
        raise InvalidImage("CORRUPT_HEADER", detail) from None


def _parse_png(data: bytes) -> ImageInfo:
    # Signature (8) + chunk length (4) + "IHDR" (4) + width, height (4 each) + bit depth, colour type.
    if len(data) < 26:
        raise _Truncated(26)
    length, chunk_type, width, height, _bit_depth, colour_type = struct.unpack(">I4sIIBB", data[8:26])
    if chunk_type != b"IHDR" or length != 13:
        raise InvalidImage("CORRUPT_HEADER", "PNG does not start with an IHDR chunk")
    if width == 0 or height == 0:
        raise InvalidImage("CORRUPT_HEADER", f"PNG declares a {width}x{height} image")
    if colour_type not in _PNG_CHANNELS:
        raise InvalidImage("CORRUPT_HEADER", f"PNG has an unknown colour type {colour_type}")
    return ImageInfo("PNG", width, height, _PNG_CHANNELS[colour_type])


def _parse_jpeg(data: bytes) -> ImageInfo:
    pos = 2  # after SOI
    end = len(data)
    while True:
        if pos >= end:
            raise _Truncated(pos + 2)
        if data[pos] != 0xFF:
            detail = f"JPEG: expected a marker at byte {pos}, found 0x{data[pos]:02x}"
            raise InvalidImage("CORRUPT_HEADER", detail)
        while pos < end and data[pos] == 0xFF:  # fill bytes before the marker code
            pos += 1
        if pos >= end:
            raise _Truncated(pos + 2)
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (_JPEG_EOI, _JPEG_SOI, _JPEG_SOS, 0x00):
            raise InvalidImage("CORRUPT_HEADER", f"JPEG: marker 0x{marker:02x} before any frame header")
        if pos + 2 > end:
            raise _Truncated(pos + 2)
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise InvalidImage("CORRUPT_HEADER", f"JPEG: segment 0x{marker:02x} has invalid length {length}")
        if marker in _JPEG_SOF_MARKERS:
            return _jpeg_frame(data, pos, length)
        pos += length


def _jpeg_frame(data: bytes, pos: int, length: int) -> ImageInfo:
    # Frame header: length (2), precision (1), height (2), width (2), components (1).
    if length < 8:
        raise InvalidImage("CORRUPT_HEADER", f"JPEG: frame header too short ({length} bytes)")
    if pos + 8 > len(data):
        raise _Truncated(pos + 8)
    height, width, components = struct.unpack(">HHB", data[pos + 3 : pos + 8])
    if width == 0 or height == 0:
        raise InvalidImage("CORRUPT_HEADER", f"JPEG frame header declares a {width}x{height} image")
    if components == 0:
        raise InvalidImage("CORRUPT_HEADER", "JPEG frame header declares no colour components")
    return ImageInfo("JPEG", width, height, components)


def _check_dimensions(info: ImageInfo) -> None:
    shortest, longest = min(info.width, info.height), max(info.width, info.height)
    size = f"{info.width}x{info.height}"
    if shortest < MIN_SIDE:
        raise InvalidImage("TOO_SMALL", f"{size} px: each side must be at least {MIN_SIDE} px")
    if longest > MAX_SIDE:
        raise InvalidImage("TOO_LARGE_PIXELS", f"{size} px: each side must be at most {MAX_SIDE} px")
    if longest / shortest > MAX_ASPECT_RATIO:
        raise InvalidImage("BAD_ASPECT_RATIO", f"{size} px: aspect ratio exceeds {MAX_ASPECT_RATIO:g}:1")


def check_complete(info: ImageInfo, head: bytes, tail: bytes, size: int) -> None:
    """Raise InvalidImage TRUNCATED or NO_IMAGE_DATA (see the module docstring); `head` is the first
    bytes of the object, `tail` its last bytes (the same bytes when the object is small)."""
    whole = len(head) >= size
    if info.format == "PNG":
        if _png_has_no_data(head, whole):
            raise InvalidImage("NO_IMAGE_DATA", "the PNG has no IDAT chunk before its IEND: no image data")
        if _PNG_END not in tail:
            raise InvalidImage(
                "TRUNCATED", f"the PNG does not end with an IEND chunk: the {size}-byte object is cut off"
            )
    else:
        if whole and not _jpeg_has_scan(head):
            raise InvalidImage("NO_IMAGE_DATA", "the JPEG has no scan (SOS) after its headers: no image data")
        if _JPEG_END not in tail:
            raise InvalidImage(
                "TRUNCATED", f"the JPEG has no end-of-image marker: the {size}-byte object is cut off"
            )


def _png_has_no_data(data: bytes, whole: bool) -> bool:
    """True when the chunks read show IEND before any IDAT (unknown chunks or too few bytes: False)."""
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            return False
        if kind == b"IEND":
            return True
        if not kind.isalpha():
            return False  # not a chunk: leave the verdict to the tail check
        pos += 12 + length
    return whole


def _jpeg_has_scan(data: bytes) -> bool:
    """True when a start-of-scan marker follows the headers of a complete JPEG held in `data`."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _JPEG_SOS:
            return True
        if marker == _JPEG_EOI:
            return False
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return False
