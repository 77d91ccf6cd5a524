"""Source `medline-updates`: NLM's daily update files from a loopback server, end to end."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import polars as pl
import pytest

from flows.nightly_literature_scan import ScanParams, nightly_literature_scan
from tasks.errors import DataContractError
from tasks.io.lake import Lake
from tasks.schemas import InboxItem
from tasks.services import update_files
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records
from tests.ncbi_server import NcbiState, ncbi_server, update_files_url

pytestmark = pytest.mark.slow

FIRST, SECOND, THIRD = (f"pubmed25n{n:04d}.xml.gz" for n in (1301, 1302, 1303))


@functools.cache
def _records(tmp_factory_dir: str) -> tuple[list[bytes], list[bytes]]:
    """(in scope, out of scope) records with an abstract."""
    from pathlib import Path

    records = [r for r in real_medline_records(400) if b"<AbstractText" in r]
    inside = pmids_mentioning_products(records, Path(tmp_factory_dir))
    return (
        [r for r in records if pmid_of(r) in inside][:24],
        [r for r in records if pmid_of(r) not in inside][:40],
    )


@pytest.fixture
def records(tmp_path_factory):
    return _records(str(tmp_path_factory.mktemp("probe")))


def _file(records, which: int) -> list[bytes]:
    """The ``which``-th update file's records: 3 in scope and 10 out of scope, none shared."""
    inside, outside = records
    return inside[which * 3 : which * 3 + 3] + outside[which * 10 : which * 10 + 10]


@pytest.fixture
def nlm(isolated_home, monkeypatch):
    with ncbi_server(NcbiState()) as (url, state):
        monkeypatch.setenv("PHARMALANE_MEDLINE_UPDATES__BASE_URL", update_files_url(url))
        monkeypatch.setenv("PHARMALANE_MEDLINE_UPDATES__START_FROM", FIRST)
        monkeypatch.setenv("PHARMALANE_MEDLINE_UPDATES__BACKOFF_BASE_S", "0")
        yield state


def _decisions(home) -> pl.DataFrame:
    return Lake(home / "lake").read("decisions")


def _handled(home) -> set[str]:
    """pmids decided or quarantined: every record of a processed file is one or the other."""
    lake = Lake(home / "lake")
    quarantined = lake.read("quarantine")
    return set(_decisions(home)["item_id"]) | (
        set(quarantined["record_key"]) if not quarantined.is_empty() else set()
    )


def test_second_nightly_processes_only_the_file_published_since(isolated_home, nlm, records):
    nlm.add_update_file(FIRST, _file(records, 0))

    first = nightly_literature_scan(source="medline-updates")

    assert first.update_files == [FIRST] and first.rows_in == 13
    assert _handled(isolated_home) == {pmid_of(r) for r in _file(records, 0)}
    assert update_files.watermark(load_settings()) == FIRST
    folder = isolated_home / "literature" / "updatefiles"
    assert list(folder.iterdir()) == []  # a processed file is deleted
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    seen = len(nlm.requests)

    nlm.add_update_file(SECOND, _file(records, 1))
    second = nightly_literature_scan(source="medline-updates")

    fetched = {r.endpoint for r in nlm.requests[seen:]}
    assert fetched == {"listing", SECOND, f"{SECOND}.md5"}  # the first file is not fetched again
    assert second.update_files == [SECOND] and second.already_decided == 0
    assert second.rows_in == 13 and second.revised == 0
    decided = _decisions(isolated_home)
    assert decided["item_id"].n_unique() == decided.height  # nothing screened twice
    assert _handled(isolated_home) == {pmid_of(r) for r in _file(records, 0) + _file(records, 1)}
    assert decided["first_seen_at"].is_not_null().all()

    third = nightly_literature_scan(source="medline-updates")
    assert (third.update_files, third.rows_in) == ([], 0)


def _revised(record: bytes) -> bytes:
    return record.replace(
        b"</AbstractText>", b" Revised: the patient later died of hepatotoxicity.</AbstractText>", 1
    )


def _version_2(record: bytes) -> bytes:
    return record.replace(b'<PMID Version="1">', b'<PMID Version="2">', 1)


def test_a_revised_abstract_is_screened_again_and_an_unchanged_copy_is_not(
    isolated_home, nlm, records
):
    day1 = _file(records, 0)
    nlm.add_update_file(FIRST, day1)
    nightly_literature_scan(source="medline-updates")
    before = _decisions(isolated_home)
    decided = [r for r in day1 if pmid_of(r) in set(before["item_id"])]
    changed, new_version, same = decided[0], decided[1], decided[2]
    assert b'<PMID Version="1">' in new_version

    nlm.add_update_file(SECOND, [_revised(changed), _version_2(new_version), same])
    second = nightly_literature_scan(source="medline-updates")

    assert (second.rows_in, second.already_decided) == (3, 1)  # the unchanged copy costs nothing
    assert second.revised == second.screened == 2
    after = _decisions(isolated_home)
    for record in (changed, new_version):
        rows = after.filter(pl.col("item_id") == pmid_of(record)).sort("decided_at")
        old, new = rows.row(0, named=True), rows.row(1, named=True)
        assert rows.height == 2 and new["supersedes"] == old["content_hash"]
        assert new["content_hash"] != old["content_hash"] and new["revised_at"] is not None
        assert new["first_seen_at"] == old["first_seen_at"]  # day 0 is the first retrieval
    assert after.filter(pl.col("item_id") == pmid_of(same)).height == 1


def test_a_deleted_citation_withdraws_its_decision_and_its_inbox_item(isolated_home, nlm, records):
    day1 = _file(records, 0)
    nlm.add_update_file(FIRST, day1)
    nightly_literature_scan(source="medline-updates")
    runtime = Runtime.for_settings(load_settings())
    target, other = sorted(set(_decisions(isolated_home)["item_id"]))[:2]
    now = datetime.now(UTC)
    runtime.inbox.add([_inbox_item(target, now)], now=now)  # a reviewer's open item for it
    audit_before = runtime.audit.last()

    nlm.add_update_file(SECOND, _file(records, 1), deleted=(target, other, "99999999"))
    second = nightly_literature_scan(source="medline-updates")

    assert second.withdrawn == 3 and second.update_files == [SECOND]
    withdrawals = Lake(isolated_home / "lake").read("withdrawals").sort("item_id")
    assert withdrawals.select("item_id", "known", "inbox_closed", "source_file").rows() == [
        (target, True, True, SECOND),
        (other, True, False, SECOND),
        ("99999999", False, False, SECOND),  # never seen here: recorded as such, ignored
    ]
    assert withdrawals["withdrawn_at"].is_not_null().all()
    item = runtime.inbox.find(f"literature:{target}")
    assert item is not None and (item.status, item.outcome) == ("withdrawn", "withdrawn")
    assert _decisions(isolated_home).filter(pl.col("item_id") == target).height == 1  # kept
    assert runtime.audit.last().seq >= audit_before.seq + 3
    assert runtime.audit.verify().ok

    # the same file again (a re-run) withdraws nothing twice
    from tasks.services.revisions import withdraw

    again = withdraw(runtime, [(target, "1")], SECOND, "rerun", now)
    assert again.inbox_closed == 0
    assert Lake(isolated_home / "lake").read("withdrawals").height == 3


def _inbox_item(pmid: str, now: datetime) -> InboxItem:
    return InboxItem(
        item_id=f"literature:{pmid}",
        kind="literature",
        source_id=pmid,
        source="nightly-literature-scan",
        reason="case_candidate",
        day_zero=now.date(),
        clock_days=15,
        due_date=now.date(),
        priority=3,
        evidence={"reference": {"item_id": pmid}},
    )


@pytest.mark.parametrize("spoil", ["spoil_md5", "truncate_gzip"])
def test_a_spoiled_file_is_refused_and_the_watermark_stays_before_it(
    isolated_home, nlm, records, spoil
):
    nlm.add_update_file(FIRST, _file(records, 0))
    nightly_literature_scan(source="medline-updates")
    nlm.add_update_file(SECOND, _file(records, 1))
    nlm.add_update_file(THIRD, _file(records, 2))
    getattr(nlm, spoil)(SECOND)

    with pytest.raises(DataContractError, match=SECOND):
        nightly_literature_scan(source="medline-updates")

    assert update_files.watermark(load_settings()) == FIRST
    later = {pmid_of(r) for r in _file(records, 1) + _file(records, 2)}
    assert not _handled(isolated_home) & later  # nothing from it (or after it) was screened
    assert not any(r.endpoint == THIRD for r in nlm.requests)

    nlm.add_update_file(SECOND, _file(records, 1))  # NLM republishes it whole
    fixed = nightly_literature_scan(source="medline-updates")
    assert fixed.update_files == [SECOND, THIRD]
    assert update_files.watermark(load_settings()) == THIRD
    assert later <= _handled(isolated_home)


def test_medline_updates_takes_no_window_and_backfill_refuses_it():
    from datetime import date

    from flows.backfill import BackfillParams

    with pytest.raises(ValueError, match="do not apply"):
        ScanParams(source="medline-updates", since=date(2025, 1, 1))
    with pytest.raises(ValueError, match="do not apply"):
        ScanParams(source="medline-updates", limit=10)
    with pytest.raises(ValueError, match="no date range"):
        BackfillParams(source="medline-updates", since=date(2025, 1, 1), until=date(2025, 1, 2))
