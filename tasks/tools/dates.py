"""Publication-date normalisation.

MEDLINE gives a full date, a year and month, or a year alone. The tool maps each to the first
day it can mean and keeps the precision, so a window query never invents a day that was not
published. Anything else (a month 13, 30 February, free text) becomes null: the validation
step quarantines it by name.
"""

from __future__ import annotations

import polars as pl

_YEAR = r"^\d{4}$"
_MONTH = r"^\d{4}-\d{2}$"
_DAY = r"^\d{4}-\d{2}-\d{2}$"


def normalise_pub_date(raw: pl.Expr) -> list[pl.Expr]:
    """Expressions for ``pub_date`` (date), ``pub_date_precision`` and ``pub_month``.

    Args:
        raw: the raw MEDLINE date string (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``).
    """
    text = raw.str.strip_chars()
    padded = (
        pl.when(text.str.contains(_DAY))
        .then(text)
        .when(text.str.contains(_MONTH))
        .then(text + "-01")
        .when(text.str.contains(_YEAR))
        .then(text + "-01-01")
        .otherwise(None)
    )
    pub_date = padded.str.to_date("%Y-%m-%d", strict=False)
    precision = (
        pl.when(pub_date.is_null())
        .then(None)
        .when(text.str.contains(_DAY))
        .then(pl.lit("day"))
        .when(text.str.contains(_MONTH))
        .then(pl.lit("month"))
        .otherwise(pl.lit("year"))
    )
    return [
        pub_date.alias("pub_date"),
        precision.alias("pub_date_precision"),
        pub_date.dt.strftime("%Y-%m").alias("pub_month"),
    ]
