"""Cache keys, freshness and the semantic-hit rule of the knowledge cache. Pure: no clock, no I/O.

Three tiers share one key: hot (in process), warm (Parquet) and the semantic tier (LanceDB
query embeddings). The exact key covers the normalised query, the filters and the index
version, so a re-index changes every key and nothing computed on the old index is served.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

_NON_WORD = re.compile(r"[^\w\s-]+")


def normalise_query(query: str) -> str:
    """Lower case, no punctuation, single spaces: 'Does X cause Y?' == 'does x cause y'."""
    return " ".join(_NON_WORD.sub(" ", query.lower()).split())


def exact_key(query: str, *, product: str | None, index_version: str) -> str:
    """The exact-cache key: normalised query + filters + index version."""
    material = json.dumps(
        {"q": normalise_query(query), "product": (product or "").lower(), "index": index_version},
        sort_keys=True,
    )
    return "q-" + hashlib.sha256(material.encode()).hexdigest()[:32]


def checksum(payload: str) -> str:
    """sha256 of a cache payload; an entry whose payload no longer matches is corrupt."""
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def is_intact(payload: str | None, stored_checksum: str | None) -> bool:
    if payload is None or stored_checksum is None:
        return False
    return checksum(payload) == stored_checksum


@dataclass(frozen=True)
class QueryClass:
    """A class of questions with its own time to live."""

    name: str
    ttl_seconds: int
    keywords: tuple[str, ...] = ()


def classify(query: str, classes: Sequence[QueryClass], default: QueryClass) -> QueryClass:
    """The first class (declared order) with a keyword in the normalised query, else ``default``."""
    words = f" {normalise_query(query)} "
    for cls in classes:
        if any(f" {k} " in words for k in cls.keywords):
            return cls
    return default


def is_fresh(created_at: datetime, ttl_seconds: int, now: datetime) -> bool:
    """An entry is served only while ``now`` is before ``created_at + ttl``."""
    return now < created_at + timedelta(seconds=ttl_seconds)


@dataclass(frozen=True)
class Entities:
    """What a question is about: canonical drug names and MeSH reaction concepts."""

    drugs: frozenset[str]
    reactions: frozenset[str]


@dataclass(frozen=True)
class SemanticCandidate:
    key: str
    similarity: float
    entities: Entities
    product: str
    index_version: str
    created_at: datetime
    ttl_seconds: int


def semantic_match(
    candidates: Sequence[SemanticCandidate],
    *,
    entities: Entities,
    product: str | None,
    index_version: str,
    bound: float,
    now: datetime,
) -> SemanticCandidate | None:
    """The most similar candidate that may answer this question, or None.

    Similarity alone cannot tell 'propranolol and bradycardia' from 'metoprolol and bradycardia'
    (MiniLM puts them close), so a candidate must also name exactly the same drugs and reactions,
    carry the same product filter and index version, be fresh, and clear the cosine ``bound``.
    """
    wanted_product = (product or "").lower()
    eligible = [
        c
        for c in candidates
        if c.similarity >= bound
        and c.entities == entities
        and c.product == wanted_product
        and c.index_version == index_version
        and is_fresh(c.created_at, c.ttl_seconds, now)
    ]
    return max(eligible, key=lambda c: c.similarity, default=None)
