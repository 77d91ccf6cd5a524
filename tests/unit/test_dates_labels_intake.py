from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.core.intake import content_hashes, select_window, split_duplicates, with_derived_fields
from tasks.core.labels import ade_label, split_of
from tasks.tools.dates import normalise_pub_date


def test_pub_date_keeps_precision_and_rejects_impossible_dates():
    raw = pl.DataFrame(
        {"raw": ["2021-03-15", "2021-03", "1977", "2021-13", "2021-02-30", "soon", None]}
    )
    out = raw.select(*normalise_pub_date(pl.col("raw")))
    expected = pl.DataFrame(
        {
            "pub_date": [
                date(2021, 3, 15),
                date(2021, 3, 1),
                date(1977, 1, 1),
                None,
                None,
                None,
                None,
            ],
            "pub_date_precision": ["day", "month", "year", None, None, None, None],
            "pub_month": ["2021-03", "2021-03", "1977-01", None, None, None, None],
        }
    )
    assert_frame_equal(out, expected)


@pytest.mark.parametrize(
    ("mesh", "positive"),
    [
        ("D001:Aspirin / Q000009:adverse effects*; D002:Humans", True),
        ("D010024:Osteoporosis / Q000139:chemically induced", True),
        ("D003:Lithium / Q000633:toxicity", True),
        (
            "D003:Lithium / Q000627:therapeutic use; D005:Adverse Drug Reaction Reporting Systems",
            False,
        ),
        ("", False),
    ],
)
def test_ade_label_reads_mesh_qualifiers_not_heading_names(mesh, positive):
    assert pl.select(ade_label(pl.lit(mesh))).item() is positive


def test_split_is_a_function_of_the_pmid():
    out = pl.DataFrame({"pmid": ["100", "107", "108", "119", "abc", None]}).select(
        split_of(pl.col("pmid"))
    )
    assert out.to_series().to_list() == ["train", "calibration", "test", "test", None, None]


def _citations(**overrides):
    base = {
        "pmid": ["1", "2", "3"],
        "title": ["t1", "t2", "t3"],
        "abstract": ["a1", "a2", "a3"],
        "journal": ["j", "j", "j"],
        "pub_date_raw": ["2021-01-05", "2021-02", "1978"],
        "mesh_terms": ["", "D1:X / Q000009:adverse effects", ""],
        "chemicals": ["", "", ""],
        "source": ["f.xml"] * 3,
        "source_row": [0, 1, 2],
    }
    base.update(overrides)
    return pl.DataFrame(base)


def test_content_hash_changes_with_content_only():
    frame = _citations()
    again = content_hashes(_citations(source=["other.xml"] * 3))
    edited = content_hashes(_citations(abstract=["a1", "a2 revised", "a3"]))
    assert content_hashes(frame).to_list() == again.to_list()
    assert edited.to_list()[1] != again.to_list()[1]
    assert edited.to_list()[0] == again.to_list()[0]


def test_window_keeps_unreadable_dates_for_quarantine():
    frame = with_derived_fields(_citations(pub_date_raw=["2021-01-05", "2021-02", "not a date"]))
    chosen = select_window(
        frame, since=date(2021, 1, 1), until=date(2021, 1, 31), split="all", limit=None
    )
    assert chosen["pmid"].to_list() == ["1", "3"]


def test_duplicates_keep_first_and_name_conflicts():
    frame = with_derived_fields(
        _citations(
            pmid=["5"] * 3,
            title=["t"] * 3,
            mesh_terms=[""] * 3,
            abstract=["same", "same", "changed"],
            pub_date_raw=["2021"] * 3,
        )
    )
    kept, dups = split_duplicates(frame)
    assert kept["source_row"].to_list() == [0]
    assert dups["reason"].to_list() == [
        "duplicate pmid in this batch (identical content)",
        "duplicate pmid in this batch (conflicting content)",
    ]
    assert kept.height + dups.height == frame.height
