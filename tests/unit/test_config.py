"""Each function's settings are typed, parsed once per container, and every bad value names its variable."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from labelloop_core import state
from labelloop_core.config import ConfigError, load_settings, settings_from_env, variables
from labelloop_core.services.append_labels import AppendLabelsSettings
from labelloop_core.services.detect import DetectSettings
from labelloop_core.services.model_controller import ModelControllerSettings
from labelloop_core.services.promote import PromoteSettings
from labelloop_core.services.retrain import RetrainSettings
from labelloop_core.services.start_review import StartReviewSettings

ENV = {
    "BUCKET_NAME": "labelloop-images",
    "LEDGER_TABLE": "labelloop-ledger",
    "EVENT_BUS_NAME": "labelloop-bus",
    "ACTIVE_MODEL_PARAMETER": "/labelloop/active-model",
    "PREVIOUS_MODEL_PARAMETER": "/labelloop/previous-model",
    "PROJECT_ARN": "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1",
    "LABELS": "pepperoni pizza slice, cheese pizza slice",
    "LABEL_ATTRIBUTE": "pizza_BB",
    "FLOW_DEFINITION_ARN": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/pizza-review",
    "FLOW_DEFINITION_ARN_PREFIX": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/pizza-",
    "TASK_TABLE": "labelloop-review-tasks",
    "DETECT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/detect",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/detect-dlq",
    "EVENT_SOURCE_MAPPING_UUID": "a1b2c3d4-0000-4000-8000-000000000001",
}
SETTINGS_TYPES: list[type[Any]] = [
    DetectSettings,
    StartReviewSettings,
    AppendLabelsSettings,
    RetrainSettings,
    PromoteSettings,
    ModelControllerSettings,
]


def detect(**overrides: str) -> DetectSettings:
    return settings_from_env(DetectSettings, {**ENV, **overrides})


@pytest.fixture
def fresh_container() -> Iterator[None]:
    state.reset()
    yield
    state.reset()


def test_detect_defaults_apply_when_optional_variables_are_unset() -> None:
    loaded = detect()
    assert loaded.labels == ("pepperoni pizza slice", "cheese pizza slice")
    assert loaded.review_threshold == 60.0
    assert loaded.label_thresholds == {}
    assert loaded.review_when_empty is True
    assert loaded.audit_rate == 0.0
    assert loaded.min_confidence == 10.0
    assert loaded.model_cache_seconds == 60


def test_values_are_typed() -> None:
    loaded = detect(
        REVIEW_THRESHOLD="75.5",
        LABEL_THRESHOLDS='{"cheese pizza slice": 80}',
        REVIEW_WHEN_EMPTY="false",
        AUDIT_RATE="0.05",
        MIN_CONFIDENCE="10",
        MODEL_CACHE_SECONDS="30",
    )
    assert loaded.review_threshold == 75.5
    assert loaded.label_thresholds == {"cheese pizza slice": 80.0}
    assert loaded.review_when_empty is False
    assert loaded.audit_rate == 0.05
    assert loaded.model_cache_seconds == 30
    retrain = settings_from_env(RetrainSettings, {**ENV, "MIN_NEW_LABELS": "16"})
    assert retrain.min_new_labels == 16
    promote = settings_from_env(
        PromoteSettings, {**ENV, "PROMOTION_MARGIN": "0.02", "MIN_INFERENCE_UNITS": "2"}
    )
    assert (promote.promotion_margin, promote.min_inference_units) == (0.02, 2)
    assert settings_from_env(AppendLabelsSettings, ENV).flow_definition_arn_prefix.endswith("/pizza-")


@pytest.mark.parametrize(
    ("settings_type", "variable", "value", "message"),
    [
        (DetectSettings, "REVIEW_THRESHOLD", "101", "between 0 and 100"),
        (DetectSettings, "REVIEW_THRESHOLD", "-1", "between 0 and 100"),
        (DetectSettings, "REVIEW_THRESHOLD", "sixty", "must be a number"),
        (DetectSettings, "REVIEW_THRESHOLD", "nan", "finite"),
        (DetectSettings, "AUDIT_RATE", "1.5", "between 0 and 1"),
        (DetectSettings, "MIN_CONFIDENCE", "200", "between 0 and 100"),
        (DetectSettings, "REVIEW_WHEN_EMPTY", "maybe", "true or false"),
        (DetectSettings, "LABEL_THRESHOLDS", "{not json", "JSON object"),
        (DetectSettings, "LABEL_THRESHOLDS", "[70]", "JSON object"),
        (DetectSettings, "LABEL_THRESHOLDS", '{"hawaiian pizza": 70}', "not in LABELS"),
        (DetectSettings, "LABEL_THRESHOLDS", '{"cheese pizza slice": 170}', "between 0 and 100"),
        (DetectSettings, "LABEL_THRESHOLDS", '{"cheese pizza slice": true}', "between 0 and 100"),
        (DetectSettings, "LABELS", "a,,b", "non-empty"),
        (DetectSettings, "LABELS", "a,b,a", "duplicate"),
        (DetectSettings, "MODEL_CACHE_SECONDS", "600", "between 0 and 60"),
        (DetectSettings, "MODEL_CACHE_SECONDS", "1.5", "integer"),
        (DetectSettings, "PROJECT_ARN", "pizza", "ARN"),
        (AppendLabelsSettings, "LABEL_ATTRIBUTE", "pizza-metadata", "attribute name"),
        (AppendLabelsSettings, "LABEL_ATTRIBUTE", "source-ref", "attribute name"),
        (StartReviewSettings, "FLOW_DEFINITION_ARN", "flow", "ARN"),
        (RetrainSettings, "MIN_NEW_LABELS", "0", "at least 1"),
        (PromoteSettings, "PROMOTION_MARGIN", "2", "between 0 and 0.99"),
        (PromoteSettings, "MIN_INFERENCE_UNITS", "zero", "integer"),
    ],
)
def test_invalid_values_name_the_variable(
    settings_type: type[Any], variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        settings_from_env(settings_type, {**ENV, variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}:")


@pytest.mark.parametrize(
    ("settings_type", "variable"),
    [
        (settings_type, variable)
        for settings_type in SETTINGS_TYPES
        for field in dataclasses.fields(settings_type)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        for variable in [field.metadata["env"]]
    ],
)
def test_a_missing_required_variable_is_named(settings_type: type[Any], variable: str) -> None:
    env = {name: value for name, value in ENV.items() if name != variable}
    with pytest.raises(ConfigError, match="required") as raised:
        settings_from_env(settings_type, env)
    assert raised.value.variable == variable


def test_a_function_reads_only_the_variables_it_declares() -> None:
    assert "FLOW_DEFINITION_ARN" not in variables(DetectSettings).values()
    assert "ACTIVE_MODEL_PARAMETER" not in variables(AppendLabelsSettings).values()
    # Variables of other functions in the environment are ignored, not an error.
    assert settings_from_env(StartReviewSettings, {**ENV, "REVIEW_THRESHOLD": "oops"}).labels


def test_a_test_manifest_that_is_also_the_base_manifest_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not be trained on") as raised:
        settings_from_env(
            RetrainSettings,
            {
                **ENV,
                "BASE_MANIFEST_KEY": "manifests/base.manifest",
                "TEST_MANIFEST_KEY": "manifests/base.manifest",
            },
        )
    assert raised.value.variable == "TEST_MANIFEST_KEY"


def test_too_many_labels_is_refused() -> None:
    with pytest.raises(ConfigError, match="251 labels"):
        detect(LABELS=",".join(f"label{i}" for i in range(251)))


def test_min_confidence_above_a_review_threshold_is_refused() -> None:
    """Detections below MinConfidence never come back, so they could never be sent to review."""
    with pytest.raises(ConfigError, match="lowest review threshold 40") as raised:
        detect(MIN_CONFIDENCE="50", LABEL_THRESHOLDS='{"cheese pizza slice": 40}')
    assert raised.value.variable == "MIN_CONFIDENCE"


def test_settings_are_parsed_once_per_container(
    monkeypatch: pytest.MonkeyPatch, fresh_container: None
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    first = load_settings(DetectSettings)
    monkeypatch.setenv("BUCKET_NAME", "another-bucket")
    assert load_settings(DetectSettings) is first
    state.reset()
    assert load_settings(DetectSettings).bucket_name == "another-bucket"


def test_a_bad_environment_fails_at_load(monkeypatch: pytest.MonkeyPatch, fresh_container: None) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUDIT_RATE", "5%")
    with pytest.raises(ConfigError, match="AUDIT_RATE"):
        load_settings(DetectSettings)


def test_settings_are_frozen() -> None:
    loaded = detect()
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.bucket_name = "other"  # type: ignore[misc]


def test_inference_on_demand_settings_read_minutes_units_and_price() -> None:
    loaded = settings_from_env(ModelControllerSettings, ENV)
    assert (loaded.model_idle_minutes, loaded.min_inference_units, loaded.max_inference_units) == (
        15.0,
        1,
        None,
    )
    assert loaded.inference_unit_hour_price == 4.0
    tuned = settings_from_env(
        ModelControllerSettings,
        {**ENV, "MODEL_IDLE_MINUTES": "0.5", "MIN_INFERENCE_UNITS": "2", "MAX_INFERENCE_UNITS": "6"},
    )
    assert (tuned.model_idle_minutes, tuned.min_inference_units, tuned.max_inference_units) == (0.5, 2, 6)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAX_INFERENCE_UNITS", "1", "below MIN_INFERENCE_UNITS 2"),
        ("MODEL_IDLE_MINUTES", "-1", "between 0 and 1440"),
        ("MAX_INFERENCE_UNITS", "many", "integer"),
    ],
)
def test_inference_on_demand_settings_refuse_what_cannot_work(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        settings_from_env(ModelControllerSettings, {**ENV, "MIN_INFERENCE_UNITS": "2", variable: value})
    assert raised.value.variable == variable
