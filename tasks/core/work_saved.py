"""Work saved over sampling (WSS): the literature-screening measure of a ranking.

Screening in the order a model ranks the items, a reviewer who stops once ``recall`` of the
relevant items is found has skipped some share of the work; random order would skip
``1 - recall`` of it. WSS@R is the difference (Cohen et al. 2006; ASReview reports WSS@95).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wss_at(scores: Sequence[float], relevant: Sequence[bool], recall: float = 0.95) -> float | None:
    """WSS at ``recall`` of ranking by ``scores`` (highest first); None without a relevant item.

    Ties are broken against the model (relevant items last among equal scores), so a model
    that scores everything alike saves nothing.
    """
    truth = np.asarray(relevant, dtype=bool)
    if not truth.any():
        return None
    order = np.lexsort((truth, -np.asarray(scores, dtype=np.float64)))
    found = np.cumsum(truth[order])
    needed = math.ceil(recall * int(truth.sum()) - 1e-9)
    screened = int(np.searchsorted(found, needed) + 1)
    return (len(truth) - screened) / len(truth) - (1 - recall)
