"""A nightly PubMed fetch SIGKILLed mid-fetch resumes with no gap, no duplicate, no re-fetch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.nightly_literature_scan import nightly_literature_scan
from tasks.core.pubmed_query import product_term
from tasks.io.drug_dictionary import product_variants
from tasks.io.lake import Lake
from tasks.rules import load_products
from tasks.settings import load_settings
from tests.conftest import real_medline_records
from tests.ncbi_server import NcbiState, ncbi_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DAY0 = date(2021, 3, 1)


def _terms() -> dict[str, str]:
    names = product_variants(p.name for p in load_products(load_settings()).products)
    return {product_term(v): product for product, v in names.items()}


def test_a_run_killed_mid_fetch_resumes_where_it_stopped(isolated_home, monkeypatch):
    # a slow NCBI: the kill lands between product queries (two searches each: EDAT, MDAT)
    state = NcbiState(delay_s=0.25)
    with ncbi_server(state) as (url, state):
        for index, record in enumerate(real_medline_records(400)):
            state.add(record, DAY0 - timedelta(days=index % 2))
        env = {
            **os.environ,
            "PHARMALANE_HOME": str(isolated_home),
            "PHARMALANE_PUBMED__EUTILS_BASE_URL": url,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from flows.cli import app; app()",
                "scan",
                "--from",
                "pubmed-query",
                "--until",
                str(DAY0),
            ],
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while state.count("esearch.fcgi") < 10 and time.monotonic() < deadline:
            assert process.poll() is None, "the scan ended before it could be killed"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert not (isolated_home / "lake" / "decisions").exists()  # killed mid-fetch
        finished = {p.parent.name for p in (isolated_home / "literature" / "pubmed").rglob("*.xml")}
        assert 4 <= len(finished) < len(_terms())
        killed_requests = len(state.requests)

        state.delay_s = 0.0
        monkeypatch.setenv("PHARMALANE_PUBMED__EUTILS_BASE_URL", url)
        resumed = nightly_literature_scan(source="pubmed-query", until=DAY0)

        terms = _terms()
        again = [
            terms[r.form["term"]]
            for r in state.requests[killed_requests:]
            if r.endpoint == "esearch.fcgi"
        ]
        everything = {p for t in terms for p in state.matching(t, DAY0, DAY0)}
    assert not set(again) & finished  # finished product windows are never fetched twice
    assert set(again) | finished == set(terms.values())  # and no product was skipped
    decided = Lake(isolated_home / "lake").read("decisions")
    quarantined = Lake(isolated_home / "lake").read("quarantine")
    assert resumed.rows_in == len(everything)
    assert set(decided["item_id"]) | set(quarantined["record_key"]) == everything  # no gap
    assert decided["item_id"].n_unique() == decided.height  # no duplicate
