"""FinOps report assembly: from the warehouse's aggregates to the figures Finance reads. Pure.

Nothing here is priced at zero by accident: a ledger row with a missing, negative or
non-numeric cost, or a model the price catalog does not know, stops the report with a
DataContractError naming the call and the field. The one model outside the catalog is
``CACHE_MODEL``: a cache hit is a real ledger event, reported as a $0 call, and a cache row
that costs anything is refused like any other bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import polars as pl

from tasks.core.pricing import CACHE_MODEL
from tasks.errors import DataContractError
from tasks.rules import ModelsFile

# decision -> the business outcome it resolves (cost per outcome is spend / outcomes)
# differences of money summed in another order keep a float residue (5e-20 for $0.00016);
# a picodollar is far below any one priced token, so figures are rounded to it
MONEY_DECIMALS = 12


def savings_usd(worth: pl.Expr, paid: pl.Expr) -> pl.Expr:
    """What was worth more than was paid, to the picodollar; never negative, never -0.0.

    ``abs`` turns the -0.0 that rounding a tiny negative residue gives (and ``clip`` keeps)
    into 0.0, which the report would otherwise print as "-0"; polars folds a ``+ 0.0`` away.
    """
    return (worth - paid).round(MONEY_DECIMALS).clip(lower_bound=0).abs()


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
    calls: pl.DataFrame = field(default_factory=pl.DataFrame)  # ledger rows of the window
    members: pl.DataFrame = field(default_factory=pl.DataFrame)  # workflow, chunk_id, item_id


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
    resolved_outcomes: pl.DataFrame = field(default_factory=pl.DataFrame)
    panel: pl.DataFrame = field(default_factory=pl.DataFrame)  # the persona panel's effect
    grounding: pl.DataFrame = field(default_factory=pl.DataFrame)  # grounded-answer rate
    grounding_alerts: pl.DataFrame = field(default_factory=pl.DataFrame)  # days below the bound
    drafting: pl.DataFrame = field(default_factory=pl.DataFrame)  # cost per accepted summary


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
        .with_columns(savings_usd(pl.col("attributed_usd"), pl.col("paid_usd")).alias("saved_usd"))
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


UNRESOLVED = "not resolved by a human"
# kinds whose ledger rows carry the item's id (a literature item's verdicts, a draft's call)
ITEM_PRICED_KINDS = ("literature", "draft")
UNATTRIBUTED = "unattributed (shared calls no item decision claims)"
_CALL_COLUMNS = {"workflow": pl.String, "chunk_id": pl.String, "item_id": pl.String}


def attribute(calls: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """Spend per item: ``item_id`` (null: unattributed), ``usd``; sums to the calls' total.

    A call carrying its ``item_id`` is that item's. A call shared by a chunk (an embedding
    batch) is split evenly over the items its chunk decided; a shared call no decision claims
    (a triage micro-batch, a knowledge answer) stays unattributed, shown as its own row.
    """
    if calls.is_empty():
        return pl.DataFrame(schema={"item_id": pl.String, "usd": pl.Float64})
    frame = calls.with_columns(
        *(
            pl.lit(None, dtype=t).alias(c)
            for c, t in _CALL_COLUMNS.items()
            if c not in calls.columns
        )
    ).select(*_CALL_COLUMNS, pl.col("cost_usd").cast(pl.Float64))
    direct = frame.filter(pl.col("item_id").is_not_null()).select("item_id", usd="cost_usd")
    shared = (
        frame.filter(pl.col("item_id").is_null())
        .group_by("workflow", "chunk_id")
        .agg(pl.col("cost_usd").sum())
    )
    owners = (
        members.select(*_CALL_COLUMNS).unique().cast(_CALL_COLUMNS)  # type: ignore[arg-type]
        if not members.is_empty()
        else pl.DataFrame(schema=_CALL_COLUMNS)
    )
    split = shared.join(owners, on=["workflow", "chunk_id"], how="inner").select(
        "item_id", usd=pl.col("cost_usd") / pl.len().over("workflow", "chunk_id")
    )
    orphan = shared.join(owners, on=["workflow", "chunk_id"], how="anti").select(
        pl.lit(None, dtype=pl.String).alias("item_id"), usd="cost_usd"
    )
    return pl.concat([direct, split, orphan]).group_by("item_id").agg(pl.col("usd").sum())


def resolved_outcome_costs(
    attributed: pl.DataFrame, resolutions: pl.DataFrame, *, reviewer_usd: float
) -> pl.DataFrame:
    """Cost per resolved outcome: model cost of the items resolved so, plus a review each.

    ``resolutions``: ``item_id`` (the lake's id for literature), ``kind``, ``outcome``. Rows
    for spend on items no human resolved (yet, or ever: closed by a model) and for
    unattributed spend follow, so ``model_usd`` sums to the window's total spend.
    """
    priced = pl.col("kind").is_in(ITEM_PRICED_KINDS)
    literature = resolutions.filter(priced).select("item_id", "outcome")
    resolved = (
        resolutions.join(attributed, on="item_id", how="left")
        .with_columns(pl.when(priced).then(pl.col("usd")).otherwise(0.0).fill_null(0.0))
        .group_by("outcome")
        .agg(items=pl.len(), model_usd=pl.col("usd").sum())
        .with_columns(reviewer_usd=pl.col("items") * reviewer_usd)
        .sort("outcome")
    )
    rest = attributed.join(literature, on="item_id", how="anti")
    others = pl.DataFrame(
        {
            "outcome": [UNRESOLVED, UNATTRIBUTED],
            "items": [
                rest.filter(pl.col("item_id").is_not_null()).height,
                0,
            ],
            "model_usd": [
                float(rest.filter(pl.col("item_id").is_not_null())["usd"].sum()),
                float(rest.filter(pl.col("item_id").is_null())["usd"].sum()),
            ],
            "reviewer_usd": [0.0, 0.0],
        },
        schema={
            "outcome": pl.String,
            "items": pl.UInt32,
            "model_usd": pl.Float64,
            "reviewer_usd": pl.Float64,
        },
    )
    table = pl.concat([resolved.cast({"items": pl.UInt32}), others])
    return table.with_columns(total_usd=pl.col("model_usd") + pl.col("reviewer_usd")).with_columns(
        usd_per_outcome=pl.when(pl.col("reviewer_usd") > 0).then(
            pl.col("total_usd") / pl.col("items")
        )
    )


def with_resolutions(
    report: FinopsReport,
    figures: LedgerFigures,
    resolutions: pl.DataFrame,
    *,
    reviewer_usd: float,
) -> FinopsReport:
    """``report`` with its cost per resolved outcome."""
    attributed = attribute(figures.calls, figures.members)
    table = resolved_outcome_costs(attributed, resolutions, reviewer_usd=reviewer_usd)
    return replace(report, resolved_outcomes=table)


PANEL_ACTIONS = {
    "lower": "lowered",
    "human_first": "sent_first",
    "close": "closed",
    "keep": "unchanged",
}


def panel_effect(reviews: pl.DataFrame) -> pl.DataFrame:
    """The persona panel's cost per item and its effect on inbox volume, per item kind.

    One row per kind (and ``all``): items the panel read, what its calls cost, cost per item,
    and how many it lowered (agreed non-serious), sent first (disagreement, or seriousness
    found), closed (validated "no adverse event") or left unchanged; ``incomplete`` counts the
    items where a persona gave no valid answer (down, garbage, budget, throttle).
    """
    columns = ["kind", "items", "cost_usd", "usd_per_item", *PANEL_ACTIONS.values(), "incomplete"]
    if reviews.is_empty():
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.Float64) | {"kind": pl.String})
    counts = [(pl.col("action") == a).sum().alias(name) for a, name in PANEL_ACTIONS.items()]
    aggregate = [
        pl.len().alias("items"),
        pl.col("cost_usd").sum().alias("cost_usd"),
        *counts,
        (pl.col("personas_answered") < pl.col("personas")).sum().alias("incomplete"),
    ]
    per_kind = reviews.group_by("kind").agg(aggregate).sort("kind")
    overall = reviews.select(aggregate).with_columns(kind=pl.lit("all"))
    table = pl.concat([per_kind, overall.select(per_kind.columns)], how="vertical_relaxed")
    return table.with_columns(usd_per_item=pl.col("cost_usd") / pl.col("items")).select(columns)


DRAFT_WORKFLOW = "draft-periodic-summary"
DRAFT_OUTCOMES = ("accepted", "needs_changes", "rejected")


def cost_per_accepted_summary(
    calls: pl.DataFrame, drafts: pl.DataFrame, reviews: pl.DataFrame
) -> pl.DataFrame:
    """Cost per accepted summary: what drafting cost in the window over the drafts accepted.

    The window's drafts are a cohort: every draft made in it (model or template), what the
    drafting lane's model calls of the window cost (the ledger), and how reviewers resolved
    those drafts since (accepted, needs_changes, rejected, or still open). A draft sent back or
    rejected still cost what it cost: it raises the price of each accepted one. No accepted
    draft yet: the price per accepted summary is null, never $0.

    Args:
        calls: ledger rows of the window (workflow, cost_usd).
        drafts: draft rows made in the window (draft_id, composer).
        reviews: draft inbox items (draft_id, status, outcome).
    """
    columns = ["drafts", "templates", *DRAFT_OUTCOMES, "open", "model_usd"]
    if drafts.is_empty():
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.Int64) | {"model_usd": pl.Float64})
    spent = (
        calls.filter(pl.col("workflow") == DRAFT_WORKFLOW)["cost_usd"].sum()
        if not calls.is_empty()
        else 0.0
    )
    cohort = drafts.unique("draft_id").join(reviews, on="draft_id", how="left")
    outcome = pl.col("outcome")
    table = cohort.select(
        pl.len().alias("drafts"),
        (pl.col("composer") == "template").sum().alias("templates"),
        *((outcome == o).sum().alias(o) for o in DRAFT_OUTCOMES),
        outcome.is_null().sum().alias("open"),
        pl.lit(float(spent)).alias("model_usd"),
    )
    return table.with_columns(
        usd_per_accepted_summary=pl.when(pl.col("accepted") > 0).then(
            pl.col("model_usd") / pl.col("accepted")
        )
    )
