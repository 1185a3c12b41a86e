"""Settings are parsed once and every bad value names its variable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labelloop_core.config import ConfigError, Settings, load_settings, settings_from_env

BASE_ENV = {
    "BUCKET_NAME": "labelloop-images",
    "LEDGER_TABLE": "labelloop-ledger",
    "EVENT_BUS_NAME": "labelloop-bus",
    "ACTIVE_MODEL_PARAMETER": "/labelloop/active-model",
    "PREVIOUS_MODEL_PARAMETER": "/labelloop/previous-model",
    "PROJECT_ARN": "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1",
    "LABELS": "pepperoni pizza slice, cheese pizza slice",
    "LABEL_ATTRIBUTE": "pizza_BB",
}


def settings(**overrides: str) -> Settings:
    return settings_from_env({**BASE_ENV, **overrides})


@pytest.fixture
def clean_cache() -> Iterator[None]:
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def test_defaults_for_detect_settings() -> None:
    loaded = settings()
    assert loaded.labels == ("pepperoni pizza slice", "cheese pizza slice")
    assert loaded.review_threshold == 60.0
    assert loaded.label_thresholds == {}
    assert loaded.review_when_empty is True
    assert loaded.audit_rate == 0.0
    assert loaded.model_cache_seconds == 60
    assert loaded.flow_definition_arn is None


def test_all_values_are_typed() -> None:
    loaded = settings(
        REVIEW_THRESHOLD="75.5",
        LABEL_THRESHOLDS='{"cheese pizza slice": 80}',
        REVIEW_WHEN_EMPTY="false",
        AUDIT_RATE="0.05",
        MIN_CONFIDENCE="10",
        MODEL_CACHE_SECONDS="30",
        FLOW_DEFINITION_ARN="arn:aws:sagemaker:us-east-1:123456789012:flow-definition/pizza-review",
        MIN_NEW_LABELS="16",
        BASE_MANIFEST_KEY="manifests/base.manifest",
        TEST_MANIFEST_KEY="manifests/test.manifest",
        PROMOTION_MARGIN="0.01",
        MIN_INFERENCE_UNITS="1",
    )
    assert loaded.review_threshold == 75.5
    assert loaded.label_thresholds == {"cheese pizza slice": 80.0}
    assert loaded.review_when_empty is False
    assert loaded.audit_rate == 0.05
    assert loaded.min_confidence == 10.0
    assert loaded.model_cache_seconds == 30
    assert loaded.min_new_labels == 16
    assert loaded.base_manifest_key == "manifests/base.manifest"
    assert loaded.test_manifest_key == "manifests/test.manifest"
    assert loaded.promotion_margin == 0.01
    assert loaded.min_inference_units == 1
    assert loaded.flow_name == "pizza-review"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REVIEW_THRESHOLD", "101", "between 0 and 100"),
        ("REVIEW_THRESHOLD", "-1", "between 0 and 100"),
        ("REVIEW_THRESHOLD", "sixty", "must be a number"),
        ("REVIEW_THRESHOLD", "nan", "finite"),
        ("AUDIT_RATE", "1.5", "between 0 and 1"),
        ("MIN_CONFIDENCE", "200", "between 0 and 100"),
        ("REVIEW_WHEN_EMPTY", "maybe", "true or false"),
        ("LABEL_THRESHOLDS", "{not json", "JSON object"),
        ("LABEL_THRESHOLDS", "[70]", "JSON object"),
        ("LABEL_THRESHOLDS", '{"hawaiian pizza": 70}', "not in LABELS"),
        ("LABEL_THRESHOLDS", '{"cheese pizza slice": 170}', "between 0 and 100"),
        ("LABEL_THRESHOLDS", '{"cheese pizza slice": true}', "between 0 and 100"),
        ("LABELS", "a,,b", "non-empty"),
        ("LABELS", "a,b,a", "duplicate"),
        ("LABEL_ATTRIBUTE", "pizza-metadata", "attribute name"),
        ("LABEL_ATTRIBUTE", "source-ref", "attribute name"),
        ("MODEL_CACHE_SECONDS", "600", "between 0 and 60"),
        ("MODEL_CACHE_SECONDS", "1.5", "integer"),
        ("PROJECT_ARN", "pizza", "ARN"),
        ("FLOW_DEFINITION_ARN", "flow", "ARN"),
        ("MIN_NEW_LABELS", "0", "at least 1"),
        ("PROMOTION_MARGIN", "2", "between 0 and 1"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        settings(**{variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}:")


@pytest.mark.parametrize("variable", sorted(BASE_ENV))
def test_missing_required_variable_is_named(variable: str) -> None:
    env = {name: value for name, value in BASE_ENV.items() if name != variable}
    with pytest.raises(ConfigError, match="required") as raised:
        settings_from_env(env)
    assert raised.value.variable == variable


def test_a_test_manifest_that_is_also_the_base_manifest_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not be trained on") as raised:
        settings(BASE_MANIFEST_KEY="manifests/base.manifest", TEST_MANIFEST_KEY="manifests/base.manifest")
    assert raised.value.variable == "TEST_MANIFEST_KEY"


def test_too_many_labels_is_refused() -> None:
    with pytest.raises(ConfigError, match="251 labels"):
        settings(LABELS=",".join(f"label{i}" for i in range(251)))


def test_min_confidence_above_a_review_threshold_is_refused() -> None:
    """Detections below MinConfidence never come back, so they could never be sent to review."""
    with pytest.raises(ConfigError, match="lowest review threshold 40") as raised:
        settings(MIN_CONFIDENCE="50", LABEL_THRESHOLDS='{"cheese pizza slice": 40}')
    assert raised.value.variable == "MIN_CONFIDENCE"


def test_require_returns_the_value_or_names_the_missing_variable() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/pizza-review"
    assert settings(FLOW_DEFINITION_ARN=arn).require("FLOW_DEFINITION_ARN") == arn
    with pytest.raises(ConfigError, match="FLOW_DEFINITION_ARN: is required by this function"):
        settings().require("FLOW_DEFINITION_ARN")
    with pytest.raises(ConfigError, match="not a labelloop setting"):
        settings().require("HOME")


def test_load_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch, clean_cache: None) -> None:
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    first = load_settings()
    monkeypatch.setenv("BUCKET_NAME", "another-bucket")
    assert load_settings() is first
    load_settings.cache_clear()
    assert load_settings().bucket_name == "another-bucket"


def test_load_settings_raises_for_a_bad_environment(
    monkeypatch: pytest.MonkeyPatch, clean_cache: None
) -> None:
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUDIT_RATE", "5%")
    with pytest.raises(ConfigError, match="AUDIT_RATE"):
        load_settings()


def test_settings_are_frozen() -> None:
    loaded = settings()
    with pytest.raises(AttributeError):
        loaded.bucket_name = "other"  # type: ignore[misc]
