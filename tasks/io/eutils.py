"""NCBI E-utilities client: esearch on the history server, then efetch of PubMed XML in batches.

Invariants:
- Pacing: one ``Pacer`` per client spaces every request it sends, retries included, so the
  client never sends more than ``rate`` requests in any second (3/s without a key, 10/s with
  one: NCBI's limits; a small margin keeps receipt jitter under them). Given a ``pacing`` file,
  the slots are booked there instead (``SharedPacer``), so every process on one PHARMALANE_HOME
  using the same key (or none) stays under the rate together: NCBI counts per key, or per
  address without one, not per process.
- Retries: 429, 5xx, timeouts, dropped connections and cut bodies are retried with exponential
  backoff and full jitter (a ``Retry-After`` wins), at most ``max_tries`` times per request; then
  ``BackendUnavailable``. Any other 4xx is our request's fault and is never retried.
- The API key travels in the POST body, never in a URL: httpx logs URLs, and so do proxies.
- A search never pages past ``search_limit`` records (esearch's 9,999): a larger entry-date
  window is split in halves until each half fits.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import SecretStr

from tasks.core.pubmed_query import edat, halves
from tasks.errors import BackendUnavailable, DataContractError
from tasks.io.rate_limit import RequestBuckets
from tasks.settings import PubmedSettings

T = TypeVar("T")
_PACING_MARGIN = 1.1  # space requests 10% wider than the limit: receipt jitter stays under it


class Pacer:
    """At most ``per_second`` starts per second across every thread that shares it."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = _PACING_MARGIN / per_second
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller's slot; slots are handed out in call order."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class Paces(Protocol):
    def wait(self) -> None: ...


class SharedPacer:
    """At most ``per_second`` starts per second across every process booking in ``buckets``.

    Each request claims the token of ``bucket`` in the shared SQLite file (one write
    transaction) and sleeps until it is back when another process had it.
    """

    def __init__(
        self,
        buckets: RequestBuckets,
        bucket: str,
        per_second: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.buckets, self.bucket = buckets, bucket
        self.per_second = per_second / _PACING_MARGIN
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        """Block until this caller's slot."""
        while (delay := self.buckets.claim(self.bucket, self.per_second, self._clock())) > 0:
            self._sleep(delay)


def pacing_bucket(api_key: SecretStr | None) -> str:
    """The shared bucket of a key (NCBI's unit of rate), named by a digest, never the key."""
    if api_key is None:
        return "ncbi:anonymous"
    return "ncbi:key:" + hashlib.sha256(api_key.get_secret_value().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Search:
    """One esearch on the history server: how many records, and where they are kept."""

    count: int
    webenv: str
    query_key: str


class _Transient(Exception):
    """An answer worth another try (rate limited, server error, cut short)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class EutilsClient:
    """esearch + efetch against ``settings.eutils_base_url``, paced and retried.

    Args:
        settings: base URL, tool/email, rates, batch sizes, retry bounds.
        api_key: NCBI API key (from the environment); raises the rate to 10/s.
        rng: jitter source (seeded in tests).
        sleep: how backoff waits (the pacer's own sleep too).
        pacing: the SQLite file of the rate shared by every process on the home; None: this
            client paces itself alone.
    """

    def __init__(
        self,
        settings: PubmedSettings,
        api_key: SecretStr | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pacing: Path | None = None,
    ):
        self.settings = settings
        self._key = api_key
        rate = settings.requests_per_second_with_key if api_key else settings.requests_per_second
        self._buckets = RequestBuckets(pacing) if pacing is not None else None
        self.pacer: Paces = (
            SharedPacer(self._buckets, pacing_bucket(api_key), rate, sleep=sleep)
            if self._buckets is not None
            else Pacer(rate, sleep=sleep)
        )
        self._rng = rng or random.Random()  # noqa: S311  backoff jitter, not a secret
        self._sleep = sleep
        self._http = httpx.Client(timeout=settings.timeout_s, follow_redirects=False)

    def __enter__(self) -> EutilsClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()
        if self._buckets is not None:
            self._buckets.close()

    def esearch(self, term: str, since: date, until: date, datetype: str = "edat") -> Search:
        """Records whose ``datetype`` date is in ``since..until``, kept on the history server.

        ``edat``: the entry date (new records); ``mdat``: the modification date (DateRevised),
        which finds records entered earlier and revised in the window.
        """
        params = {
            "db": "pubmed",
            "term": term,
            "datetype": datetype,
            "mindate": edat(since),
            "maxdate": edat(until),
            "usehistory": "y",
            "retmax": "0",
            "retmode": "json",
        }
        return self._call("esearch.fcgi", params, _search_of)

    def efetch(self, search: Search, retstart: int, retmax: int) -> bytes:
        """One batch of PubMed XML (a ``<PubmedArticleSet>``) from the history server."""
        params = {
            "db": "pubmed",
            "query_key": search.query_key,
            "WebEnv": search.webenv,
            "retstart": str(retstart),
            "retmax": str(retmax),
            "retmode": "xml",
        }
        return self._call("efetch.fcgi", params, _whole_article_set)

    def fetch_window(
        self, term: str, since: date, until: date, datetype: str = "edat"
    ) -> Iterator[bytes]:
        """Every record of ``term`` entered (or, ``mdat``, revised) in the window, as XML batches.

        Raises:
            DataContractError: one day alone holds more records than a search can page through.
            BackendUnavailable: NCBI kept failing past ``max_tries``.
        """
        search = self.esearch(term, since, until, datetype)
        if search.count > self.settings.search_limit:
            try:
                first, second = halves(since, until)
            except ValueError:
                raise DataContractError(
                    f"{search.count} records entered on {since}: more than one search can page "
                    f"through ({self.settings.search_limit}); narrow the product's query",
                    record=str(since),
                ) from None
            yield from self.fetch_window(term, *first, datetype)
            yield from self.fetch_window(term, *second, datetype)
            return
        batch = self.settings.efetch_batch
        for retstart in range(0, search.count, batch):
            yield self.efetch(search, retstart, min(batch, search.count - retstart))

    def _call(
        self, endpoint: str, params: dict[str, str], read: Callable[[httpx.Response], T]
    ) -> T:
        url = f"{self.settings.eutils_base_url.rstrip('/')}/{endpoint}"
        body = {**params, "tool": self.settings.tool, "email": self.settings.email}
        if self._key is not None:
            body["api_key"] = self._key.get_secret_value()
        reason = ""
        for attempt in range(1, self.settings.max_tries + 1):
            self.pacer.wait()
            try:
                return read(_checked(self._http.post(url, data=body)))
            except _Transient as exc:
                reason, delay = str(exc), exc.retry_after
            except httpx.TransportError as exc:
                reason, delay = f"{type(exc).__name__}: {exc}", None
            if attempt < self.settings.max_tries:
                self._sleep(delay if delay is not None else self._backoff(attempt))
        raise BackendUnavailable(
            f"NCBI E-utilities {endpoint} failed {self.settings.max_tries} times (last: {reason}); "
            "the run can be started again later: nothing past the last decided chunk was lost"
        )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
        )
        return self._rng.uniform(0, ceiling)


def _checked(response: httpx.Response) -> httpx.Response:
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))
    if status >= 400:
        raise DataContractError(
            f"NCBI refused the request with HTTP {status}: {response.text[:200]}",
            record=str(response.request.url),
        )
    return response


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _search_of(response: httpx.Response) -> Search:
    try:
        result: dict[str, Any] = json.loads(response.content)["esearchresult"]
    except (ValueError, KeyError) as exc:
        raise _Transient(f"esearch answer is not whole JSON: {exc}") from None
    if "ERROR" in result:
        raise DataContractError(f"esearch refused the query: {result['ERROR']}")
    count = int(result["count"])
    return Search(count, str(result.get("webenv", "")), str(result.get("querykey", "")))


def _whole_article_set(response: httpx.Response) -> bytes:
    body = response.content.rstrip()
    if not body.endswith(b"</PubmedArticleSet>"):
        raise _Transient(f"efetch answer cut short ({len(body)} bytes, no </PubmedArticleSet>)")
    return body
