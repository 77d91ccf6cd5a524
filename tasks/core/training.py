"""Choosing training rows. Pure: the seed is passed in."""

from __future__ import annotations

import polars as pl


def balanced_sample(frame: pl.DataFrame, *, negatives_per_positive: int, seed: int) -> pl.DataFrame:
    """All positives of ``frame`` and a seeded sample of its negatives.

    Embedding is the cost of training; the rare positives carry the signal, so every one is
    kept and negatives are sampled. Calibration later corrects the prior on the full split.
    """
    positives = frame.filter(pl.col("label_ade"))
    negatives = frame.filter(~pl.col("label_ade")).sort("item_id")
    wanted = min(negatives.height, positives.height * negatives_per_positive)
    sampled = negatives.sample(n=wanted, seed=seed, shuffle=False)
    return pl.concat([positives, sampled]).sort("item_id")
