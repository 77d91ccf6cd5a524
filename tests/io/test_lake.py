import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from tasks.errors import DataContractError
from tasks.io.lake import Lake

SCHEMA = pa.schema(
    [pa.field("id", pa.string()), pa.field("month", pa.string()), pa.field("value", pa.float64())]
)


def _rows(ids, months, values):
    return pl.DataFrame({"id": ids, "month": months, "value": values})


def test_write_is_hive_partitioned_and_leaves_no_temp_files(tmp_path):
    lake = Lake(tmp_path)
    written = lake.write(
        "ds",
        _rows(["a", "b"], ["2021-01", "2021-02"], [1.0, 2.0]),
        SCHEMA,
        partition_by="month",
        stem="s1",
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "ds/month=2021-01/s1.parquet",
        "ds/month=2021-02/s1.parquet",
    ]
    assert [
        p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".parquet")
    ] == []
    back = lake.read("ds").sort("id")
    assert back.select("id", "month", "value").to_dicts() == [
        {"id": "a", "month": "2021-01", "value": 1.0},
        {"id": "b", "month": "2021-02", "value": 2.0},
    ]


def test_append_new_is_idempotent_across_reruns_and_stems(tmp_path):
    lake = Lake(tmp_path)
    first = lake.append_new(
        "ds",
        _rows(["a", "b"], ["m", "m"], [1.0, 2.0]),
        SCHEMA,
        keys=["id"],
        partition_by="month",
        stem="run1",
    )
    again = lake.append_new(
        "ds",
        _rows(["a", "b", "c"], ["m", "m", "m"], [1.0, 2.0, 3.0]),
        SCHEMA,
        keys=["id"],
        partition_by="month",
        stem="run2",
    )
    assert (first, again) == (2, 1)
    assert sorted(lake.read("ds")["id"].to_list()) == ["a", "b", "c"]


def test_a_value_that_does_not_fit_the_schema_is_a_contract_error(tmp_path):
    bad = pl.DataFrame({"id": ["a"], "month": ["m"], "value": ["not a number"]})
    with pytest.raises(DataContractError, match="schema"):
        Lake(tmp_path).write("ds", bad, SCHEMA, partition_by="month", stem="x")
    with pytest.raises(DataContractError, match="missing columns"):
        Lake(tmp_path).write("ds", bad.drop("value"), SCHEMA, partition_by="month", stem="x")


def test_query_sees_every_dataset_as_a_view(tmp_path):
    lake = Lake(tmp_path)
    lake.write(
        "ds", _rows(["a", "b"], ["m", "m"], [1.5, 2.5]), SCHEMA, partition_by="month", stem="s"
    )
    assert (
        lake.query("SELECT sum(value) AS total FROM ds WHERE value > $1", [2.0])["total"].item()
        == 2.5
    )
    assert Lake(tmp_path / "empty").read("ds").is_empty()


def test_nested_datasets_partitioned_differently_are_separate_views(tmp_path):
    lake = Lake(tmp_path)
    lake.write(
        "sums/by_month",
        _rows(["a", "b"], ["m1", "m2"], [1.0, 2.0]),
        SCHEMA,
        partition_by="month",
        stem="s",
    )
    by_kind = pa.schema([pa.field("id", pa.string()), pa.field("kind", pa.string())])
    lake.write(
        "sums/by_kind",
        pl.DataFrame({"id": ["c"], "kind": ["k"]}),
        by_kind,
        partition_by="kind",
        stem="s",
    )
    lake.write("ds", _rows(["d"], ["m"], [4.0]), SCHEMA, partition_by="month", stem="s")
    assert lake.datasets() == ["ds", "sums/by_kind", "sums/by_month"]
    counts = lake.query(
        'SELECT (SELECT count(*) FROM "sums/by_month") AS months, '
        '(SELECT count(*) FROM "sums/by_kind") AS kinds, (SELECT count(*) FROM ds) AS ds'
    )
    assert counts.row(0) == (2, 1, 1)
    assert Lake(tmp_path / "empty").datasets() == []


def test_timestamps_round_trip_in_utc(tmp_path):
    schema = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("p", pa.string()),
            pa.field("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    now = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    Lake(tmp_path).write(
        "t",
        pl.DataFrame({"id": ["a"], "p": ["x"], "at": [now]}),
        schema,
        partition_by="p",
        stem="s",
    )
    assert Lake(tmp_path).read("t")["at"].item() == now


def _append_overlapping(root: str, worker: int, rounds: int, start) -> None:
    """One process: ``rounds`` appends of 60 keys, each overlapping the next round's by 30."""
    lake = Lake(Path(root))
    start.wait()  # every process begins together, so their read-then-write steps interleave
    for r in range(rounds):
        ids = [f"k{i:05d}" for i in range(r * 30, r * 30 + 60)]
        lake.append_new(
            "shared",
            _rows(ids, ["m"] * len(ids), [float(worker)] * len(ids)),
            SCHEMA,
            keys=["id"],
            partition_by="month",
            stem=f"w{worker}-r{r}",
        )


@pytest.mark.parametrize("attempt", range(3))
def test_processes_appending_overlapping_keys_write_each_key_once(tmp_path, attempt):
    """The attack: two lanes appending overlapping keys duplicated 7,500 of 45,000 keys."""
    spawn = multiprocessing.get_context("spawn")
    workers, rounds = 4, 12
    start = spawn.Barrier(workers)
    procs = [
        spawn.Process(target=_append_overlapping, args=(str(tmp_path), w, rounds, start))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * workers
    ids = Lake(tmp_path).read("shared")["id"]
    expected = {f"k{i:05d}" for i in range((rounds - 1) * 30 + 60)}
    assert ids.n_unique() == ids.len(), f"{ids.len() - ids.n_unique()} duplicate keys"
    assert set(ids) == expected


def _append_blocks(lake, blocks, size):
    for b in range(blocks):
        ids = [f"k{b * size + i:06d}" for i in range(size)]
        lake.append_new(
            "ds",
            _rows(ids, [f"2021-{b % 12 + 1:02d}"] * size, [1.0] * size),
            SCHEMA,
            keys=["id"],
            partition_by="month",
            stem=f"b{b}",
        )


def test_an_append_reads_only_its_own_keys_however_long_the_history(tmp_path):
    """The per-block read is bounded: no old file is re-read and the index returns only the
    block's keys that exist, through a primary-key search, not a scan of every key."""
    _append_blocks(Lake(tmp_path), blocks=40, size=250)  # 10,000 keys of history
    lake = Lake(tmp_path)  # a new process: nothing cached in memory
    block = _rows(["k000001", "k009999", "new-1", "new-2"], ["2022-01"] * 4, [2.0] * 4)
    written = lake.append_new("ds", block, SCHEMA, keys=["id"], partition_by="month", stem="late")
    index = lake.key_index("ds", ["id"])
    assert written == 2
    assert index.keys_returned == 2  # the block's two old keys, not the 10,000
    assert (index.files_indexed, index.files_read) == (1, 0)  # its own file, from memory
    assert "SEARCH" in index.plan() and "SCAN" not in index.plan()
    assert lake.unseen("ds", block, keys=["id"]).is_empty()
    assert index.keys_returned == 2 + 4 and (index.files_indexed, index.files_read) == (1, 0)


def test_the_key_index_follows_files_it_did_not_write(tmp_path):
    """The index is a cache of the files: a file written around append_new, a removed file and
    a lost index are all caught up before the next lookup."""
    lake = Lake(tmp_path)
    _append_blocks(lake, blocks=2, size=3)
    lake.write("ds", _rows(["x"], ["2021-05"], [1.0]), SCHEMA, partition_by="month", stem="side")
    assert lake.unseen("ds", _rows(["x", "y"], ["m", "m"], [1.0, 1.0]), keys=["id"])[
        "id"
    ].to_list() == ["y"]
    for path in lake.dataset_dir("ds").rglob("b0.parquet"):
        path.unlink()  # k000000..k000002 are gone from the lake
    gone = _rows(["k000000", "k000003"], ["m", "m"], [1.0, 1.0])
    assert lake.unseen("ds", gone, keys=["id"])["id"].to_list() == ["k000000"]
    for path in (tmp_path / ".keys").iterdir():
        path.unlink()
    fresh = Lake(tmp_path)
    assert fresh.unseen("ds", gone, keys=["id"])["id"].to_list() == ["k000000"]
    assert fresh.key_index("ds", ["id"]).files_read == 2  # b1 and side, rebuilt
    fresh.write("ds", _rows(["z"], ["2021-05"], [1.0]), SCHEMA, partition_by="month", stem="side")
    back = fresh.unseen("ds", _rows(["x", "z"], ["m", "m"], [1.0, 1.0]), keys=["id"])
    assert back["id"].to_list() == ["x"]  # the replaced file's old key is gone, its new one in


def test_a_partition_column_can_be_part_of_the_key(tmp_path):
    lake = Lake(tmp_path)
    rows = _rows(["a", "a"], ["2021-01", "2021-02"], [1.0, 2.0])
    assert (
        lake.append_new("ds", rows, SCHEMA, keys=["id", "month"], partition_by="month", stem="s")
        == 2
    )
    again = _rows(["a", "a"], ["2021-02", "2021-03"], [1.0, 2.0])
    assert (
        lake.append_new("ds", again, SCHEMA, keys=["id", "month"], partition_by="month", stem="t")
        == 1
    )


def test_files_of_an_older_schema_are_read_beside_newer_ones(tmp_path):
    """A file written before a column existed (and one with its columns in another order) is
    read by name, its missing column null, through ``read`` and ``query`` alike; a file
    replaced under the same name with another schema is seen as replaced."""
    lake = Lake(tmp_path)
    older = pa.schema([pa.field("id", pa.string()), pa.field("month", pa.string())])
    lake.write("ds", _rows(["a"], ["m1"], [1.0]), SCHEMA, partition_by="month", stem="new")
    assert lake.read("ds").select("id", "value").rows() == [("a", 1.0)]  # one schema so far
    lake.write(
        "ds", pl.DataFrame({"id": ["b"], "month": ["m1"]}), older, partition_by="month", stem="old"
    )
    reordered = pa.schema([SCHEMA.field("value"), SCHEMA.field("month"), SCHEMA.field("id")])
    lake.write("ds", _rows(["c"], ["m2"], [3.0]), reordered, partition_by="month", stem="swap")
    expected = [("a", "m1", 1.0), ("b", "m1", None), ("c", "m2", 3.0)]
    assert lake.read("ds").select("id", "month", "value").sort("id").rows() == expected
    queried = lake.query("SELECT id, month, value FROM ds ORDER BY id")
    assert queried.rows() == expected
    # the older file replaced by one of today's schema: read by position again, still right
    lake.write(
        "ds",
        pl.DataFrame({"id": ["b"], "month": ["m1"], "value": [2.0]}),
        SCHEMA,
        partition_by="month",
        stem="old",
    )
    (tmp_path / "ds" / "month=m2" / "swap.parquet").unlink()
    assert lake.read("ds").select("id", "value").sort("id").rows() == [("a", 1.0), ("b", 2.0)]
