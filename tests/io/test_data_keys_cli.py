"""`pharmalane triage new-key | rotate-key` over a real store: SQLite in PHARMALANE_HOME or
PostgreSQL (``shared_database``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.errors import ConfigError
from tasks.io.sealing import KEYS_ENV, key_id
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tests.io.test_case_data_at_rest import put


def new_key(runner: CliRunner) -> str:
    result = runner.invoke(app, ["triage", "new-key"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_rotate_key_moves_every_case_to_the_new_key(isolated_home, shared_database, monkeypatch):
    runner = CliRunner()
    old, new = new_key(runner), new_key(runner)
    assert old != new
    monkeypatch.setenv(KEYS_ENV, old)
    put(Runtime.for_settings(load_settings()).triage_store, "C-1")

    monkeypatch.setenv(KEYS_ENV, f"{new},{old}")
    rotated = runner.invoke(app, ["triage", "rotate-key"])
    assert rotated.exit_code == 0, rotated.output
    assert f"1 case(s) resealed with data key {key_id(new.encode())}" in rotated.output

    monkeypatch.setenv(KEYS_ENV, new)
    stored = Runtime.for_settings(load_settings()).triage_store.get("C-1")
    assert stored is not None and stored.case.case_id == "C-1"
    monkeypatch.setenv(KEYS_ENV, old)
    with pytest.raises(ConfigError, match=key_id(new.encode())):
        _ = Runtime.for_settings(load_settings()).triage_store
    assert (isolated_home / "triage").exists() == (shared_database is None)  # where it lives


def test_rotate_key_without_the_old_key_fails_clearly_and_changes_nothing(
    isolated_home, shared_database, monkeypatch
):
    runner = CliRunner()
    old, other = new_key(runner), new_key(runner)
    monkeypatch.setenv(KEYS_ENV, old)
    put(Runtime.for_settings(load_settings()).triage_store, "C-1")
    monkeypatch.setenv(KEYS_ENV, other)
    failed = runner.invoke(app, ["triage", "rotate-key"])
    assert failed.exit_code == 1
    assert KEYS_ENV in " ".join(failed.output.split())
    monkeypatch.setenv(KEYS_ENV, old)
    assert Runtime.for_settings(load_settings()).triage_store.get("C-1") is not None


def test_the_prod_environment_without_a_key_refuses_the_store(isolated_home, monkeypatch):
    monkeypatch.setenv("PHARMALANE_ENV", "prod")
    monkeypatch.delenv(KEYS_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"{KEYS_ENV} is not set"):
        _ = Runtime.for_settings(load_settings()).triage_store
    assert not (isolated_home / "triage").exists()  # nothing written in the clear, nothing at all
