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
from tasks.core.ledger import ledger_frame, ledger_row
from tasks.core.passages import split_sentences
from tasks.core.pricing import call_cost
from tasks.core.text_window import head_tail_window
from tasks.schemas import LEDGER
from tasks.services.runtime import Runtime
from tasks.services.supervisor import admit, settle, throttle

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


@dataclass(frozen=True)
class Batch:
    """Who pays for an embedding call and where its ledger row goes."""

    workflow: str
    run_id: str
    chunk: str
    now: datetime
    pattern: str


def texts_of(frame: pl.DataFrame) -> list[str]:
    return (frame["title"].fill_null("") + ". " + frame["abstract"].fill_null("")).to_list()


def screen_key(runtime: Runtime) -> str:
    """The name stored vectors are kept under: the model, its token limit and text window.

    A vector made under one setting is never reused under another (the cache is keyed by
    content and this name), so changing ``scan.embed_max_tokens`` or ``scan.embed_window``
    embeds again rather than mixing vectors of two settings.
    """
    window = runtime.settings.scan.embed_window
    name = runtime.screen_embedder.name
    return name if window == "full" else f"{name}+{window}"


def screen_texts(runtime: Runtime, frame: pl.DataFrame) -> list[str]:
    """What the screening embedder reads of each row, per ``scan.embed_window``.

    ``head-tail`` keeps a text that fits the limit as it is; a longer one becomes its title and
    the first and last sentences of its abstract that fit (``tasks/core/text_window.py``).
    """
    return screen_texts_and_tokens(runtime, frame)[0]


def screen_texts_and_tokens(runtime: Runtime, frame: pl.DataFrame) -> tuple[list[str], list[int]]:
    """``screen_texts`` and the tokens the model reads of each (the billing unit), in row order.

    Why one function: the scan needs both, and the tokenizer is most of a window's cost. Every
    text is tokenized once; under ``head-tail`` the titles and sentences of the texts that do
    not fit are counted in one batched call (not one call per text), and only the windows made
    of them are counted again.
    """
    model = runtime.screen_embedder
    texts = texts_of(frame)
    tokens = model.count_tokens(texts)
    if runtime.settings.scan.embed_window == "full" or not texts:
        return texts, tokens
    limit = model.max_tokens
    long = [i for i, count in enumerate(tokens) if count >= limit]
    if not long:
        return texts, tokens
    titles = frame["title"].fill_null("").to_list()
    abstracts = frame["abstract"].fill_null("").to_list()
    parts = [[titles[i], *split_sentences(abstracts[i])] for i in long]
    counts = iter(n - 2 for n in model.count_tokens([p for pieces in parts for p in pieces]))
    for i, pieces in zip(long, parts, strict=True):
        title, *sentences = pieces
        title_tokens, sentence_tokens = next(counts), [next(counts) for _ in sentences]
        texts[i] = head_tail_window(title, sentences, sentence_tokens, limit - 3 - title_tokens)
    for i, count in zip(long, model.count_tokens([texts[i] for i in long]), strict=True):
        tokens[i] = count
    return texts, tokens


def embed_paying_once(runtime: Runtime, frame: pl.DataFrame, batch: Batch) -> Embedded:
    """Vectors for ``frame`` (item_id, content_hash, title, abstract, pub_date, products).

    The supervisor admits the call first: its estimate is reserved against the workflow's
    budget (and settled after), and it waits for a throttle slot. When the budget is spent and
    policy does not let the work run over it, nothing is embedded and the missing items come
    back as ``deferred``: the caller leaves them undecided for the next window.
    """
    catalog = runtime.rules.models
    model_key = catalog.tasks[SCREEN_TASK]
    per_token = catalog.models[model_key].usd_per_1k_input_tokens / 1000
    read, counts = screen_texts_and_tokens(runtime, frame)
    texts = pl.Series("text", read, dtype=pl.String)
    tokens = pl.Series("tokens", counts, dtype=pl.Int64)
    vectors = runtime.vectors.cached_vectors(
        frame["item_id"].to_list(), frame["content_hash"].to_list(), screen_key(runtime)
    )
    missing = frame.with_columns(tokens, texts).filter(~pl.col("item_id").is_in(list(vectors)))
    if not missing.height:
        return Embedded(vectors, tokens, 0, 0.0, per_token, model_key)
    paid = _embed_missing(runtime, missing, batch, model_key)
    if paid is None:
        deferred = tuple(missing["item_id"].to_list())
        return Embedded(vectors, tokens, 0, 0.0, per_token, model_key, deferred)
    vectors.update(zip(missing["item_id"].to_list(), paid[0], strict=True))
    return Embedded(vectors, tokens, missing.height, paid[1], per_token, model_key)


def _embed_missing(
    runtime: Runtime, missing: pl.DataFrame, batch: Batch, model_key: str
) -> tuple[np.ndarray, float] | None:
    """Admit, book the ledger row, embed and store ``missing``; None when the budget refuses."""
    price, model = runtime.rules.models.models[model_key], runtime.screen_embedder
    paid_tokens = int(missing["tokens"].sum())
    cost = call_cost(price, input_tokens=paid_tokens)
    urgent = "route" in missing.columns and bool((missing["route"] == "hot").any())
    ticket = admit(runtime, batch.workflow, cost, urgent=urgent, now=batch.now)
    if not ticket.admission.runs:
        return None
    throttle(runtime, batch.workflow)
    keys = (missing["item_id"] + ":" + missing["content_hash"]).to_list()
    row = ledger_row(
        call_id=stable_id([*keys, model_key], "call"),
        workflow=batch.workflow,
        run_id=batch.run_id,
        chunk_id=batch.chunk,
        task=SCREEN_TASK,
        model=model_key,
        backend=price.backend,
        pattern=batch.pattern,
        n_items=missing.height,
        input_tokens=paid_tokens,
        cost_usd=cost,
        now=batch.now,
    )
    runtime.lake.append_new(
        "ledger",
        ledger_frame([row]),
        LEDGER,
        keys=["call_id"],
        partition_by="day",
        stem=batch.chunk,
    )
    batch_size = runtime.settings.scan.embed_batch_size
    fresh = model.embed(missing["text"].to_list(), batch_size=batch_size)
    runtime.vectors.upsert(missing.rename({"item_id": "id"}), fresh, screen_key(runtime))
    settle(runtime, ticket, cost, now=batch.now)
    return fresh, cost


def matrix(embedded: Embedded, item_ids: list[str]) -> np.ndarray:
    """The vectors of ``item_ids`` as rows, in that order."""
    if not item_ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([embedded.vectors[i] for i in item_ids])
