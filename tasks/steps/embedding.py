"""Embedding that pays once: reuse stored vectors, charge the ledger before the model runs.

Shared by the scan, training and evaluation, so every embedding anywhere is priced the same
way and no text is ever embedded (or charged) twice for the same content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from tasks.core.batches import stable_id
from tasks.core.pricing import call_cost
from tasks.rules import load_models
from tasks.schemas import LEDGER
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.supervisor import admit, settle, throttle

SCREEN_TASK = "ade-screen"


@dataclass(frozen=True)
class Embedded:
    """Vectors for every row, and what this call paid."""

    vectors: dict[str, np.ndarray]
    tokens: pl.Series
    embedded: int
    cost_usd: float
    usd_per_token: float
    model_key: str
    deferred: tuple[str, ...] = ()


def texts_of(frame: pl.DataFrame) -> list[str]:
    return (frame["title"].fill_null("") + ". " + frame["abstract"].fill_null("")).to_list()


def embed_paying_once(
    frame: pl.DataFrame,
    settings: Settings,
    *,
    workflow: str,
    run_id: str,
    chunk: str,
    now: datetime,
    pattern: str,
) -> Embedded:
    """Vectors for ``frame`` (item_id, content_hash, title, abstract, pub_date, products).

    The supervisor admits the call first: its estimate is reserved against the workflow's
    budget (and settled after), and it waits for a throttle slot. When the budget is spent and
    policy does not let the work run over it, nothing is embedded and the missing items come
    back as ``deferred``: the caller leaves them undecided for the next window.
    """
    store, model = resources.vectors(settings), resources.embedder()
    catalog = load_models(settings)
    model_key = catalog.tasks[SCREEN_TASK]
    price = catalog.models[model_key]
    tokens = pl.Series("tokens", model.count_tokens(texts_of(frame)), dtype=pl.Int64)
    vectors = store.cached_vectors(
        frame["item_id"].to_list(), frame["content_hash"].to_list(), model.name
    )
    missing = frame.with_columns(tokens).filter(~pl.col("item_id").is_in(list(vectors)))
    cost = 0.0
    if missing.height:
        paid_tokens = int(missing["tokens"].sum())
        cost = call_cost(price, input_tokens=paid_tokens)
        urgent = "route" in missing.columns and bool((missing["route"] == "hot").any())
        ticket = admit(settings, workflow, cost, urgent=urgent, now=now)
        if not ticket.admission.runs:
            usd_per_token = price.usd_per_1k_input_tokens / 1000
            deferred = tuple(missing["item_id"].to_list())
            return Embedded(vectors, tokens, 0, 0.0, usd_per_token, model_key, deferred)
        throttle(settings, workflow)
        keys = (missing["item_id"] + ":" + missing["content_hash"]).to_list()
        row = {
            "call_id": stable_id([*keys, model_key], "call"),
            "workflow": workflow,
            "run_id": run_id,
            "chunk_id": chunk,
            "task": SCREEN_TASK,
            "model": model_key,
            "backend": price.backend,
            "pattern": pattern,
            "n_items": missing.height,
            "input_tokens": paid_tokens,
            "output_tokens": 0,
            "gpu_seconds": 0.0,
            "cost_usd": cost,
            "created_at": now,
            "day": now.date().isoformat(),
        }
        resources.lake(settings).append_new(
            "ledger", pl.DataFrame([row]), LEDGER, keys=["call_id"], partition_by="day", stem=chunk
        )
        fresh = model.embed(texts_of(missing), batch_size=settings.scan.embed_batch_size)
        store.upsert(missing.rename({"item_id": "id"}), fresh, model.name)
        vectors.update(zip(missing["item_id"].to_list(), fresh, strict=True))
        settle(settings, ticket, cost, now=now)
    return Embedded(
        vectors, tokens, missing.height, cost, price.usd_per_1k_input_tokens / 1000, model_key
    )


def matrix(embedded: Embedded, item_ids: list[str]) -> np.ndarray:
    if not item_ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([embedded.vectors[i] for i in item_ids])
