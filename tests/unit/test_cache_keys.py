from datetime import UTC, datetime, timedelta

import pytest

from tasks.core.cache_keys import (
    Entities,
    QueryClass,
    SemanticCandidate,
    checksum,
    classify,
    exact_key,
    is_fresh,
    is_intact,
    normalise_query,
    semantic_match,
)
from tasks.policy.cache_admission import decide

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
PROPRANOLOL_BRADY = Entities(frozenset({"propranolol"}), frozenset({"D001919"}))


def test_normalisation_ignores_case_punctuation_and_spacing():
    assert normalise_query("  Does Propranolol cause   BRADYCARDIA?? ") == normalise_query(
        "does propranolol cause bradycardia"
    )


def test_exact_key_covers_query_filters_and_index_version():
    base = exact_key("Does X cause Y?", product="aspirin", index_version="idx-1")
    assert base == exact_key("does x cause y", product="ASPIRIN", index_version="idx-1")
    assert base != exact_key("does x cause y", product=None, index_version="idx-1")
    assert base != exact_key("does x cause y", product="aspirin", index_version="idx-2")
    assert base != exact_key("does x cause z", product="aspirin", index_version="idx-1")


@pytest.mark.parametrize(
    ("age", "fresh"),
    [(timedelta(0), True), (timedelta(seconds=59), True), (timedelta(seconds=60), False)],
)
def test_ttl_expiry_with_an_injected_clock(age, fresh):
    assert is_fresh(T0, 60, T0 + age) is fresh


def test_classes_match_in_declared_order_with_a_default():
    signals = QueryClass("signals", 10, ("signal", "prr"))
    latest = QueryClass("latest", 20, ("latest", "what is"))
    default = QueryClass("default", 30)
    assert classify("Any PRR signal for propranolol?", [signals, latest], default) is signals
    assert classify("What is the latest on aspirin", [signals, latest], default) is latest
    assert classify("Does aspirin cause ulcers?", [signals, latest], default) is default
    assert classify("whatis", [signals, latest], default) is default


def test_checksum_detects_a_changed_payload():
    payload = '{"text": "x"}'
    assert is_intact(payload, checksum(payload))
    assert not is_intact(payload + " ", checksum(payload))
    assert not is_intact(None, checksum(payload))


def _candidate(**over):
    fields = dict(
        key="q-1",
        similarity=0.97,
        entities=PROPRANOLOL_BRADY,
        product="",
        index_version="idx-1",
        created_at=T0,
        ttl_seconds=3600,
    )
    fields.update(over)
    return SemanticCandidate(**fields)


@pytest.mark.parametrize(
    ("candidate", "served"),
    [
        (_candidate(), True),
        (_candidate(similarity=0.89), False),
        (_candidate(entities=Entities(frozenset({"metoprolol"}), frozenset({"D001919"}))), False),
        (_candidate(entities=Entities(frozenset({"propranolol"}), frozenset({"D007022"}))), False),
        (_candidate(entities=Entities(frozenset({"propranolol"}), frozenset())), False),
        (_candidate(product="propranolol"), False),
        (_candidate(index_version="idx-0"), False),
        (_candidate(created_at=T0 - timedelta(hours=2)), False),
    ],
)
def test_semantic_match_needs_bound_entities_filter_version_and_freshness(candidate, served):
    got = semantic_match(
        [candidate],
        entities=PROPRANOLOL_BRADY,
        product=None,
        index_version="idx-1",
        bound=0.9,
        now=T0,
    )
    assert (got is candidate) is served


def test_semantic_match_prefers_the_most_similar_eligible():
    near, nearer = _candidate(key="a", similarity=0.91), _candidate(key="b", similarity=0.95)
    got = semantic_match(
        [near, nearer],
        entities=PROPRANOLOL_BRADY,
        product=None,
        index_version="idx-1",
        bound=0.9,
        now=T0,
    )
    assert got is nearer


@pytest.mark.parametrize("kind", ["safety_judgement", "case_decision", "causality", "seriousness"])
def test_a_safety_judgement_is_never_cacheable(kind):
    decision = decide(kind)
    assert not decision.allowed and decision.code == "CACHE_SAFETY_JUDGEMENT"


def test_retrieval_and_summaries_are_cacheable_and_unknown_kinds_are_not():
    assert decide("retrieval").allowed and decide("summary").allowed
    assert decide("verdict").code == "CACHE_UNKNOWN_KIND"
