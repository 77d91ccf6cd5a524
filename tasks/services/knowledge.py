"""The Knowledge layer (RAG): index, materialised summaries, and `ask` through the cache tiers.

Indexing chunks abstracts and reference text (dictionary identity, FAERS sections) into
LanceDB; a refresh publishes a new index version, which drops cache entries of any other.
Asking goes through the tiers, cheapest first: hot (in process) -> warm (Parquet) ->
materialised summary -> semantic (LanceDB, strict bound + same drug/reaction entities) ->
retrieval + composer. Cache retrieval results and summaries, never a safety judgement
(``tasks/policy/cache_admission.py``). Every answer's cost goes to the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from tasks.core.addressing import Topic, about_reaction, names_any_drug, refusal_text
from tasks.core.answer_quality import answer_row
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
from tasks.core.grounding import GroundingBounds
from tasks.core.intake import with_derived_fields
from tasks.core.knowledge import (
    Answer,
    Composed,
    Composer,
    ExtractiveComposer,
    literature_summaries,
    reference_documents,
    signal_summaries,
)
from tasks.core.ledger import ledger_frame, ledger_row
from tasks.core.passages import chunk_documents, split_sentences
from tasks.core.pricing import CACHE_MODEL, call_cost
from tasks.core.signals import disproportionality
from tasks.errors import ConfigError, PolicyDenied
from tasks.io import entities, faers
from tasks.io.knowledge import ABSTRACT_CHUNKS, CHUNK_TABLES, REFERENCE_CHUNKS, KnowledgeStore
from tasks.io.warm_cache import WarmCache
from tasks.policy.cache_admission import decide
from tasks.schemas import ANSWER_GROUNDING, CACHE_EVENT, LEDGER, PRODUCT_SUMMARY
from tasks.services.composer import ModelComposer, model_composer
from tasks.services.intake import load_citations, source_files
from tasks.services.runtime import Runtime, utcnow

WORKFLOW = "knowledge"
HOT_ENTRIES = 10_000  # in-process tier bound; the oldest entry leaves first
SUMMARIES = "summaries/product_knowledge"
TOPIC_POOL = 4  # chunks retrieved per answer slot when the question names a drug or reaction
ANSWERS = "answer_grounding"  # one row per answer served: the grounded-answer rate
QUERY_TASK, ANSWER_TASK = "knowledge-query", "knowledge-answer"
ANSWER_LLM_TASK = "knowledge-answer-llm"


# --- indexing ---------------------------------------------------------------------------------


def faers_signal_columns() -> dict[str, list[Any]]:
    """PRR / ROR per FAERS pair as columns of plain values (the shipped tables)."""
    return disproportionality(faers.read_counts()).to_dict(as_series=False)


@dataclass(frozen=True)
class IndexResult:
    table: str
    sources: int
    chunks: int
    inserted: int


def embed_and_sync(runtime: Runtime, table: str, documents: pl.DataFrame) -> IndexResult:
    """Chunk ``documents``, embed only chunks not yet stored, and make the table match."""
    knowledge = runtime.settings.knowledge
    chunks = chunk_documents(
        documents,
        max_chars=knowledge.chunk_max_chars,
        overlap=knowledge.chunk_overlap_sentences,
    )
    store, model = runtime.knowledge, runtime.embedder
    known = store.chunk_ids(table, chunks["source_id"].unique().to_list())
    fresh = chunks.filter(~pl.col("chunk_id").is_in(list(known)))
    vectors = np.zeros((chunks.height, model.dimension), dtype=np.float32)
    if fresh.height:
        mask = ~chunks["chunk_id"].is_in(list(known)).to_numpy()
        batch_size = runtime.settings.scan.embed_batch_size
        vectors[mask] = model.embed(fresh["text"].to_list(), batch_size=batch_size)
    inserted = store.sync_chunks(table, chunks, vectors, model.name)
    return IndexResult(table, documents["source_id"].n_unique(), chunks.height, inserted)


def index_abstracts(runtime: Runtime, sources: Sequence[str] | None = None) -> IndexResult:
    """Chunks of every abstract the nightly scan found about a watched product."""
    decided = runtime.lake.read("decisions", columns=["item_id", "products"])
    in_scope = (
        decided.filter(pl.col("products").list.len() > 0).unique("item_id")
        if not decided.is_empty()
        else pl.DataFrame(schema={"item_id": pl.String, "products": pl.List(pl.String)})
    )
    if in_scope.is_empty():
        return IndexResult(ABSTRACT_CHUNKS, 0, 0, 0)
    citations, _ = load_citations(source_files(sources), runtime.settings.cache_dir)
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
    return embed_and_sync(runtime, ABSTRACT_CHUNKS, docs)


def index_reference(runtime: Runtime, signals: pl.DataFrame) -> IndexResult:
    """Dictionary identity + FAERS sections for every watched product."""
    records = {p: r for p in runtime.rules.watched if (r := entities.drug_record(p)) is not None}
    return embed_and_sync(runtime, REFERENCE_CHUNKS, reference_documents(records, signals))


def publish_index_version(runtime: Runtime, now: datetime) -> str:
    """New manifest version; cache entries of any other version are dropped (invalidation)."""
    store = runtime.knowledge
    version = store.write_manifest(now)
    store.cache_drop_other_versions(version)
    WarmCache(runtime.settings.warm_cache_root).drop_other_versions(version)
    for table in CHUNK_TABLES:
        store.ensure_ann_index(table, runtime.settings.knowledge.ann_min_rows)
    return version


def materialise_summaries(
    runtime: Runtime, signals: pl.DataFrame, index_version: str, now: datetime
) -> int:
    """Per-product 'latest ADE literature' and 'signal digest' rows, replaced on each refresh."""
    products, lake, top_n = runtime.rules.watched, runtime.lake, runtime.settings.scan.digest_top_n
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
            literature_summaries(decisions, titles.unique("item_id"), products, top_n=top_n),
            signal_summaries(signals, products, top_n=top_n),
        ]
    ).with_columns(pl.lit(index_version).alias("index_version"), pl.lit(now).alias("refreshed_at"))
    lake.write(SUMMARIES, rows, PRODUCT_SUMMARY, partition_by="kind", stem="summaries")
    return rows.height


# --- ask --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    answer: Answer
    tier: str  # hot | warm | summary | semantic | miss
    key: str
    query_class: str
    cost_usd: float
    cost_saved_usd: float
    projected_llm_miss_usd: float


@dataclass(frozen=True)
class Question:
    """One question as the tiers see it: its exact key, class, index version and entities."""

    text: str
    product: str | None
    key: str
    cls: QueryClass
    version: str
    found: Entities | None = None


class CacheTiers:
    """The exact tiers (hot in process, warm Parquet) and the semantic tier (LanceDB)."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.store: KnowledgeStore = runtime.knowledge
        self.warm = WarmCache(runtime.settings.warm_cache_root)
        self.hot: dict[str, dict[str, Any]] = {}

    def exact(self, q: Question, now: datetime) -> tuple[str, dict[str, Any]] | None:
        """(tier, entry) of a servable entry under ``q.key``: hot first, then warm."""
        entry = self.hot.get(q.key)
        if entry and servable(entry, now):
            return "hot", entry
        entry = self.warm.get(q.key, q.version)
        if entry and servable(entry, now):
            self.hot[q.key] = entry
            return "warm", entry
        return None

    def semantic(
        self, q: Question, vector: np.ndarray, now: datetime
    ) -> tuple[Answer, float] | None:
        """The nearest intact cached answer within the bound and of the same entities."""
        knowledge = self.runtime.settings.knowledge
        near = self.store.cache_nearest(
            vector, k=knowledge.semantic_candidates, index_version=q.version
        )
        if near.is_empty():
            return None
        rows = {r["key"]: r for r in near.iter_rows(named=True)}
        candidates = [_candidate(r) for r in rows.values()]
        while candidates:
            best = semantic_match(
                candidates,
                entities=q.found or Entities(frozenset(), frozenset()),
                product=q.product,
                index_version=q.version,
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

    def remember(
        self, q: Question, answer: Answer, cost: float, now: datetime, vector: np.ndarray | None
    ) -> None:
        """Admit ``answer`` (policy) to the hot and warm tiers; to the semantic one if embedded."""
        admission = decide(answer.kind)
        if not admission.allowed:
            raise PolicyDenied(admission.code, admission.reason)
        payload = answer.to_json()
        entry = {
            "key": q.key,
            "index_version": q.version,
            "query_class": q.cls.name,
            "kind": answer.kind,
            "payload": payload,
            "checksum": checksum(payload),
            "ttl_seconds": q.cls.ttl_seconds,
            "cost_usd": cost,
            "created_at": now,
        }
        self.hot[q.key] = entry
        while len(self.hot) > HOT_ENTRIES:
            self.hot.pop(next(iter(self.hot)))
        self.warm.put(entry)
        if vector is not None:
            found = q.found or Entities(frozenset(), frozenset())
            semantic = {
                **entry,
                "query": q.text,
                "product": q.product or "",
                "drugs": sorted(found.drugs),
                "reactions": sorted(found.reactions),
            }
            self.store.cache_put(semantic, vector)


def servable(entry: dict[str, Any], now: datetime) -> bool:
    """Intact (checksum) and fresh (its class's TTL)."""
    intact = is_intact(entry.get("payload"), entry.get("checksum"))
    return intact and is_fresh(entry["created_at"], int(entry["ttl_seconds"]), now)


def _candidate(row: dict[str, Any]) -> SemanticCandidate:
    return SemanticCandidate(
        key=row["key"],
        similarity=float(row["similarity"]),
        entities=Entities(frozenset(row["drugs"]), frozenset(row["reactions"])),
        product=row["product"],
        index_version=row["index_version"],
        created_at=row["created_at"],
        ttl_seconds=int(row["ttl_seconds"]),
    )


@dataclass(frozen=True)
class Served:
    """How one question was answered, before it is booked."""

    answer: Answer
    tier: str
    tokens: int = 0
    cost: float = 0.0
    saved: float = 0.0
    projected: float = 0.0
    model_key: str | None = None  # the composer's catalog key when not knowledge-answer's
    output_tokens: int = 0


@dataclass
class AskLedger:
    """Ledger and cache-event rows of a session's answers, buffered; ``flush`` writes them."""

    runtime: Runtime
    session: str
    ledger: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def record(self, q: Question, served: Served, now: datetime) -> Asked:
        catalog = self.runtime.rules.models
        event_id = stable_id([self.session, str(len(self.events)), q.key], "ask")
        paid, task = served.tokens > 0, ANSWER_TASK if served.tier == "miss" else QUERY_TASK
        model_key = served.model_key or catalog.tasks[task]
        task = ANSWER_LLM_TASK if served.model_key else task
        pattern = f"ask/cache-{served.tier}" if served.tier != "miss" else "ask/retrieve"
        self.ledger.append(
            ledger_row(
                call_id=stable_id([event_id], "call"),
                workflow=WORKFLOW,
                run_id=self.session,
                chunk_id=q.key,
                task=task,
                model=model_key if paid else CACHE_MODEL,
                backend=catalog.models[model_key].backend if paid else "none",
                pattern=pattern,
                n_items=1,
                input_tokens=served.tokens,
                output_tokens=served.output_tokens,
                cost_usd=served.cost,
                now=now,
            )
        )
        saved = max(served.saved - served.cost, 0.0)
        self.events.append(
            {
                "event_id": event_id,
                "key": q.key,
                "tier": served.tier,
                "query_class": q.cls.name,
                "cost_usd": served.cost,
                "cost_saved_usd": saved,
                "created_at": now,
                "day": now.date().isoformat(),
            }
        )
        self.answers.append(
            answer_row(
                event_id=event_id,
                served_by=served.tier,
                composer=served.answer.composer,
                grounded_share=served.answer.grounded_share,
                refusal=served.answer.refusal,
                query_class=q.cls.name,
                now=now,
            )
        )
        return Asked(
            served.answer, served.tier, q.key, q.cls.name, served.cost, saved, served.projected
        )

    def flush(self) -> int:
        """Write buffered ledger and cache-event rows (idempotent on their ids)."""
        if not self.ledger:
            return 0
        lake = self.runtime.lake
        stem = stable_id([e["event_id"] for e in self.events], "ask")
        lake.append_new(
            "ledger",
            ledger_frame(self.ledger),
            LEDGER,
            keys=["call_id"],
            partition_by="day",
            stem=stem,
        )
        written = lake.append_new(
            "cache_events",
            pl.DataFrame(self.events),
            CACHE_EVENT,
            keys=["event_id"],
            partition_by="day",
            stem=stem,
        )
        lake.append_new(
            ANSWERS,
            pl.DataFrame(self.answers, schema_overrides={"grounded_share": pl.Float64}),
            ANSWER_GROUNDING,
            keys=["event_id"],
            partition_by="day",
            stem=stem,
        )
        self.ledger, self.events, self.answers = [], [], []
        return written


def _about(row: dict[str, Any], topic: Topic) -> bool:
    tags = list(row.get("products") or [])
    if topic.drugs and not names_any_drug(row["text"], topic, tags):
        return False
    trees = [t for _, found, _ in entities.reaction_terms(row["text"]) for t in found]
    return about_reaction(row["text"], trees, topic)


def refusal(topic: Topic) -> Answer:
    """'The corpus has nothing about X and Y': claims nothing, so it is fully grounded."""
    return Answer(refusal_text(topic), [], "retrieval", "refusal", grounded_share=1.0, refusal=True)


def addressed(composed: Composed, topic: Topic) -> Composed:
    """The composed answer if it names an asked drug and a sentence of it is about the asked
    reaction; else the plain refusal (priced as composed: the composer ran)."""
    answer = composed.answer
    problem = "no passage answers it" if answer.refusal else off_topic(answer.text, topic)
    if topic.empty or problem is None:
        return composed
    note = "; ".join(n for n in (answer.note, problem) if n)
    plain = replace(refusal(topic), composer=answer.composer, passages=answer.passages, note=note)
    return replace(composed, answer=plain)


def off_topic(text: str, topic: Topic) -> str | None:
    """Why an answer does not address ``topic`` (entity match on the answer), or None."""
    sentences = split_sentences(text)
    if topic.drugs and not any(names_any_drug(s, topic) for s in sentences):
        return "the answer does not name the drug asked"
    if topic.asks_reaction:
        for sentence in sentences:
            trees = [t for _, found, _ in entities.reaction_terms(sentence) for t in found]
            if about_reaction(sentence, trees, topic):
                return None
        return "the answer is not about the reaction asked"
    return None


def unusable(answer: Answer, topic: Topic) -> str | None:
    """Why a model's answer says nothing usable (words for the note), or None."""
    if answer.refusal:
        return "says the passages do not answer"
    if answer.grounding.get("sentences") and not answer.grounding.get("grounded"):
        return "has no sentence the passages support"
    problem = None if topic.empty else off_topic(answer.text, topic)
    return problem.removeprefix("the answer ") if problem else None


def default_composer(runtime: Runtime) -> Composer:
    """The composer ``knowledge.composer`` names; the model one falls back to the extractive."""
    k = runtime.settings.knowledge
    bounds = GroundingBounds(
        k.grounding.min_lexical, k.grounding.min_embedding, k.grounding.max_unsupported_run
    )
    extractive = ExtractiveComposer(runtime.embedder, k.answer_sentences, bounds)
    if k.composer == "extractive":
        return extractive
    return model_composer(runtime, extractive)


class Asker:
    """Answers questions through the tiers, cheapest first, and records every answer's cost."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
        composer: Composer | None = None,
        session: str | None = None,
    ):
        self.runtime, self.clock = runtime, clock
        k = runtime.settings.knowledge
        self.tiers = CacheTiers(runtime)
        self.booked = AskLedger(runtime, session or uuid.uuid4().hex[:12])
        self.products = runtime.rules.watched
        self.classes = [QueryClass(c.name, c.ttl_seconds, tuple(c.keywords)) for c in k.classes]
        self.summary_of = {c.name: c.summary for c in k.classes}
        self.default_class = QueryClass("default", k.default_ttl_seconds)
        self.embedder = runtime.embedder
        self.composer = composer or default_composer(runtime)
        self._summaries: pl.DataFrame | None = None

    @property
    def session(self) -> str:
        return self.booked.session

    def index_version(self) -> str:
        version = self.tiers.store.index_version()
        if version is None:
            raise ConfigError(
                f"no knowledge index in {self.runtime.settings.vectors_location}: "
                "run `pharmalane index`"
            )
        return version

    def ask(self, question: str, product: str | None = None) -> Asked:
        q, now = self._question(question, product), self.clock()
        served = self._answer(q, now)
        return self.booked.record(q, served, now)

    def flush(self) -> int:
        return self.booked.flush()

    def _question(self, question: str, product: str | None) -> Question:
        version = self.index_version()
        product = product.lower() if product else None
        if product and product not in self.products:
            raise ConfigError(f"--product {product} is not a watched product: {self.products}")
        cls = classify(question, self.classes, self.default_class)
        key = exact_key(question, product=product, index_version=version)
        return Question(question, product, key, cls, version)

    def _answer(self, q: Question, now: datetime) -> Served:
        exact = self.tiers.exact(q, now)
        if exact is not None:
            tier, entry = exact
            return Served(Answer.from_json(entry["payload"]), tier, saved=float(entry["cost_usd"]))
        q = Question(q.text, q.product, q.key, q.cls, q.version, entities.extract(q.text))
        summary = self._summary(q)
        if summary is not None:
            self.tiers.remember(q, summary, 0.0, now, None)
            return Served(summary, "summary")
        return self._by_vector(q, now)

    def _by_vector(self, q: Question, now: datetime) -> Served:
        """The semantic tier, else retrieval and the composer (a miss)."""
        catalog = self.runtime.rules.models
        query_tokens = int(self.embedder.count_tokens([q.text])[0])
        query_cost = call_cost(catalog.models[catalog.tasks[QUERY_TASK]], input_tokens=query_tokens)
        vector = self.embedder.embed([q.text])[0]
        hit = self.tiers.semantic(q, vector, now)
        if hit is not None:
            answer, saved = hit  # promoted to the exact tiers under this question's key
            self.tiers.remember(q, answer, saved, now, None)
            return Served(answer, "semantic", query_tokens, query_cost, saved)
        topic = self._topic(q)
        wide = 1 if topic.empty else TOPIC_POOL  # a wider pool before the entity filter
        retrieved = self._retrieve(vector, self._scope(q, topic), widen=wide)
        passages = self._on_topic(retrieved, topic).head(self.runtime.settings.knowledge.top_k)
        if passages.is_empty() and not topic.empty:
            answer = refusal(topic)
            self.tiers.remember(q, answer, query_cost, now, vector)
            return Served(answer, "miss", query_tokens, query_cost)
        composed = self._compose(q.text, vector, passages, topic)
        answer_key = composed.model_key or catalog.tasks[ANSWER_TASK]
        cost = query_cost + call_cost(
            catalog.models[answer_key],
            input_tokens=composed.input_tokens,
            output_tokens=composed.output_tokens,
        )
        if composed.answer.fully_grounded:  # a partly grounded answer is shown, never cached
            self.tiers.remember(q, composed.answer, cost, now, vector)
        tokens = query_tokens + composed.input_tokens
        projected = self._llm_projection(q.text, passages)
        return Served(
            composed.answer,
            "miss",
            tokens,
            cost,
            projected=projected,
            model_key=composed.model_key,
            output_tokens=composed.output_tokens,
        )

    def _compose(
        self, question: str, vector: np.ndarray, passages: pl.DataFrame, topic: Topic
    ) -> Composed:
        """The composer's answer if it addresses ``topic``; a model's answer that nothing of
        survived the check, or that is off topic, gives way to the extractive answer of the
        same on-topic passages (itself checked for the topic), saying so."""
        composed = self.composer.compose(question, vector, passages)
        checked = addressed(composed, topic)
        why = unusable(composed.answer, topic)
        if (
            why is None
            or composed.model_key is None
            or not isinstance(self.composer, ModelComposer)
        ):
            return checked
        return addressed(self.composer.instead(question, vector, passages, composed, why), topic)

    def _topic(self, q: Question) -> Topic:
        """The drugs (with their names) and reactions (MeSH trees, organ words) ``q`` asks."""
        k = self.runtime.settings.knowledge
        brands = {p.name.lower(): p.brand for p in self.runtime.rules.products.products}
        found = q.found or Entities(frozenset(), frozenset())
        drugs = {
            d: entities.drug_names(d, [b] if (b := brands.get(d)) else []) for d in found.drugs
        }
        terms = [t for t in entities.reaction_terms(q.text) if t[0] not in k.generic_reactions]
        generic = [w for m, _, w in entities.reaction_terms(q.text) if m in k.generic_reactions]
        words = q.text.lower().split()
        hits = [
            (w.strip("?.,"), g)
            for w in words
            for g in k.reaction_groups.values()
            if any(w.startswith(p) for p in g.words)
        ]
        tail = generic[0] if generic else "reactions"
        return Topic(
            drugs,
            frozenset(t for _, trees, _ in terms for t in trees)
            | frozenset(t for _, g in hits for t in g.mesh_trees),
            frozenset(p for _, g in hits for p in g.words),
            tuple(w for _, _, w in terms) or tuple(f"{w} {tail}" for w, _ in hits[:1]),
        )

    def _scope(self, q: Question, topic: Topic) -> str | None:
        """The product filter: ``--product``, or the one watched product the question names."""
        watched = [d for d in topic.drugs if d in self.products]
        return q.product or (watched[0] if len(watched) == 1 else None)

    def _on_topic(self, passages: pl.DataFrame, topic: Topic) -> pl.DataFrame:
        """Chunks naming an asked drug and, if a reaction was asked, a sentence about it."""
        if topic.empty or passages.is_empty():
            return passages
        ids = [r["chunk_id"] for r in passages.iter_rows(named=True) if _about(r, topic)]
        return passages.filter(pl.col("chunk_id").is_in(ids))

    def _single_watched(self, found: Entities) -> str | None:
        watched = sorted(d for d in found.drugs if d in self.products)
        return watched[0] if len(watched) == 1 else None

    def _summary(self, q: Question) -> Answer | None:
        """The materialised summary answering ``q``'s class for its (single) product, if any."""
        kind = self.summary_of.get(q.cls.name)
        product = q.product or (self._single_watched(q.found) if q.found else None)
        if kind is None or product is None:
            return None
        if self._summaries is None:
            self._summaries = self.runtime.lake.read(SUMMARIES)
        if self._summaries.is_empty():
            return None
        rows = self._summaries.filter((pl.col("product") == product) & (pl.col("kind") == kind))
        if rows.is_empty():
            return None
        row = rows.row(0, named=True)
        text = f"{row['text']} (refreshed {row['refreshed_at']:%Y-%m-%d %H:%M} UTC)"
        return Answer(text, list(row["sources"]), "summary", f"summary:{kind}")

    def _retrieve(self, vector: np.ndarray, product: str | None, widen: int = 1) -> pl.DataFrame:
        k, store = self.runtime.settings.knowledge.top_k * widen, self.tiers.store
        frames = [
            f
            for t in CHUNK_TABLES
            if not (f := store.search(t, vector, k=k, product=product)).is_empty()
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
        catalog = self.runtime.rules.models
        price = catalog.models[catalog.tasks[ANSWER_LLM_TASK]]
        context = [question, *passages["text"].to_list()] if passages.height else [question]
        tokens = sum(len(t.split()) for t in context) * 4 // 3 + 150  # words -> tokens + prompt
        return call_cost(price, input_tokens=tokens, output_tokens=200)
