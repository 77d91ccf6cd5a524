"""The synthesis rung: a model writes from numbered evidence, the grounding check keeps it honest.

``grounded_completion`` is the generic call (any evidence items, any instruction): it asks a
model (normally a ``SupervisedLLM``: paid-call journal, budget, throttle) to write sentences
citing ``[n]``, parses them, maps each number back to its evidence id and runs the
deterministic grounding check (``tasks/core/grounding.py``). ``ModelComposer`` is the
``Composer`` of ``ask`` built on it: top chunks only, unsupported sentences removed, the
grounded share recorded, and, when the model is down, out of budget or answers garbage, the
extractive answer instead, saying so. The model is chosen per task in configs/models.yaml
(``knowledge-answer-llm``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from models.llm import LLM, ChatMessage, ChatResult, LLMBadResponse, LLMUnavailable
from tasks.core.grounding import (
    ANSWER_INSTRUCTION,
    Grounding,
    GroundingBounds,
    check_grounding,
    cut,
    labels_to_ids,
    numbered_messages,
    parse_cited,
    render,
    says_nothing_found,
)
from tasks.core.knowledge import Answer, Composed, Composer, citation
from tasks.core.passages import split_sentences
from tasks.services.runtime import Runtime
from tasks.services.supervisor import BudgetDeferred, SupervisedLLM

WORKFLOW = "knowledge-answer"  # budget and throttle of ask's model calls (configs/budgets.yaml)
ANSWER_LLM_TASK = "knowledge-answer-llm"


@dataclass(frozen=True)
class GroundedText:
    """A model's text after the check: what may be shown, and how it was judged."""

    grounding: Grounding
    result: ChatResult
    nothing_found: bool
    latency_s: float

    @property
    def model_key(self) -> str:
        return self.result.served_by or self.result.model


def grounded_completion(
    llm: LLM,
    messages: Sequence[ChatMessage],
    evidence: Mapping[str, str],
    embed: Callable[[Sequence[str]], Any],
    bounds: GroundingBounds,
    *,
    max_tokens: int,
) -> GroundedText:
    """Ask ``llm``, then check every sentence against ``evidence`` (id -> text, in prompt order).

    The messages number the evidence from 1 in the order of ``evidence`` (``numbered_messages``
    does). Raises whatever the model raises (``LLMUnavailable``, ``LLMBadResponse``): the caller
    chooses its fallback.
    """
    started = time.monotonic()
    result = llm.chat(messages, max_tokens=max_tokens)
    latency = time.monotonic() - started
    if result.refusal or says_nothing_found(result.text):
        return GroundedText(Grounding(()), result, True, latency)
    sentences = labels_to_ids(parse_cited(result.text), list(evidence))
    grounding = check_grounding(sentences, evidence, embed, bounds)
    return GroundedText(grounding, result, False, latency)


def fallback_reason(exc: Exception) -> str:
    """Why the model composer did not answer, in words for the answer's note."""
    if isinstance(exc, BudgetDeferred):
        return "the knowledge-answer budget is spent"
    if isinstance(exc, LLMBadResponse):
        return "the model gave no usable answer"
    return "the model backend is unavailable"


class ModelComposer:
    """Answers from the top retrieved chunks with a model, citing a chunk for every sentence."""

    def __init__(
        self,
        llm: LLM,
        embedder: Any,
        fallback: Composer,
        *,
        bounds: GroundingBounds,
        top_chunks: int = 4,
        max_tokens: int = 160,
        chunk_chars: int = 700,
        sentences: int = 0,
    ):
        self.llm, self.embedder, self.fallback = llm, embedder, fallback
        self.bounds, self.top_chunks, self.max_tokens = bounds, top_chunks, max_tokens
        self.chunk_chars, self.sentences = chunk_chars, sentences
        self.name = f"model:{llm.name}"

    def compose(
        self, question: str, question_vector: np.ndarray, passages: pl.DataFrame
    ) -> Composed:
        top = passages.head(self.top_chunks)
        if top.is_empty():
            return self.fallback.compose(question, question_vector, passages)
        evidence, cites = self._evidence(passages, question_vector)
        messages: list[ChatMessage] = [
            {"role": m["role"], "content": m["content"]}
            for m in numbered_messages(
                ANSWER_INSTRUCTION, question, list(evidence.values()), max_chars=self.chunk_chars
            )
        ]
        try:
            done = grounded_completion(
                self.llm,
                messages,
                evidence,
                self.embedder.embed,
                self.bounds,
                max_tokens=self.max_tokens,
            )
        except (LLMUnavailable, LLMBadResponse) as exc:
            return self._fallback(question, question_vector, passages, exc)
        return self._answer(done, cites, top)

    def _evidence(
        self, passages: pl.DataFrame, vector: np.ndarray
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The items shown to the model (id -> text as shown, in prompt order) and the citation
        of each: the top chunks, or, with ``sentences``, the passage sentences nearest the
        question (short items a small model copies instead of writing from memory)."""
        if not self.sentences:
            rows = passages.head(self.top_chunks).to_dicts()
            evidence = {r["chunk_id"]: cut(r["text"], self.chunk_chars) for r in rows}
            return evidence, {r["chunk_id"]: citation(r["source_id"], r["section"]) for r in rows}
        found: dict[str, tuple[str, str]] = {}  # sentence -> (id, citation)
        for row in passages.iter_rows(named=True):
            for n, sentence in enumerate(split_sentences(row["text"])):
                cite = citation(row["source_id"], row["section"])
                found.setdefault(sentence, (f"{row['chunk_id']}#{n}", cite))
        texts = list(found)
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        order = np.argsort(-(vectors @ vector.astype(np.float32)), kind="stable")
        chosen = [texts[i] for i in order[: self.sentences]]
        evidence = {found[t][0]: cut(t, self.chunk_chars) for t in chosen}
        return evidence, {found[t][0]: found[t][1] for t in chosen}

    def _answer(self, done: GroundedText, cites: dict[str, str], top: pl.DataFrame) -> Composed:
        kept = top.select("chunk_id", "source_id", "section", "similarity").to_dicts()
        result, grounding = done.result, done.grounding
        summary = grounding.summary()
        if done.nothing_found:
            text = "The retrieved passages do not answer this question."
            answer = Answer(text, [], "retrieval", self.name, kept, 1.0, True, "", summary)
        else:
            text = render(grounding, lambda i: cites.get(i, i))
            dropped = len(grounding.sentences) - len(grounding.kept)
            note = f"{dropped} unsupported sentence(s) removed" if dropped else ""
            if not grounding.kept:
                text = "No sentence of the model's answer is supported by the retrieved passages."
            cited = [cites[i] for i in grounding.cited_ids() if i in cites]
            answer = Answer(
                text,
                list(dict.fromkeys(cited)),
                "retrieval",
                self.name,
                kept,
                grounded_share=grounding.grounded_share,
                note=note,
                grounding=summary,
            )
        key = result.served_by or self.llm.name
        return Composed(answer, result.input_tokens, result.output_tokens, model_key=key)

    def _fallback(
        self, question: str, vector: np.ndarray, passages: pl.DataFrame, exc: Exception
    ) -> Composed:
        """The extractive answer, saying why the model did not write it."""
        composed = self.fallback.compose(question, vector, passages)
        note = f"{fallback_reason(exc)} ({self.llm.name}): extractive answer instead"
        composer = f"{composed.answer.composer} (fallback from {self.name})"
        return replace(composed, answer=replace(composed.answer, note=note, composer=composer))

    def instead(
        self,
        question: str,
        vector: np.ndarray,
        passages: pl.DataFrame,
        spent: Composed,
        why: str,
    ) -> Composed:
        """The extractive answer after the model's answer was refused for ``why`` (nothing in it
        survived the check, or it is not about what was asked) although on-topic passages were
        retrieved: a refusal would overstate what the corpus lacks. The model's call was made,
        so its tokens and model stay on the result (it is priced as composed)."""
        composed = self.fallback.compose(question, vector, passages)
        note = f"the model's answer {why} ({self.llm.name}): extractive answer instead"
        composer = f"{composed.answer.composer} (fallback from {self.name})"
        return replace(spent, answer=replace(composed.answer, note=note, composer=composer))


def model_composer(
    runtime: Runtime, fallback: Composer, *, model_key: str | None = None
) -> ModelComposer:
    """The model composer of ``ask``: ``knowledge-answer-llm``'s model behind the supervisor."""
    knowledge = runtime.settings.knowledge
    key = model_key or runtime.rules.models.tasks[ANSWER_LLM_TASK]
    llm = SupervisedLLM(
        runtime.model(key),
        runtime,
        workflow=WORKFLOW,
        urgent=False,
        throttle_timeout_s=knowledge.composer_throttle_wait_s,
    )
    bounds = GroundingBounds(
        knowledge.grounding.min_lexical,
        knowledge.grounding.min_embedding,
        knowledge.grounding.max_unsupported_run,
    )
    return ModelComposer(
        llm,
        runtime.embedder,
        fallback,
        bounds=bounds,
        top_chunks=knowledge.composer_top_chunks,
        max_tokens=knowledge.composer_max_tokens,
        chunk_chars=knowledge.composer_chunk_chars,
        sentences=knowledge.composer_sentences,
    )
