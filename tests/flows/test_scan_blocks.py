"""A scan in many small blocks decides exactly what a scan in one block decides."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import flows.nightly_literature_scan as scan_flow
from flows.nightly_literature_scan import nightly_literature_scan
from tasks.io.lake import Lake
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

pytestmark = pytest.mark.slow
COMPARED = ["item_id", "content_hash", "path", "decision", "route", "products"]


def test_small_blocks_decide_what_one_block_decides(tmp_path, monkeypatch):
    records = real_medline_records(600, skip=3000)
    in_scope = pmids_mentioning_products(records, tmp_path)
    chosen = [r for r in records if pmid_of(r) in in_scope][:12] + [
        r for r in records if pmid_of(r) not in in_scope
    ][:30]
    source = str(write_medline(tmp_path / "night.xml", chosen))

    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "one"))
    one = nightly_literature_scan(sources=[source])
    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "many"))
    monkeypatch.setenv("PHARMALANE_SCAN__BLOCK_ROWS", "7")
    steps: list[str] = []
    intake = scan_flow.block_intake
    monkeypatch.setattr(scan_flow, "release_cyclic_garbage", lambda: steps.append("gc") or 0)
    monkeypatch.setattr(
        scan_flow, "block_intake", lambda *a, **k: steps.append("b") or intake(*a, **k)
    )
    many = nightly_literature_scan(sources=[source], limit=40)
    many_steps = list(steps)
    rest = nightly_literature_scan(sources=[source])

    assert many.rows_in == 40  # the limit holds across blocks
    blocks = many_steps.count("b")  # cyclic garbage is freed between blocks, never after the last
    assert blocks > 3 and "-".join(many_steps) == "-gc-".join(["b"] * blocks)
    assert rest.already_decided == many.valid and rest.rows_in == one.rows_in
    assert many.valid + rest.screened == one.valid

    def decided(home: str) -> pl.DataFrame:
        frame = Lake(tmp_path / home / "lake").read("decisions")
        return frame.select(COMPARED).sort("item_id")

    assert_frame_equal(decided("many"), decided("one"))
