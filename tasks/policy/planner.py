"""Planner: the cheapest safe path per item, and the decision that path reaches.

    no watched product          -> path tool:     closed_out_of_scope (no model is paid)
    probability >= high         -> path small:    case_candidate
    probability <  low          -> path small:    closed_negative
    otherwise                   -> path escalate: escalated to the large-model lane

``low`` is calibrated so that recall on calibration positives meets the target: lowering it
sends more items to the large model, raising it risks missed cases. A hot item (a serious
outcome word next to a product) is never closed by the small model alone: it is escalated.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Thresholds:
    """Probability bounds of the small model, chosen by calibration."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"thresholds must satisfy 0 <= low <= high <= 1, got {self}")


def needs_model(frame: pl.DataFrame) -> pl.Series:
    """Items that mention a watched product: the only ones worth a model call."""
    return frame.select((pl.col("products").list.len() > 0).alias("needs_model")).to_series()


def plan(frame: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """Add ``path``, ``decision`` and ``reason`` from ``products``, ``route`` and ``probability``.

    ``probability`` is null for items that never reached the model.
    """
    in_scope = pl.col("products").list.len() > 0
    p = pl.col("probability")
    low, high = thresholds.low, thresholds.high
    hot = pl.col("route") == "hot"
    path = (
        pl.when(~in_scope)
        .then(pl.lit("tool"))
        .when(p.is_null())
        .then(pl.lit("escalate"))
        .when(p >= high)
        .then(pl.lit("small"))
        .when((p < low) & ~hot)
        .then(pl.lit("small"))
        .otherwise(pl.lit("escalate"))
    )
    decision = (
        pl.when(~in_scope)
        .then(pl.lit("closed_out_of_scope"))
        .when(p.is_null())
        .then(pl.lit("escalated"))
        .when(p >= high)
        .then(pl.lit("case_candidate"))
        .when((p < low) & ~hot)
        .then(pl.lit("closed_negative"))
        .otherwise(pl.lit("escalated"))
    )
    fmt = pl.col("probability").round(4).cast(pl.String)
    reason = (
        pl.when(~in_scope)
        .then(pl.lit("no watched product mentioned"))
        .when(p.is_null())
        .then(pl.lit("no model score: escalated for a human or large-model look"))
        .when(p >= high)
        .then(pl.lit(f"small model confident: p >= {high:.4f} (p = ") + fmt + pl.lit(")"))
        .when((p < low) & ~hot)
        .then(pl.lit(f"small model confident: p < {low:.4f} (p = ") + fmt + pl.lit(")"))
        .when(p < low)
        .then(pl.lit("hot route: a serious-outcome item is never closed by the small model"))
        .otherwise(
            pl.lit(f"small model unsure: {low:.4f} <= p < {high:.4f} (p = ") + fmt + pl.lit(")")
        )
    )
    return frame.with_columns(
        path.alias("path"), decision.alias("decision"), reason.alias("reason")
    )


def with_evidence_reason(planned: pl.DataFrame) -> pl.DataFrame:
    """Append the evidence cues that fired (``evidence``, a list of codes) to each ``reason``.

    The codes are short cue names (``product+reaction``, ``causal:induced``), never case text,
    so a reader sees why the small model leaned as it did. Items without the column (or with no
    cue) keep their reason unchanged, and the column is filled with an empty list.
    """
    if "evidence" not in planned.columns:
        return planned.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("evidence"))
    codes = pl.col("evidence").fill_null([])
    return planned.with_columns(
        pl.when(codes.list.len() > 0)
        .then(pl.col("reason") + pl.lit("; evidence: ") + codes.list.join(", "))
        .otherwise(pl.col("reason"))
        .alias("reason"),
        codes.alias("evidence"),
    )
