"""The lake on a local S3-compatible server (moto): same answers as on disk, write-then-commit."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from tasks.errors import BackendUnavailable, ConfigError
from tasks.io.lake import Lake, LakeStore
from tasks.io.object_lake import ObjectLake
from tasks.io.object_store import Bucket
from tasks.io.storage import open_lake
from tasks.settings import load_settings

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("month", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("note", pa.string(), metadata={"optional": "1"}),
    ]
)
AT = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)


def _rows(ids: list[str], months: list[str], values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "month": months, "value": values, "at": [AT] * len(ids)})


def _object_lake(home: Path) -> ObjectLake:
    lake = open_lake(load_settings(home=home))
    assert isinstance(lake, ObjectLake)
    return lake


def _history(lake: LakeStore) -> dict[str, object]:
    """The same writes on any lake, and everything a service could read back."""
    appended = [
        lake.append_new(
            "ds", _rows(ids, ["m1", "m2"][: len(ids)], vals), SCHEMA, keys=["id"],
            partition_by="month", stem=stem,
        )
        for ids, vals, stem in ((["a", "b"], [1.0, 2.0], "r1"), (["b", "c"], [2.0, 3.0], "r2"),
                                (["a", "b"], [1.0, 2.0], "r3"))
    ]  # fmt: skip
    lake.write("sum/by_kind", _rows(["x"], ["k"], [9.0]), SCHEMA, partition_by="month", stem="s")
    lake.write("sum/by_kind", _rows(["y"], ["k"], [8.0]), SCHEMA, partition_by="month", stem="s")
    keyed = pl.DataFrame({"id": ["a", "a", "z"], "month": ["m1", "m9", "m1"]})
    return {
        "appended": appended,
        "datasets": lake.datasets(),
        "files": {d: len(lake.files(d)) for d in lake.datasets()},
        "read": lake.read("ds").sort("id"),
        "where": lake.read("ds", ["id", "value"], where="value > $2", params=[1.5]).sort("id"),
        "unseen": lake.unseen("ds", keyed, keys=["id", "month"]),
        "replaced": lake.read("sum/by_kind"),
        "query": lake.query(
            'SELECT d.id, s.id AS s FROM ds AS d, "sum/by_kind" AS s WHERE d.at = $1 ORDER BY 1',
            [AT],
        ),
    }


def test_the_object_lake_answers_as_the_lake_on_disk(tmp_path, s3_env):
    on_disk = _history(Lake(tmp_path / "disk"))
    on_s3 = _history(_object_lake(tmp_path / "home"))
    assert on_s3["appended"] == on_disk["appended"] == [2, 1, 0]
    assert on_s3["datasets"] == on_disk["datasets"] == ["ds", "sum/by_kind"]
    assert on_s3["files"] == on_disk["files"] == {"ds": 3, "sum/by_kind": 1}
    for name in ("read", "where", "unseen", "replaced", "query"):
        assert isinstance(on_s3[name], pl.DataFrame)
        assert_frame_equal(on_s3[name], on_disk[name])  # type: ignore[arg-type]
    read = on_s3["read"]
    assert isinstance(read, pl.DataFrame)
    assert read["at"].to_list() == [AT, AT, AT]
    assert read["note"].to_list() == [None, None, None]


def test_a_fresh_key_index_is_rebuilt_from_the_commits(tmp_path, s3_env):
    first = _object_lake(tmp_path / "home-1")
    first.append_new("ds", _rows(["a"], ["m"], [1.0]), SCHEMA, keys=["id"],
                     partition_by="month", stem="r1")  # fmt: skip
    other_host = _object_lake(tmp_path / "home-2")  # its own, empty, local index
    written = other_host.append_new(
        "ds", _rows(["a", "b"], ["m", "m"], [1.0, 2.0]), SCHEMA, keys=["id"],
        partition_by="month", stem="r2",
    )  # fmt: skip
    assert written == 1
    assert sorted(first.read("ds")["id"].to_list()) == ["a", "b"]


def _append_then_die_before_commit(home: str, env: dict[str, str]) -> None:
    os.environ.update(env)
    lake = _object_lake(Path(home))
    real_put = lake.bucket.put

    def put(key: str, body: bytes, *, if_absent: bool = False) -> bool:
        if "/_commits/" in key:  # the data objects are written: killed before the commit
            os.kill(os.getpid(), signal.SIGKILL)
        return real_put(key, body, if_absent=if_absent)

    lake.bucket.put = put  # type: ignore[method-assign]
    lake.append_new("ds", _rows(["b", "c"], ["m1", "m2"], [2.0, 3.0]), SCHEMA, keys=["id"],
                    partition_by="month", stem="r2")  # fmt: skip


def test_a_writer_killed_between_data_and_commit_leaves_nothing_visible(tmp_path, s3_env):
    lake = _object_lake(tmp_path / "home")
    lake.append_new("ds", _rows(["a"], ["m1"], [1.0]), SCHEMA, keys=["id"],
                    partition_by="month", stem="r1")  # fmt: skip
    killed = multiprocessing.get_context("spawn").Process(
        target=_append_then_die_before_commit, args=(str(tmp_path / "home"), s3_env)
    )
    killed.start()
    killed.join(120)
    assert killed.exitcode == -signal.SIGKILL
    data = [k for k in lake.bucket.keys(lake.prefix + "/ds/") if k.endswith(".parquet")]
    assert len(data) == 3  # r1's object and the two the killed writer left uncommitted
    assert lake.read("ds")["id"].to_list() == ["a"]
    assert len(lake.files("ds")) == 1
    resumed = _object_lake(tmp_path / "home")
    rows = _rows(["a", "b", "c"], ["m1", "m1", "m2"], [1.0, 2.0, 3.0])
    assert resumed.append_new("ds", rows, SCHEMA, keys=["id"], partition_by="month",
                              stem="r2") == 2  # fmt: skip
    assert resumed.append_new("ds", rows, SCHEMA, keys=["id"], partition_by="month",
                              stem="r3") == 0  # fmt: skip
    assert sorted(resumed.read("ds")["id"].to_list()) == ["a", "b", "c"]


def _append_overlapping(home: str, env: dict[str, str], ids: list[str], stem: str) -> int:
    os.environ.update(env)
    rows = _rows(ids, ["m"] * len(ids), [1.0] * len(ids))
    lake = _object_lake(Path(home))
    return lake.append_new("ds", rows, SCHEMA, keys=["id"], partition_by="month", stem=stem)


def test_writers_on_separate_hosts_racing_for_commits_write_each_key_once(tmp_path, s3_env):
    ids = [f"k{i:03d}" for i in range(60)]
    jobs = [
        (str(tmp_path / f"host-{n}"), s3_env, ids[n * 10 : n * 10 + 40], f"w{n}") for n in range(3)
    ]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        written = pool.starmap(_append_overlapping, jobs)
    stored = _object_lake(tmp_path / "reader").read("ds")["id"]
    assert sum(written) == stored.len() == 60
    assert stored.n_unique() == 60


def test_an_absent_or_malformed_credential_names_its_setting(tmp_path, s3_env, monkeypatch):
    monkeypatch.delenv("PHARMALANE_S3_ACCESS_KEY_ID")
    with pytest.raises(ConfigError, match="PHARMALANE_S3_ACCESS_KEY_ID"):
        open_lake(load_settings(home=tmp_path))
    monkeypatch.setenv("PHARMALANE_S3_ACCESS_KEY_ID", "has a space")
    with pytest.raises(ConfigError, match="PHARMALANE_S3_ACCESS_KEY_ID"):
        open_lake(load_settings(home=tmp_path))
    monkeypatch.setenv("PHARMALANE_S3_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("PHARMALANE_S3_SECRET_ACCESS_KEY", "")
    with pytest.raises(ConfigError, match="PHARMALANE_S3_SECRET_ACCESS_KEY"):
        open_lake(load_settings(home=tmp_path))


def test_a_wrong_uri_or_endpoint_names_its_setting(tmp_path, s3_env, monkeypatch):
    for uri in ("s3:/one-slash/x", "file:///tmp/lake", "s3://UPPER/x"):
        monkeypatch.setenv("PHARMALANE_LAKE_URI", uri)
        with pytest.raises(ConfigError, match="PHARMALANE_LAKE_URI"):
            open_lake(load_settings(home=tmp_path))
    monkeypatch.setenv("PHARMALANE_LAKE_URI", "s3://no-such-bucket-here/x")
    with pytest.raises(ConfigError, match="PHARMALANE_LAKE_URI: bucket 'no-such-bucket-here'"):
        open_lake(load_settings(home=tmp_path))
    monkeypatch.setenv("PHARMALANE_LAKE_URI", s3_env["PHARMALANE_LAKE_URI"])
    monkeypatch.setenv("PHARMALANE_S3_ENDPOINT", "127.0.0.1:9000")
    with pytest.raises(ConfigError, match="PHARMALANE_S3_ENDPOINT"):
        open_lake(load_settings(home=tmp_path))
    monkeypatch.setenv("PHARMALANE_S3_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(BackendUnavailable, match="PHARMALANE_S3_ENDPOINT"):
        open_lake(load_settings(home=tmp_path))


def test_the_bucket_keeps_the_first_of_two_conditional_puts(s3_env, tmp_path):
    bucket: Bucket = _object_lake(tmp_path).bucket
    assert bucket.put("c/000001.json", b"first", if_absent=True)
    assert not bucket.put("c/000001.json", b"second", if_absent=True)
    assert bucket.get("c/000001.json") == b"first"
