"""A real server killed mid-stream (SIGKILL) loses no accepted case: a new app over the same
store (in this process: a second server start costs ~30 s on the shared CI cores) answers every
accepted case with its first decision and takes the rest."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from flows.triage_app import create_app
from tasks.io.ae_feed import replay_feed
from tasks.services.runtime import Runtime
from tasks.services.triage import Triager
from tasks.services.triage_access import hash_key
from tasks.settings import ApiKey, TriageSettings, load_settings
from tests.triage_server import SALT, SUBMITTER_ID, SUBMITTER_KEY, free_port, start_server, stop

HEADERS = {"X-API-Key": SUBMITTER_KEY}


@pytest.mark.slow
def test_kill_mid_stream_then_restart_loses_no_accepted_case(tmp_path):
    home, port = tmp_path / "home", free_port()
    cases = replay_feed()[0][:40]
    first = start_server(home, port)
    url = f"http://127.0.0.1:{port}"
    accepted: dict[str, dict] = {}
    lock = threading.Lock()

    def post(case):
        try:
            response = httpx.post(f"{url}/cases", json=case, headers=HEADERS, timeout=30)
        except httpx.HTTPError:
            return  # the server died under this request: not accepted, the client retries
        if response.status_code == 200:
            with lock:
                accepted[case["case_id"]] = response.json()
                if len(accepted) == 10:
                    first.kill()  # SIGKILL while other requests are in flight

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(post, cases))
    finally:
        stop(first)
    assert 10 <= len(accepted) < len(cases)  # killed mid-stream, with answers before it

    settings = load_settings(
        home=home,
        triage=TriageSettings(
            key_salt=SALT,
            api_keys=[
                ApiKey(key_id=SUBMITTER_ID, sha256=hash_key(SALT, SUBMITTER_KEY), role="submitter")
            ],
        ),
    )
    store = Runtime.for_settings(settings).triage_store
    assert store.count() >= len(accepted)  # answered => committed before the answer
    client = TestClient(create_app(settings, Triager.build(Runtime.for_settings(settings), store)))
    for case_id, answer in accepted.items():
        assert client.get(f"/cases/{case_id}", headers=HEADERS).json() == answer
    for case in cases:  # the client resubmits everything: the first decision stands
        response = client.post("/cases", json=case, headers=HEADERS)
        assert response.status_code == 200
        if case["case_id"] in accepted:
            assert response.json() == accepted[case["case_id"]]
            assert response.headers["Idempotent-Replay"] == "true"
    assert store.count() == len(cases)
