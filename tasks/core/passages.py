"""Retrieval passages: structure-aware chunking into sections, then sentences, with overlap.

A chunk never crosses a section; inside a section, whole sentences are packed up to a size
bound and the last ``overlap`` sentences of a chunk open the next one, so a statement that
straddles a boundary is retrievable from either side. Chunk ids depend only on the source id,
the section and the chunk text, so re-indexing the same text yields the same ids (idempotent
upserts) and changed text yields new ids (stale ones are deleted by the index adapter).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import polars as pl

# A structured-abstract heading: "BACKGROUND:", "METHODS AND RESULTS:" (MEDLINE style).
_HEADING = re.compile(r"(?:^|(?<=[.!?]\s))([A-Z][A-Z ,&/-]{2,40}):\s+")
# Sentence end: . ! ? followed by space and an upper-case letter or digit; not after "e.g"/"i.e".
_SENTENCE_END = re.compile(r"(?<!\b[eE]\.g)(?<!\b[iI]\.e)(?<=[.!?])\s+(?=[A-Z0-9(\[])")

CHUNK_COLUMNS = ["chunk_id", "source_id", "section", "ordinal", "text"]


def split_sections(text: str, default: str = "abstract") -> list[tuple[str, str]]:
    """(heading, body) pairs; text without headings is one section named ``default``."""
    text = " ".join(text.split())
    if not text:
        return []
    marks = list(_HEADING.finditer(text))
    if not marks:
        return [(default, text)]
    sections: list[tuple[str, str]] = []
    lead = text[: marks[0].start()].strip()
    if lead:
        sections.append((default, lead))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end() : following.start() if following else len(text)].strip()
        if body:
            sections.append((mark.group(1).strip().lower(), body))
    return sections


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, whitespace-normalised; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def chunk_id(source_id: str, section: str, text: str) -> str:
    digest = hashlib.sha256(f"{source_id}\x1f{section}\x1f{text}".encode()).hexdigest()
    return f"chunk-{digest[:24]}"


def chunk_sections(
    source_id: str, sections: Sequence[tuple[str, str]], *, max_chars: int, overlap: int
) -> list[dict[str, object]]:
    """Chunks of one document, in order.

    Args:
        source_id: pmid or reference document id; part of every chunk id.
        sections: (section name, text) in document order.
        max_chars: a chunk grows sentence by sentence until the next would pass this bound
            (a single longer sentence is its own chunk, never cut mid-sentence).
        overlap: sentences repeated from the end of one chunk at the start of the next.

    Raises:
        ValueError: ``max_chars`` < 1 or ``overlap`` < 0.
    """
    if max_chars < 1 or overlap < 0:
        raise ValueError("max_chars must be >= 1 and overlap >= 0")
    rows: list[dict[str, object]] = []
    for section, body in sections:
        sentences = split_sentences(body)
        start = 0
        while start < len(sentences):
            end, size = start, 0
            while end < len(sentences) and (end == start or size + len(sentences[end]) < max_chars):
                size += len(sentences[end]) + 1
                end += 1
            text = " ".join(sentences[start:end])
            rows.append(
                {
                    "chunk_id": chunk_id(source_id, section, text),
                    "source_id": source_id,
                    "section": section,
                    "ordinal": len(rows),
                    "text": text,
                }
            )
            if end >= len(sentences):
                break
            start = max(end - overlap, start + 1)
    return rows


def chunk_documents(
    documents: pl.DataFrame, *, max_chars: int, overlap: int, default_section: str = "abstract"
) -> pl.DataFrame:
    """Chunks of every document in ``documents`` (columns ``source_id``, ``text``).

    Columns other than ``text`` are carried onto each chunk of their document. A document whose
    ``section`` column is set is treated as one section of that name (reference text); otherwise
    headings inside the text are detected.
    """
    carried = [c for c in documents.columns if c not in ("text", "section")]
    rows: list[dict[str, object]] = []
    for doc in documents.iter_rows(named=True):
        text = doc["text"] or ""
        given = doc.get("section")
        sections = [(str(given), text)] if given else split_sections(text, default_section)
        for chunk in chunk_sections(
            str(doc["source_id"]), sections, max_chars=max_chars, overlap=overlap
        ):
            rows.append({**{c: doc[c] for c in carried}, **chunk})
    if not rows:
        return pl.DataFrame(
            schema={**{c: documents.schema[c] for c in carried}, **_CHUNK_SCHEMA}
        ).select(*CHUNK_COLUMNS, *[c for c in carried if c not in CHUNK_COLUMNS])
    frame = pl.DataFrame(rows, schema_overrides=documents.select(carried).schema)
    return frame.select(*CHUNK_COLUMNS, *[c for c in carried if c not in CHUNK_COLUMNS])


_CHUNK_SCHEMA = {
    "chunk_id": pl.String,
    "source_id": pl.String,
    "section": pl.String,
    "ordinal": pl.Int64,
    "text": pl.String,
}
