"""One key's burst of serious cases cannot make another submitter's death case wait.

The attack: a burst of large serious cases from one key held every model slot, and
another submitter's death case waited 17 s behind it. Now one key holds at most
``max_in_flight_per_submitter`` slots, and a serious case that finds none free within
``urgent_slot_wait_s`` is stored held for a human (the narrative unread) instead of waiting.
No test times anything: each asserts where a case went.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.triage_app import A, B, client, report

DEATH = {"outcome": {"death": True}, "narrative": "He died in hospital the next morning. " * 40}


@pytest.fixture
def api(tmp_path):
    return client(tmp_path / "home", max_in_flight=4, max_in_flight_per_submitter=2)


def test_a_submitter_at_its_cap_cannot_take_the_slots_others_need(api):
    _, triager = api
    assert triager.slots.acquire("k-a", timeout=0) and triager.slots.acquire("k-a", timeout=0)
    assert not triager.slots.acquire("k-a", timeout=0)  # two free slots, none for k-a
    assert triager.slots.acquire("k-b", timeout=0)


def test_another_submitters_death_case_is_read_while_one_key_holds_its_cap(api):
    client_, triager = api
    for _ in range(2):
        triager.slots.acquire("k-a", timeout=0)  # k-a's burst in flight, at its cap
    decision = client_.post("/cases", json=report("B-1", **DEATH), headers=B).json()
    assert (decision["status"], decision["lane"]) == ("held_for_review", "hot")
    assert decision["input_tokens"] > 0 and decision["narrative_score"] is not None


def test_with_no_slot_free_in_time_a_serious_case_is_held_at_once_not_queued(tmp_path):
    client_, triager = client(tmp_path / "home", max_in_flight=2, urgent_slot_wait_s=0.05)
    for owner in ("k-x", "k-y"):
        triager.slots.acquire(owner, timeout=0)
    serious = client_.post("/cases", json=report("B-2", **DEATH), headers=B)
    mild = client_.post("/cases", json=report("B-3", patient={"age_years": 20}), headers=B)
    decision = serious.json()
    assert serious.status_code == 200
    assert (decision["status"], decision["lane"], decision["serious"]) == (
        "held_for_review",
        "hot",
        True,
    )
    assert (decision["input_tokens"], decision["narrative_score"], decision["model"]) == (
        0,
        None,
        None,
    )
    assert (decision["clock_days"], decision["due_date"]) == (15, "2026-03-17")
    assert "SERIOUS_CASE_NEEDS_HUMAN" in decision["reasons"]
    assert mild.json()["status"] == "deferred"  # unchanged: non-urgent cases defer
    assert triager.store.count() == 2
    assert [d.case_id for d in triager.store.held()] == ["B-2"]


def test_under_a_real_burst_the_other_submitter_always_finds_a_slot(api):
    client_, triager = api
    start = threading.Barrier(9)

    def post(case_id, headers):
        start.wait()
        return client_.post("/cases", json=report(case_id, **DEATH), headers=headers)

    with ThreadPoolExecutor(9) as pool:
        burst = [pool.submit(post, f"A-{i}", A) for i in range(8)]
        other = pool.submit(post, "B-9", B).result()
        answers = [f.result() for f in burst]
    # k-a can hold 2 of the 4 slots, so B's death case is read at once, never left unread
    assert other.json()["input_tokens"] > 0
    assert {r.status_code for r in answers} == {200}
    assert {r.json()["status"] for r in answers} == {"held_for_review"}  # read or not: a human
    assert triager.store.count() == 9  # nothing lost
