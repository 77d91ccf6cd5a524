"""The scan's chunks fanned out on Dask (prefect-dask) give the sequential run's output.

One small real slice (in-scope abstracts and out-of-scope ones, 4 items a chunk) is scanned
three times: sequentially, on a 2-worker LocalCluster the flow starts (``scan.executor:
local-cluster``), and on an existing 2-worker cluster (``scan.executor: address``) one of whose
worker processes is SIGKILLed while chunks are in flight.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from distributed import Client, LocalCluster
from polars.testing import assert_frame_equal

from flows.nightly_literature_scan import nightly_literature_scan
from tasks.io.budget import BudgetStore
from tasks.io.call_journal import CallJournal
from tasks.io.lake import Lake
from tasks.io.vectors import VectorStore
from tasks.services.runtime import Runtime, utcnow
from tasks.services.screening import WORKFLOW
from tasks.settings import load_settings
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

# slow: three scans and two 2-process clusters, each worker loading the model; on a loaded
# 2-core machine a test (with the module's sequential run in its setup) took ~260 s of 300
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
KEY = ["item_id", "content_hash"]
COMPARED = [*KEY, "path", "decision", "route", "model", "chunk_id"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fan_out")
    records = real_medline_records(2000, skip=4500)
    in_scope = pmids_mentioning_products(records, folder)
    chosen = [r for r in records if pmid_of(r) in in_scope and b"<AbstractText" in r][:16]
    return write_medline(folder / "night.xml", chosen + records[:8])


@pytest.fixture(scope="module")
def sequential(source, tmp_path_factory) -> dict[str, pl.DataFrame]:
    home = tmp_path_factory.mktemp("sequential")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHARMALANE_HOME", str(home))
        patch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "4")
        roots = json.dumps([str(tmp_path_factory.getbasetemp())])
        patch.setenv("PHARMALANE_PATHS__ALLOWED_INPUT_ROOTS", roots)
        nightly_literature_scan(sources=[str(source)])
    return _outputs(home)


def _outputs(home: Path) -> dict[str, pl.DataFrame]:
    lake = Lake(home / "lake")
    return {
        "decisions": lake.read("decisions").sort(KEY),
        "escalations": lake.read("escalations").sort(KEY),
        "ledger": lake.read("ledger").sort("call_id"),
        "digest": lake.read("summaries/product_digest").sort("pub_date", "product"),
    }


def _assert_same_output(home: Path, want: dict[str, pl.DataFrame]) -> None:
    got = _outputs(home)
    assert got["decisions"]["item_id"].n_unique() == got["decisions"].height
    assert_frame_equal(got["decisions"].select(COMPARED), want["decisions"].select(COMPARED))
    assert_frame_equal(
        got["decisions"].select("probability", "cost_usd"),
        want["decisions"].select("probability", "cost_usd"),
        abs_tol=1e-6,
    )
    assert_frame_equal(got["escalations"].select(KEY), want["escalations"].select(KEY))
    # one ledger row per paid chunk, the same calls, items and money as the sequential run
    ledger = ["call_id", "chunk_id", "n_items", "input_tokens"]
    assert_frame_equal(got["ledger"].select(ledger), want["ledger"].select(ledger))
    assert got["ledger"]["cost_usd"].sum() == pytest.approx(want["ledger"]["cost_usd"].sum())
    assert_frame_equal(
        got["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
        want["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
    )
    assert VectorStore(home / "vectors").count() == want["ledger"]["n_items"].sum()


def test_a_two_worker_local_cluster_gives_the_sequential_output(
    source, sequential, tmp_path, monkeypatch
):
    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "4")
    monkeypatch.setenv("PHARMALANE_SCAN__EXECUTOR", "local-cluster")
    monkeypatch.setenv("PHARMALANE_SCAN__WORKERS", "2")

    summary = nightly_literature_scan(sources=[str(source)])

    assert summary.screened == sequential["decisions"].height
    assert summary.embedded == sequential["ledger"]["n_items"].sum() > 0
    _assert_same_output(tmp_path / "home", sequential)


def test_a_worker_killed_mid_chunk_loses_nothing_and_pays_nothing_twice(
    source, sequential, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("PHARMALANE_HOME", str(home))
    monkeypatch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "4")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        monkeypatch.setenv("PHARMALANE_SCAN__EXECUTOR", "address")
        monkeypatch.setenv("PHARMALANE_SCAN__DASK_ADDRESS", cluster.scheduler_address)
        killer = _Killer(client, home / "lake")
        killer.start()
        state = nightly_literature_scan(sources=[str(source)], return_state=True)
        killer.join(timeout=60)
    assert killer.killed is not None, "no worker was processing a chunk to kill"
    assert killer.paid_not_decided, "the kill did not land between a chunk's payment and decisions"
    if not state.is_completed():  # the flow gave up on the chunk: a re-run resumes it
        nightly_literature_scan(sources=[str(source)])

    _assert_same_output(home, sequential)
    settings = load_settings()
    ledger_usd = _outputs(home)["ledger"]["cost_usd"].sum()
    budget = Runtime.for_settings(settings).rules.budgets.budget(WORKFLOW)
    assert budget is not None
    spend = BudgetStore(settings.supervisor_dir / "budget.sqlite").spend(budget, utcnow())
    # settled once per paid chunk; the killed attempt's hold (if it was held) lapses at its
    # estimate and is never freed: the budget can count it, the ledger never does
    assert spend.settled_usd <= ledger_usd + 1e-9
    assert ledger_usd <= spend.settled_usd + spend.reserved_usd + 1e-9
    assert spend.open_reservations <= 1
    # the scan asks no large model: its paid-call journal stays empty
    assert CallJournal(settings.supervisor_dir / "llm_calls.sqlite").count() == 0


class _Killer(threading.Thread):
    """SIGKILLs one worker process that is running a chunk, once a chunk has been paid for."""

    def __init__(self, client: Client, lake: Path):
        super().__init__(daemon=True)
        self.client, self.lake = client, lake
        self.pids: dict[str, int] = client.run(os.getpid)
        self.killed: int | None = None
        self.paid_not_decided: set[str] = set()

    def run(self) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            paid = {p.stem for p in (self.lake / "ledger").rglob("*.parquet")}
            busy = [w for w, keys in self.client.processing().items() if keys]
            if paid and busy:
                decided = {p.stem for p in (self.lake / "decisions").rglob("*.parquet")}
                self.paid_not_decided = paid - decided
                self.killed = self.pids[busy[0]]
                os.kill(self.killed, signal.SIGKILL)
                return
            time.sleep(0.02)
