"""Watched-product matching: every dictionary variant of a product, as whole words.

The variants come from a real drug dictionary (DrugBank open data and MeSH, shipped by the
``drug-named-entity-recognition`` package) through ``tasks.io.drug_dictionary``; this module
only matches. One case-insensitive regex per product runs vectorised over the frame.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import polars as pl

MIN_VARIANT_LENGTH = 4  # shorter variants ("li", "asa") match ordinary words and units


def product_pattern(variants: Sequence[str], *, whole_words: bool = True) -> str:
    """A case-insensitive regex matching any of ``variants``, as whole words by default."""
    kept = sorted({v.strip().lower() for v in variants if len(v.strip()) >= MIN_VARIANT_LENGTH})
    if not kept:
        raise ValueError("no usable variants: every variant is shorter than 4 characters")
    alternatives = "|".join(re.escape(v) for v in sorted(kept, key=len, reverse=True))
    return rf"(?i)\b(?:{alternatives})\b" if whole_words else rf"(?i)(?:{alternatives})"


def match_products(text: pl.Expr, variants_by_product: Mapping[str, Sequence[str]]) -> pl.Expr:
    """A sorted list of the products whose variants occur in ``text`` (empty list when none)."""
    if not variants_by_product:
        return pl.lit([], dtype=pl.List(pl.String))
    return text.map_batches(
        lambda texts: matched_products(texts, variants_by_product),
        return_dtype=pl.List(pl.String),
    )


def matched_products(
    texts: pl.Series, variants_by_product: Mapping[str, Sequence[str]]
) -> pl.Series:
    """For each text, the sorted products whose variants occur in it as whole words.

    Unicode word boundaries put the regex engine on its slow path (about 100x slower on these
    abstracts), so the whole-word regex runs only on the texts where the same regex without
    boundaries matched: a superset of its matches, so the result is the same.
    """
    columns, hits = [], []
    for number, (product, variants) in enumerate(sorted(variants_by_product.items())):
        loose = texts.str.contains(product_pattern(variants, whole_words=False))
        rows = loose.fill_null(False).arg_true()
        exact = texts.gather(rows).str.contains(product_pattern(variants)).fill_null(False)
        columns.append(
            pl.Series(f"_{number}", [False] * texts.len(), pl.Boolean).scatter(rows, exact)
        )
        hits.append(pl.when(pl.col(f"_{number}")).then(pl.lit(product)))
    found = pl.DataFrame(columns).select(pl.concat_list(hits).list.drop_nulls())
    return found.to_series().alias(texts.name)
