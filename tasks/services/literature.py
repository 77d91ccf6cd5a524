"""Where the literature scan's citations come from: the bundled files or PubMed itself.

Source ``pubmed-query`` asks NCBI E-utilities, one search per watched product (every name
variant the scan's product matcher knows), for the records entered (EDAT) in a window:

- the window of a product starts the day after its watermark (``tasks/io/literature_state.py``)
  unless the run names a ``since``; with no watermark yet, it is the run's last day;
- a revised record keeps its entry date, so a second search over the same window asks for the
  records *modified* (MDAT) in it; of those, only records retrieved before are kept (a record
  entered before the first window is not a revision of anything we hold), and the scan skips
  the ones whose content did not change (same content hash: no re-screen, no cost);
- each (product, window) fetch is written whole (temp file, rename) under
  ``PHARMALANE_HOME/literature/pubmed/<product>/``; a file already there is never fetched again,
  so a run killed mid-fetch resumes with the products it had finished;
- the run reads one merged file (one copy per pmid), exactly as it reads the bundled ones;
- once the run decided every item, each product's watermark moves to the window's last day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from tasks.core.pubmed_query import product_term
from tasks.io.drug_dictionary import product_variants
from tasks.io.eutils import EutilsClient
from tasks.io.literature_state import LiteratureMarks
from tasks.io.medline import articles, write_article_set
from tasks.io.shared_state import open_literature_state
from tasks.services.runtime import Runtime
from tasks.settings import Settings

SOURCE = "pubmed-query"


@dataclass(frozen=True)
class ProductWindow:
    """The entry-date window fetched for one watched product."""

    product: str
    since: date
    until: date


@dataclass(frozen=True)
class FetchedWindow:
    """What one run fetched (or found already fetched) from PubMed."""

    windows: tuple[ProductWindow, ...]
    path: Path | None  # None: no record about any watched product in any window
    records: int
    queries_sent: int  # product windows fetched now (the others were on disk already)


def state(settings: Settings) -> LiteratureMarks:
    """The watermarks and first-seen times: PostgreSQL with the URL, else under home."""
    return open_literature_state(settings.shared_database, settings.literature_dir / "state.sqlite")


def plan_windows(runtime: Runtime, since: date | None, until: date) -> list[ProductWindow]:
    """Each product's window: from ``since``, else the day after its watermark, to ``until``."""
    marks = state(runtime.settings)
    out = []
    for product in sorted(p.name.lower() for p in runtime.rules.products.products):
        mark = marks.watermark(SOURCE, product)
        start = since or (date.fromisoformat(mark) + timedelta(days=1) if mark else until)
        if start <= until:
            out.append(ProductWindow(product, start, until))
    return out


def fetch_pubmed(runtime: Runtime, since: date | None, until: date, now: datetime) -> FetchedWindow:
    """Every record about a watched product entered in each product's window.

    Raises:
        BackendUnavailable: NCBI kept failing past the retry bound.
        DataContractError: one day holds more records than a search can page through.
    """
    settings = runtime.settings
    windows = tuple(plan_windows(runtime, since, until))
    variants = product_variants(w.product for w in windows)
    sent = 0
    pacing = settings.literature_dir / "ncbi_rate.sqlite"  # shared by every process here
    with EutilsClient(settings.pubmed, settings.ncbi_api_key, pacing=pacing) as client:
        for window in windows:
            target = _window_file(settings, window)
            if not target.is_file():
                _fetch_one(client, variants[window.product], window, target, settings, now)
                sent += 1
    kept = dict(_merged(settings, windows))
    if not kept:
        return FetchedWindow(windows, None, 0, sent)
    key = hashlib.sha256(repr(windows).encode()).hexdigest()[:16]
    path = settings.literature_dir / f"pubmed-query-{until}-{key}.xml"
    write_article_set(path, kept.values())
    return FetchedWindow(windows, path, len(kept), sent)


def _window_file(settings: Settings, window: ProductWindow) -> Path:
    folder = settings.literature_dir / "pubmed" / window.product.replace("/", "_")
    return folder / f"edat-{window.since}_{window.until}.xml"


def _fetch_one(
    client: EutilsClient,
    names: tuple[str, ...],
    window: ProductWindow,
    target: Path,
    settings: Settings,
    now: datetime,
) -> None:
    records: dict[str, bytes] = {}
    term = product_term(names)
    for batch in client.fetch_window(term, window.since, window.until):
        for pmid, record in articles(batch):
            records.setdefault(pmid or f"#{len(records)}", record)
    marks = state(settings)
    marks.first_seen([p for p in records if not p.startswith("#")], now)
    revised = dict(_modified(client, term, window, records))
    for pmid in marks.known(list(revised)):
        records[pmid] = revised[pmid]
    target.parent.mkdir(parents=True, exist_ok=True)
    write_article_set(target, records.values())


def _modified(
    client: EutilsClient, term: str, window: ProductWindow, entered: dict[str, bytes]
) -> Iterator[tuple[str, bytes]]:
    """Records of ``term`` modified (MDAT) in the window that were not entered in it."""
    for batch in client.fetch_window(term, window.since, window.until, "mdat"):
        for pmid, record in articles(batch):
            if pmid and pmid not in entered:
                yield pmid, record


def _merged(settings: Settings, windows: tuple[ProductWindow, ...]) -> Iterator[tuple[str, bytes]]:
    seen: set[str] = set()
    for window in windows:
        for pmid, record in articles(_window_file(settings, window).read_bytes()):
            key = pmid or f"#{len(seen)}"
            if key not in seen:
                seen.add(key)
                yield key, record


def advance_watermarks(runtime: Runtime, fetched: FetchedWindow, now: datetime) -> dict[str, str]:
    """After every item of the run is decided: each product's watermark to its window's end.

    A window that starts past the day after the watermark (a gap) leaves the watermark alone:
    the days in between were never fetched.
    """
    marks, out = state(runtime.settings), {}
    for window in fetched.windows:
        mark = marks.watermark(SOURCE, window.product)
        if mark is None or window.since <= date.fromisoformat(mark) + timedelta(days=1):
            out[window.product] = marks.advance(SOURCE, window.product, str(window.until), now)
    return out


def with_first_seen(runtime: Runtime, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """``frame`` with ``first_seen_at``: when the company first retrieved each item (kept)."""
    ids = frame["item_id"].drop_nulls().unique().to_list()
    seen = state(runtime.settings).first_seen(ids, now)
    stamps = pl.DataFrame(
        {"item_id": list(seen), "first_seen_at": list(seen.values())},
        schema={"item_id": pl.String, "first_seen_at": pl.Datetime("us", "UTC")},
    )
    return frame.join(stamps, on="item_id", how="left")
