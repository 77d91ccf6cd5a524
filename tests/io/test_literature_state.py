"""Watermarks move forward only; first-seen times are written once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasks.io.literature_state import LiteratureState

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def test_a_watermark_only_moves_forward(tmp_path):
    state = LiteratureState(tmp_path / "state.sqlite")
    assert state.watermark("pubmed-query", "aspirin") is None
    assert state.advance("pubmed-query", "aspirin", "2021-03-02", NOW) == "2021-03-02"
    # a late or replayed writer cannot move it back (a gap would then be fetched twice)
    assert state.advance("pubmed-query", "aspirin", "2021-03-01", NOW) == "2021-03-02"
    assert state.advance("pubmed-query", "aspirin", "2021-03-05", NOW) == "2021-03-05"
    assert state.watermark("pubmed-query", "heparin") is None  # per product query
    reopened = LiteratureState(tmp_path / "state.sqlite")
    assert reopened.watermark("pubmed-query", "aspirin") == "2021-03-05"


def test_first_seen_is_kept_on_every_later_sighting(tmp_path):
    state = LiteratureState(tmp_path / "state.sqlite")
    first = state.first_seen(["1", "2"], NOW)
    later = state.first_seen(["2", "3"], NOW + timedelta(days=3))
    assert first == {"1": NOW, "2": NOW}
    assert later == {"2": NOW, "3": NOW + timedelta(days=3)}
    many = [str(i) for i in range(1200)]  # more ids than one statement may bind
    assert len(state.first_seen(many, NOW)) == 1200
