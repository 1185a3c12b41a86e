import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from labelloop_core.errors import InvalidEvent
from labelloop_core.naming import (
    ImageRef,
    decode_key,
    human_loop_name,
    is_incoming,
    is_valid_loop_name,
    label_key,
    parse_s3_uri,
    prediction_key,
    training_version_name,
)

LOOP_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/v1/1"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("incoming/my+photo.jpg", "incoming/my photo.jpg"),
        ("incoming/a%2Bb.jpg", "incoming/a+b.jpg"),
        ("incoming/100%25+done.png", "incoming/100% done.png"),
        ("incoming/caf%C3%A9+%F0%9F%8D%95.jpg", "incoming/café 🍕.jpg"),
        ("incoming/%252B.jpg", "incoming/%2B.jpg"),  # decoded once, not twice
        ("incoming/plain.jpg", "incoming/plain.jpg"),
    ],
)
def test_decode_key_decodes_s3_event_keys_exactly_once(raw: str, decoded: str) -> None:
    assert decode_key(raw) == decoded


def test_decode_key_rejects_escapes_that_are_not_utf8() -> None:
    with pytest.raises(InvalidEvent, match="not UTF-8"):
        decode_key("incoming/%FF%FE.jpg")


def test_identity_prefers_version_id_and_falls_back_to_etag() -> None:
    versioned = ImageRef("bucket", "incoming/a b.jpg", version_id="v1", etag="abc")
    assert versioned.identity == "bucket/incoming/a b.jpg#v1"
    unversioned = ImageRef("bucket", "incoming/a b.jpg", version_id="null", etag='"abc"')
    assert unversioned.identity == "bucket/incoming/a b.jpg#abc"


def test_quoted_and_unquoted_etags_give_the_same_image_id() -> None:
    assert ImageRef("b", "k.jpg", etag='"abc"').image_id == ImageRef("b", "k.jpg", etag="abc").image_id


def test_image_id_is_32_hex_chars_and_changes_with_the_version() -> None:
    first = ImageRef("b", "k.jpg", version_id="1").image_id
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != ImageRef("b", "k.jpg", version_id="2").image_id


def test_image_without_version_or_etag_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="neither a version id nor an ETag"):
        ImageRef("b", "k.jpg")
    with pytest.raises(InvalidEvent):
        ImageRef("", "k.jpg", version_id="1")


def test_s3_uri_keeps_the_decoded_key_literally() -> None:
    assert ImageRef("b", "incoming/café 1+1.jpg", version_id="1").s3_uri == "s3://b/incoming/café 1+1.jpg"


@pytest.mark.parametrize(
    "key", ["incoming/a.jpg", "incoming/with space/ünï+code 100%.png", "incoming/" + "x" * 900]
)
def test_human_loop_name_is_a_valid_deterministic_a2i_name(key: str) -> None:
    image = ImageRef("bucket", key, version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    name = human_loop_name(image, MODEL)
    assert name == human_loop_name(
        ImageRef("bucket", key, version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"), MODEL
    )
    assert name.startswith("ll-")
    assert len(name) <= 63
    assert LOOP_PATTERN.match(name)
    assert is_valid_loop_name(name)


def test_human_loop_name_differs_per_image_version_and_model() -> None:
    image = ImageRef("bucket", "incoming/a.jpg", version_id="1")
    names = {
        human_loop_name(image, MODEL),
        human_loop_name(ImageRef("bucket", "incoming/a.jpg", version_id="2"), MODEL),
        human_loop_name(image, MODEL.replace("v1", "v2")),
    }
    assert len(names) == 3


def test_prediction_key_mirrors_the_incoming_key() -> None:
    assert prediction_key("incoming/a/b.jpg") == "predictions/a/b.jpg.json"
    assert prediction_key("incoming/my photo+1.png") == "predictions/my photo+1.png.json"
    with pytest.raises(ValueError, match="not an object under incoming/"):
        prediction_key("labels/a.jpg")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/a.jpg", True),
        ("incoming/", False),
        ("incoming/folder/", False),
        ("predictions/a.jpg", False),
    ],
)
def test_is_incoming(key: str, expected: bool) -> None:
    assert is_incoming(key) is expected


def test_label_key_uses_the_loop_name_and_rejects_bad_names() -> None:
    assert label_key("ll-abc123") == "labels/ll-abc123.json"
    with pytest.raises(ValueError):
        label_key("../escape")


def test_training_version_name_is_utc_and_needs_a_timezone() -> None:
    paris = timezone(timedelta(hours=2))
    assert (
        training_version_name(datetime(2024, 5, 1, 12, 30, 5, tzinfo=paris)) == "labelloop-20240501T103005Z"
    )
    assert training_version_name(datetime(2024, 5, 1, tzinfo=UTC)) == "labelloop-20240501T000000Z"
    with pytest.raises(ValueError):
        training_version_name(datetime(2024, 5, 1))


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/a/b c.jpg") == ("bucket", "a/b c.jpg")
    for bad in ("https://bucket/a.jpg", "s3://bucket", "s3:///key", "s3://bucket/"):
        with pytest.raises(ValueError):
            parse_s3_uri(bad)
