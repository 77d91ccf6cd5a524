"""Labels the reviewers gave: resolved literature items of the review inbox, for training."""

from __future__ import annotations

import polars as pl

from tasks.core.reviewer_labels import labels_of
from tasks.services import panel
from tasks.services.runtime import Runtime


def reviewer_labels(runtime: Runtime) -> pl.DataFrame:
    """``item_id, label_reviewer`` of every literature item a human resolved.

    A human's resolution only: an item the persona panel closed is a model's opinion, and
    training on it would teach the scorer what the panel already thinks.
    """
    resolved = runtime.inbox.items(status="resolved")
    return labels_of(
        (item.source_id, item.outcome or "")
        for item in resolved
        if item.kind == "literature" and item.reviewer != panel.REVIEWER
    )
