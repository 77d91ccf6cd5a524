"""An ordinary day, end to end: scan, index, the same question asked twice, then weekly FinOps.

The weekly report once failed after exactly this day (the lake's nested summaries datasets in
one view; cache hits priced under a model the catalog did not know). Real flows, real model,
real lake and LanceDB in tmp_path, a small MEDLINE file of bundled records.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from typer.testing import CliRunner

from flows.cli import app
from flows.nightly_literature_scan import nightly_literature_scan
from flows.refresh_summaries import refresh_summaries
from flows.weekly_finops import weekly_finops
from tasks.core.pricing import CACHE_MODEL
from tasks.io.lake import Lake
from tasks.settings import load_settings
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

pytestmark = pytest.mark.slow

SERVED_BY = re.compile(r"served by: (\w+) ")


def _a_day_of_abstracts(folder):
    """Four in-scope abstracts and four out of scope, cut from a bundled MEDLINE file."""
    records = [r for r in real_medline_records(400) if b"<AbstractText" in r]
    in_scope = pmids_mentioning_products(records, folder)
    inside = [r for r in records if pmid_of(r) in in_scope][:4]
    outside = [r for r in records if pmid_of(r) not in in_scope][:4]
    assert len(inside) == 4
    return write_medline(folder / "day.xml", inside + outside)


def _ask(question: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # the CLI sets Prefect defaults with os.environ.setdefault: keep them inside this test
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"))
    result = CliRunner().invoke(app, ["ask", question])
    assert result.exit_code == 0, result.output
    served = SERVED_BY.search(result.output)
    assert served, result.output
    return served.group(1)


def _published(flow_run_id, key: str) -> list[dict[str, str]]:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    return json.loads(artifact.data)


def test_weekly_finops_reports_an_ordinary_day(isolated_home, tmp_path, monkeypatch):
    source = _a_day_of_abstracts(tmp_path)
    scanned = nightly_literature_scan(sources=[str(source)])
    assert scanned.embedded > 0
    refresh_summaries(sources=[str(source)])
    settings = load_settings()
    lake = Lake(settings.lake_dir)
    product = lake.read("decisions").explode("products")["products"].drop_nulls()[0]

    question = f"what adverse events are reported with {product}?"
    tiers = [_ask(question, monkeypatch), _ask(question, monkeypatch)]
    assert tiers[1] != "miss"  # the second asking is served from a cache tier

    state = weekly_finops(return_state=True)
    summary = state.result()
    ledger = lake.read("ledger")
    today = datetime.now(UTC).date()
    assert ledger["created_at"].dt.date().max() == today
    assert summary.calls == ledger.height
    assert summary.total_usd == pytest.approx(ledger["cost_usd"].sum())

    calls = pl.DataFrame(_published(state.state_details.flow_run_id, "finops-top-calls"))
    assert calls.height == ledger.height  # fewer calls than the ten the table lists
    cached = calls.filter(pl.col("model") == CACHE_MODEL)
    assert cached.height >= 1
    assert cached["cost_usd"].cast(pl.Float64).to_list() == [0.0] * cached.height
    assert set(cached["pattern"]) <= {f"ask/cache-{tier}" for tier in tiers if tier != "miss"}
    assert calls["cost_usd"].cast(pl.Float64).sum() == pytest.approx(summary.total_usd)
    assert Path(summary.report).parent == settings.reports_dir and Path(summary.report).is_file()
