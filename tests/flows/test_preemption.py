"""A spot reclaim: SIGKILL the scan's process mid-run, restart, and compare with a clean run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect.settings import PREFECT_API_URL

from flows.nightly_literature_scan import nightly_literature_scan
from tasks.io.lake import Lake
from tasks.io.vectors import VectorStore
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
KEY = ["item_id", "content_hash"]
COMPARED = [*KEY, "path", "decision", "route", "model"]


def _outputs(home: Path) -> dict[str, pl.DataFrame]:
    lake = Lake(home / "lake")
    return {
        "decisions": lake.read("decisions").sort(KEY),
        "escalations": lake.read("escalations").sort(KEY),
        "ledger": lake.read("ledger").sort("call_id"),
        "digest": lake.read("summaries/product_digest").sort("pub_date", "product"),
    }


def test_killed_scan_resumes_with_no_loss_no_duplicate_and_no_double_charge(tmp_path, monkeypatch):
    records = real_medline_records(3000, skip=1500)
    in_scope = pmids_mentioning_products(records, tmp_path)
    chosen = [r for r in records if pmid_of(r) in in_scope and b"<AbstractText" in r][:48]
    source = write_medline(tmp_path / "night.xml", chosen + records[:40])
    monkeypatch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "4")

    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "clean"))
    clean = nightly_literature_scan(sources=[str(source)])

    killed_home = tmp_path / "killed"
    env = {
        **os.environ,
        "PHARMALANE_HOME": str(killed_home),
        "PHARMALANE_SCAN__CHUNK_SIZE": "4",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from flows.cli import app; app()", "scan", "--source", str(source)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    decisions_dir = killed_home / "lake" / "decisions"
    deadline = time.monotonic() + 300
    while not list(decisions_dir.rglob("*.parquet")) and time.monotonic() < deadline:
        assert process.poll() is None, "the scan ended before it could be killed"
        time.sleep(0.05)
    delay = random.uniform(0.0, 1.5)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    partial = Lake(killed_home / "lake").read("decisions")
    assert 0 < partial.height < clean.valid, f"kill after {delay:.2f}s did not land mid-run"

    monkeypatch.setenv("PHARMALANE_HOME", str(killed_home))
    resumed = nightly_literature_scan(sources=[str(source)])
    assert resumed.already_decided == partial.height

    want, got = _outputs(tmp_path / "clean"), _outputs(killed_home)
    assert_frame_equal(got["decisions"].select(COMPARED), want["decisions"].select(COMPARED))
    assert_frame_equal(
        got["decisions"].select("probability", "cost_usd"),
        want["decisions"].select("probability", "cost_usd"),
        abs_tol=1e-6,
    )
    assert_frame_equal(got["escalations"].select(KEY), want["escalations"].select(KEY))
    assert got["ledger"]["call_id"].n_unique() == got["ledger"].height
    assert got["ledger"]["n_items"].sum() == want["ledger"]["n_items"].sum() == clean.embedded
    assert got["ledger"]["cost_usd"].sum() == pytest.approx(want["ledger"]["cost_usd"].sum())
    assert_frame_equal(
        got["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
        want["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
    )
    assert (
        VectorStore(killed_home / "vectors").count()
        == VectorStore(tmp_path / "clean" / "vectors").count()
    )
