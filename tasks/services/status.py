"""What is stored: datasets of the lake (files, rows) and abstracts in the vector store."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.services.runtime import Runtime


@dataclass(frozen=True)
class DatasetCount:
    dataset: str
    files: int
    rows: int


def lake_datasets(runtime: Runtime) -> list[DatasetCount]:
    """Every dataset of the lake (nested ones by their path) with its files and rows, by name."""
    lake = runtime.lake
    counts = []
    for name in lake.datasets():
        rows = lake.query(f'SELECT count(*) AS n FROM "{name}"')["n"][0]  # noqa: S608
        counts.append(DatasetCount(name, len(lake.files(name)), int(rows)))
    return counts


def abstracts_indexed(runtime: Runtime) -> int:
    """Abstract vectors stored for screening."""
    return runtime.vectors.count()
