"""`pharmalane review list|accept|reject` over a real store in PHARMALANE_HOME (the review
commands also on PostgreSQL: ``shared_database``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.triage_store import TriageStore
from tasks.services.runtime import Runtime
from tasks.services.triage_access import hash_key
from tasks.settings import load_settings
from tasks.tools import icsr


def store_case(store: TriageStore, case_id: str, status: str) -> None:
    case = IcsrCase.model_validate(
        {"case_id": case_id, "received_at": "2026-03-02T09:00:00+00:00", "narrative": "x"}
    )
    decision = TriageDecision(
        case_id=case_id, status=status, lane="hot", valid=False, missing=["patient"],
        seriousness=["hospitalisation"], serious=True, severity=3, narrative_flags=[],
        narrative_score=None, duplicate_of=None, clock_days=15, day_zero=date(2026, 3, 2),
        due_date=date(2026, 3, 17), requires_review=status == "held_for_review",
        reasons=["SERIOUS_CASE_NEEDS_HUMAN"], model=None, input_tokens=0, cost_usd=0.0,
        decided_at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
    )  # fmt: skip
    store.accept(case, icsr.duplicate_fingerprint(case), decision, submitter="k-sub")


SALT = "cli-test-salt"
KEYS = {"rev-key": "dr-x", "sub-key": "lab-1", "old-key": "dr-old"}


@pytest.fixture
def reviewer_keys(isolated_home, monkeypatch):
    """A reviewer, a submitter and a revoked reviewer key, hashed with the salt as deployed."""
    keys = [
        {"key_id": "dr-x", "sha256": hash_key(SALT, "rev-key"), "role": "reviewer"},
        {"key_id": "lab-1", "sha256": hash_key(SALT, "sub-key"), "role": "submitter"},
        {"key_id": "dr-old", "sha256": hash_key(SALT, "old-key"), "role": "reviewer",
         "revoked": True},
    ]  # fmt: skip
    monkeypatch.setenv("PHARMALANE_TRIAGE__KEY_SALT", SALT)
    monkeypatch.setenv("PHARMALANE_TRIAGE__API_KEYS", json.dumps(keys))
    monkeypatch.delenv("PHARMALANE_API_KEY", raising=False)
    return monkeypatch


def test_review_commands(reviewer_keys, shared_database):
    store = Runtime.for_settings(load_settings()).triage_store
    store_case(store, "H-1", "held_for_review")
    store_case(store, "A-1", "auto_accepted")
    runner = CliRunner()
    reviewer_keys.setenv("PHARMALANE_API_KEY", "rev-key")

    listed = runner.invoke(app, ["review", "list"])
    assert listed.exit_code == 0 and "H-1" in listed.output and "A-1" not in listed.output

    no_reason = runner.invoke(app, ["review", "accept", "H-1"])
    assert no_reason.exit_code != 0 and store.get("H-1").decision.status == "held_for_review"

    args = ["review", "reject", "H-1", "--reason", "duplicate of H-0"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0 and "triage:H-1: rejected by dr-x" in done.output
    stored = store.get("H-1")
    assert (stored.decision.status, stored.reviewer, stored.review_reason) == (
        "rejected", "dr-x", "duplicate of H-0",
    )  # fmt: skip
    chained = Runtime.for_settings(load_settings()).audit.entries()
    assert [(e["kind"], e.get("case_id", e.get("item_id")), e["actor"]) for e in chained] == [
        ("triage_reviewed", "H-1", "dr-x"),
        ("human_resolution", "triage:H-1", "dr-x"),
    ]
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already resolved" in again.output
    not_held = runner.invoke(app, ["review", "accept", "A-1", "--reason", "ok, reviewed"])
    assert not_held.exit_code == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "a review needs a reviewer API key"),
        ("guessed-key", "unknown API key"),
        ("sub-key", "API key lab-1 has role submitter"),
        ("old-key", "API key dr-old is revoked"),
    ],
    ids=["missing", "wrong", "submitter", "revoked"],
)
def test_a_review_without_a_valid_reviewer_key_records_nothing(reviewer_keys, key, message):
    store = Runtime.for_settings(load_settings()).triage_store
    store_case(store, "H-1", "held_for_review")
    if key is not None:
        reviewer_keys.setenv("PHARMALANE_API_KEY", key)
    result = CliRunner().invoke(
        app, ["review", "accept", "H-1", "--reason", "ok, reviewed"], input="\n"
    )
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert store.get("H-1").decision.status == "held_for_review"
    assert store.reviews_pending() == []
    assert not load_settings().audit_dir.joinpath("trail.jsonl").exists()


def test_the_key_can_be_typed_hidden_and_a_typed_name_is_no_longer_accepted(reviewer_keys):
    store = Runtime.for_settings(load_settings()).triage_store
    store_case(store, "H-1", "held_for_review")
    runner = CliRunner()
    named = ["review", "accept", "H-1", "--reason", "ok, reviewed", "--reviewer", "dr-x"]
    assert runner.invoke(app, named).exit_code == 2  # no such option: a name proves nothing
    typed = runner.invoke(
        app, ["review", "accept", "H-1", "--reason", "ok, reviewed"], input="rev-key\n"
    )
    assert typed.exit_code == 0 and "rev-key" not in typed.output
    assert store.get("H-1").reviewer == "dr-x"


def test_hash_key_prints_only_the_hash_on_stdout(isolated_home):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PHARMALANE_TRIAGE__KEY_SALT": SALT, "PYTHONPATH": repo}
    result = subprocess.run(
        [sys.executable, "-c", "from flows.cli import app; app()", "triage", "hash-key"],
        input="rev-key\n", capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == hash_key(SALT, "rev-key") + "\n"  # `$(pharmalane ...)` gets it whole
    assert "API key" in result.stderr  # the prompt goes to stderr
