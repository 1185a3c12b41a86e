"""Fixtures shared by every test directory live in `tests/support`; this file only registers them."""

pytest_plugins = ["tests.support.paths", "tests.support.aws_calls", "tests.support.moto_stack"]
