"""Rate limits live in SQLite under PHARMALANE_HOME: a restart or a second server grants nothing
new; a 429 says when to retry; a flood of bad keys is throttled per client address.

The clock is injected (wall-clock seconds), so bucket arithmetic is exact and no test times
anything. The two-process tests are in ``test_triage_processes.py``.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flows.triage_app import create_app
from tests.triage_app import HEADERS, REV, A, B, build, report

NOW = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def app_over(home, clock, *, address=("testclient", 50000), **triage):
    triager, settings = build(home, **triage)
    return TestClient(create_app(settings, triager, rate_clock=clock), client=address)


def test_a_429_says_when_to_retry_in_whole_seconds(tmp_path):
    client_ = app_over(tmp_path / "home", Clock(), rate_per_minute=2)
    codes = [client_.get("/cases/nope", headers=A).status_code for _ in range(2)]
    refused = client_.get("/cases/nope", headers=A)
    assert (codes, refused.status_code) == ([404, 404], 429)
    assert refused.headers["Retry-After"] == "30"  # one token at 2/min
    assert "retry in 30 s" in refused.json()["detail"]
    assert client_.get("/cases/nope", headers=B).status_code == 404  # another key, own bucket


def test_a_restart_grants_no_fresh_allowance(tmp_path):
    clock = Clock()
    first = app_over(tmp_path / "home", clock, rate_per_minute=3)
    assert [first.get("/cases/nope", headers=A).status_code for _ in range(3)] == [404] * 3
    restarted = app_over(tmp_path / "home", clock, rate_per_minute=3)  # new app, same home
    assert restarted.get("/cases/nope", headers=A).status_code == 429
    clock.now += 20  # 3/min: one token back after 20 s
    assert restarted.get("/cases/nope", headers=A).status_code == 404
    assert restarted.get("/cases/nope", headers=A).status_code == 429


def test_posts_and_reads_share_the_keys_allowance(tmp_path):
    client_ = app_over(tmp_path / "home", Clock(), rate_per_minute=2)
    assert client_.post("/cases", json=report(), headers=A).status_code == 200
    assert client_.get("/cases/C-1", headers=A).status_code == 200
    refused = client_.post("/cases", json=report("C-2"), headers=A)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("bad", [{}, {"X-API-Key": "key-guess"}, HEADERS["old"]])
def test_a_flood_of_bad_keys_is_throttled_per_address(tmp_path, bad):
    home, clock = tmp_path / "home", Clock()
    attacker = app_over(home, clock, address=("203.0.113.9", 4000), failed_auth_per_minute=5)
    codes = [attacker.post("/cases", json=report(), headers=bad).status_code for _ in range(7)]
    assert codes == [401] * 5 + [429] * 2
    throttled = attacker.post("/cases", json=report(), headers=bad)
    assert int(throttled.headers["Retry-After"]) == 12  # one failure back per 60/5 s
    # from that address even a good key waits: a guess that hits is not answered either
    assert attacker.get("/cases/nope", headers=A).status_code == 429
    # another address is not affected, and neither is the key's own allowance
    neighbour = app_over(home, clock, address=("198.51.100.7", 4000), failed_auth_per_minute=5)
    assert neighbour.get("/cases/nope", headers=REV).status_code == 404
    assert neighbour.post("/cases", json=report(), headers=bad).status_code == 401
    clock.now += 12
    assert attacker.post("/cases", json=report(), headers=bad).status_code == 401


def test_good_keys_do_not_spend_the_address_allowance(tmp_path):
    client_ = app_over(tmp_path / "home", Clock(), failed_auth_per_minute=2)
    assert [client_.get("/cases/nope", headers=A).status_code for _ in range(5)] == [404] * 5
    codes = [client_.get("/cases/nope").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_the_bucket_file_is_readable_by_its_owner_only(tmp_path):
    """It names key ids and client addresses: private like the case store beside it."""
    client_ = app_over(tmp_path / "home", Clock())
    client_.get("/cases/nope", headers=A)
    files = sorted((tmp_path / "home" / "triage").glob("rate_limits.sqlite*"))
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
