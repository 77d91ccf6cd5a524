"""`pharmalane audit verify` over a real PHARMALANE_HOME: trail, key, lake anchors, decisions.

Each attack here passed `audit verify` before the trail was keyed and anchored.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.errors import ConfigError
from tasks.io.lake import Lake
from tasks.services.runtime import Runtime
from tasks.settings import Settings, load_settings
from tasks.steps.triage_lane import book_batch, record_review
from tests.io.test_triage_cli import store_case

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REASON = "hospitalised two nights, expedite the 15-day report"


def verify_cli() -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify"])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def booked(isolated_home) -> Settings:
    """Two triage decisions booked by the lane: chain entries, lake rows and one anchor."""
    settings = load_settings()
    store = Runtime.for_settings(settings).triage_store
    store_case(store, "H-1", "held_for_review")
    store_case(store, "A-1", "auto_accepted")
    assert book_batch.fn(settings, "run-1", NOW).cases == 2
    return settings


def test_triage_decisions_are_in_the_chain_and_anchored(booked):
    entries = Runtime.for_settings(booked).audit.entries()
    assert sorted((e["kind"], e["case_id"], e["status"], e["actor"]) for e in entries) == [
        ("triage_decided", "A-1", "auto_accepted", "triage-service"),
        ("triage_decided", "H-1", "held_for_review", "triage-service"),
    ]
    held = next(e for e in entries if e["case_id"] == "H-1")
    assert held["reason_codes"] == ["SERIOUS_CASE_NEEDS_HUMAN"] and held["due_date"] == "2026-03-17"
    anchors = Lake(booked.lake_dir).read("audit_anchors")
    assert anchors.select("seq", "workflow", "run_id").rows() == [(2, "urgent-ae-triage", "run-1")]
    code, out = verify_cli()
    assert code == 0 and "intact: 2 entries" in out and "1 anchors hold" in out


def test_reviews_are_in_the_chain_with_a_hash_of_the_reason_not_its_text(booked):
    at = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    record_review.fn(booked, "H-1", verdict="accepted", reviewer="dr-x", reason=REASON, at=at)
    trail = Runtime.for_settings(booked).audit
    review = trail.entries()[-1]
    assert (review["kind"], review["case_id"], review["status"], review["actor"]) == (
        "triage_reviewed",
        "H-1",
        "accepted",
        "dr-x",
    )
    assert review["reason_codes"] == ["HUMAN_ACCEPTED"]
    assert review["reason_sha256"] == hashlib.sha256(REASON.encode()).hexdigest()
    assert "two nights" not in trail.trail.read_text()
    # the lane books the same review to the lake and appends nothing twice to the chain
    assert book_batch.fn(booked, "run-2", at).reviews == 1
    assert len(trail.entries()) == 3
    reviewed = Lake(booked.lake_dir).read("triage_audit").filter(pl.col("event") == "reviewed")
    assert reviewed["actor"].to_list() == ["dr-x"]
    assert verify_cli()[0] == 0


def test_a_review_stored_by_the_http_app_reaches_the_chain_through_the_lane(booked):
    Runtime.for_settings(booked).triage_store.review(
        "H-1", verdict="rejected", reviewer="k-rev", reason="duplicate", at=NOW
    )
    book_batch.fn(booked, "run-2", NOW)
    kinds = [(e["kind"], e["actor"]) for e in Runtime.for_settings(booked).audit.entries()]
    assert kinds[-1] == ("triage_reviewed", "k-rev")


def test_deleting_trail_and_head_while_decisions_exist_fails(booked):
    shutil.rmtree(booked.audit_dir)
    code, out = verify_cli()
    assert code == 1
    assert "anchor urgent-ae-triage/run-1 records entry 2, the trail holds 0" in out
    shutil.rmtree(booked.lake_dir / "audit_anchors")  # and the anchors too
    code, out = verify_cli()
    assert code == 1
    assert "the trail is missing but the lake holds triage_decisions, triage_audit" in out


def test_a_trail_rebuilt_with_a_new_key_fails_on_the_anchor(booked):
    shutil.rmtree(booked.audit_dir)
    booked.audit_dev_key_file.unlink()
    rebuilt = Runtime.for_settings(
        booked
    ).audit  # a fresh dev key, a fresh chain of the same length
    rebuilt.append([{"key": "a", "kind": "x"}, {"key": "b", "kind": "x"}], now=NOW)
    code, out = verify_cli()
    assert code == 1
    assert "BROKEN at entry 2" in out
    assert "anchor urgent-ae-triage/run-1 records another hash for entry 2" in out


def test_a_cut_trail_with_its_old_signed_head_fails_on_a_later_anchor(booked):
    trail = Runtime.for_settings(booked).audit
    index = trail.folder / "keys.sqlite"
    old_trail, old_head = trail.trail.read_bytes(), trail.head.read_bytes()
    old_index = index.read_bytes()
    record_review.fn(booked, "H-1", verdict="rejected", reviewer="dr-x", reason="dup", at=NOW)
    book_batch.fn(booked, "run-2", NOW)  # anchors the head that now covers the review
    trail.trail.write_bytes(old_trail)
    trail.head.write_bytes(old_head)
    index.write_bytes(old_index)  # the key index rolled back too (it would name the review)
    assert trail.verify().ok  # the trail alone is consistent: the head is genuinely signed
    code, out = verify_cli()
    assert code == 1
    assert "anchor urgent-ae-triage/run-2 records entry 3, the trail holds 2" in out


def test_an_empty_home_verifies_with_nothing_to_check(isolated_home):
    code, out = verify_cli()
    assert code == 0 and "intact: 0 entries" in out
    assert not load_settings().audit_dev_key_file.exists()  # verify never makes a key


def test_a_trail_without_its_key_cannot_be_verified(booked):
    booked.audit_dev_key_file.unlink()
    code, out = verify_cli()
    assert code == 1 and "no audit key" in out


def test_outside_dev_the_key_comes_from_the_environment(isolated_home, monkeypatch):
    monkeypatch.setenv("PHARMALANE_ENV", "prod")
    with pytest.raises(
        ConfigError, match="env prod writes an audit trail: set PHARMALANE_AUDIT_KEY"
    ):
        _ = Runtime.for_settings(load_settings()).audit
    assert verify_cli()[0] == 2
    monkeypatch.setenv("PHARMALANE_AUDIT_KEY", "too-short")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        _ = Runtime.for_settings(load_settings()).audit
    monkeypatch.setenv("PHARMALANE_AUDIT_KEY", "p" * 40)
    settings = load_settings()
    assert Runtime.for_settings(settings).audit.append([{"key": "k", "kind": "x"}], now=NOW) == 1
    assert not settings.audit_dev_key_file.exists()
    assert verify_cli()[0] == 0
