"""The local stack swaps each function's variables into os.environ while other threads run
(labelloop_local.stack.handlers). A thread that lists the environment and then reads what it listed
(urllib's proxy lookup, in every boto3 client and urlopen) must not fail when a swap removes a
variable in between."""

from __future__ import annotations

import os
import urllib.request

import pytest

from labelloop_local.stack.handlers import make_environ_reads_consistent

SWAPPED = "LABELLOOP_TEST_SWAPPED_OUT"


@pytest.fixture
def swapped_variable(monkeypatch: pytest.MonkeyPatch) -> str:
    make_environ_reads_consistent()
    monkeypatch.setenv(SWAPPED, "set while a function ran")  # the last variable listed
    return SWAPPED


def test_a_variable_removed_while_the_environment_is_listed_leaves_the_listing_whole(
    swapped_variable: str,
) -> None:
    listed: list[tuple[str, str]] = []
    for name, value in os.environ.items():
        if not listed:
            os.environ.pop(swapped_variable)  # a swap on another thread, between listing and reading
        listed.append((name, value))
    assert (swapped_variable, "set while a function ran") in listed
    assert swapped_variable not in os.environ


def test_the_proxy_lookup_every_client_runs_survives_a_swap_mid_read(
    swapped_variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    removed = False

    def removing_on_first_read(value: str | bytes) -> str:
        nonlocal removed
        if not removed:
            removed = True
            os.environ.pop(swapped_variable, None)
        return value.decode() if isinstance(value, bytes) else value

    monkeypatch.setattr(os.environ, "decodevalue", removing_on_first_read)
    assert urllib.request.getproxies()["https"] == "http://proxy.example:3128"
    assert removed
