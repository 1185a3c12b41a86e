"""Run the flow tests with every AWS call recorded (tests/support/aws_calls.py) into one JSON file."""

from __future__ import annotations

import json
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
PARALLEL = 2  # pytest processes, each recording a share of the flow files (the machine has 2 cores)


def record_flows(path: Path = DEFAULT_PATH) -> subprocess.CompletedProcess[str]:
    """Run the flows in fresh interpreters, recording into `path`; the result carries pytest's output."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The optional third-party seed data would make the recording depend on the machine.
    env = {**os.environ, "LABELLOOP_SEED_DATA": str(REPO_ROOT / "build" / "no-seed-data")}
    shares = _shares(FLOW_TESTS, PARALLEL)
    parts = [path.with_suffix(f".part{index}.json") for index in range(len(shares))]
    logs = [part.with_suffix(".log") for part in parts]
    running = []
    for files, part, log in zip(shares, parts, logs, strict=True):
        command = [sys.executable, "-m", "pytest", *map(str, files), "-q", "-p", "no:cacheprovider"]
        command += ["-m", "not slow", f"--record-aws-calls={part}"]
        with log.open("w", encoding="utf-8") as stream:  # a file, not a pipe: no process blocks on it
            running.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=stream, stderr=stream))
    returncode = max(process.wait() for process in running)
    output = "\n".join(log.read_text(encoding="utf-8") for log in logs)
    if returncode == 0:
        calls: list[dict[str, object]] = []
        stacks: dict[str, object] = {}
        for part in parts:
            document = json.loads(part.read_text(encoding="utf-8"))
            calls += document["calls"]
            stacks.update(document["stacks"])
            part.unlink()
        merged = {"calls": calls, "stacks": stacks}
        path.write_text(json.dumps(merged, indent=1, sort_keys=True), encoding="utf-8")
    return subprocess.CompletedProcess(["record_flows"], returncode, output, "")


def _shares(files: list[Path], count: int) -> list[list[Path]]:
    """Split the files into `count` shares of about the same size (a proxy for their run time)."""
    shares: list[list[Path]] = [[] for _ in range(count)]
    sizes = [0] * count
    for file in sorted(files, key=lambda f: f.stat().st_size, reverse=True):
        smallest = sizes.index(min(sizes))
        shares[smallest].append(file)
        sizes[smallest] += file.stat().st_size
    return [share for share in shares if share]
