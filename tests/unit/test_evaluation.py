from typing import Any

import pytest

from labelloop_core.errors import InvalidSummary
from labelloop_core.evaluation import EvaluationMetrics, decide_promotion, parse_summary


def summary(f1: Any = 0.9, labels: dict[str, Any] | None = None, nested: bool = True) -> dict[str, Any]:
    metrics = {
        "Precision": 0.91,
        "Recall": 0.89,
        "F1Score": f1,
        "AveragePrecision": 0.8,
        "AverageRecall": 0.7,
    }
    return {
        "Version": 1,
        "EvaluationDetails": {"Labels": list(labels or {}), "NumberOfTestingImages": 20},
        "AggregatedEvaluationResults": {"Metrics": metrics} if nested else metrics,
        "LabelEvaluationResults": [
            {"Label": name, "Metrics": {"F1Score": score, "Precision": 0.9, "Recall": 0.9, "Threshold": 0.5}}
            for name, score in (labels or {}).items()
        ],
    }


@pytest.mark.parametrize("nested", [True, False])
def test_parse_summary_reads_both_documented_shapes(nested: bool) -> None:
    metrics = parse_summary(summary(0.9, {"pepperoni": 0.95, "cheese": 0.8}, nested=nested))
    assert metrics == EvaluationMetrics(0.9, 0.91, 0.89, {"pepperoni": 0.95, "cheese": 0.8})


def test_labels_without_an_f1_score_are_left_out() -> None:
    assert parse_summary(summary(0.9, {"pepperoni": 0.95, "crust": None})).per_label == {"pepperoni": 0.95}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "no AggregatedEvaluationResults"),
        (summary(None), "F1Score must be a number"),
        (summary("high"), "F1Score must be a number"),
        (summary(1.5), "between 0 and 1"),
        ({**summary(), "LabelEvaluationResults": [{"Metrics": {"F1Score": 0.5}}]}, "no Label name"),
        ({**summary(), "LabelEvaluationResults": {"a": 1}}, "must be a list"),
    ],
)
def test_unusable_summaries_are_rejected(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSummary, match=message):
        parse_summary(doc)


def metrics(f1: float, **per_label: float) -> EvaluationMetrics:
    return EvaluationMetrics(f1, None, None, per_label)


def test_first_model_is_promoted() -> None:
    decision = decide_promotion(metrics(0.5), None, 0.02)
    assert decision.promote
    assert "no active model" in decision.reason


def test_better_by_the_margin_is_promoted_with_the_numbers_in_the_reason() -> None:
    decision = decide_promotion(metrics(0.85, a=0.9), metrics(0.80, a=0.9), 0.05)
    assert decision.promote
    assert "0.850 vs active 0.800 (+0.050)" in decision.reason
    assert decision.to_dict() == {
        "promote": True,
        "reason": decision.reason,
        "candidateF1": 0.85,
        "activeF1": 0.8,
    }


def test_improvement_below_the_margin_is_rejected() -> None:
    decision = decide_promotion(metrics(0.84), metrics(0.80), 0.05)
    assert not decision.promote
    assert "at least +0.050 is required" in decision.reason


def test_equal_model_is_not_worth_a_restart_even_with_zero_margin() -> None:
    assert not decide_promotion(metrics(0.8), metrics(0.8), 0.0).promote
    assert decide_promotion(metrics(0.81), metrics(0.8), 0.0).promote


def test_a_label_that_gets_much_worse_blocks_promotion() -> None:
    decision = decide_promotion(metrics(0.9, a=0.99, b=0.70), metrics(0.8, a=0.90, b=0.80), 0.05)
    assert not decision.promote
    assert "label 'b' F1 fell 0.800 -> 0.700" in decision.reason
    assert decide_promotion(metrics(0.9, a=0.99, b=0.76), metrics(0.8, a=0.90, b=0.80), 0.05).promote


def test_a_label_missing_from_the_candidate_evaluation_blocks_promotion() -> None:
    decision = decide_promotion(metrics(0.9, a=0.9), metrics(0.8, a=0.9, b=0.8), 0.05)
    assert not decision.promote
    assert "'b' has no F1" in decision.reason


def test_invalid_margin() -> None:
    with pytest.raises(ValueError):
        decide_promotion(metrics(0.9), None, -0.1)


def test_a_candidate_below_the_absolute_floor_is_never_promoted() -> None:
    first = decide_promotion(metrics(0.0), None, 0.01, min_f1=0.5)
    assert not first.promote and "below the minimum 0.500" in first.reason
    assert not decide_promotion(metrics(0.45), metrics(0.30), 0.01, min_f1=0.5).promote
    assert decide_promotion(metrics(0.5), None, 0.01, min_f1=0.5).promote  # the floor itself is enough
