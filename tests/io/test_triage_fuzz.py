"""Schema-driven fuzz of the intake API: schemathesis reads the app's own OpenAPI and generates
bodies that fit it (positive) and bodies that break it (negative); half the positive cases get
a plausible receipt date so they reach the model, the store and idempotency.

For every request: no 5xx, and no generated string in any server-side log line; no narrative,
drug, reaction or initials value in the answer. Bounded: ~100 examples per operation and mode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from flows.triage_app import create_app
from tests.triage_app import REV, A, build, report

CLIENT_SIDE = ("httpx", "httpcore", "httpx2", "hypothesis", "schemathesis", "asyncio")
CASE_TEXT_FIELDS = ("narrative", "suspect_drugs", "reactions", "patient")


class Lines(logging.Handler):
    """Every server-side log record, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_SIDE):
            self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def server_log() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def intake(tmp_path_factory) -> schemathesis.BaseSchema:
    triager, settings_ = build(tmp_path_factory.mktemp("fuzz") / "home", rate_per_minute=10**6)
    app = create_app(settings_, triager)
    # a held case gives POST /reviews/{item_id} something to reach
    TestClient(app).post("/cases", json=report("H-1", outcome={"death": True}), headers=A)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(strings(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(strings(v) for v in value), set())
    return set()


def case_text(body: Any, answer: str = "") -> set[str]:
    """Narrative and patient strings of a body; case ids are named in answers by design (the
    case's own, and the same submitter's earlier case it duplicates or follows up), and so are
    the answer's own field names ("detail")."""
    if not isinstance(body, dict):
        return set()
    ids = [str(body.get("case_id", ""))]
    try:
        named = json.loads(answer)
    except ValueError:
        named = None
    if isinstance(named, dict):
        ids += [str(named.get(k) or "") for k in ("duplicate_of", "follow_up_of")]
        ids += [f'"{k}"' for k in named]
    found = {s for f in CASE_TEXT_FIELDS for s in strings(body.get(f)) if len(s.strip()) >= 6}
    return {s for s in found if not any(s in named_id for named_id in ids)}


@pytest.mark.slow
# schemathesis's negative-mode generator calls `random` inside a strategy now and then;
# hypothesis warns about that (a library matter, not a finding about the app)
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:"
    "hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("path", "key"), [("/cases", A), ("/reviews/{item_id}", REV)])
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_fuzzed_requests_never_get_a_5xx_nor_leak_case_text(
    intake, server_log, path, key, mode, data
):
    operation = intake[path]["POST"]
    held = {"item_id": "H-1"} if "{item_id}" in path and data.draw(st.booleans()) else None
    case = data.draw(operation.as_strategy(mode, headers=key, path_parameters=held))
    fits = mode is GenerationMode.POSITIVE and isinstance(case.body, dict)
    if fits and "case_id" in case.body and data.draw(st.booleans()):
        case.body["received_at"] = "2026-03-02T09:00:00+00:00"
    before = len(server_log.lines)
    response = case.call()
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: what was reached
    assert response.status_code < 500, (response.status_code, response.text[:500])
    logged = "\n".join(server_log.lines[before:])
    generated = {s for s in strings(case.body) | strings(case.path_parameters) if len(s) >= 4}
    assert not [s for s in generated if s in logged]
    leaked = [s for s in case_text(case.body, response.text) if s in response.text]
    assert not leaked, (case.body, response.text)
