"""`labelloop local demo`: the whole loop, unattended, on the local stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelloop_local.cli import main as cli_main
from tests.support.paths import TEMPLATE_PATH

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEMPLATE = TEMPLATE_PATH


def test_demo_runs_the_whole_loop_and_a_replay_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(TEMPLATE.parent)
    code = cli_main(["local", "demo", "--json", "--replay", "--images", "24", "--out", str(tmp_path)])
    captured = capsys.readouterr()

    assert code == 0
    result = json.loads(captured.out)  # exactly one JSON object on stdout, nothing else
    # stderr is for a person: progress and the summary; the functions' logs are in their own files.
    lines = captured.err.splitlines()
    assert lines[0].startswith("[demo ") and "labelloop local demo — summary" in lines
    assert not [line for line in lines if line.startswith(("{", "INFO", "WARNING", "ERROR"))]
    logs = Path(result["logs_dir"])
    assert '"service":"detect"' in (logs / "DetectFunction.log").read_text(encoding="utf-8")
    assert (logs / "RetrainFunction.log").stat().st_size > 0
    assert result["review_backend"] == "builtin"  # the default
    assert result["images_uploaded"] == 16 and result["base_images"] == 8
    assert result["test_images"] == 20  # generated on top, held out: both models are scored on them
    assert result["predictions"] == 16
    assert result["reviews_requested"] >= 1
    assert result["reviews_completed"] == result["reviews_requested"]
    assert result["labels_appended"] == result["reviews_completed"]
    assert result["trainings_started"] == 1
    # The same fixed test set scores both versions, so the human labels show as a real F1 gain
    # (deterministic seeds: 0.779 → 0.919 here, far above the 0.01 promotion margin).
    assert result["models_promoted"] == 1
    assert result["f1_after"] == result["candidate_f1"] > result["f1_before"]
    assert result["dlq_messages"] == 0
    replay = result["replay"]
    assert replay["events_replayed"] >= result["images_uploaded"] + result["reviews_completed"]
    assert replay["new_reviews"] == 0
    assert replay["new_label_lines"] == 0
    assert replay["new_trainings"] == 0
    report = Path(result["report_path"]).read_text(encoding="utf-8")
    assert "F1 before" in report and report.count("<figure>") == min(24, result["reviews_completed"])
    # Both model versions on the fixed test images, side by side: the retrained one finds more.
    assert report.count('<figure class="test">') == min(20, result["test_images"])
    before, after = result["test_set_detections"]
    assert before["trueBoxes"] == after["trueBoxes"] > 0
    assert after["trueBoxesFound"] >= before["trueBoxesFound"]
    assert sorted(path.name for path in (tmp_path / "manifests").iterdir())[:1] == ["base.manifest"]
