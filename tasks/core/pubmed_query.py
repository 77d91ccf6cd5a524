"""PubMed search terms and entry-date windows for source ``pubmed-query``. Pure.

One query per watched product: every name variant the product matcher uses (configs/products.yaml
expanded by the drug dictionary), searched in title/abstract and as a substance name, so that
what PubMed returns is what the scan's own product filter would keep.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

# Characters that PubMed's query parser reads as syntax inside a phrase: such variants are skipped
# (each product keeps its plain names, which the matcher also knows).
_SYNTAX = set('"[]()*#')


def product_term(variants: Iterable[str]) -> str:
    """``("v1"[tiab] OR "v1"[nm] OR ...)`` over the variants, in a stable order.

    Raises:
        ValueError: no variant is usable in a PubMed phrase.
    """
    names = sorted({v.strip().lower() for v in variants if v.strip() and not _SYNTAX & set(v)})
    if not names:
        raise ValueError("no name variant can be written as a PubMed phrase")
    return "(" + " OR ".join(f'"{n}"[tiab] OR "{n}"[nm]' for n in names) + ")"


def halves(since: date, until: date) -> tuple[tuple[date, date], tuple[date, date]]:
    """Split ``since..until`` (inclusive days, at least two) into two adjacent windows.

    Raises:
        ValueError: the window is a single day and cannot be split.
    """
    days = (until - since).days
    if days < 1:
        raise ValueError(f"the window {since} is one day: it cannot be split further")
    middle = since + timedelta(days=(days - 1) // 2)
    return (since, middle), (middle + timedelta(days=1), until)


def edat(day: date) -> str:
    """A date as E-utilities' ``mindate``/``maxdate`` want it (YYYY/MM/DD)."""
    return day.strftime("%Y/%m/%d")


def last_whole_entry_day(now: datetime, timezone: str) -> date:
    """The last entry day NCBI has finished adding to: yesterday in NCBI's own zone.

    At the nightly's 02:00 UTC it is still the previous evening in US Eastern time, so the UTC
    "yesterday" would be cut off while records are still being entered on it.
    """
    return now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)
