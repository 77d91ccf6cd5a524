"""One-time review codes over real SQLite files: hashed at rest, one item, short-lived, once."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.errors import PolicyDenied
from tasks.io.review_codes import IssuedCode, SqliteReviewCodes, code_digest
from tasks.schemas import InboxItem
from tasks.services import review_codes
from tasks.services.runtime import Runtime
from tasks.services.triage_access import hash_key
from tasks.settings import load_settings

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SALT = "codes-salt"


def _issued(item_id="literature:1", role="reviewer", minutes=15) -> IssuedCode:
    return IssuedCode(item_id, "dr-x", role, NOW + timedelta(minutes=minutes))


def test_a_code_works_once_for_its_item_before_it_expires(tmp_path):
    store = SqliteReviewCodes(tmp_path / "codes.sqlite")
    store.issue(code_digest(SALT, "AAAAA11111"), _issued(), now=NOW)
    store.issue(code_digest(SALT, "BBBBB22222"), _issued(minutes=-1), now=NOW)
    store.issue(code_digest(SALT, "CCCCC33333"), _issued(role="submitter"), now=NOW)

    def refused(code: str, item_id: str = "literature:1") -> str:
        with pytest.raises(PolicyDenied) as denied:
            store.redeem(code_digest(SALT, code), item_id=item_id, now=NOW)
        return denied.value.code

    assert refused("ZZZZZ99999") == "REVIEW_CODE_UNKNOWN"
    assert refused("BBBBB22222") == "REVIEW_CODE_EXPIRED"
    assert refused("CCCCC33333") == "REVIEW_CODE_NOT_REVIEWER"
    assert refused("AAAAA11111", "literature:2") == "REVIEW_CODE_OTHER_ITEM"
    assert refused("AAAAA11111", "triage:1") == "REVIEW_CODE_OTHER_ITEM"  # refused: not spent
    assert store.redeem(code_digest(SALT, "AAAAA11111"), item_id="literature:1", now=NOW).key_id
    assert refused("AAAAA11111") == "REVIEW_CODE_USED"

    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"AAAAA11111" not in raw  # only the salted hash is kept
    assert stat.S_IMODE((tmp_path / "codes.sqlite").stat().st_mode) == 0o600


def test_two_runs_redeeming_one_code_at_once_one_wins(tmp_path):
    store = SqliteReviewCodes(tmp_path / "codes.sqlite")
    digest = code_digest(SALT, "AAAAA11111")
    store.issue(digest, _issued(), now=NOW)

    def redeem(_: int) -> str:
        try:
            return (
                SqliteReviewCodes(store.path).redeem(digest, item_id="literature:1", now=NOW).key_id
            )
        except PolicyDenied as denied:
            return denied.code

    with ThreadPoolExecutor(8) as pool:
        results = sorted(pool.map(redeem, range(8)))
    assert results == ["REVIEW_CODE_USED"] * 7 + ["dr-x"]


def test_attempts_are_recorded_once(tmp_path):
    store = SqliteReviewCodes(tmp_path / "codes.sqlite")
    first = store.record_attempt("run", "k-1", item_id="literature:1", result="resolved", now=NOW)
    again = store.record_attempt("run", "k-1", item_id="literature:1", result="other", now=NOW)
    assert (first, again, store.attempts("run"), store.attempts("other")) == (
        "resolved",
        "resolved",
        {"k-1": "resolved"},
        {},
    )


@pytest.fixture
def keyed_home(isolated_home, monkeypatch):
    keys = [
        {"key_id": "dr-x", "sha256": hash_key(SALT, "rev-key"), "role": "reviewer"},
        {"key_id": "ward-7", "sha256": hash_key(SALT, "sub-key"), "role": "submitter"},
    ]
    monkeypatch.setenv("PHARMALANE_TRIAGE__KEY_SALT", SALT)
    monkeypatch.setenv("PHARMALANE_TRIAGE__API_KEYS", json.dumps(keys))
    runtime = Runtime.for_settings(load_settings())
    runtime.inbox.add(
        [
            InboxItem(
                item_id="literature:7",
                kind="literature",
                source_id="7",
                source="nightly-literature-scan",
                reason="case_candidate",
                day_zero=date(2026, 12, 1),
                clock_days=15,
                due_date=date(2026, 12, 16),
                priority=3,
                evidence={},
            )
        ],
        now=NOW,
    )
    return runtime


def test_the_cli_hands_a_code_to_a_reviewer_key_only(keyed_home, monkeypatch):
    monkeypatch.setenv("PHARMALANE_API_KEY", "sub-key")
    assert CliRunner().invoke(app, ["review", "code", "literature:7"]).exit_code == 1
    monkeypatch.setenv("PHARMALANE_API_KEY", "rev-key")
    shown = CliRunner().invoke(app, ["review", "code", "7"])
    assert shown.exit_code == 0, shown.output
    code = shown.output.split("literature:7: ")[1].split()[0]
    assert len(code) == 11 and code[5] == "-"
    resolved = review_codes.answer(
        keyed_home,
        "literature:7",
        decision="not_icsr",
        reason="no adverse event",
        code=code.lower(),
        now=datetime.now(UTC),
    )
    assert (resolved.outcome, resolved.reviewer) == ("not_icsr", "dr-x")
    again = CliRunner().invoke(app, ["review", "code", "literature:7"])
    assert again.exit_code == 1 and "already resolved" in again.output


def test_a_code_of_a_key_revoked_since_is_refused(keyed_home, monkeypatch):
    settings = keyed_home.settings
    code = review_codes.issue_code(
        keyed_home, "literature:7", settings.triage.api_keys[0], now=datetime.now(UTC)
    ).code
    revoked = [k.model_dump() | {"revoked": k.key_id == "dr-x"} for k in settings.triage.api_keys]
    monkeypatch.setenv("PHARMALANE_TRIAGE__API_KEYS", json.dumps(revoked))
    runtime = Runtime.for_settings(load_settings())
    with pytest.raises(PolicyDenied) as denied:
        review_codes.answer(
            runtime, "literature:7", decision="confirmed_icsr", reason="a case", code=code,
            now=datetime.now(UTC),
        )  # fmt: skip
    assert denied.value.code == "REVIEW_CODE_KEY_REVOKED"
    assert runtime.inbox.find("literature:7").status == "open"


def test_the_inbox_hands_each_open_item_to_one_review_run(keyed_home):
    inbox = keyed_home.inbox
    assert inbox.unscheduled() == ["literature:7"]
    inbox.mark_scheduled(["literature:7"], flow_run_id="run-1", at=NOW)
    inbox.mark_scheduled(["literature:7"], flow_run_id="run-2", at=NOW)
    assert inbox.unscheduled() == []
