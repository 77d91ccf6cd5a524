"""Knowledge layer, pure parts: reference documents, materialised summaries, extractive answers.

Reference text is built from what ships in packages: each watched product's DrugBank-open / MeSH
dictionary record (identity, synonyms) and its FAERS disproportionality rows. Summaries are
per-product Parquet rows with their sources and freshness. The extractive composer picks the
passage sentences closest to the question and cites each one; it never calls a language model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from tasks.core.grounding import CitedSentence, Grounding, GroundingBounds, check_grounding
from tasks.core.passages import split_sentences

REFERENCE_PREFIX = "ref"


def citation(source_id: str, section: str) -> str:
    """'pmid:123456 §results' for abstracts, 'ref:propranolol/identity §identity' for reference."""
    kind = "" if source_id.startswith(f"{REFERENCE_PREFIX}:") else "pmid:"
    return f"{kind}{source_id} §{section}"


def reference_documents(
    records: dict[str, dict[str, Any]], signals: pl.DataFrame, *, per_product: int = 15
) -> pl.DataFrame:
    """One document per (product, section): 'identity' from the dictionary, 'faers' from signals.

    Args:
        records: product -> its dictionary record (name, drugbank_id, mesh_id, synonyms, formula).
        signals: output of ``disproportionality`` (table, drug, event, reports, prr...).
        per_product: FAERS pairs listed per product, strongest lower PRR bound first.
    """
    rows: list[dict[str, Any]] = []
    for product, record in sorted(records.items()):
        synonyms = record.get("synonyms") or []
        if isinstance(synonyms, str):
            synonyms = [s.strip(" '\"") for s in synonyms.strip("[]").split(",") if s.strip()]
        ids = ", ".join(
            f"{label} {record[key]}"
            for key, label in (("drugbank_id", "DrugBank"), ("mesh_id", "MeSH"))
            if record.get(key)
        )
        text = f"{record.get('name', product)} ({ids or 'no registry id'})."
        if synonyms:
            text += f" Also known as: {', '.join(sorted(set(synonyms))[:25])}."
        if record.get("formula"):
            text += f" Molecular formula {record['formula']}."
        rows.append(_doc(product, "identity", text))
        mine = signals.filter(pl.col("drug") == product) if signals.height else signals
        if mine.height:
            top = mine.sort("prr_lower", descending=True, nulls_last=True).head(per_product)
            sentences = [_signal_sentence(product, r) for r in top.iter_rows(named=True)]
            rows.append(_doc(product, "faers", " ".join(sentences)))
    return pl.DataFrame(
        rows,
        schema={
            "source_id": pl.String,
            "section": pl.String,
            "text": pl.String,
            "products": pl.List(pl.String),
            "pub_date": pl.Date,
        },
    )


def _doc(product: str, section: str, text: str) -> dict[str, Any]:
    return {
        "source_id": f"{REFERENCE_PREFIX}:{product}/{section}",
        "section": section,
        "text": text,
        "products": [product],
        "pub_date": None,
    }


def two_decimals(value: float | None) -> str:
    """A ratio or bound as shown in sentences: two decimals, or n/a when unknown."""
    return "n/a" if value is None else f"{value:.2f}"


def _signal_sentence(product: str, row: dict[str, Any]) -> str:
    flag = "a disproportionality signal" if row["signal"] else "no signal"
    return (
        f"In FAERS extract {row['table']}, {product} with {row['event']}: {row['reports']} "
        f"reports, PRR {two_decimals(row['prr'])} "
        f"(95% CI {two_decimals(row['prr_lower'])}-{two_decimals(row['prr_upper'])}), "
        f"ROR {two_decimals(row['ror'])} "
        f"(95% CI {two_decimals(row['ror_lower'])}-{two_decimals(row['ror_upper'])}), {flag}."
    )


def literature_summaries(
    decisions: pl.DataFrame, titles: pl.DataFrame, products: Sequence[str], *, top_n: int
) -> pl.DataFrame:
    """'Latest ADE literature for X': newest case candidates and escalations per product.

    Args:
        decisions: lake decisions (item_id, products, decision, pub_date, probability).
        titles: item_id -> title.
        products: watched products; one row each, even when nothing was found (said so).
    """
    relevant = (
        decisions.filter(pl.col("decision").is_in(["case_candidate", "escalated"]))
        .explode("products")
        .rename({"products": "product"})
        .join(titles, on="item_id", how="left")
        .sort(["pub_date", "probability"], descending=True, nulls_last=True)
    )
    rows = []
    for product in products:
        mine = relevant.filter(pl.col("product") == product).head(top_n)
        if mine.is_empty():
            text = f"No ADE literature about {product} has been found by the nightly scan."
            freshest = ""
        else:
            items = [
                f"pmid {r['item_id']} ({r['pub_date']}, {r['decision']}, "
                f"p={r['probability']:.2f}): {r['title'] or 'untitled'}"
                for r in mine.iter_rows(named=True)
            ]
            text = f"Latest ADE literature about {product}: " + "; ".join(items) + "."
            freshest = str(mine["pub_date"].max())
        rows.append(
            {
                "product": product,
                "kind": "literature",
                "text": text,
                "sources": [f"pmid:{i}" for i in mine["item_id"].to_list()],
                "source_count": mine.height,
                "freshest_source": freshest,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"sources": pl.List(pl.String)})


def signal_summaries(signals: pl.DataFrame, products: Sequence[str], *, top_n: int) -> pl.DataFrame:
    """'Signal digest for X': flagged FAERS pairs, strongest first; a product absent from the
    shipped FAERS tables says so rather than reporting 'no signal'."""
    rows = []
    for product in products:
        mine = signals.filter(pl.col("drug") == product)
        flagged = mine.filter(pl.col("signal")).sort("prr_lower", descending=True).head(top_n)
        if mine.is_empty():
            text = f"{product} is not in the FAERS count tables shipped with mddc; no digest."
        elif flagged.is_empty():
            text = f"No disproportionality signal for {product} in {mine['table'][0]}."
        else:
            text = f"FAERS signal digest for {product}: " + " ".join(
                _signal_sentence(product, r) for r in flagged.iter_rows(named=True)
            )
        tables = sorted(set(mine["table"].to_list()))
        rows.append(
            {
                "product": product,
                "kind": "signals",
                "text": text,
                "sources": [f"faers:{t}" for t in tables],
                "source_count": flagged.height,
                "freshest_source": "FAERS 2014Q3-2020Q4" if tables else "",
            }
        )
    return pl.DataFrame(rows, schema_overrides={"sources": pl.List(pl.String)})


@dataclass(frozen=True)
class Answer:
    """What `ask` returns and what the cache stores (never a safety judgement)."""

    text: str
    citations: list[str]
    kind: str  # "retrieval" or "summary"
    composer: str
    passages: list[dict[str, Any]] = field(default_factory=list)
    grounded_share: float | None = None  # None: not checked (a summary, an old cache entry)
    refusal: bool = False  # the corpus has nothing relevant, said plainly
    note: str = ""  # e.g. "model composer unavailable: extractive answer"
    grounding: dict[str, Any] = field(default_factory=dict)  # Grounding.summary()

    @property
    def fully_grounded(self) -> bool:
        """May be admitted to the caches: checked and every sentence grounded."""
        return self.grounded_share is not None and self.grounded_share >= 1.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, payload: str) -> Answer:
        data = json.loads(payload)
        return cls(**data)


class SentenceEmbedder(Protocol):
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Any: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True)
class Composed:
    answer: Answer
    input_tokens: int
    output_tokens: int
    model_key: str | None = None  # catalog key that priced the call; None: knowledge-answer


class Composer(Protocol):
    """Turns retrieved passages into an answer with citations.

    The extractive composer runs here; an LLM composer (models/llm) implements the same
    call and is priced by the catalog's ``knowledge-answer-llm`` task.
    """

    name: str

    def compose(
        self, question: str, question_vector: np.ndarray, passages: pl.DataFrame
    ) -> Composed: ...


class ExtractiveComposer:
    """The ``n`` passage sentences most similar to the question, each with its citation."""

    name = "extractive"

    def __init__(
        self, embedder: SentenceEmbedder, sentences: int, bounds: GroundingBounds | None = None
    ):
        self._embedder = embedder
        self._n = sentences
        self._bounds = bounds or GroundingBounds()

    def compose(
        self, question: str, question_vector: np.ndarray, passages: pl.DataFrame
    ) -> Composed:
        seen: set[str] = set()
        candidates: list[tuple[str, str]] = []
        for row in passages.iter_rows(named=True):
            cite = citation(row["source_id"], row["section"])
            for sentence in split_sentences(row["text"]):
                if sentence not in seen:  # overlapping chunks repeat their boundary sentences
                    seen.add(sentence)
                    candidates.append((sentence, cite))
        if not candidates:
            answer = Answer("No indexed passage answers this question.", [], "retrieval", self.name)
            return Composed(answer, 0, 0)
        texts = [s for s, _ in candidates]
        vectors = np.asarray(self._embedder.embed(texts), dtype=np.float32)
        scores = vectors @ question_vector.astype(np.float32)
        order = np.argsort(-scores, kind="stable")[: self._n]
        chosen = [candidates[i] for i in sorted(order)]
        text = " ".join(f"{s} [{c}]" for s, c in chosen)
        cites = list(dict.fromkeys(c for _, c in chosen))
        kept = passages.select("chunk_id", "source_id", "section", "similarity").to_dicts()
        grounding = self._check(chosen, passages)
        answer = Answer(
            text,
            cites,
            "retrieval",
            self.name,
            kept,
            grounded_share=grounding.grounded_share,
            grounding=grounding.summary(),
        )
        return Composed(answer, int(sum(self._embedder.count_tokens(texts))), 0)

    def _check(self, chosen: list[tuple[str, str]], passages: pl.DataFrame) -> Grounding:
        """The same grounding check as a model's answer (verbatim sentences pass it)."""
        evidence: dict[str, str] = {}
        for row in passages.iter_rows(named=True):
            cite = citation(row["source_id"], row["section"])
            evidence[cite] = f"{evidence.get(cite, '')} {row['text']}".strip()
        claims = [CitedSentence(s, (c,)) for s, c in chosen]
        return check_grounding(claims, evidence, self._embedder.embed, self._bounds)
