"""Labels from the reviewers: a literature resolution beside (and above) the MeSH label.

The bundled label (``label_ade``) is what MEDLINE indexers tagged; a reviewer who resolved the
item in the inbox read the abstract for this purpose, so for that item the reviewer's word wins.
Reviewer-labelled items outside the calibration split are all trained on (they are the few
labels that cost a human's time); the calibration split keeps its role, with the reviewer's
label where there is one. Pure: frames in, frames out.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from tasks.core.training import balanced_sample

LITERATURE_LABELS = {"confirmed_icsr": True, "not_icsr": False}
REVIEWER, MESH = "reviewer", "mesh"


def labels_of(resolutions: Iterable[tuple[str, str]]) -> pl.DataFrame:
    """``item_id, label_reviewer`` from ``(lake item id, outcome)`` of literature resolutions.

    Outcomes that are not a case decision (``withdrawn``) give no label.
    """
    rows = [(i, LITERATURE_LABELS[o]) for i, o in resolutions if o in LITERATURE_LABELS]
    return pl.DataFrame(
        rows, schema={"item_id": pl.String, "label_reviewer": pl.Boolean}, orient="row"
    ).unique("item_id", keep="last")


def with_reviewer_labels(rows: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with ``label_ade`` replaced by the reviewer's where one resolved the item.

    Adds ``label_source``: ``reviewer`` or ``mesh``.
    """
    joined = rows.join(labels, on="item_id", how="left")
    by_reviewer = pl.col("label_reviewer").is_not_null()
    return joined.with_columns(
        pl.when(by_reviewer)
        .then(pl.col("label_reviewer"))
        .otherwise(pl.col("label_ade"))
        .alias("label_ade"),
        pl.when(by_reviewer).then(pl.lit(REVIEWER)).otherwise(pl.lit(MESH)).alias("label_source"),
    ).drop("label_reviewer")


def training_rows(
    labelled: pl.DataFrame, *, negatives_per_positive: int, seed: int
) -> pl.DataFrame:
    """The MeSH-labelled train split, balanced, and every reviewer-labelled non-calibration row.

    Args:
        labelled: rows from ``with_reviewer_labels`` (``split``, ``label_ade``, ``label_source``).
    """
    mesh_train = labelled.filter((pl.col("split") == "train") & (pl.col("label_source") == MESH))
    reviewed = labelled.filter(
        (pl.col("split") != "calibration") & (pl.col("label_source") == REVIEWER)
    )
    sampled = balanced_sample(mesh_train, negatives_per_positive=negatives_per_positive, seed=seed)
    return pl.concat([sampled, reviewed], how="vertical_relaxed").sort("item_id")


def label_counts(frame: pl.DataFrame) -> dict[str, int]:
    """How many rows of ``frame`` carry each label source (both keys always present)."""
    counts = dict(frame.group_by("label_source").len().iter_rows())
    return {REVIEWER: int(counts.get(REVIEWER, 0)), MESH: int(counts.get(MESH, 0))}
