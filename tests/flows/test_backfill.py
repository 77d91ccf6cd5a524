"""Backfill over real publication dates, then the same range again: the second adds nothing."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from flows.backfill import BackfillParams, backfill, windows
from tasks.core.intake import with_derived_fields
from tasks.io.lake import Lake
from tasks.io.medline import read_medline
from tests.conftest import real_medline_records, write_medline

pytestmark = pytest.mark.slow


def test_backfill_twice_second_run_adds_zero_rows_and_zero_cost(isolated_home, tmp_path):
    source = write_medline(tmp_path / "year.xml", real_medline_records(2500))
    citations, _ = read_medline(source)
    dated = with_derived_fields(citations).filter(pl.col("abstract").is_not_null())
    by_day = dated.filter(pl.col("pub_date_precision") == "day").group_by("pub_date").len()
    first_day = by_day.sort("len", "pub_date", descending=[True, False])["pub_date"][0]
    params = BackfillParams(
        since=first_day, until=first_day + timedelta(days=2), sources=[str(source)]
    )
    expected = dated.filter(pl.col("pub_date").is_between(params.since, params.until))[
        "pmid"
    ].n_unique()

    first = backfill(**params.model_dump())
    lake = Lake(isolated_home / "lake")
    counts = {name: lake.read(name).height for name in ("decisions", "ledger", "quarantine")}
    assert (first.windows, first.succeeded, first.failed_windows) == (3, 3, [])
    assert first.screened == counts["decisions"] == expected > 0

    second = backfill(**params.model_dump())
    assert (second.screened, second.cost_usd) == (0, 0.0)
    assert second.already_decided == first.screened
    assert {name: lake.read(name).height for name in counts} == counts
    assert (
        not lake.read("summaries/product_digest").is_empty()
        or lake.read("decisions")["products"].list.len().sum() == 0
    )


def test_windows_cover_the_range_without_gaps():
    from datetime import date

    spans = windows(date(2021, 1, 30), date(2021, 2, 3), 2)
    assert spans == [
        (date(2021, 1, 30), date(2021, 1, 31)),
        (date(2021, 2, 1), date(2021, 2, 2)),
        (date(2021, 2, 3), date(2021, 2, 3)),
    ]
