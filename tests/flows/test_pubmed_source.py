"""Source `pubmed-query`: the nightly scan and the backfill fetch from a loopback NCBI."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from flows.backfill import backfill
from flows.nightly_literature_scan import ScanParams, nightly_literature_scan
from tasks.core.pubmed_query import product_term
from tasks.io.drug_dictionary import product_variants
from tasks.io.lake import Lake
from tasks.settings import load_settings
from tests.conftest import real_medline_records
from tests.ncbi_server import NcbiState, ncbi_server

pytestmark = pytest.mark.slow

DAY0 = date(2021, 3, 1)
KEY = "ncbi-flow-key-0000"


def _expected(state: NcbiState, since: date, until: date, datetype: str = "edat") -> set[str]:
    """What NCBI holds about any watched product entered in the window (the server's own view)."""
    settings = load_settings()
    from tasks.rules import load_products

    names = product_variants(p.name for p in load_products(settings).products)
    return {
        pmid
        for v in names.values()
        for pmid in state.matching(product_term(v), since, until, datetype)
    }


@pytest.fixture
def ncbi(isolated_home, monkeypatch):
    records = real_medline_records(400)
    with ncbi_server() as (url, state):
        for index, record in enumerate(records):
            state.add(record, DAY0 + timedelta(days=index % 2))
        monkeypatch.setenv("PHARMALANE_PUBMED__EUTILS_BASE_URL", url)
        monkeypatch.setenv("PHARMALANE_PUBMED__BACKOFF_BASE_S", "0.01")
        monkeypatch.setenv("PHARMALANE_NCBI_API_KEY", KEY)
        yield state


def test_nightly_scan_screens_what_pubmed_entered_in_the_window(isolated_home, ncbi):
    day0 = _expected(ncbi, DAY0, DAY0)
    assert 3 <= len(day0) < 200  # the product queries find some records, not all

    summary = nightly_literature_scan(source="pubmed-query", since=DAY0, until=DAY0)

    assert summary.rows_in == len(day0) == summary.valid + summary.quarantined
    decided = Lake(isolated_home / "lake").read("decisions")
    assert set(decided["item_id"]) <= day0 and decided.height == summary.valid
    assert decided.filter(pl.col("products").list.len() > 0).height > 0
    searches = [r.form for r in ncbi.requests if r.endpoint == "esearch.fcgi"]
    assert {(s["mindate"], s["maxdate"]) for s in searches} == {("2021/03/01", "2021/03/01")}
    assert all(r.form["api_key"] == KEY for r in ncbi.requests)


def test_backfill_of_an_entry_date_range_fetches_each_day_once(isolated_home, ncbi):
    both = _expected(ncbi, DAY0, DAY0 + timedelta(days=1))
    nightly_literature_scan(source="pubmed-query", since=DAY0, until=DAY0)

    summary = backfill(since=DAY0, until=DAY0 + timedelta(days=1), source="pubmed-query")

    assert summary.windows == summary.succeeded == 2 and summary.failed_windows == []
    decided = Lake(isolated_home / "lake").read("decisions")
    assert decided["item_id"].n_unique() == decided.height  # nothing screened twice
    assert set(decided["item_id"]) <= both
    assert summary.already_decided == len(_expected(ncbi, DAY0, DAY0)) - _quarantined(isolated_home)


def test_second_nightly_fetches_and_screens_only_what_was_entered_since(isolated_home, ncbi):
    first = nightly_literature_scan(source="pubmed-query", until=DAY0)  # no watermark: DAY0
    assert first.rows_in == len(_expected(ncbi, DAY0, DAY0))
    searched_first = len(ncbi.requests)
    later = DAY0 + timedelta(days=2)
    for record in real_medline_records(200, skip=400):  # new papers, entered two days later
        ncbi.add(record, later)

    second = nightly_literature_scan(source="pubmed-query", until=later)

    new = _expected(ncbi, DAY0 + timedelta(days=1), later)
    searches = [r.form for r in ncbi.requests[searched_first:] if r.endpoint == "esearch.fcgi"]
    assert {(s["mindate"], s["maxdate"]) for s in searches} == {("2021/03/02", "2021/03/03")}
    assert second.rows_in == len(new) and second.already_decided == 0
    decided = Lake(isolated_home / "lake").read("decisions")
    assert decided["item_id"].n_unique() == decided.height == first.valid + second.valid
    assert decided["first_seen_at"].is_not_null().all()
    by_run = decided.group_by("run_id").agg(pl.col("first_seen_at").max().alias("seen"))
    assert by_run.height == 2

    third = nightly_literature_scan(source="pubmed-query", until=later)  # nothing new
    assert (third.rows_in, third.screened) == (0, 0)


def test_first_seen_is_kept_when_an_item_is_fetched_again(isolated_home, ncbi):
    nightly_literature_scan(source="pubmed-query", since=DAY0, until=DAY0)
    lake = Lake(isolated_home / "lake")
    before = lake.read("decisions").select("item_id", "first_seen_at").sort("item_id")
    # the backfill's own window over the same day: read again, stamped again, kept
    nightly_literature_scan(source="pubmed-query", since=DAY0, until=DAY0 + timedelta(days=1))
    after = lake.read("decisions").select("item_id", "first_seen_at")
    again = after.join(before, on="item_id", suffix="_before")
    assert again.height == before.height
    assert (again["first_seen_at"] == again["first_seen_at_before"]).all()


def _quarantined(home) -> int:
    return Lake(home / "lake").read("quarantine").height


def test_pubmed_query_refuses_file_sources_and_ends_on_the_last_whole_entry_day():
    from datetime import UTC, datetime

    from tasks.core.pubmed_query import last_whole_entry_day

    with pytest.raises(ValueError, match="needs source bundled"):
        ScanParams(source="pubmed-query", sources=["x.xml"])
    # 02:00 UTC on 2 December is 21:00 on 1 December in New York: 1 December is not over there
    nightly = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    last_day = last_whole_entry_day(nightly, "America/New_York")
    assert last_day == date(2026, 11, 30)
    assert last_whole_entry_day(datetime(2026, 12, 2, 6, 0, tzinfo=UTC), "America/New_York") == (
        date(2026, 12, 1)
    )
    assert ScanParams(source="pubmed-query").entry_window(last_day) == (None, last_day)
    since = date(2026, 11, 20)
    assert ScanParams(source="pubmed-query", since=since).entry_window(last_day) == (
        since,
        last_day,
    )


def test_a_revised_record_is_found_by_modification_date_and_screened_again(isolated_home, ncbi):
    nightly_literature_scan(source="pubmed-query", since=DAY0, until=DAY0)
    lake = Lake(isolated_home / "lake")
    before = lake.read("decisions")
    decided = sorted(set(before["item_id"]))
    changed, unchanged = decided[0], decided[1]
    later = DAY0 + timedelta(days=1)
    revised_xml = ncbi.records[changed].xml.replace(
        b"</ArticleTitle>", b" (corrected: a fatal hepatotoxicity)</ArticleTitle>", 1
    )
    # both keep their entry date (DAY0); NLM revised them on the next day
    ncbi.add(revised_xml, DAY0, modified=later)
    ncbi.add(ncbi.records[unchanged].xml, DAY0, modified=later)
    # entered long before any window, revised now: not a revision of anything held here
    earlier = DAY0 - timedelta(days=300)
    for record in real_medline_records(200, skip=400):
        ncbi.add(record, earlier)
    old = sorted(_expected(ncbi, earlier, earlier))[0]
    ncbi.add(ncbi.records[old].xml, earlier, modified=later)
    assert {changed, unchanged, old} <= _expected(ncbi, later, later, "mdat")
    seen = len(ncbi.requests)

    second = nightly_literature_scan(source="pubmed-query", until=later)

    searches = [r.form for r in ncbi.requests[seen:] if r.endpoint == "esearch.fcgi"]
    assert {(s["datetype"], s["mindate"]) for s in searches} == {
        ("edat", "2021/03/02"),
        ("mdat", "2021/03/02"),
    }
    after = lake.read("decisions")
    rows = after.filter(pl.col("item_id") == changed).sort("decided_at")
    assert rows.height == 2 and second.revised >= 1
    assert rows["supersedes"][1] == rows["content_hash"][0]
    assert rows["first_seen_at"][0] == rows["first_seen_at"][1]
    assert after.filter(pl.col("item_id") == unchanged).height == 1  # same content: no re-screen
    assert old not in set(after["item_id"])
