"""The backfill's windows fanned out on Dask (a 2-worker LocalCluster) give the sequential output.

A small real range (in-scope abstracts and others, over four windows of publication dates) is
backfilled twice, in fresh homes: window after window in the flow's process, then with
``scan.executor: local-cluster``, each window a child scan run on a Dask worker, two at once.
Decisions, escalations, ledger, digest and the backfill's own figures must be the same.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from flows.backfill import BackfillParams, backfill
from tasks.core.intake import with_derived_fields
from tasks.io.lake import Lake
from tasks.io.medline import read_medline
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

# slow: two backfills, one of them on a 2-process cluster whose workers each load the model
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
KEY = ["item_id", "content_hash"]
COMPARED = [*KEY, "path", "decision", "route", "model", "chunk_id"]
SINCE, UNTIL, WINDOWS = date(2021, 1, 1), date(2021, 4, 30), 4  # windows of 30 days


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, BackfillParams]:
    """A MEDLINE file of the in-scope abstracts published 2021-01-01..04-30 of a real sample
    (9 of them, over the first two windows) and 8 other records of those dates."""
    folder = tmp_path_factory.mktemp("backfill_fan_out")
    records = real_medline_records(2500)
    citations, _ = read_medline(write_medline(folder / "all.xml", records))
    dated = with_derived_fields(citations).filter(
        pl.col("pub_date").is_between(SINCE, UNTIL) & (pl.col("pub_date_precision") == "day")
    )
    in_scope = list(pmids_mentioning_products(records, folder))
    chosen = dated.filter(pl.col("pmid").is_in(in_scope) & pl.col("abstract").is_not_null())
    others = dated.filter(~pl.col("pmid").is_in(in_scope)).sort("pmid").head(8)
    keep = set(chosen["pmid"].to_list()) | set(others["pmid"].to_list())
    assert chosen.height >= 6
    path = write_medline(folder / "range.xml", [r for r in records if pmid_of(r) in keep])
    params = BackfillParams(since=SINCE, until=UNTIL, days_per_run=30, sources=[str(path)])
    return path, params


def _backfill(home: Path, params: BackfillParams, patch: pytest.MonkeyPatch, **env: str):
    patch.setenv("PHARMALANE_HOME", str(home))
    patch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "4")
    patch.setenv("PHARMALANE_PATHS__ALLOWED_INPUT_ROOTS", json.dumps([str(params.sources[0])]))
    for name, value in env.items():
        patch.setenv(name, value)
    return backfill(**params.model_dump())


def _outputs(home: Path) -> dict[str, pl.DataFrame]:
    lake = Lake(home / "lake")
    return {
        "decisions": lake.read("decisions").sort(KEY),
        "escalations": lake.read("escalations").sort(KEY),
        "ledger": lake.read("ledger").sort("call_id"),
        "digest": lake.read("summaries/product_digest").sort("pub_date", "product"),
    }


def _window_task_runs() -> int:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="backfill-window"))
        )
    return len(runs)


def test_windows_on_a_two_worker_local_cluster_give_the_sequential_backfill(
    source, tmp_path, monkeypatch
):
    _, params = source
    with pytest.MonkeyPatch.context() as patch:
        want = _backfill(tmp_path / "sequential", params, patch)
    assert _window_task_runs() == 0  # in sequence the child runs sit under the backfill
    assert want.windows == WINDOWS and want.failed_windows == [] and want.screened > 0

    got = _backfill(
        tmp_path / "dask",
        params,
        monkeypatch,
        PHARMALANE_SCAN__EXECUTOR="local-cluster",
        PHARMALANE_SCAN__WORKERS="2",
    )

    assert _window_task_runs() == WINDOWS  # each window ran as a task on a Dask worker
    assert got.model_dump(exclude={"cost_usd"}) == want.model_dump(exclude={"cost_usd"})
    assert got.cost_usd == pytest.approx(want.cost_usd)
    a, b = _outputs(tmp_path / "dask"), _outputs(tmp_path / "sequential")
    assert a["decisions"]["item_id"].n_unique() == a["decisions"].height == want.screened
    assert_frame_equal(a["decisions"].select(COMPARED), b["decisions"].select(COMPARED))
    assert_frame_equal(
        a["decisions"].select("probability", "cost_usd"),
        b["decisions"].select("probability", "cost_usd"),
        abs_tol=1e-6,
    )
    assert_frame_equal(a["escalations"].select(KEY), b["escalations"].select(KEY))
    ledger = ["call_id", "chunk_id", "n_items", "input_tokens"]
    assert_frame_equal(a["ledger"].select(ledger), b["ledger"].select(ledger))
    assert b["ledger"].height > 0
    assert_frame_equal(
        a["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
        b["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
    )
