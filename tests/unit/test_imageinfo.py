import io
import struct
import zlib

import pytest
from PIL import Image

from labelloop_core.errors import InvalidImage
from labelloop_core.imageinfo import HEADER_BYTES, MAX_BYTES, TAIL_BYTES, ImageInfo, check_complete, probe


def png_bytes(width: int, height: int, colour_type: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 32


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def sof(marker: int, width: int, height: int, components: int = 3) -> bytes:
    return segment(marker, struct.pack(">BHHB", 8, height, width, components) + b"\x00" * (3 * components))


def jpeg_bytes(*segments: bytes) -> bytes:
    return b"\xff\xd8" + b"".join(segments) + b"\xff\xda" + b"\x00" * 16


def pillow_jpeg(width: int, height: int, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, "JPEG", **save_args)
    return buffer.getvalue()


def probe_file(data: bytes) -> ImageInfo:
    return probe(data[:HEADER_BYTES], len(data))


def test_png_size_and_channels_from_ihdr() -> None:
    assert probe_file(png_bytes(640, 480)) == ImageInfo("PNG", 640, 480, 3)
    assert probe_file(png_bytes(640, 480, colour_type=6)).depth == 4


def test_real_jpeg_written_by_pillow() -> None:
    assert probe_file(pillow_jpeg(300, 200)) == ImageInfo("JPEG", 300, 200, 3)
    assert probe_file(pillow_jpeg(300, 200, progressive=True)) == ImageInfo("JPEG", 300, 200, 3)


def test_jpeg_skips_app_segments_fill_bytes_standalone_markers_and_dht() -> None:
    data = jpeg_bytes(
        segment(0xE0, b"JFIF\x00" + b"\x00" * 9),
        segment(0xE1, b"Exif\x00\x00" + b"\x00" * 5000),
        b"\xff\xff\xff",  # fill bytes before the next marker
        b"\xff\xd0",  # RST0 has no length
        segment(0xC4, b"\x00" * 30),  # DHT is in the SOF range but is not a frame header
        segment(0xCC, b"\x00" * 4),  # DAC neither
        sof(0xC2, 1024, 768, components=1),
    )
    assert probe_file(data) == ImageInfo("JPEG", 1024, 768, 1)


@pytest.mark.parametrize("app_segments", [2, 5])
def test_jpeg_with_huge_exif_asks_for_more_bytes_then_succeeds(app_segments: int) -> None:
    big_app = b"".join(segment(0xE1 + i % 2, b"Exif\x00\x00" + bytes(60000)) for i in range(app_segments))
    data = jpeg_bytes(big_app, sof(0xC0, 800, 600)) + bytes(200_000)
    with pytest.raises(InvalidImage) as error:
        probe(data[:HEADER_BYTES], len(data))
    assert error.value.code == "HEADER_TOO_LONG"
    fetched = HEADER_BYTES
    for _ in range(app_segments):  # what a caller does: fetch what it is told, probe again
        try:
            assert probe(data[:fetched], len(data)) == ImageInfo("JPEG", 800, 600, 3)
            break
        except InvalidImage as again:
            assert again.code == "HEADER_TOO_LONG"
            assert again.needed_bytes is not None and again.needed_bytes > fetched
            fetched = again.needed_bytes
    else:
        pytest.fail("probe never found the frame header")


def test_truncated_file_without_frame_header_is_corrupt() -> None:
    data = jpeg_bytes(segment(0xE0, b"JFIF\x00" + b"\x00" * 9))[:20]
    with pytest.raises(InvalidImage) as error:
        probe(data, len(data))  # we read the whole object: nothing more to fetch
    assert error.value.code == "CORRUPT_HEADER"


def test_truncated_png_is_corrupt_when_nothing_more_exists() -> None:
    data = png_bytes(640, 480)[:20]
    with pytest.raises(InvalidImage) as error:
        probe(data, len(data))
    assert error.value.code == "CORRUPT_HEADER"


@pytest.mark.parametrize(
    "data",
    [
        jpeg_bytes(segment(0xE0, b"JFIF\x00"), b"\x00\x01\x02"),  # no marker where one must be
        b"\xff\xd8\xff\xda\x00\x08" + bytes(100),  # scan data before any frame header
        b"\xff\xd8\xff\xd9",  # end of image before any frame header
        jpeg_bytes(sof(0xC0, 0, 600)),  # zero width
        jpeg_bytes(segment(0xE0, b"")[:2] + b"\x00\x01"),  # segment length below 2
        png_bytes(640, 480).replace(b"IHDR", b"IHDX", 1),
        png_bytes(0, 480),
    ],
)
def test_malformed_headers_are_corrupt(data: bytes) -> None:
    with pytest.raises(InvalidImage) as error:
        probe_file(data)
    assert error.value.code == "CORRUPT_HEADER"


@pytest.mark.parametrize(
    "data",
    [b"GIF89a" + bytes(100), b"%PDF-1.7" + bytes(100), b"\x00" * 100, b"<html>", b"\xff\xd8\x00" + bytes(9)],
)
def test_other_formats_are_not_images(data: bytes) -> None:
    with pytest.raises(InvalidImage) as error:
        probe_file(data)
    assert error.value.code == "NOT_AN_IMAGE"


def test_empty_object() -> None:
    with pytest.raises(InvalidImage) as error:
        probe(b"", 0)
    assert error.value.code == "EMPTY"


def test_size_limit_is_checked_without_reading_the_whole_file() -> None:
    with pytest.raises(InvalidImage) as error:
        probe(png_bytes(640, 480), MAX_BYTES + 1)
    assert error.value.code == "TOO_LARGE_BYTES"
    assert probe(png_bytes(640, 480), MAX_BYTES).width == 640


@pytest.mark.parametrize(
    ("width", "height", "code"),
    [
        (63, 480, "TOO_SMALL"),
        (640, 10, "TOO_SMALL"),
        (4097, 480, "TOO_LARGE_PIXELS"),
        (64, 1300, "BAD_ASPECT_RATIO"),
        (4096, 200, "BAD_ASPECT_RATIO"),
    ],
)
def test_dimension_limits(width: int, height: int, code: str) -> None:
    with pytest.raises(InvalidImage) as error:
        probe_file(png_bytes(width, height))
    assert error.value.code == code


@pytest.mark.parametrize(("width", "height"), [(64, 64), (4096, 4096), (64, 1280), (4096, 205)])
def test_dimensions_at_the_limits_are_accepted(width: int, height: int) -> None:
    assert probe_file(png_bytes(width, height)).width == width


def complete_check(data: bytes) -> None:
    info = probe_file(data)
    check_complete(info, data[:HEADER_BYTES], data[-TAIL_BYTES:], len(data))


def test_complete_images_pass_the_completeness_check() -> None:
    complete_check(pillow_jpeg(640, 480))
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (1, 2, 3)).save(buffer, "PNG")
    complete_check(buffer.getvalue())


def test_a_camera_trailer_after_the_jpeg_end_marker_is_accepted() -> None:
    complete_check(pillow_jpeg(640, 480) + b"SEFH" + bytes(range(256)) * 8 + b"SEFT")


@pytest.mark.parametrize("kept", [0.5, 0.9, 0.999])
def test_an_interrupted_upload_is_truncated(kept: float) -> None:
    whole = pillow_jpeg(640, 480, quality=95)
    with pytest.raises(InvalidImage) as raised:
        complete_check(whole[: int(len(whole) * kept)])
    assert raised.value.code == "TRUNCATED"


def test_a_truncated_png_is_truncated() -> None:
    buffer = io.BytesIO()
    Image.effect_noise((640, 480), 50).convert("RGB").save(buffer, "PNG")
    with pytest.raises(InvalidImage, match="IEND") as raised:
        complete_check(buffer.getvalue()[:-100])
    assert raised.value.code == "TRUNCATED"


def test_headers_without_image_data_are_refused() -> None:
    headers_only_jpeg = b"\xff\xd8" + sof(0xC0, 640, 480) + b"\xff\xd9"
    with pytest.raises(InvalidImage) as raised:
        complete_check(headers_only_jpeg)
    assert raised.value.code == "NO_IMAGE_DATA"
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    with pytest.raises(InvalidImage) as raised:
        complete_check(png_bytes(640, 480)[:33] + iend)
    assert raised.value.code == "NO_IMAGE_DATA"
