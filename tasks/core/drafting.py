"""Periodic-summary drafting, pure parts: periods, evidence items, the prompt, the template
draft and the Markdown a reviewer reads.

A draft is the "literature and signals" section of a periodic safety report for one product and
one calendar month. It is written only from numbered evidence items ([1], [2], ...): the
materialised literature and signal summaries, FAERS disproportionality rows (PRR / ROR with
95% intervals and counts) and the literature cases a reviewer confirmed in the period. Every
sentence cites the items it rests on; the grounding check (``tasks/core/grounding.py``) drops
the ones the cited items do not support. When the model cannot be asked, the template draft
restates each evidence item in one cited sentence, and says so.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from tasks.core.grounding import CitedSentence, Grounding, SentenceCheck, render
from tasks.core.knowledge import two_decimals as _fmt

PROMPT_VERSION = "draft-periodic-summary/1"
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# --- periods ----------------------------------------------------------------------------------


def month_bounds(month: str) -> tuple[date, date]:
    """``[first day, first day of the next month)`` of ``YYYY-MM``.

    Raises:
        ValueError: ``month`` is not ``YYYY-MM``.
    """
    found = MONTH.match(month)
    if found is None:
        raise ValueError(f"period {month!r} is not a month YYYY-MM")
    year, number = int(found.group(1)), int(found.group(2))
    first = date(year, number, 1)
    after = date(year + number // 12, number % 12 + 1, 1)
    return first, after


def months_between(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` inclusive, oldest first (a backfill's periods).

    Raises:
        ValueError: a bound is not ``YYYY-MM``, or ``last`` is before ``first``.
    """
    start, _ = month_bounds(first)
    end, _ = month_bounds(last)
    if end < start:
        raise ValueError(f"period end {last} is before its start {first}")
    out, current = [], start
    while current <= end:
        out.append(f"{current.year:04d}-{current.month:02d}")
        current = month_bounds(out[-1])[1]
    return out


def previous_month(today: date) -> str:
    """The last whole month before ``today``: what the monthly schedule drafts."""
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


# --- evidence ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceItem:
    """One thing a draft may say, with the id its sentences cite and where it comes from."""

    id: str  # 1, 2, ...: the number a writer cites as [n]
    kind: str  # literature_summary | signal_summary | faers | case
    source: str  # summary:literature | faers:<table>:<event> | case:<inbox item id>
    text: str


def faers_sentence(product: str, row: dict[str, Any]) -> str:
    """One FAERS pair as a sentence: counts, PRR and ROR with their 95% intervals, the flag."""
    flag = "meets the screening rule for a signal" if row["signal"] else "is not a signal"
    return (
        f"In the FAERS extract {row['table']}, {row['reports']} reports name {product} with "
        f"{row['event']}: PRR {_fmt(row['prr'])} (95% CI {_fmt(row['prr_lower'])} to "
        f"{_fmt(row['prr_upper'])}), ROR {_fmt(row['ror'])} (95% CI {_fmt(row['ror_lower'])} "
        f"to {_fmt(row['ror_upper'])}); the pair {flag}."
    )


def case_sentence(case: dict[str, Any]) -> str:
    """A confirmed literature case as a sentence: reference, drugs, reactions, seriousness."""
    drugs = ", ".join(case.get("suspect_drugs") or []) or "not extracted"
    reactions = ", ".join(case.get("reactions") or []) or "not extracted"
    serious = ", ".join(case.get("seriousness") or []) or "not stated"
    text = (
        f"A reviewer confirmed {case['reference']} as an individual case safety report on "
        f"{case['confirmed_on']}: suspect drugs {drugs}; reactions {reactions}; seriousness "
        f"{serious}."
    )
    summary = (case.get("summary") or "").strip()
    return f"{text} Case summary: {summary}" if summary else text


def evidence_items(
    product: str,
    summaries: pl.DataFrame,
    signals: pl.DataFrame,
    cases: Sequence[dict[str, Any]],
    *,
    faers_top_n: int,
) -> list[EvidenceItem]:
    """The numbered evidence of one product's draft, in a stable order.

    Args:
        summaries: materialised summary rows (product, kind, text) of this product.
        signals: disproportionality rows (table, drug, event, reports, prr..., signal).
        cases: confirmed literature cases of the period (reference, confirmed_on, suspect_drugs,
            reactions, seriousness, summary), oldest first.
        faers_top_n: FAERS pairs kept (with reports), flagged signals first, then the strongest
            lower PRR bound.
    """
    found: list[tuple[str, str, str]] = []
    for row in summaries.sort("kind").iter_rows(named=True):
        found.append((f"{row['kind']}_summary", f"summary:{row['kind']}", row["text"]))
    mine = (
        signals.filter((pl.col("drug") == product) & (pl.col("reports") > 0))
        if signals.height
        else signals
    )
    if mine.height:
        top = mine.sort(
            ["signal", "prr_lower", "event"], descending=[True, True, False], nulls_last=True
        ).head(faers_top_n)
        for row in top.iter_rows(named=True):
            source = f"faers:{row['table']}:{row['event']}"
            found.append(("faers", source, faers_sentence(product, row)))
    for case in cases:
        found.append(("case", f"case:{case['item_id']}", case_sentence(case)))
    return [EvidenceItem(str(i), k, s, t) for i, (k, s, t) in enumerate(found, start=1)]


def evidence_version(items: Sequence[EvidenceItem], composer: str) -> str:
    """12 hex characters naming what a draft was made from and by whom: same evidence and
    composer, same version, so a re-run finds the draft it already made."""
    payload = json.dumps(
        [PROMPT_VERSION, composer, [(i.id, i.source, i.text) for i in items]], sort_keys=True
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


# --- the model's draft ------------------------------------------------------------------------

INSTRUCTION = (
    "You are a pharmacovigilance medical writer drafting the 'literature and signals' section "
    "of a periodic safety report. Use ONLY the numbered passages: no outside knowledge, no "
    "speculation, no recommendation. Keep every number exactly as written. End every sentence "
    "with the number of the passage that states it, like [2]."
)
PASSAGE_CHARS = 1200  # a literature summary lists several titles: keep them whole


def request_for(product: str, month: str) -> str:
    """What the writer is asked: the section for one product and month, one cited sentence a
    line (a small model otherwise puts one number in front of a whole paragraph)."""
    return (
        f"Write the literature and signals section for {product}, period {month}: 3 to 6 short "
        "sentences, one per line, on the literature summary, the FAERS pairs that meet the "
        "signal rule (with PRR, ROR and their 95% intervals) and the confirmed cases, if any. "
        "End EVERY line with the number of the one passage it restates, for example:\n"
        "In FAERS, 12 reports name the drug with rash: PRR 2.10 (95% CI 1.20 to 3.60). [4]"
    )


def template_sentences(items: Sequence[EvidenceItem]) -> list[CitedSentence]:
    """The deterministic draft: each evidence item restated as one sentence citing it."""
    return [CitedSentence(" ".join(item.text.split()), (item.id,)) for item in items]


# --- the draft a reviewer reads ---------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """One product's draft for one month, after the grounding check."""

    product: str
    period: str
    version: str
    composer: str  # "model" | "template"
    model: str  # the models.yaml key that wrote it, "" for a template
    grounding: Grounding
    items: list[EvidenceItem]
    note: str = ""  # why a template was made, or what the check removed
    # a template made because no sentence of the model's draft held: what the model wrote
    model_removed: tuple[SentenceCheck, ...] = ()

    @property
    def draft_id(self) -> str:
        return f"{self.product}:{self.period}:{self.version}"

    @property
    def removed(self) -> list[SentenceCheck]:
        """Every sentence the check refused (the model's, when a template replaced them)."""
        return [s for s in self.grounding.sentences if not s.grounded] + list(self.model_removed)


def render_markdown(draft: Draft) -> str:
    """The draft as Markdown: the section, what was removed (struck, never as fact), then the
    evidence it cites."""
    by = (
        f"composed by {draft.model} from the evidence below"
        if draft.composer == "model"
        else "template draft: every sentence restates one evidence item"
    )
    lines = [
        f"# Literature and signals: {draft.product}, {draft.period}",
        "",
        f"_Draft {draft.version} ({by}); grounded share {draft.grounding.grounded_share:.0%}, "
        f"{len(draft.removed)} sentence(s) removed as unsupported. For review: accept, "
        "needs changes or reject._",
    ]
    if draft.note:
        lines += ["", f"> {draft.note}"]
    body = render(draft.grounding)
    lines += ["", "## Literature and signals", "", body or "_No supported sentence._"]
    if draft.removed:
        lines += ["", "## Removed: not supported by the evidence cited (not to be reported)", ""]
        lines += [
            f"- ~~{s.text}~~ (cited: {', '.join(s.cited) or 'nothing'}; {s.problem})"
            for s in draft.removed
        ]
    lines += ["", "## Evidence", ""]
    lines += [f"- [{i.id}] `{i.source}`: {i.text}" for i in draft.items]
    return "\n".join(lines) + "\n"
