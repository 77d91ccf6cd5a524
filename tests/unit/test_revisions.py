"""Which decision of a revised or withdrawn citation is current (tasks/core/revisions.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from polars.testing import assert_frame_equal

from tasks.core.intake import content_hashes
from tasks.core.revisions import current_versions, revision_marks

T1, T2, T3 = (datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3))
DECISIONS = pl.DataFrame(
    {
        "item_id": ["1", "1", "1", "2", "3"],
        "content_hash": ["a", "a", "b", "c", "d"],
        "decision": ["escalated", "case_candidate", "closed_negative", "escalated", "escalated"],
        "decided_at": [T1, T2, T3, T1, T1],
    }
)


def test_revision_marks_name_the_superseded_version_and_leave_new_items_alone():
    pending = pl.DataFrame({"item_id": ["1", "9"], "content_hash": ["z", "y"]})

    marked = revision_marks(pending, DECISIONS.select("item_id", "content_hash", "decided_at"), T3)

    assert marked.select("item_id", "supersedes", "revised_at").rows() == [
        ("1", "b", T3),
        ("9", None, None),
    ]
    empty = revision_marks(pending, pl.DataFrame(), T3)
    assert empty["revised_at"].is_null().all() and empty["supersedes"].is_null().all()


def test_current_versions_keep_every_row_of_the_newest_version_and_drop_withdrawn_items():
    current = current_versions(DECISIONS, pl.Series(["3"]))

    expected = DECISIONS.filter(pl.col("content_hash").is_in(["b", "c"]))
    assert_frame_equal(current.sort("item_id", "decided_at"), expected)
    assert current_versions(DECISIONS).height == 3  # nothing withdrawn: items 1 (b), 2, 3


def test_a_new_medline_version_changes_the_hash_and_version_1_hashes_as_before():
    base = {
        "pmid": ["7"],
        "title": ["t"],
        "abstract": ["a"],
        "journal": ["j"],
        "pub_date_raw": ["2020"],
        "mesh_terms": [""],
        "chemicals": [""],
    }
    plain = content_hashes(pl.DataFrame(base))
    v1 = content_hashes(pl.DataFrame({**base, "pmid_version": ["1"]}))
    none = content_hashes(pl.DataFrame({**base, "pmid_version": [None]}))
    v2 = content_hashes(pl.DataFrame({**base, "pmid_version": ["2"]}))
    assert plain[0] == v1[0] == none[0] != v2[0]


def test_the_escalation_lane_deciding_an_old_version_late_does_not_make_it_current():
    late = pl.DataFrame(
        {
            "item_id": ["1"],
            "content_hash": ["a"],
            "decision": ["not_ade"],
            "decided_at": [datetime(2026, 12, 9, tzinfo=UTC)],
        }
    )
    decisions = pl.concat([DECISIONS, late])

    current = current_versions(decisions).filter(pl.col("item_id") == "1")
    assert set(current["content_hash"]) == {"b"}
    pending = pl.DataFrame({"item_id": ["1"], "content_hash": ["z"]})
    assert revision_marks(pending, decisions, T3)["supersedes"].to_list() == ["b"]
