import pytest

from labelloop_core.geometry import RatioBox
from labelloop_core.policy import (
    AUDIT_SAMPLE,
    LOW_CONFIDENCE,
    NO_DETECTIONS,
    Detection,
    ReviewConfig,
    ReviewReason,
    audit_fraction,
    decide_review,
)

BOX = RatioBox(0.1, 0.1, 0.2, 0.2)


def detection(label: str, confidence: float) -> Detection:
    return Detection(label, confidence, BOX)


def test_confident_detections_need_no_review() -> None:
    decision = decide_review([detection("pizza", 99.0), detection("pizza", 60.0)], ReviewConfig(), "img")
    assert not decision.needed
    assert decision.reasons == []


def test_every_low_confidence_label_is_a_reason() -> None:
    decision = decide_review(
        [detection("pizza", 95.0), detection("pizza", 42.5), detection("crust", 59.9)], ReviewConfig(), "img"
    )
    assert decision.needed
    assert decision.reasons == [
        ReviewReason(LOW_CONFIDENCE, "pizza", 42.5, 60.0),
        ReviewReason(LOW_CONFIDENCE, "crust", 59.9, 60.0),
    ]
    assert "42.5" in decision.reasons[0].message


def test_per_label_thresholds_override_the_default() -> None:
    config = ReviewConfig(default_threshold=60, label_thresholds={"crust": 90.0, "pizza": 30.0})
    decision = decide_review([detection("pizza", 40.0), detection("crust", 85.0)], config, "img")
    assert [(r.label, r.threshold) for r in decision.reasons] == [("crust", 90.0)]


def test_empty_result_is_reviewed_only_when_configured() -> None:
    assert decide_review([], ReviewConfig(), "img").reasons == [ReviewReason(NO_DETECTIONS)]
    assert not decide_review([], ReviewConfig(review_when_empty=False), "img").needed


def test_audit_sample_is_the_same_on_every_replay() -> None:
    config = ReviewConfig(audit_rate=0.3)
    first = [
        decide_review([detection("pizza", 99.0)], config, f"image-{i}").audit_sample for i in range(2000)
    ]
    replay = [
        decide_review([detection("pizza", 99.0)], config, f"image-{i}").audit_sample for i in range(2000)
    ]
    assert first == replay
    assert 0.25 < sum(first) / len(first) < 0.35


def test_audited_image_carries_an_audit_reason() -> None:
    image_id = next(f"img-{i}" for i in range(1000) if audit_fraction(f"img-{i}") < 0.5)
    decision = decide_review([detection("pizza", 99.0)], ReviewConfig(audit_rate=0.5), image_id)
    assert decision.needed and decision.audit_sample
    assert decision.reasons == [ReviewReason(AUDIT_SAMPLE)]


def test_audit_rate_zero_never_and_one_always_samples() -> None:
    ids = [f"image-{i}" for i in range(500)]
    assert not any(decide_review([], ReviewConfig(review_when_empty=False), i).needed for i in ids)
    assert all(
        decide_review([], ReviewConfig(review_when_empty=False, audit_rate=1.0), i).audit_sample for i in ids
    )


def test_decision_serializes_for_the_prediction_document() -> None:
    decision = decide_review([detection("pizza", 10.0)], ReviewConfig(), "img")
    assert decision.to_dict() == {
        "needed": True,
        "auditSample": False,
        "reasons": [
            {
                "code": "LOW_CONFIDENCE",
                "label": "pizza",
                "confidence": 10.0,
                "threshold": 60.0,
                "message": decision.reasons[0].message,
            }
        ],
    }


def test_out_of_range_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="audit rate"):
        ReviewConfig(audit_rate=1.5)
    with pytest.raises(ValueError, match="threshold"):
        ReviewConfig(default_threshold=101)
