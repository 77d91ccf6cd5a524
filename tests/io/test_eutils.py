"""The E-utilities client against a real HTTP server on loopback that plays NCBI.

Paging through the history server, halving windows past the search limit, retries of 429 /
5xx / slow / cut answers, pacing counted by the server's own clock, the key sent and never logged.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import random
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from tasks.core.pubmed_query import halves, product_term
from tasks.errors import BackendUnavailable, DataContractError
from tasks.io.eutils import EutilsClient
from tasks.io.medline import articles
from tasks.settings import PubmedSettings
from tests.conftest import real_medline_records
from tests.ncbi_server import Fault, NcbiState, ncbi_server

DAY0 = date(2021, 3, 1)
KEY = SecretStr("ncbi-key-0123456789abcdef")


def _settings(url: str, **over) -> PubmedSettings:
    base = {
        "eutils_base_url": url,
        "efetch_batch": 3,
        "max_tries": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 5.0,
    }
    return PubmedSettings(**(base | over))


TERM = product_term(["aspirin", "acetylsalicylic acid"])


def _aspirin_records(count: int) -> list[bytes]:
    found = _all_aspirin_records()
    assert len(found) >= count, "not enough real records about aspirin"
    return list(found[:count])


@functools.cache
def _all_aspirin_records() -> tuple[bytes, ...]:
    """Real records that the term finds (in title/abstract or as a substance)."""
    probe, records = NcbiState(), real_medline_records(25_000)
    for record in records:
        probe.add(record, DAY0)
    hits = set(probe.matching(TERM, DAY0, DAY0))
    return tuple(r for r in records if _pmid(r) in hits)


def _pmid(record: bytes) -> str:
    return next(pmid for pmid, _ in articles(record))


def _unrelated_record() -> bytes:
    return next(r for r in real_medline_records(200) if b"aspirin" not in r.lower())


def _served(state: NcbiState, records: list[bytes], days: int = 1) -> set[str]:
    return {state.add(r, DAY0 + timedelta(days=i % days)) for i, r in enumerate(records)}


def _fetched(client: EutilsClient, since: date, until: date) -> list[str]:
    return [
        pmid for batch in client.fetch_window(TERM, since, until) for pmid, _ in articles(batch)
    ]


def test_pages_through_the_history_server_in_batches():
    with ncbi_server() as (url, state):
        expected = _served(state, _aspirin_records(7))
        other = state.add(_unrelated_record(), DAY0 + timedelta(days=1))
        with EutilsClient(_settings(url), KEY) as client:
            got = _fetched(client, DAY0, DAY0 + timedelta(days=5))
    assert sorted(got) == sorted(expected)  # each exactly once, nothing else
    assert other not in got
    fetches = [r.form for r in state.requests if r.endpoint == "efetch.fcgi"]
    assert [(f["retstart"], f["retmax"]) for f in fetches] == [("0", "3"), ("3", "3"), ("6", "1")]
    search = next(r.form for r in state.requests if r.endpoint == "esearch.fcgi")
    assert search["usehistory"] == "y" and search["datetype"] == "edat"
    assert (search["mindate"], search["maxdate"]) == ("2021/03/01", "2021/03/06")
    assert {f["WebEnv"] for f in fetches} == {search_webenv(state)}


def search_webenv(state: NcbiState) -> str:
    (webenv,) = state.searches
    return webenv


def test_an_entry_date_window_outside_the_records_fetches_nothing():
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(3))
        with EutilsClient(_settings(url), KEY) as client:
            assert _fetched(client, DAY0 - timedelta(days=9), DAY0 - timedelta(days=1)) == []
    assert state.count("efetch.fcgi") == 0


def test_a_window_past_the_search_limit_is_halved_until_each_half_fits():
    state = NcbiState(search_limit=4)
    with ncbi_server(state) as (url, state):
        expected = _served(state, _aspirin_records(10), days=10)
        with EutilsClient(_settings(url, search_limit=4), KEY) as client:
            got = _fetched(client, DAY0, DAY0 + timedelta(days=9))
    assert sorted(got) == sorted(expected)
    searches = [r.form for r in state.requests if r.endpoint == "esearch.fcgi"]
    assert len(searches) >= 3  # the whole window, then its halves (and theirs)
    assert all(
        int(r.form["retstart"]) + int(r.form["retmax"]) <= 4
        for r in state.requests
        if r.endpoint == "efetch.fcgi"
    )


def test_one_day_past_the_search_limit_is_a_data_error_not_a_silent_cut():
    state = NcbiState(search_limit=4)
    with ncbi_server(state) as (url, state):
        _served(state, _aspirin_records(5), days=1)
        with (
            EutilsClient(_settings(url, search_limit=4), KEY) as client,
            pytest.raises(DataContractError, match="narrow the product's query"),
        ):
            _fetched(client, DAY0, DAY0)


def test_halves_cover_the_window_without_overlap():
    assert halves(date(2021, 1, 1), date(2021, 1, 2)) == (
        (date(2021, 1, 1), date(2021, 1, 1)),
        (date(2021, 1, 2), date(2021, 1, 2)),
    )
    first, second = halves(date(2021, 1, 1), date(2021, 1, 31))
    assert first[0] == date(2021, 1, 1) and second[1] == date(2021, 1, 31)
    assert second[0] - first[1] == timedelta(days=1)
    with pytest.raises(ValueError, match="cannot be split"):
        halves(date(2021, 1, 1), date(2021, 1, 1))


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500),
        Fault("status", status=503),
        Fault("status", status=429),
        Fault("slow", seconds=1.5),
        Fault("cut-connection"),
        Fault("cut-xml"),
    ],
    ids=["500", "503", "429", "slow", "cut-connection", "cut-xml"],
)
def test_a_transient_failure_is_retried_and_the_batch_comes_back_whole(fault):
    with ncbi_server() as (url, state):
        expected = _served(state, _aspirin_records(3))
        fault.endpoint = "efetch.fcgi"
        state.faults.append(fault)
        settings = _settings(url, timeout_s=0.7)
        with EutilsClient(settings, KEY, rng=random.Random(1)) as client:
            got = _fetched(client, DAY0, DAY0)
    assert sorted(got) == sorted(expected)
    assert state.count("efetch.fcgi") == 2  # the failed try, then the good one


def test_retry_after_is_honoured_by_the_servers_clock():
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(2))
        state.faults.append(Fault("status", status=429, retry_after="1", endpoint="esearch.fcgi"))
        with EutilsClient(_settings(url), KEY) as client:
            _fetched(client, DAY0, DAY0)
    first, second = [r.at for r in state.requests if r.endpoint == "esearch.fcgi"]
    assert second - first >= 1.0


def test_retries_are_bounded_then_backend_unavailable_says_what_failed():
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(2))
        state.faults.extend(Fault("status", status=502) for _ in range(10))
        with (
            EutilsClient(_settings(url, max_tries=3), KEY) as client,
            pytest.raises(BackendUnavailable, match=r"esearch\.fcgi failed 3 times.*HTTP 502"),
        ):
            _fetched(client, DAY0, DAY0)
    assert state.count("esearch.fcgi") == 3


def test_a_client_error_is_not_retried():
    with ncbi_server() as (url, state):
        state.faults.append(Fault("status", status=400))
        with (
            EutilsClient(_settings(url), KEY) as client,
            pytest.raises(DataContractError, match="HTTP 400"),
        ):
            _fetched(client, DAY0, DAY0)
    assert len(state.requests) == 1


def _most_in_any_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


@pytest.mark.parametrize(("key", "limit"), [(None, 3), (KEY, 10)], ids=["no-key", "key"])
def test_requests_stay_under_ncbis_rate_by_the_servers_clock(key, limit):
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(12))
        # one failure in the middle: a retry is paced like any request
        state.faults.append(Fault("status", status=500, endpoint="efetch.fcgi"))
        with EutilsClient(_settings(url, efetch_batch=1), key) as client:
            got = _fetched(client, DAY0, DAY0)
    assert len(got) == 12 and len(state.requests) == 14
    assert _most_in_any_second([r.at for r in state.requests]) <= limit


def _fetch_in_a_process(url: str, pacing: str, key: str | None, start) -> None:
    secret = SecretStr(key) if key else None
    start.wait()
    with EutilsClient(_settings(url, efetch_batch=1), secret, pacing=Path(pacing)) as client:
        assert len(_fetched(client, DAY0, DAY0)) == 12


@pytest.mark.parametrize(("key", "limit"), [(None, 3), (KEY, 10)], ids=["no-key", "key"])
def test_two_processes_on_one_home_stay_under_ncbis_rate_together(tmp_path, key, limit):
    """Two scans (or a scan and a backfill) with one key share NCBI's rate, not each get it."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    secret = key.get_secret_value() if key else None
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(12))
        workers = [
            spawn.Process(
                target=_fetch_in_a_process,
                args=(url, str(tmp_path / "ncbi_rate.sqlite"), secret, start),
            )
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(state.requests) == 2 * 13  # each: one esearch, twelve efetch
    assert _most_in_any_second([r.at for r in state.requests]) <= limit


def test_the_api_key_is_sent_in_the_body_and_never_logged(caplog):
    secret = KEY.get_secret_value()
    caplog.set_level(logging.DEBUG)
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(2))
        state.faults.extend(Fault("status", status=500) for _ in range(10))
        with (
            EutilsClient(_settings(url, max_tries=2), KEY) as client,
            pytest.raises(BackendUnavailable) as raised,
        ):
            _fetched(client, DAY0, DAY0)
        state.faults.clear()
        with EutilsClient(_settings(url), KEY) as client:
            assert len(_fetched(client, DAY0, DAY0)) == 2
    assert all(r.form.get("api_key") == secret for r in state.requests)
    assert all(r.form["tool"] == "pharmalane" and r.form["email"] for r in state.requests)
    assert all(secret not in r.path for r in state.requests)
    assert caplog.records, "httpx logs each request at DEBUG/INFO: the check must see them"
    assert secret not in caplog.text
    assert secret not in str(raised.value)


def test_without_a_key_none_is_sent():
    with ncbi_server() as (url, state):
        _served(state, _aspirin_records(1))
        with EutilsClient(_settings(url)) as client:
            _fetched(client, DAY0, DAY0)
    assert all("api_key" not in r.form for r in state.requests)


def test_product_term_quotes_every_usable_variant_once():
    term = product_term(["Aspirin", "aspirin", "acetylsalicylic acid", 'bad "name"', " "])
    assert term == (
        '("acetylsalicylic acid"[tiab] OR "acetylsalicylic acid"[nm] OR '
        '"aspirin"[tiab] OR "aspirin"[nm])'
    )
    with pytest.raises(ValueError, match="PubMed phrase"):
        product_term(['"'])
