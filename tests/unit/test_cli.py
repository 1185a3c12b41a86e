"""The `labelloop` command as a person meets it: every sub-command explains itself, and errors are
messages, never tracebacks."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelloop_local.cli import build_parser, main


def commands(
    parser: argparse.ArgumentParser, path: str = "labelloop"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from commands(sub, f"{path} {name}")


ALL_COMMANDS = list(commands(build_parser()))


def test_the_command_tree_is_found() -> None:
    names = {name for name, _ in ALL_COMMANDS}
    assert {"labelloop manifest merge", "labelloop model rollback", "labelloop local demo"} <= names


@pytest.mark.parametrize(("name", "parser"), ALL_COMMANDS, ids=[name for name, _ in ALL_COMMANDS])
def test_every_command_has_a_description_and_shows_its_defaults(
    name: str, parser: argparse.ArgumentParser
) -> None:
    assert parser.description and len(parser.description) > 20, f"{name} has no description"
    text = parser.format_help()
    for action in parser._actions:
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and action.help != argparse.SUPPRESS:
            assert f"default: {action.default}" in " ".join(text.split()), f"{name} {action.dest}"


def test_an_unexpected_error_is_one_message_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelloop_local.cli import manifest

    def explode(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked.manifest"))

    monkeypatch.setattr(manifest, "run_merge", explode)
    base = tmp_path / "base.manifest"
    base.write_text("")
    status = main(
        ["manifest", "merge", "--base", str(base), "--labels", str(base), "-o", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "locked.manifest: Permission denied" in err and "Traceback" not in err


def test_operator_commands_do_not_load_the_local_stack() -> None:
    """`labelloop model rollback` runs where only `pip install .` was done: no moto, numpy, pillow."""
    probe = (
        "import sys\n"
        "from labelloop_local.cli import build_parser\n"
        "build_parser().parse_args(['model', 'rollback', '--stack', 'labelloop'])\n"
        "import labelloop_local.cli.model, labelloop_core.services.promote\n"
        "heavy = {'moto', 'numpy', 'PIL', 'yaml', 'werkzeug'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
