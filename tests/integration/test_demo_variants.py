"""`labelloop local demo` under faults of the local services and on the real seed photos (a file of its
own, so a second test process runs it beside the whole loop of test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelloop_local.demo.run import DemoOptions, run_demo
from tests.support.paths import TEMPLATE_PATH

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEMPLATE = TEMPLATE_PATH


def test_faults_in_the_local_services_end_in_retries_or_the_dlq_and_nothing_is_lost(tmp_path: Path) -> None:
    faults = [
        # Absorbed by the SDK's retries: the handlers never notice.
        {
            "service": "rekognition",
            "operation": "DetectCustomLabels",
            "error": "ThrottlingException",
            "count": 2,
        },
        {"service": "a2i", "operation": "StartHumanLoop", "error": "InternalServerException", "count": 2},
        # The model is found not running mid-batch: DetectCustomLabels answers ResourceNotReady (the SDK
        # does not retry it); Detect sends those images back to the DetectQueue with a delay: they wait,
        # they are neither failures nor dead letters (DESIGN §10).
        {
            "service": "rekognition",
            "operation": "DetectCustomLabels",
            "error": "ResourceNotReadyException",
            "count": 3,
        },
    ]
    result = run_demo(
        DemoOptions(
            out_dir=tmp_path,
            template=TEMPLATE,
            sample_images=16,
            test_images=4,  # F1 does not matter here; a small test set keeps the run short
            faults=faults,
            report=False,
            step_timeout=300,
        ),
        progress=lambda message: None,
    )

    uploaded = result.images_uploaded
    predicted = {key.removeprefix("incoming/") for key in result.prediction_keys}
    # Every uploaded image has its prediction: nothing is lost, nothing waited in a DLQ for being early.
    assert len(predicted) == uploaded
    assert result.function_errors.get("DetectFunction", 0) == 0  # waiting is not a failure
    assert result.dlq_messages == len(result.dead_letters) == 0
    assert result.labels_appended == result.reviews_completed == result.reviews_requested


def test_demo_completes_on_the_real_seed_photos(tmp_path: Path, seed_data: Path) -> None:
    result = run_demo(
        DemoOptions(dataset=seed_data, out_dir=tmp_path, template=TEMPLATE, step_timeout=900),
        progress=lambda message: None,
    )
    assert result.test_images >= 1
    assert result.images_uploaded + result.base_images + result.test_images >= 12
    assert result.predictions == result.images_uploaded
    assert result.labels_appended == result.reviews_completed == result.reviews_requested
    assert result.dlq_messages == 0
    assert result.report_path is not None and Path(result.report_path).is_file()
