"""NLM's MEDLINE/PubMed daily update files (source ``medline-updates``): names, order, md5. Pure.

The files are ``pubmedYYnNNNN.xml.gz`` (YY: the baseline year, NNNN: the file number), each
with a ``.md5`` companion whose content is ``MD5(pubmedYYnNNNN.xml.gz)= <32 hex>``. They are
processed in (year, number) order; the watermark is the last file processed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAME = re.compile(r"pubmed(\d{2})n(\d{4})\.xml\.gz")
_HREF = re.compile(r"""href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
_MD5 = re.compile(r"^\s*MD5\s*\(\s*([^)\s]+)\s*\)\s*=\s*([0-9a-fA-F]{32})\s*$")


def file_order(name: str) -> tuple[int, int]:
    """(baseline year, file number) of an update file name: the order NLM publishes them in.

    Raises:
        ValueError: ``name`` is not an update file name.
    """
    found = _NAME.fullmatch(name)
    if found is None:
        raise ValueError(f"{name!r} is not a MEDLINE update file name (pubmedYYnNNNN.xml.gz)")
    return int(found.group(1)), int(found.group(2))


def listed_files(listing: str) -> list[str]:
    """Update file names linked from a directory listing (HTML), each once, in file order.

    Only link targets count (their last path segment, so absolute and relative links both
    work); ``.md5`` companions, sorting links and other files are ignored.
    """
    names = set()
    for href in _HREF.findall(listing):
        last = href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if _NAME.fullmatch(last):
            names.add(last)
    return sorted(names, key=file_order)


def files_after(names: Iterable[str], watermark: str | None, start_from: str | None) -> list[str]:
    """The files still to process, in file order.

    After ``watermark`` (the last file processed) when there is one; before the first run,
    from ``start_from`` (inclusive) or, with none, only the newest file listed: a first nightly
    run takes today's file, never a year of them (a backfill is a deliberate ``start_from``).
    """
    ordered = sorted(set(names), key=file_order)
    if watermark is not None:
        return [n for n in ordered if file_order(n) > file_order(watermark)]
    if start_from is not None:
        return [n for n in ordered if file_order(n) >= file_order(start_from)]
    return ordered[-1:]


def expected_md5(name: str, companion: str) -> str:
    """The md5 hex digest a ``.md5`` companion states for ``name``.

    Raises:
        ValueError: the companion is not ``MD5(name)= hex`` or names another file.
    """
    found = _MD5.match(companion.strip())
    if found is None:
        raise ValueError(f"{name}.md5 does not read 'MD5({name})= <32 hex digits>'")
    if found.group(1) != name:
        raise ValueError(f"{name}.md5 states the md5 of {found.group(1)}, not of {name}")
    return found.group(2).lower()
