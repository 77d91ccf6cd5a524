"""The parsed-block cache filled by several processes at once (backfill windows on Dask
workers, or two scans started together) keeps whole, identical blocks and no temp file."""

from __future__ import annotations

import multiprocessing
import queue
import time
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from tasks.services.intake import citation_blocks, read_block
from tests.conftest import real_medline_records, write_medline

SPAWN = multiprocessing.get_context("spawn")
BLOCK_ROWS = 25  # 600 records: 24 blocks, 48 files, each written by every parser


def parse(source: str, cache: str, barrier, results) -> None:
    barrier.wait()
    results.put([str(b) for b in citation_blocks([Path(source)], Path(cache), BLOCK_ROWS)])


def test_three_processes_parsing_one_file_at_once_leave_the_blocks_of_one_parse(tmp_path):
    source = write_medline(tmp_path / "night.xml", real_medline_records(600))
    cache = tmp_path / "cache"
    barrier, results = SPAWN.Barrier(3, timeout=120), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=parse, args=(str(source), str(cache), barrier, results))
        for _ in range(3)
    ]
    for proc in procs:
        proc.start()
    listed: list[list[str]] = []
    deadline = time.monotonic() + 240
    while len(listed) < len(procs) and time.monotonic() < deadline:
        try:
            listed.append(results.get(timeout=1))
        except queue.Empty:  # a parser that died says so now, not at the deadline
            assert all(p.exitcode in (None, 0) for p in procs), [p.exitcode for p in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert listed[0] == listed[1] == listed[2] and len(listed[0]) == 24

    alone = citation_blocks([source], tmp_path / "alone", BLOCK_ROWS)
    for shared, own in zip(listed[0], alone, strict=True):
        for got, want in zip(read_block(Path(shared)), read_block(own), strict=True):
            assert_frame_equal(got, want)
    leftovers = [p.name for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert pl.concat(read_block(Path(b))[0] for b in listed[0]).height == 600 - sum(
        read_block(Path(b))[1].height for b in listed[0]
    )
