"""The nightly scan end to end: real MEDLINE records, real model, real lake and LanceDB."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from flows.nightly_literature_scan import ScanParams, nightly_literature_scan
from tasks.io.lake import Lake
from tasks.io.medline import read_medline
from tasks.io.vectors import VectorStore
from tasks.settings import load_settings
from tasks.steps.scan import tools_and_route
from tests.conftest import pmids_mentioning_products, real_medline_records, write_medline

pytestmark = pytest.mark.slow

PUB_DATE = re.compile(rb"<PubDate>.*?</PubDate>", re.DOTALL)


def _mentions_product(records, folder) -> set[str]:
    """pmids of records that the production product matcher finds a watched product in."""
    citations, _ = read_medline(write_medline(folder / "probe.xml", records))
    matched = tools_and_route.fn(
        citations.with_columns(pl.col("pmid").alias("item_id")), load_settings()
    )
    return set(matched.filter(pl.col("products").list.len() > 0)["pmid"].to_list())


def _pick(records, in_scope_pmids, *, in_scope: bool, with_abstract: bool, count: int):
    chosen = []
    for record in records:
        has_abstract = b"<AbstractText" in record
        pmid = re.search(rb"<PMID[^>]*>(\d+)</PMID>", record)
        mentions = pmid is not None and pmid.group(1).decode() in in_scope_pmids
        if has_abstract == with_abstract and mentions == in_scope:
            chosen.append(record)
        if len(chosen) == count:
            return chosen
    raise AssertionError("not enough real records of that kind")


@pytest.fixture(scope="module")
def medline_batch(tmp_path_factory):
    """Real records plus the bad inputs a nightly file can carry, each of a known kind."""
    folder = tmp_path_factory.mktemp("medline")
    records = real_medline_records(1500)
    in_scope = pmids_mentioning_products(records, folder)
    good_in = _pick(records, in_scope, in_scope=True, with_abstract=True, count=6)
    good_out = _pick(records, in_scope, in_scope=False, with_abstract=True, count=8)
    no_abstract = _pick(records, in_scope, in_scope=False, with_abstract=False, count=1)
    month_13 = PUB_DATE.sub(
        b"<PubDate><Year>2021</Year><Month>13</Month></PubDate>", good_out[0], count=1
    )
    non_utf8 = good_out[1].replace(b"</ArticleTitle>", b"\xff</ArticleTitle>", 1)
    batch = [
        *good_in,
        *good_out[2:],
        *no_abstract,
        month_13,
        non_utf8,
        good_in[0],
    ]  # last: duplicate
    path = write_medline(folder / "nightly.xml", batch)
    return {
        "path": path,
        "rows": len(batch),
        "in_scope": len(good_in),
        "valid": len(good_in) + len(good_out) - 2,
    }


def _lake_counts(lake: Lake) -> dict[str, int]:
    return {
        name: lake.read(name).height
        for name in ("decisions", "escalations", "ledger", "quarantine")
    }


def test_scan_accounts_for_every_row_and_a_rerun_adds_nothing(
    isolated_home, monkeypatch, medline_batch
):
    monkeypatch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "5")
    params = ScanParams(sources=[str(medline_batch["path"])])

    first = nightly_literature_scan(**params.model_dump())

    lake = Lake(isolated_home / "lake")
    assert first.rows_in == medline_batch["rows"] == first.valid + first.quarantined
    assert first.valid == medline_batch["valid"]
    quarantine = lake.read("quarantine")
    assert quarantine.height == first.quarantined == 4
    reasons = " | ".join(quarantine.sort("source_row")["reason"].to_list())
    for expected in (
        "not_be_null(abstract)",
        "match_regex(pub_date_raw)",
        "not UTF-8",
        "duplicate pmid",
    ):
        assert expected in reasons
    assert quarantine["payload"].str.len_chars().min() > 0  # nothing lost: the raw record is kept

    decisions = lake.read("decisions")
    assert decisions.height == first.valid
    assert decisions["item_id"].n_unique() == decisions.height
    in_scope = decisions.filter(pl.col("products").list.len() > 0)
    assert in_scope.height == medline_batch["in_scope"]
    assert set(in_scope["path"]) <= {"small", "escalate"}
    assert in_scope["probability"].is_not_null().all()
    out_of_scope = decisions.filter(pl.col("products").list.len() == 0)
    assert set(out_of_scope["path"]) == {"tool"} and out_of_scope["cost_usd"].sum() == 0

    ledger = lake.read("ledger")
    assert ledger["n_items"].sum() == medline_batch["in_scope"] == first.embedded
    assert ledger["cost_usd"].sum() == pytest.approx(first.cost_usd) and first.cost_usd > 0
    assert ledger["call_id"].n_unique() == ledger.height
    assert VectorStore(isolated_home / "vectors").count() == medline_batch["in_scope"]
    escalated = decisions.filter(pl.col("path") == "escalate")["item_id"].sort().to_list()
    assert lake.read("escalations")["item_id"].sort().to_list() == escalated
    digest = lake.read("summaries/product_digest")
    assert digest["items"].sum() >= medline_batch["in_scope"]

    before = _lake_counts(lake)
    second = nightly_literature_scan(**params.model_dump())
    assert (second.screened, second.embedded, second.cost_usd) == (0, 0, 0.0)
    assert second.already_decided == first.valid
    assert _lake_counts(lake) == before


def test_window_outside_the_data_screens_nothing(isolated_home, medline_batch):
    from datetime import date

    summary = nightly_literature_scan(
        sources=[str(medline_batch["path"])], since=date(1900, 1, 1), until=date(1900, 1, 2)
    )
    # Only rows whose date cannot be read (and the non-UTF-8 one) pass the window, to quarantine.
    assert summary.screened == 0
    assert summary.quarantined == summary.rows_in == 2


def test_params_refuse_a_reversed_window():
    from datetime import date

    with pytest.raises(ValueError, match="after until"):
        ScanParams(since=date(2021, 2, 1), until=date(2021, 1, 1))


def test_a_reversed_window_fails_the_run_at_its_start_naming_both_fields(isolated_home):
    from datetime import date

    state = nightly_literature_scan(
        since=date(2021, 2, 1), until=date(2021, 1, 1), return_state=True
    )
    assert state.is_failed()
    with pytest.raises(ValueError, match=r"since \(2021-02-01\) is after until \(2021-01-01\)"):
        state.result()
    assert not (isolated_home / "lake").exists()  # nothing read, nothing written


def test_spent_budget_defers_model_work_without_dropping_it(
    isolated_home, monkeypatch, medline_batch, tmp_path
):
    import shutil

    from tasks.io.audit import AuditTrail
    from tasks.settings import load_settings

    configs = tmp_path / "configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "configs", configs)
    budgets = configs / "budgets.yaml"
    budgets.write_text(
        budgets.read_text().replace(
            "period: day, usd: 5.00, on_exhaustion: route_down",
            "period: day, usd: 0.000000001, on_exhaustion: defer",
        )
    )
    monkeypatch.setenv("PHARMALANE_CONFIG_DIR", str(configs))
    params = ScanParams(sources=[str(medline_batch["path"])])

    starved = nightly_literature_scan(**params.model_dump())
    lake = Lake(isolated_home / "lake")
    assert starved.deferred == medline_batch["in_scope"]
    assert starved.cost_usd == 0 and lake.read("ledger").is_empty()
    decided = lake.read("decisions")
    assert decided.height == medline_batch["valid"] - medline_batch["in_scope"]
    assert set(decided["path"]) == {"tool"}
    alerts = [
        e
        for e in AuditTrail(load_settings().audit_dir).entries()
        if e.get("kind") == "budget_exhausted"
    ]
    assert alerts and alerts[0]["action"] == "defer"

    monkeypatch.delenv("PHARMALANE_CONFIG_DIR")
    funded = nightly_literature_scan(**params.model_dump())
    assert (funded.deferred, funded.embedded) == (0, medline_batch["in_scope"])
    assert lake.read("decisions").height == medline_batch["valid"]
