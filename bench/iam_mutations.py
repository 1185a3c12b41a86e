"""Mutation check of the IAM proof (`make iam-mutations`): every grant of every function's role must
be needed by some recorded call.

On the SAM-translated template.yaml, each single action of each statement of each function's role,
each whole statement, and each AWS managed policy attachment is removed in turn, and the recorded
calls (build/iam/calls.json, written by `make iam`; recorded now if absent) are checked again. A
removal that no call notices is a grant no flow needs: remove it from template.yaml, or add the
flow that needs it. Exit status 1 when any removal goes unnoticed.

    .venv/bin/python bench/iam_mutations.py [--calls PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.iam.proof import Recording, Subject, mutations, subjects  # noqa: E402
from tests.iam.recording import DEFAULT_PATH, record_flows  # noqa: E402
from tests.support.paths import TEMPLATE_PATH  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=Path, default=DEFAULT_PATH, help="recorded calls (make iam writes them)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if not args.calls.exists():
        print(f"recording the flows into {args.calls} ...", file=sys.stderr)
        result = record_flows(args.calls)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-2000:], file=sys.stderr)
            return 2
    recording = Recording.load(args.calls)
    tried: dict[str, int] = defaultdict(int)
    uncaught: dict[str, list[str]] = defaultdict(list)
    found = subjects(recording, TEMPLATE_PATH.read_text(encoding="utf-8"))
    by_principal: dict[str, list[Subject]] = defaultdict(list)
    for subject in found:
        by_principal[subject.principal].append(subject)
    for subject in found:
        if subject.findings():
            print(
                f"{subject.principal}: the unmutated role already misses permissions: run make iam",
                file=sys.stderr,
            )
            return 2
        # The flows run stacks of both review backends: a removal from this stack's role is caught
        # when a flow on any stack of this principal that this role satisfies notices it.
        judges = [subject] + [
            other
            for other in by_principal[subject.principal]
            if other is not subject and not other.findings(subject.role)
        ]
        for mutation in mutations(subject.role):
            tried[subject.principal] += 1
            if not any(judge.findings(mutation.role) for judge in judges):
                uncaught[subject.principal].append(mutation.description)
    caught = {principal: count - len(uncaught[principal]) for principal, count in tried.items()}
    if args.json:
        summary = {
            p: {"caught": caught[p], "tried": tried[p], "uncaught": uncaught[p]} for p in sorted(tried)
        }
        print(json.dumps(summary, indent=2))
    else:
        for principal in sorted(tried):
            print(f"{principal:22} {caught[principal]:3}/{tried[principal]:<3} removals caught")
            for description in uncaught[principal]:
                print(f"    NOT caught: {description}")
        print(f"{'total':22} {sum(caught.values()):3}/{sum(tried.values()):<3} removals caught")
    return 1 if any(uncaught.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
