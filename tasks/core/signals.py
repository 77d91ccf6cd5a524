"""Disproportionality on drug x event report counts: PRR and ROR with 95% confidence intervals.

For a drug D and event E, with a = reports of D with E, b = D with other events, c = other
drugs with E, d = other drugs with other events:

    PRR = (a / (a + b)) / (c / (c + d)),  SE(ln PRR) = sqrt(1/a - 1/(a+b) + 1/c - 1/(c+d))
    ROR = (a d) / (b c),                  SE(ln ROR) = sqrt(1/a + 1/b + 1/c + 1/d)

A signal is flagged by the usual screening rule: a >= 3 and the lower 95% bound of both PRR and
ROR above 1. Cells with a zero anywhere have no defined interval and are never flagged.
"""

from __future__ import annotations

import polars as pl

Z95 = 1.959963984540054


def disproportionality(counts: pl.DataFrame, *, min_reports: int = 3) -> pl.DataFrame:
    """PRR / ROR per (table, drug, event) from long counts (table, drug, event, n).

    Totals are taken within each ``table`` (one FAERS extract); rows named 'Other' on either
    axis count towards the totals but are not reported as pairs.
    """
    n = pl.col("n").cast(pl.Float64)
    frame = counts.with_columns(
        n.sum().over("table", "drug").alias("_drug_total"),
        n.sum().over("table", "event").alias("_event_total"),
        n.sum().over("table").alias("_total"),
    ).with_columns(
        n.alias("a"),
        (pl.col("_drug_total") - n).alias("b"),
        (pl.col("_event_total") - n).alias("c"),
        (pl.col("_total") - pl.col("_drug_total") - pl.col("_event_total") + n).alias("d"),
    )
    a, b, c, d = (pl.col(x) for x in "abcd")
    defined = (a > 0) & (b > 0) & (c > 0) & (d > 0)
    prr = (a / (a + b)) / (c / (c + d))
    ror = (a * d) / (b * c)
    se_prr = (1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)).sqrt()
    se_ror = (1 / a + 1 / b + 1 / c + 1 / d).sqrt()
    out = frame.filter((pl.col("drug") != "Other") & (pl.col("event") != "Other")).select(
        "table",
        "drug",
        "event",
        pl.col("n").cast(pl.Int64).alias("reports"),
        pl.when(defined).then(prr).alias("prr"),
        pl.when(defined).then((prr.log() - Z95 * se_prr).exp()).alias("prr_lower"),
        pl.when(defined).then((prr.log() + Z95 * se_prr).exp()).alias("prr_upper"),
        pl.when(defined).then(ror).alias("ror"),
        pl.when(defined).then((ror.log() - Z95 * se_ror).exp()).alias("ror_lower"),
        pl.when(defined).then((ror.log() + Z95 * se_ror).exp()).alias("ror_upper"),
    )
    return out.with_columns(
        (
            (pl.col("reports") >= min_reports)
            & (pl.col("prr_lower") > 1).fill_null(False)
            & (pl.col("ror_lower") > 1).fill_null(False)
        ).alias("signal")
    )
