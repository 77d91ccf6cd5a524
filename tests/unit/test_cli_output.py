"""The CLI's consoles take their width when a command prints, not when flows.cli is imported."""

from __future__ import annotations

import pytest

from flows.cli_output import console, errors


def test_each_call_reads_the_width_of_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    assert (console().width, errors().width) == (40, 40)
    monkeypatch.setenv("COLUMNS", "250")  # a module-level Console would have kept 40
    assert (console().width, errors().width) == (250, 250)
