"""The `labelloop` command: offline manifest tools and the local stack.

Sub-command groups register themselves (``register(subparsers)``) so each stays next to its code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `labelloop --help` stays fast and one broken group cannot hide the others.
    from labelloop_local.cli import local, manifest, model

    parser = argparse.ArgumentParser(
        prog="labelloop",
        description="Human-in-the-loop pipeline for Amazon Rekognition Custom Labels: tools and local stack.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    manifest.register(subparsers)
    local.register(subparsers)
    model.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
