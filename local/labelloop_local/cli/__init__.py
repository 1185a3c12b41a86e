"""The `labelloop` command: offline manifest tools, operator commands for a deployed stack, and the
local stack.

Sub-command groups register themselves (``register(subparsers)``) with `add_command`, so each stays
next to its code and every sub-command gets a description and shows its defaults in `--help`.
Every error ends as one message on stderr and a non-zero exit status, never a traceback (`-v`
adds the traceback for a bug report).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import textwrap
from collections.abc import Sequence
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped by paragraph and list item; every option's default shown in its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for paragraph in textwrap.dedent(text).strip().split("\n\n"):
            items = re.split(r"\n(?=- )", paragraph.strip())
            for item in items:
                flat = " ".join(item.split())
                hanging = "  " if flat.startswith("- ") else ""
                blocks.append(
                    textwrap.fill(flat, width, initial_indent=indent, subsequent_indent=indent + hanging)
                )
            blocks.append("")
        return "\n".join(blocks).rstrip()


def add_command(
    subparsers: Any, name: str, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command whose `--help` has a description (`help` when none is given) and shows defaults."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description or help[:1].upper() + help[1:] + ".",
        formatter_class=HelpFormatter,
    )
    return parser


def aws_failure(error: BaseException) -> str | None:
    """One line for an AWS SDK failure (missing credentials or region, a service or client error);
    None when `error` is not one."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    if isinstance(error, NoCredentialsError):
        return "no AWS credentials (configure a profile, or apply the export lines of `labelloop local up`)"
    if isinstance(error, NoRegionError):
        return "no AWS region (set AWS_REGION or a profile's region)"
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', '')}: {details.get('Message') or ' '.join(str(error).split())}"
    if isinstance(error, BotoCoreError):
        return " ".join(str(error).split()) or type(error).__name__
    return None


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `labelloop --help` stays fast and one broken group cannot hide the others.
    from labelloop_local.cli import datasets, dlq, local, manifest, model, reviewers, status

    parser = argparse.ArgumentParser(
        prog="labelloop",
        description="Human-in-the-loop pipeline for Amazon Rekognition Custom Labels: tools and local stack.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug details and tracebacks to stderr"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    manifest.register(subparsers)
    model.register(subparsers)
    dlq.register(subparsers)
    datasets.register(subparsers)
    reviewers.register(subparsers)
    status.register(subparsers)
    local.register(subparsers)
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
    except Exception as error:  # the last line of defence: a message, not a traceback
        if args.verbose:
            raise
        print(f"error: {_cause(error)} (run with -v for the traceback)", file=sys.stderr)
        return 1


def _cause(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
