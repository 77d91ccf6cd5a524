"""The weak but human-made ADE label, and the fixed data split.

NLM indexers qualify a MeSH heading with "adverse effects", "toxicity" or "chemically induced"
when the article reports harm from a substance; that is the positive label. The split is a pure
function of the pmid, so no run can leak test items into training.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

ADE_QUALIFIERS = ("adverse effects", "toxicity", "chemically induced")
_QUALIFIER_PATTERN = r"(?i)Q\d+:(?:" + "|".join(ADE_QUALIFIERS) + r")\b"

Split = Literal["train", "calibration", "test"]
SPLIT_OF_DIGIT: dict[int, Split] = {
    **{d: "train" for d in range(7)},
    7: "calibration",
    8: "test",
    9: "test",
}


def ade_label(mesh_terms: pl.Expr) -> pl.Expr:
    """True when any MeSH heading carries an adverse-effect qualifier."""
    return mesh_terms.fill_null("").str.contains(_QUALIFIER_PATTERN)


def split_of(pmid: pl.Expr) -> pl.Expr:
    """``train`` (pmid % 10 in 0-6), ``calibration`` (7) or ``test`` (8-9); null if no pmid."""
    digit = pmid.str.strip_chars().cast(pl.Int64, strict=False) % 10
    return digit.replace_strict(SPLIT_OF_DIGIT, default=None, return_dtype=pl.String)
