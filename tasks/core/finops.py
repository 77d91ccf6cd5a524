"""FinOps report assembly: from the warehouse's aggregates to the figures Finance reads. Pure.

Nothing here is priced at zero by accident: a ledger row with a missing, negative or
non-numeric cost, or a model the price catalog does not know, stops the report with a
DataContractError naming the call and the field. The one model outside the catalog is
``CACHE_MODEL``: a cache hit is a real ledger event, reported as a $0 call, and a cache row
that costs anything is refused like any other bad row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from tasks.core.pricing import CACHE_MODEL
from tasks.errors import DataContractError
from tasks.rules import ModelsFile

# decision -> the business outcome it resolves (cost per outcome is spend / outcomes)
OUTCOMES = {
    "case_candidate": "case candidate found",
    "escalated": "case triaged to the large model",
    "closed_negative": "abstract closed by the small model",
    "accepted_summary": "summary accepted",
}


@dataclass(frozen=True)
class LedgerFigures:
    """Aggregates of one window as DuckDB returns them (see tasks/io/warehouse.py)."""

    problems: pl.DataFrame
    models: pl.DataFrame
    by_workflow: pl.DataFrame
    by_pattern: pl.DataFrame
    by_hour: pl.DataFrame
    top_calls: pl.DataFrame
    outcomes: pl.DataFrame
    cache_served: pl.DataFrame  # workflow, attributed_usd: knowledge answers, paid or cached


@dataclass(frozen=True)
class FinopsReport:
    start: datetime
    end: datetime
    total_usd: float
    calls: int
    by_workflow: pl.DataFrame
    by_pattern: pl.DataFrame
    by_hour: pl.DataFrame
    per_outcome: pl.DataFrame
    path_mix: pl.DataFrame
    cache_savings: pl.DataFrame
    top_calls: pl.DataFrame
    bursts: pl.DataFrame


def check_ledger(figures: LedgerFigures, catalog: ModelsFile) -> None:
    """Refuse a window whose ledger cannot be trusted.

    Raises:
        DataContractError: the first bad row, by call_id, with ``cost_usd`` or ``model``.
    """
    if not figures.problems.is_empty():
        row = figures.problems.row(0, named=True)
        raise DataContractError(
            f"ledger cost is {row['problem']} ({figures.problems.height} bad row(s) in the "
            "window); fix the writer, nothing is priced at $0",
            record=row["call_id"],
            field="cost_usd",
        )
    if figures.models.is_empty():
        return
    paid_cache = figures.models.filter(
        (pl.col("model") == CACHE_MODEL) & (pl.col("paid_calls") > 0)
    )
    if not paid_cache.is_empty():
        row = paid_cache.row(0, named=True)
        raise DataContractError(
            f"{row['paid_calls']} {CACHE_MODEL!r} ledger row(s) cost more than $0: a cache hit "
            "is free, a paid call names the model that served it",
            record=row["first_paid_call_id"],
            field="model",
        )
    unknown = figures.models.filter(~pl.col("model").is_in([*catalog.models, CACHE_MODEL]))
    if not unknown.is_empty():
        row = unknown.row(0, named=True)
        raise DataContractError(
            f"model {row['model']!r} has no price in configs/models.yaml "
            f"(known: {sorted(catalog.models)}); add it before reporting",
            record=row["first_call_id"],
            field="model",
        )


def burst_hours(by_hour: pl.DataFrame, *, factor: float, baseline_hours: int) -> pl.DataFrame:
    """Hours whose spend exceeds ``factor`` x the mean of the ``baseline_hours`` before them.

    Hours without calls count as $0 in the baseline; an hour with no history is never a burst.
    """
    empty = pl.DataFrame(
        schema={
            "hour": pl.Datetime("us"),
            "cost_usd": pl.Float64,
            "baseline_usd": pl.Float64,
            "ratio": pl.Float64,
        }
    )
    if by_hour.is_empty():
        return empty
    hourly = by_hour.group_by("hour").agg(pl.col("cost_usd").sum()).sort("hour")
    first, last = hourly["hour"].min(), hourly["hour"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    grid = pl.DataFrame({"hour": pl.datetime_range(first, last, "1h", eager=True, time_unit="us")})
    filled = grid.join(
        hourly.with_columns(pl.col("hour").cast(pl.Datetime("us"))), on="hour", how="left"
    ).with_columns(pl.col("cost_usd").fill_null(0.0))
    with_base = filled.with_columns(
        pl.col("cost_usd")
        .rolling_mean(window_size=baseline_hours, min_samples=1)
        .shift(1)
        .alias("baseline_usd")
    ).with_columns((pl.col("cost_usd") / pl.col("baseline_usd")).alias("ratio"))
    return with_base.filter(
        (pl.col("baseline_usd") > 0) & (pl.col("cost_usd") > factor * pl.col("baseline_usd"))
    ).select(empty.columns)


def assemble(
    figures: LedgerFigures,
    catalog: ModelsFile,
    *,
    start: datetime,
    end: datetime,
    burst_factor: float,
    baseline_hours: int,
) -> FinopsReport:
    """Check the ledger, then derive cost per outcome, path mix, cache savings and bursts."""
    check_ledger(figures, catalog)
    spend = (
        figures.by_workflow.select("workflow", pl.col("cost_usd").alias("paid_usd"))
        if not figures.by_workflow.is_empty()
        else pl.DataFrame(schema={"workflow": pl.String, "paid_usd": pl.Float64})
    )
    outcomes = (
        figures.outcomes
        if not figures.outcomes.is_empty()
        else pl.DataFrame(
            schema={
                "workflow": pl.String,
                "path": pl.String,
                "decision": pl.String,
                "items": pl.Int64,
                "attributed_usd": pl.Float64,
            }
        )
    )
    per_outcome = (
        outcomes.filter(pl.col("decision").is_in(list(OUTCOMES)))
        .group_by("workflow", "decision")
        .agg(pl.col("items").sum())
        .join(spend, on="workflow", how="inner")
        .with_columns(
            pl.col("decision").replace_strict(OUTCOMES).alias("outcome"),
            (pl.col("paid_usd") / pl.col("items")).alias("usd_per_outcome"),
        )
        .select("workflow", "outcome", "items", "paid_usd", "usd_per_outcome")
        .sort("workflow", "outcome")
    )
    path_mix = (
        outcomes.group_by("workflow", "path")
        .agg(pl.col("items").sum())
        .with_columns((pl.col("items") / pl.col("items").sum().over("workflow")).alias("share"))
        .sort("workflow", "path")
    )
    # decisions carry the model cost of their item whether the vector was paid now or reused,
    # cache events what each answer was worth whether paid or served from a cache; what they
    # carry beyond what the ledger paid is what the cache saved
    worth = [outcomes.select("workflow", "attributed_usd")]
    if not figures.cache_served.is_empty():
        worth.append(figures.cache_served.select("workflow", "attributed_usd"))
    cache_savings = (
        pl.concat(worth)
        .group_by("workflow")
        .agg(pl.col("attributed_usd").sum())
        .join(spend, on="workflow", how="inner")
        .with_columns(
            (pl.col("attributed_usd") - pl.col("paid_usd")).clip(lower_bound=0).alias("saved_usd")
        )
        .sort("workflow")
    )
    total = float(spend["paid_usd"].sum()) if not spend.is_empty() else 0.0
    calls = int(figures.by_workflow["calls"].sum()) if not figures.by_workflow.is_empty() else 0
    return FinopsReport(
        start=start,
        end=end,
        total_usd=total,
        calls=calls,
        by_workflow=figures.by_workflow,
        by_pattern=figures.by_pattern,
        by_hour=figures.by_hour,
        per_outcome=per_outcome,
        path_mix=path_mix,
        cache_savings=cache_savings,
        top_calls=figures.top_calls,
        bursts=burst_hours(figures.by_hour, factor=burst_factor, baseline_hours=baseline_hours),
    )
