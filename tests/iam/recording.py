"""Run the flow tests with every AWS call recorded (tests/support/aws_calls.py) into one JSON file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

DEFAULT_PATH = REPO_ROOT / "build" / "iam" / "calls.json"
# Whole flows of every function, each invoked through the `invoke` fixture. The `slow` test (fifty
# concurrent completions) makes the same calls as the other AppendLabels flows, only more of them.
# `labelloop model rollback` and `labelloop reviewers` run with an operator's credentials
# (ModelRollbackPolicy, ReviewerAdminPolicy).
FLOW_TESTS = [
    *sorted((REPO_ROOT / "tests" / "integration").glob("test_*_flow.py")),
    REPO_ROOT / "tests" / "integration" / "test_model_cli.py",
    REPO_ROOT / "tests" / "integration" / "test_reviewers_cli.py",
]
WORKERS = "auto"  # pytest-xdist processes, one per core; a test file's tests stay in one process


def record_flows(path: Path = DEFAULT_PATH) -> subprocess.CompletedProcess[str]:
    """Run the flows in a fresh pytest, recording into `path`; the result carries pytest's output."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The optional third-party seed data would make the recording depend on the machine.
    env = {**os.environ, "LABELLOOP_SEED_DATA": str(REPO_ROOT / "build" / "no-seed-data")}
    command = [sys.executable, "-m", "pytest", *map(str, FLOW_TESTS), "-q", "-p", "no:cacheprovider"]
    command += ["-m", "not slow", "-n", WORKERS, "--dist", "loadfile", f"--record-aws-calls={path}"]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
