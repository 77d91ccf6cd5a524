"""The real intake app over a real store in a folder, two submitters and a reviewer, for tests.

``served`` runs the same app under a real uvicorn on loopback in a thread of the test process
(the model is loaded once per process; a subprocess server costs ~30 s to start here).
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flows.triage_app import create_app
from models.embedder import default_embedder
from models.narrative import NarrativeFlagger
from tasks.rules import load_models, load_policies
from tasks.services.runtime import Runtime
from tasks.services.triage import NARRATIVE_TASK, Triager
from tasks.services.triage_access import hash_key
from tasks.settings import ApiKey, Settings, TriageSettings, load_settings

SALT = "test-salt"
ROLES = {"a": "submitter", "b": "submitter", "rev": "reviewer", "old": "submitter"}
HEADERS = {name: {"X-API-Key": f"key-{name}"} for name in ROLES}
A, B, REV = HEADERS["a"], HEADERS["b"], HEADERS["rev"]


def api_keys() -> list[ApiKey]:
    return [
        ApiKey(key_id=f"k-{k}", sha256=hash_key(SALT, f"key-{k}"), role=r, revoked=(k == "old"))
        for k, r in ROLES.items()
    ]


@functools.cache
def flagger() -> NarrativeFlagger:
    return NarrativeFlagger(default_embedder(), threshold=0.55)


def build(home: Path, **triage: Any) -> tuple[Triager, Settings]:
    """A Triager over a real store under ``home`` with the packaged MiniLM."""
    fields = {"api_keys": api_keys(), "key_salt": SALT} | triage
    settings = load_settings(home=home, triage=TriageSettings(**fields))
    catalog = load_models(settings)
    key = catalog.tasks[NARRATIVE_TASK]
    triager = Triager(
        Runtime.for_settings(settings),
        Runtime.for_settings(settings).triage_store,
        flagger(),
        rules=load_policies(settings).rules,
        price=catalog.models[key],
        model_key=key,
    )
    return triager, settings


def client(
    home: Path, *, rate_clock: Callable[[], float] = time.time, **triage: Any
) -> tuple[TestClient, Triager]:
    triager, settings = build(home, **triage)
    return TestClient(create_app(settings, triager, rate_clock=rate_clock)), triager


def report(case_id: str = "C-1", **fields: Any) -> dict[str, Any]:
    body = {
        "case_id": case_id,
        "received_at": "2026-03-02T09:00:00+00:00",
        "reporter": {"qualification": "physician", "country": "NL"},
        "patient": {"initials": "AB", "age_years": 54, "sex": "F"},
        "suspect_drugs": ["Xanomeline"],
        "reactions": [{"term": "Application site pruritus", "severity_grade": 1}],
        "narrative": "Mild itching where the patch was applied. It resolved after two days.",
    }
    return body | fields


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn on loopback (its own log setup left alone, so caplog sees it)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
