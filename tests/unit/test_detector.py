"""The local Custom Labels detector: training, detection, serialisation and Rekognition-style evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop_local.demo.sampledata import LABEL, generate, load_dataset
from labelloop_local.emulators import detector
from labelloop_local.emulators.detector import (
    Detection,
    Model,
    ModelFormatError,
    Sample,
    TrainingError,
    evaluate,
    evaluate_detections,
    non_max_suppression,
    split,
    train,
)
from labelloop_local.emulators.evaluation import GroundTruth


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _pixels(d: Detection, image: Image.Image) -> tuple[float, float, float, float]:
    return (d.left * image.width, d.top * image.height, d.width * image.width, d.height * image.height)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    out = tmp_path_factory.mktemp("pizza")
    generate(out, n_images=12, seed=7, size=(320, 240))
    return load_dataset(out).samples()


@pytest.fixture(scope="module")
def tiny_model(samples: list[Sample]) -> Model:
    return train(samples[:3], [LABEL], seed=1)


@pytest.fixture(scope="module")
def model(samples: list[Sample]) -> Model:
    return train(samples[:8], [LABEL], seed=0)


# --------------------------------------------------------------------------------------------- detection


@pytest.mark.slow
def test_detector_finds_slices_in_generated_images_it_was_not_trained_on(
    model: Model, samples: list[Sample]
) -> None:
    summary = evaluate(model, samples[8:])
    metrics = summary.per_label[LABEL]
    assert summary.f1 >= 0.5
    assert metrics.true_positives >= metrics.ground_truth_boxes / 2


@pytest.mark.slow
def test_boxes_come_back_in_the_original_image_coordinates(model: Model, samples: list[Sample]) -> None:
    # A slice found in a held-out image is found at the same place in a 4x larger copy (downscaled inside).
    found = [
        (d.confidence, index, truth)
        for index, s in enumerate(samples[8:], start=8)
        for _, truth in s.boxes
        for d in model.detect(s.image, min_confidence=50)
        if _iou(_pixels(d, s.image), truth) >= 0.5
    ]
    assert found, "expected at least one held-out slice to be found"
    _, index, (left, top, width, height) = max(found)
    sample = samples[index]
    large = sample.image.resize((sample.image.width * 4, sample.image.height * 4), Image.Resampling.BICUBIC)
    large_hits = model.detect(large, min_confidence=20)
    assert max(_iou(_pixels(d, large), (left * 4, top * 4, width * 4, height * 4)) for d in large_hits) >= 0.5


def test_detections_are_ratios_within_the_image_sorted_and_limited(
    tiny_model: Model, samples: list[Sample]
) -> None:
    for sample in samples[3:7]:
        found = tiny_model.detect(sample.image, min_confidence=0.0, max_results=100)
        for d in found:
            assert d.label == LABEL
            assert 0.0 <= d.confidence <= 100.0
            assert 0.0 <= d.left <= 1.0 and 0.0 <= d.top <= 1.0
            assert 0.0 < d.width <= 1.0 - d.left + 1e-9 and 0.0 < d.height <= 1.0 - d.top + 1e-9
        assert [d.confidence for d in found] == sorted((d.confidence for d in found), reverse=True)
    image = samples[4].image
    everything = tiny_model.detect(image, min_confidence=0.0)
    assert tiny_model.detect(image, max_results=2) == everything[:2]
    threshold = everything[len(everything) // 2].confidence if everything else 50.0
    assert tiny_model.detect(image, min_confidence=threshold) == [
        d for d in everything if d.confidence >= threshold
    ]


def test_detect_accepts_grey_and_rgba_images(tiny_model: Model, samples: list[Sample]) -> None:
    rgb = samples[3].image
    assert tiny_model.detect(rgb.convert("RGBA")) == tiny_model.detect(rgb)
    assert isinstance(tiny_model.detect(rgb.convert("L")), list)


def test_detect_rejects_out_of_range_arguments(tiny_model: Model, samples: list[Sample]) -> None:
    with pytest.raises(ValueError, match="min_confidence"):
        tiny_model.detect(samples[0].image, min_confidence=101)
    with pytest.raises(ValueError, match="max_results"):
        tiny_model.detect(samples[0].image, max_results=0)


def test_nms_removes_overlapping_duplicates_and_keeps_separate_objects() -> None:
    boxes = np.array(
        [
            [10, 10, 100, 100],  # object A, best
            [14, 12, 100, 96],  # duplicate of A
            [300, 40, 80, 120],  # object B
            [305, 45, 80, 120],  # duplicate of B, weaker
            [30, 30, 30, 30],  # a part lying inside A
            [150, 10, 100, 100],  # touches nothing above IoU 0.4
        ],
        dtype=float,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert non_max_suppression(boxes, scores) == [0, 2, 5]
    assert non_max_suppression(boxes, scores, iou_threshold=0.99, containment=1.0) == [0, 1, 2, 3, 4, 5]
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0)) == []


# --------------------------------------------------------------------------------------------- model files


def test_serialisation_round_trip_gives_identical_detections(
    tiny_model: Model, samples: list[Sample]
) -> None:
    data = tiny_model.to_bytes()
    restored = Model.from_bytes(data)
    assert restored.labels == tiny_model.labels
    assert restored.to_bytes() == data  # deterministic archive
    for sample in samples[3:6]:
        assert restored.detect(sample.image) == tiny_model.detect(sample.image)
    assert data[:2] == b"PK"  # a plain .npz (zip of .npy), no pickle
    with np.load(__import__("io").BytesIO(data), allow_pickle=False) as archive:
        assert set(archive.files) == {
            "header",
            "weights",
            "bias",
            "regression",
            "regression_bias",
            "calibration",
        }


def test_from_bytes_rejects_what_is_not_a_model(tiny_model: Model) -> None:
    with pytest.raises(ModelFormatError, match="not a labelloop detector model"):
        Model.from_bytes(b"definitely not a model")
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(tiny_model.to_bytes())) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            if name != "bias.npy":
                target.writestr(name, source.read(name))
    with pytest.raises(ModelFormatError):
        Model.from_bytes(buffer.getvalue())


def test_training_is_deterministic_for_a_seed(samples: list[Sample], tiny_model: Model) -> None:
    again = train(samples[:3], [LABEL], seed=1)
    np.testing.assert_array_equal(again.weights, tiny_model.weights)
    np.testing.assert_array_equal(again.regression, tiny_model.regression)
    np.testing.assert_array_equal(again.calibration, tiny_model.calibration)
    assert again.detect(samples[5].image) == tiny_model.detect(samples[5].image)


def test_training_reports_progress_and_statistics(samples: list[Sample]) -> None:
    messages: list[str] = []
    trained = train(samples[:2], [LABEL], progress=messages.append)
    assert messages[0].startswith("training on 2 images")
    assert trained.info["training_images"] == 2
    assert trained.info["training_boxes"] == sum(len(s.boxes) for s in samples[:2])


def test_multi_label_training_gives_one_classifier_per_label(samples: list[Sample]) -> None:
    relabelled = [
        Sample(s.image, [("slice a" if i % 2 else "slice b", box) for i, (_, box) in enumerate(s.boxes)])
        for s in samples[:4]
    ]
    labels = ["slice a", "slice b"]
    if not all(any(label == lab for s in relabelled for lab, _ in s.boxes) for label in labels):
        pytest.skip("generated sample lacks a second box to relabel")
    trained = train(relabelled, labels)
    assert trained.labels == labels
    assert trained.weights.shape[1] == 2 and trained.regression.shape[1] == 8
    found = trained.detect(samples[5].image)
    assert {d.label for d in found} <= set(labels)
    assert Model.from_bytes(trained.to_bytes()).detect(samples[5].image) == found


def test_training_rejects_unusable_data(samples: list[Sample]) -> None:
    with pytest.raises(TrainingError, match="no training images"):
        train([], [LABEL])
    with pytest.raises(TrainingError, match="'cat' is not one of"):
        train([Sample(samples[0].image, [("cat", (1, 1, 20, 20))], name="x.jpg")], [LABEL])
    with pytest.raises(TrainingError, match=r"x\.jpg: box .* outside"):
        train([Sample(samples[0].image, [(LABEL, (300, 200, 50, 50))], name="x.jpg")], [LABEL])
    with pytest.raises(TrainingError, match="no training boxes for label"):
        train(samples[:2], [LABEL, "calzone"])
    with pytest.raises(TrainingError, match="distinct"):
        train(samples[:2], [LABEL, LABEL])


def test_window_scores_match_the_features_the_classifier_is_trained_on(samples: list[Sample]) -> None:
    # Training uses explicit feature vectors, detection a correlation over feature maps: they must agree.
    maps = detector._feature_maps(samples[0].image.resize((150, 110)))
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(detector.FEATURE_DIM, 3))
    bias = rng.normal(size=3)
    scores = detector._score_maps(maps, weights, bias)
    ys, xs = np.mgrid[0 : scores.shape[0], 0 : scores.shape[1]]
    explicit = detector._window_features(maps, ys.ravel(), xs.ravel()) @ weights + bias
    np.testing.assert_allclose(scores.reshape(-1, 3), explicit, rtol=1e-4, atol=1e-3)


def test_split_is_deterministic_disjoint_and_twenty_percent(samples: list[Sample]) -> None:
    train_set, test_set = split(samples, test_fraction=0.2, seed=4)
    assert len(test_set) == round(len(samples) * 0.2)
    assert len(train_set) + len(test_set) == len(samples)
    assert not {id(s) for s in train_set} & {id(s) for s in test_set}
    assert split(samples, 0.2, 4) == (train_set, test_set)
    assert split(samples, 0.2, 5) != (train_set, test_set)
    assert split(samples[:1], 0.2) == (samples[:1], [])
    with pytest.raises(ValueError, match="test_fraction"):
        split(samples, 1.0)


# --------------------------------------------------------------------------------------------- evaluation


def _det(label: str, confidence: float, box: tuple[int, int, int, int], size: int = 100) -> Detection:
    left, top, width, height = box
    return Detection(label, confidence, left / size, top / size, width / size, height / size)


def _hand_made_case() -> tuple[list[GroundTruth], list[list[Detection]]]:
    truths = [
        GroundTruth(100, 100, [("cat", (0, 0, 40, 40)), ("cat", (50, 50, 40, 40)), ("dog", (0, 60, 30, 30))]),
        GroundTruth(100, 100, [("dog", (60, 0, 30, 30))]),
    ]
    detections = [
        [
            _det("cat", 90, (2, 2, 40, 40)),  # TP (IoU 0.82)
            _det("cat", 80, (0, 0, 40, 40)),  # duplicate of a matched box: FP
            _det("cat", 70, (60, 60, 40, 40)),  # IoU 0.39 with the second cat: FP at 0.5, TP at 0.3
            _det("dog", 60, (0, 60, 30, 30)),  # TP
        ],
        [
            _det("dog", 95, (0, 0, 30, 30)),  # nothing there: FP
            _det("cat", 40, (60, 0, 30, 30)),  # a dog box, but labelled cat: FP
        ],
    ]
    return truths, detections


def test_evaluation_matches_boxes_by_iou_per_label_and_picks_the_best_threshold() -> None:
    truths, detections = _hand_made_case()
    summary = evaluate_detections(truths, detections, ["cat", "dog"], iou_threshold=0.5)
    cat, dog = summary.per_label["cat"], summary.per_label["dog"]
    # cat, best first: 90 TP, 80 FP, 70 FP, 40 FP; best F1 keeps only 90: P 1, R 1/2.
    assert (cat.threshold, cat.true_positives, cat.false_positives, cat.false_negatives) == (90, 1, 0, 1)
    assert cat.precision == 1.0 and cat.recall == 0.5 and cat.f1 == pytest.approx(2 / 3)
    # dog: 95 FP, 60 TP; keeping both gives P 1/2, R 1/2 -> F1 1/2 (the only non-zero choice).
    assert (dog.threshold, dog.true_positives, dog.false_positives, dog.false_negatives) == (60, 1, 1, 1)
    assert dog.f1 == pytest.approx(0.5)
    assert cat.testing_images == 1 and dog.testing_images == 2
    assert summary.f1 == pytest.approx((2 / 3 + 0.5) / 2)
    assert summary.precision == pytest.approx((1.0 + 0.5) / 2)
    assert summary.testing_images == 2
    assert summary.thresholds() == {"cat": 90, "dog": 60}

    lenient = evaluate_detections(truths, detections, ["cat", "dog"], iou_threshold=0.3)
    assert lenient.per_label["cat"].true_positives == 2
    assert lenient.per_label["cat"].recall == 1.0


def test_evaluation_of_a_label_never_detected_scores_zero() -> None:
    truths = [GroundTruth(100, 100, [("cat", (0, 0, 40, 40))])]
    summary = evaluate_detections(truths, [[]], ["cat"])
    metrics = summary.per_label["cat"]
    assert (metrics.precision, metrics.recall, metrics.f1, metrics.false_negatives) == (0.0, 0.0, 0.0, 1)
    with pytest.raises(ValueError, match="detection lists"):
        evaluate_detections(truths, [], ["cat"])


def test_rekognition_summary_has_the_documented_field_names() -> None:
    truths, detections = _hand_made_case()
    summary = evaluate_detections(truths, detections, ["cat", "dog"])
    arn = "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1"
    doc = summary.to_rekognition_summary(arn, training_images=10)
    assert set(doc) == {
        "Version",
        "EvaluationDetails",
        "AggregatedEvaluationResults",
        "LabelEvaluationResults",
    }
    assert doc["Version"] == 1
    assert set(doc["EvaluationDetails"]) == {
        "ProjectVersionArn",
        "EvaluationEndTimestamp",
        "Labels",
        "NumberOfTrainingImages",
        "NumberOfTestingImages",
    }
    assert doc["EvaluationDetails"]["ProjectVersionArn"] == arn
    assert doc["EvaluationDetails"]["NumberOfTrainingImages"] == 10
    assert doc["EvaluationDetails"]["NumberOfTestingImages"] == 2
    assert set(doc["AggregatedEvaluationResults"]["Metrics"]) == {
        "Precision",
        "Recall",
        "F1Score",
        "AveragePrecision",
        "AverageRecall",
    }
    assert doc["AggregatedEvaluationResults"]["Metrics"]["F1Score"] == pytest.approx(summary.f1)
    results = doc["LabelEvaluationResults"]
    assert [r["Label"] for r in results] == ["cat", "dog"]  # sorted by F1, best first
    for result in results:
        assert set(result) == {"Label", "NumberOfTestingImages", "Metrics"}
        assert set(result["Metrics"]) == {"Threshold", "Precision", "Recall", "F1Score"}
    assert results[0]["Metrics"]["Threshold"] == pytest.approx(0.9)  # a fraction, as Rekognition writes it


# --------------------------------------------------------------------------------------------- seed photos


@pytest.mark.slow
def test_trains_on_the_seed_photos_and_reports_boxes_in_their_full_resolution(seed_data: Path) -> None:
    dataset = load_dataset(seed_data)
    photos = dataset.samples()
    trained = train(photos[:9], [LABEL])
    for photo in photos[9:]:
        for d in trained.detect(photo.image):
            assert d.left >= 0.0 and d.left + d.width <= 1.0 + 1e-9
    summary = evaluate(trained, photos[9:])
    assert summary.per_label[LABEL].ground_truth_boxes == sum(len(p.boxes) for p in photos[9:])
