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
