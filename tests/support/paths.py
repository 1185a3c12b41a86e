"""Where things are: the repository, its template, and the optional third-party seed data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SEED_MANIFEST_NAME = "output-change.manifest"


def seed_data_dir() -> Path | None:
    """The blog's dataset (`LABELLOOP_SEED_DATA`, else `../shared/seed-data` beside the repository),
    or None when it is not on this machine. It is third-party: tests read it, never copy it in."""
    configured = os.environ.get("LABELLOOP_SEED_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "seed-data"
    return candidate if (candidate / "manifest" / SEED_MANIFEST_NAME).is_file() else None


SEED_DATA = seed_data_dir()


@pytest.fixture(scope="session")
def seed_data() -> Path:
    """The seed dataset's directory (`manifest/`, `images/`); the test skips when it is absent."""
    if SEED_DATA is None:
        pytest.skip("seed data not present (set LABELLOOP_SEED_DATA or put it at ../shared/seed-data)")
    return SEED_DATA


@pytest.fixture(scope="session")
def seed_manifest(seed_data: Path) -> Path:
    """The seed's Ground Truth manifest (`manifest/output-change.manifest`)."""
    return seed_data / "manifest" / SEED_MANIFEST_NAME
