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


def product_pattern(variants: Sequence[str]) -> str:
    """A case-insensitive whole-word regex matching any of ``variants``."""
    kept = sorted({v.strip().lower() for v in variants if len(v.strip()) >= MIN_VARIANT_LENGTH})
    if not kept:
        raise ValueError("no usable variants: every variant is shorter than 4 characters")
    alternatives = "|".join(re.escape(v) for v in sorted(kept, key=len, reverse=True))
    return rf"(?i)\b(?:{alternatives})\b"


def match_products(text: pl.Expr, variants_by_product: Mapping[str, Sequence[str]]) -> pl.Expr:
    """A sorted list of the products whose variants occur in ``text`` (empty list when none)."""
    hits = [
        pl.when(text.str.contains(product_pattern(variants))).then(pl.lit(product))
        for product, variants in sorted(variants_by_product.items())
    ]
    if not hits:
        return pl.lit([], dtype=pl.List(pl.String))
    return pl.concat_list(hits).list.drop_nulls()
