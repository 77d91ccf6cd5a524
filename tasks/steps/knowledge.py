"""Knowledge-layer steps: index (abstract + reference chunks), summaries, and `ask` with its cache.

Prefect tasks where the work is a batch (indexing, signals, summaries); `ask` itself is plain
Python (an interactive answer from cache takes milliseconds, a Prefect task run far longer).
The FAERS signal table uses a Prefect cache policy keyed on the shipped data's hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.batches import stable_id
from tasks.core.cache_keys import (
    Entities,
    QueryClass,
    SemanticCandidate,
    checksum,
    classify,
    exact_key,
    is_fresh,
    is_intact,
    semantic_match,
)
from tasks.core.intake import with_derived_fields
from tasks.core.knowledge import (
    Answer,
    Composer,
    ExtractiveComposer,
    literature_summaries,
    reference_documents,
    signal_summaries,
)
from tasks.core.passages import chunk_documents
from tasks.core.pricing import call_cost
from tasks.core.signals import disproportionality
from tasks.errors import ConfigError, PolicyDenied
from tasks.io import entities, faers
from tasks.io.knowledge import ABSTRACT_CHUNKS, CHUNK_TABLES, REFERENCE_CHUNKS, KnowledgeStore
from tasks.io.warm_cache import WarmCache
from tasks.policy.cache_admission import decide
from tasks.rules import ModelsFile, load_models, load_products
from tasks.schemas import CACHE_EVENT, LEDGER, PRODUCT_SUMMARY
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.retry import retry_transient_only
from tasks.steps.scan import load_citations, source_files

WORKFLOW = "knowledge"
HOT_ENTRIES = 10_000  # in-process tier bound; the oldest entry leaves first
SUMMARIES = "summaries/product_knowledge"
QUERY_TASK, ANSWER_TASK = "knowledge-query", "knowledge-answer"


def knowledge_store(settings: Settings) -> KnowledgeStore:
    return KnowledgeStore(settings.vectors_dir)


def watched_products(settings: Settings) -> list[str]:
    return sorted(p.name.lower() for p in load_products(settings).products)


# --- indexing ---------------------------------------------------------------------------------


def _faers_key(context: Any, parameters: dict[str, Any]) -> str:
    return f"faers-signals-{faers.table_digest()}"


@task(
    name="faers-signals",
    cache_key_fn=_faers_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
    result_serializer="json",  # columns of plain values: no pickle in the result store
)
def faers_signals() -> dict[str, list[Any]]:
    """PRR / ROR per FAERS pair as columns; cached by Prefect on the shipped tables' hash."""
    return disproportionality(faers.read_counts()).to_dict(as_series=False)


@dataclass(frozen=True)
class IndexResult:
    table: str
    sources: int
    chunks: int
    inserted: int


def _embed_and_sync(settings: Settings, table: str, documents: pl.DataFrame) -> IndexResult:
    knowledge = settings.knowledge
    chunks = chunk_documents(
        documents,
        max_chars=knowledge.chunk_max_chars,
        overlap=knowledge.chunk_overlap_sentences,
    )
    store, model = knowledge_store(settings), resources.embedder()
    known = store.chunk_ids(table, chunks["source_id"].unique().to_list())
    fresh = chunks.filter(~pl.col("chunk_id").is_in(list(known)))
    vectors = np.zeros((chunks.height, model.dimension), dtype=np.float32)
    if fresh.height:
        mask = ~chunks["chunk_id"].is_in(list(known)).to_numpy()
        vectors[mask] = model.embed(
            fresh["text"].to_list(), batch_size=settings.scan.embed_batch_size
        )
    inserted = store.sync_chunks(table, chunks, vectors, model.name)
    return IndexResult(table, documents["source_id"].n_unique(), chunks.height, inserted)


@task(
    name="index-abstracts",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def index_abstracts(settings: Settings, sources: Sequence[str] | None = None) -> IndexResult:
    """Chunks of every abstract the nightly scan found about a watched product."""
    decided = resources.lake(settings).read("decisions", columns=["item_id", "products"])
    in_scope = (
        decided.filter(pl.col("products").list.len() > 0).unique("item_id")
        if not decided.is_empty()
        else pl.DataFrame(schema={"item_id": pl.String, "products": pl.List(pl.String)})
    )
    if in_scope.is_empty():
        return IndexResult(ABSTRACT_CHUNKS, 0, 0, 0)
    citations, _ = load_citations.fn(source_files(sources), settings.cache_dir)
    docs = (
        with_derived_fields(citations)
        .unique("item_id", keep="first")
        .join(in_scope, on="item_id", how="inner")
        .select(
            pl.col("item_id").alias("source_id"),
            pl.col("abstract").fill_null("").alias("text"),
            "products",
            "pub_date",
        )
        .filter(pl.col("text").str.len_chars() > 0)
    )
    return _embed_and_sync(settings, ABSTRACT_CHUNKS, docs)


@task(
    name="index-reference",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def index_reference(settings: Settings, signals: pl.DataFrame) -> IndexResult:
    """Dictionary identity + FAERS sections for every watched product."""
    records = {
        p: r for p in watched_products(settings) if (r := entities.drug_record(p)) is not None
    }
    return _embed_and_sync(settings, REFERENCE_CHUNKS, reference_documents(records, signals))


@task(name="publish-index-version", cache_policy=NO_CACHE)
def publish_index_version(settings: Settings, now: datetime) -> str:
    """New manifest version; cache entries of any other version are dropped (invalidation)."""
    store = knowledge_store(settings)
    version = store.write_manifest(now)
    store.cache_drop_other_versions(version)
    WarmCache(settings.lake_dir).drop_other_versions(version)
    for table in CHUNK_TABLES:
        store.ensure_ann_index(table, settings.knowledge.ann_min_rows)
    return version


@task(
    name="materialise-summaries",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def materialise_summaries(
    settings: Settings,
    signals: pl.DataFrame,
    index_version: str,
    now: datetime,
    sources: Sequence[str] | None = None,
) -> int:
    """Per-product 'latest ADE literature' and 'signal digest' rows, replaced on each refresh."""
    products = watched_products(settings)
    lake = resources.lake(settings)
    decisions = lake.read(
        "decisions", columns=["item_id", "products", "decision", "pub_date", "probability"]
    )
    if decisions.is_empty():
        decisions = pl.DataFrame(
            schema={
                "item_id": pl.String,
                "products": pl.List(pl.String),
                "decision": pl.String,
                "pub_date": pl.Date,
                "probability": pl.Float64,
            }
        )
    titles = lake.read("escalations", columns=["item_id", "title"])
    if titles.is_empty():
        titles = pl.DataFrame(schema={"item_id": pl.String, "title": pl.String})
    rows = pl.concat(
        [
            literature_summaries(
                decisions, titles.unique("item_id"), products, top_n=settings.scan.digest_top_n
            ),
            signal_summaries(signals, products, top_n=settings.scan.digest_top_n),
        ]
    ).with_columns(pl.lit(index_version).alias("index_version"), pl.lit(now).alias("refreshed_at"))
    lake.write(SUMMARIES, rows, PRODUCT_SUMMARY, partition_by="kind", stem="summaries")
    return rows.height


# --- ask --------------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Asked:
    answer: Answer
    tier: str  # hot | warm | summary | semantic | miss
    key: str
    query_class: str
    cost_usd: float
    cost_saved_usd: float
    projected_llm_miss_usd: float


@dataclass
class Asker:
    """Answers questions through the tiers, cheapest first, and records every answer's cost.

    hot (in process) -> warm (Parquet) -> materialised summary -> semantic (LanceDB, strict
    bound + same drug/reaction entities) -> retrieval + composer. Rows for the ledger and the
    cache-event dataset are buffered; ``flush`` writes them in one go.
    """

    settings: Settings
    clock: Callable[[], datetime] = utcnow
    composer: Composer | None = None
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _hot: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ledger: list[dict[str, Any]] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = knowledge_store(self.settings)
        self.warm = WarmCache(self.settings.lake_dir)
        self.catalog: ModelsFile = load_models(self.settings)
        self.products = watched_products(self.settings)
        k = self.settings.knowledge
        self.classes = [QueryClass(c.name, c.ttl_seconds, tuple(c.keywords)) for c in k.classes]
        self.summary_of = {c.name: c.summary for c in k.classes}
        self.default_class = QueryClass("default", k.default_ttl_seconds)
        self.embedder = resources.embedder()
        if self.composer is None:
            self.composer = ExtractiveComposer(self.embedder, k.answer_sentences)
        self._summaries: pl.DataFrame | None = None

    def index_version(self) -> str:
        version = self.store.index_version()
        if version is None:
            raise ConfigError(
                f"no knowledge index in {self.settings.vectors_dir}: run `pharmalane index`"
            )
        return version

    def ask(self, question: str, product: str | None = None) -> Asked:
        version = self.index_version()
        product = product.lower() if product else None
        if product and product not in self.products:
            raise ConfigError(f"--product {product} is not a watched product: {self.products}")
        cls = classify(question, self.classes, self.default_class)
        key = exact_key(question, product=product, index_version=version)
        now = self.clock()

        entry = self._hot.get(key)
        if entry and self._servable(entry, now):
            return self._served(entry, "hot", key, cls, now)
        entry = self.warm.get(key, version)
        if entry and self._servable(entry, now):
            self._hot[key] = entry
            return self._served(entry, "warm", key, cls, now)

        found = entities.extract(question)
        summary_product = product or self._single_watched(found)
        summary = self._summary(cls.name, summary_product)
        if summary is not None:
            self._remember(key, question, product, version, cls, summary, 0.0, now, None, found)
            return self._record(summary, "summary", key, cls, 0, 0.0, 0.0, now)

        query_price = self.catalog.models[self.catalog.tasks[QUERY_TASK]]
        query_tokens = int(self.embedder.count_tokens([question])[0])
        query_cost = call_cost(query_price, input_tokens=query_tokens)
        vector = self.embedder.embed([question])[0]
        hit = self._semantic(vector, found, product, version, now)
        if hit is not None:
            answer, saved = hit  # promoted to the exact tiers under this question's key
            self._remember(key, question, product, version, cls, answer, saved, now, None, found)
            return self._record(answer, "semantic", key, cls, query_tokens, query_cost, saved, now)

        passages = self._retrieve(vector, product)
        assert self.composer is not None
        composed = self.composer.compose(question, vector, passages)
        answer_price = self.catalog.models[self.catalog.tasks[ANSWER_TASK]]
        cost = query_cost + call_cost(
            answer_price, input_tokens=composed.input_tokens, output_tokens=composed.output_tokens
        )
        self._remember(
            key, question, product, version, cls, composed.answer, cost, now, vector, found
        )
        return self._record(
            composed.answer,
            "miss",
            key,
            cls,
            query_tokens + composed.input_tokens,
            cost,
            0.0,
            now,
            projected=self._llm_projection(question, passages),
        )

    # -- tiers -----------------------------------------------------------------------------

    def _servable(self, entry: dict[str, Any], now: datetime) -> bool:
        created = entry["created_at"]
        return is_intact(entry.get("payload"), entry.get("checksum")) and is_fresh(
            created, int(entry["ttl_seconds"]), now
        )

    def _single_watched(self, found: Entities) -> str | None:
        watched = sorted(d for d in found.drugs if d in self.products)
        return watched[0] if len(watched) == 1 else None

    def _summary(self, class_name: str, product: str | None) -> Answer | None:
        kind = self.summary_of.get(class_name)
        if kind is None or product is None:
            return None
        if self._summaries is None:
            self._summaries = resources.lake(self.settings).read(SUMMARIES)
        if self._summaries.is_empty():
            return None
        rows = self._summaries.filter((pl.col("product") == product) & (pl.col("kind") == kind))
        if rows.is_empty():
            return None
        row = rows.row(0, named=True)
        text = f"{row['text']} (refreshed {row['refreshed_at']:%Y-%m-%d %H:%M} UTC)"
        return Answer(text, list(row["sources"]), "summary", f"summary:{kind}")

    def _semantic(
        self,
        vector: np.ndarray,
        found: Entities,
        product: str | None,
        version: str,
        now: datetime,
    ) -> tuple[Answer, float] | None:
        knowledge = self.settings.knowledge
        near = self.store.cache_nearest(
            vector, k=knowledge.semantic_candidates, index_version=version
        )
        if near.is_empty():
            return None
        rows = {r["key"]: r for r in near.iter_rows(named=True)}
        candidates = [
            SemanticCandidate(
                key=r["key"],
                similarity=float(r["similarity"]),
                entities=Entities(frozenset(r["drugs"]), frozenset(r["reactions"])),
                product=r["product"],
                index_version=r["index_version"],
                created_at=r["created_at"],
                ttl_seconds=int(r["ttl_seconds"]),
            )
            for r in rows.values()
        ]
        while candidates:
            best = semantic_match(
                candidates,
                entities=found,
                product=product,
                index_version=version,
                bound=knowledge.semantic_bound,
                now=now,
            )
            if best is None:
                return None
            row = rows[best.key]
            if is_intact(row["payload"], row["checksum"]):
                return Answer.from_json(row["payload"]), float(row["cost_usd"])
            self.store.cache_delete(best.key)  # corrupt: never served, rebuilt on this miss
            candidates = [c for c in candidates if c.key != best.key]
        return None

    def _retrieve(self, vector: np.ndarray, product: str | None) -> pl.DataFrame:
        k = self.settings.knowledge.top_k
        frames = [
            f
            for t in CHUNK_TABLES
            if not (f := self.store.search(t, vector, k=k, product=product)).is_empty()
        ]
        if not frames:
            return pl.DataFrame(
                schema={
                    "chunk_id": pl.String,
                    "source_id": pl.String,
                    "section": pl.String,
                    "text": pl.String,
                    "similarity": pl.Float64,
                }
            )
        return pl.concat(frames, how="diagonal_relaxed").sort("similarity", descending=True).head(k)

    def _llm_projection(self, question: str, passages: pl.DataFrame) -> float:
        """What the LLM composer (not run here) would cost on the same context."""
        price = self.catalog.models[self.catalog.tasks["knowledge-answer-llm"]]
        context = [question, *passages["text"].to_list()] if passages.height else [question]
        tokens = sum(len(t.split()) for t in context) * 4 // 3 + 150  # words -> tokens + prompt
        return call_cost(price, input_tokens=tokens, output_tokens=200)

    def _remember(
        self,
        key: str,
        question: str,
        product: str | None,
        version: str,
        cls: QueryClass,
        answer: Answer,
        cost: float,
        now: datetime,
        vector: np.ndarray | None,
        found: Entities,
    ) -> None:
        admission = decide(answer.kind)
        if not admission.allowed:
            raise PolicyDenied(admission.code, admission.reason)
        payload = answer.to_json()
        entry = {
            "key": key,
            "index_version": version,
            "query_class": cls.name,
            "kind": answer.kind,
            "payload": payload,
            "checksum": checksum(payload),
            "ttl_seconds": cls.ttl_seconds,
            "cost_usd": cost,
            "created_at": now,
        }
        self._hot[key] = entry
        while len(self._hot) > HOT_ENTRIES:
            self._hot.pop(next(iter(self._hot)))
        self.warm.put(entry)
        if vector is not None:
            self.store.cache_put(
                {
                    **entry,
                    "query": question,
                    "product": product or "",
                    "drugs": sorted(found.drugs),
                    "reactions": sorted(found.reactions),
                },
                vector,
            )

    def _served(
        self, entry: dict[str, Any], tier: str, key: str, cls: QueryClass, now: datetime
    ) -> Asked:
        answer = Answer.from_json(entry["payload"])
        return self._record(answer, tier, key, cls, 0, 0.0, float(entry["cost_usd"]), now)

    def _record(
        self,
        answer: Answer,
        tier: str,
        key: str,
        cls: QueryClass,
        tokens: int,
        cost: float,
        saved: float,
        now: datetime,
        projected: float = 0.0,
    ) -> Asked:
        event_id = stable_id([self.session, str(len(self._events)), key], "ask")
        paid = tokens > 0
        model_key = self.catalog.tasks[ANSWER_TASK if tier == "miss" else QUERY_TASK]
        self._ledger.append(
            {
                "call_id": stable_id([event_id], "call"),
                "workflow": WORKFLOW,
                "run_id": self.session,
                "chunk_id": key,
                "task": ANSWER_TASK if tier == "miss" else QUERY_TASK,
                "model": model_key if paid else "cache",
                "backend": self.catalog.models[model_key].backend if paid else "none",
                "pattern": f"ask/cache-{tier}" if tier != "miss" else "ask/retrieve",
                "n_items": 1,
                "input_tokens": tokens,
                "output_tokens": 0,
                "gpu_seconds": 0.0,
                "cost_usd": cost,
                "created_at": now,
                "day": now.date().isoformat(),
            }
        )
        self._events.append(
            {
                "event_id": event_id,
                "key": key,
                "tier": tier,
                "query_class": cls.name,
                "cost_usd": cost,
                "cost_saved_usd": max(saved - cost, 0.0),
                "created_at": now,
                "day": now.date().isoformat(),
            }
        )
        return Asked(answer, tier, key, cls.name, cost, max(saved - cost, 0.0), projected)

    def flush(self) -> int:
        """Write buffered ledger and cache-event rows (idempotent on their ids)."""
        if not self._ledger:
            return 0
        lake = resources.lake(self.settings)
        stem = stable_id([e["event_id"] for e in self._events], "ask")
        lake.append_new(
            "ledger",
            pl.DataFrame(self._ledger),
            LEDGER,
            keys=["call_id"],
            partition_by="day",
            stem=stem,
        )
        written = lake.append_new(
            "cache_events",
            pl.DataFrame(self._events),
            CACHE_EVENT,
            keys=["event_id"],
            partition_by="day",
            stem=stem,
        )
        self._ledger, self._events = [], []
        return written
