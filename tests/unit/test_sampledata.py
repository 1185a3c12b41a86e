"""The generated sample data and the manifest loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from labelloop_local.demo.sampledata import (
    ATTRIBUTE,
    LABEL,
    DatasetError,
    generate,
    load_dataset,
    manifest_line,
)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate(out, n_images=8, seed=3, size=(320, 240))
    return out


def _lines(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def _key_layout(line: dict) -> list:
    """Key order of a manifest line, recursively (the part that must match the seed exactly)."""
    if isinstance(line, dict):
        return [(key, _key_layout(value)) for key, value in line.items()]
    if isinstance(line, list):
        return [_key_layout(line[0])] if line else []
    return []


def test_generate_writes_images_and_a_manifest_line_per_image(sample_dir: Path) -> None:
    lines = _lines(sample_dir / "manifest" / "sample.manifest")
    files = sorted(p.name for p in (sample_dir / "images").iterdir())
    assert len(lines) == 8
    assert sorted(line["source-ref"].rsplit("/", 1)[1] for line in lines) == files
    assert {Path(f).suffix for f in files} == {".jpg", ".png"}
    for line in lines:
        assert line["source-ref"].startswith("s3://bucket/prefix/data/images/")
        metadata = line[f"{ATTRIBUTE}-metadata"]
        assert metadata["class-map"] == {"0": LABEL}
        assert metadata["type"] == "groundtruth/object-detection"
        assert len(metadata["objects"]) == len(line[ATTRIBUTE]["annotations"])


def test_images_are_real_files_of_the_declared_size_with_boxes_inside(sample_dir: Path) -> None:
    for line in _lines(sample_dir / "manifest" / "sample.manifest"):
        path = sample_dir / "images" / line["source-ref"].rsplit("/", 1)[1]
        size = line[ATTRIBUTE]["image_size"][0]
        with Image.open(path) as image:
            assert image.format == ("PNG" if path.suffix == ".png" else "JPEG")
            assert image.size == (size["width"], size["height"]) == (320, 240)
        for box in line[ATTRIBUTE]["annotations"]:
            assert box["width"] > 0 and box["height"] > 0
            assert box["left"] >= 0 and box["left"] + box["width"] <= size["width"]
            assert box["top"] >= 0 and box["top"] + box["height"] <= size["height"]


def test_manifest_line_is_serialised_in_the_seed_layout() -> None:
    produced = manifest_line(
        "s3://bucket/prefix/data/images/x.jpg",
        640,
        480,
        [(LABEL, (1, 2, 30, 40))],
        "2020-08-27T17:00:00.000Z",
    )
    text = json.dumps(produced, separators=(",", ":"))
    assert text.startswith(
        '{"source-ref":"s3://bucket/prefix/data/images/x.jpg","pepperoni_pizza_BB":'
        '{"annotations":[{"left":1,"top":2,"width":30,"height":40,"class_id":0}],'
        '"image_size":[{"width":640,"height":480,"depth":3}]},'
    )
    assert text.endswith(
        '"pepperoni_pizza_BB-metadata":{"job-name":"labeling-job/pepperoni_pizza_BB",'
        '"class-map":{"0":"pepperoni pizza slice"},"human-annotated":"yes",'
        '"objects":[{"confidence":1}],"creation-date":"2020-08-27T17:00:00.000Z",'
        '"type":"groundtruth/object-detection"}}'
    )


def test_manifest_layout_matches_the_seed_manifest(sample_dir: Path, seed_manifest: Path) -> None:
    seed_line = json.loads(seed_manifest.read_text().splitlines()[0])
    ours = next(
        line for line in _lines(sample_dir / "manifest" / "sample.manifest") if line[ATTRIBUTE]["annotations"]
    )
    assert _key_layout(ours) == _key_layout(seed_line)
    # Same compact separators as the seed file.
    first = (sample_dir / "manifest" / "sample.manifest").read_text().splitlines()[0]
    assert json.dumps(json.loads(first), separators=(",", ":")) == first


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", n_images=3, seed=11, size=(200, 160))
    second = generate(tmp_path / "b", n_images=3, seed=11, size=(200, 160))
    other = generate(tmp_path / "c", n_images=3, seed=12, size=(200, 160))
    for name, entry in first.entries.items():
        assert entry.path.read_bytes() == second.entries[name].path.read_bytes()
    assert first.manifest_path.read_bytes() == second.manifest_path.read_bytes()
    assert [e.path.read_bytes() for e in first.entries.values()] != [
        e.path.read_bytes() for e in other.entries.values()
    ]


def test_some_images_have_no_slice_and_others_several(tmp_path: Path) -> None:
    dataset = generate(tmp_path, n_images=40, seed=0, size=(160, 160))
    counts = [len(entry.boxes) for entry in dataset.entries.values()]
    assert 0 in counts
    assert max(counts) >= 2


def test_load_dataset_reads_back_what_generate_wrote(sample_dir: Path) -> None:
    written = generate(sample_dir.parent / "again", n_images=8, seed=3, size=(320, 240))
    loaded = load_dataset(sample_dir)
    assert loaded.manifest_path == sample_dir / "manifest" / "sample.manifest"
    assert loaded.images_dir == sample_dir / "images"
    assert {n: (e.boxes, e.size) for n, e in loaded.entries.items()} == {
        n: (e.boxes, e.size) for n, e in written.entries.items()
    }
    samples = loaded.samples()
    assert [s.name for s in samples] == list(loaded.entries)
    assert all(s.image.mode == "RGB" and s.image.size == (320, 240) for s in samples)
    assert loaded.labels == [LABEL]


def test_load_dataset_maps_the_seed_manifest_placeholders_to_its_photos(seed_data: Path) -> None:
    dataset = load_dataset(seed_data)
    assert len(dataset.entries) == 12
    assert dataset.box_count == 23
    assert dataset.images_dir == seed_data / "images"
    entry = dataset.entries["pexels_brett_jordan_825661__1_.jpg"]
    assert entry.size == (2658, 2000)
    assert entry.boxes[0] == (LABEL, (255, 812, 1072, 886))


def test_load_dataset_names_a_missing_image(sample_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.manifest").write_text((sample_dir / "manifest" / "sample.manifest").read_text())
    with pytest.raises(DatasetError, match=r"pizza-s3-000\.jpg.*not found"):
        load_dataset(tmp_path)


def test_load_dataset_reports_a_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no \*\.manifest"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(tmp_path / "missing")


def test_load_dataset_reports_the_line_of_a_broken_manifest(sample_dir: Path, tmp_path: Path) -> None:
    good = (sample_dir / "manifest" / "sample.manifest").read_text().splitlines()[0]
    (tmp_path / "images").mkdir()
    (tmp_path / "bad.manifest").write_text("\n{not json\n" + good + "\n")
    with pytest.raises(DatasetError, match=r"bad\.manifest:2: not JSON"):
        load_dataset(tmp_path)
    (tmp_path / "bad.manifest").write_text('{"source-ref": "s3://b/k.jpg"}\n')
    with pytest.raises(DatasetError, match=r"bad\.manifest:1: expected exactly one object-detection"):
        load_dataset(tmp_path)


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_images"):
        generate(tmp_path, n_images=0)
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path, seed=-1)
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path, size=(100, 50))
