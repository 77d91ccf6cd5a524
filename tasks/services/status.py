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
    """Every top-level dataset of the lake with its Parquet files and rows, by name."""
    lake = runtime.lake
    if not lake.root.is_dir():
        return []
    names = sorted({p.parent.relative_to(lake.root).parts[0] for p in lake.root.rglob("*.parquet")})
    counts = []
    for name in names:
        rows = lake.query(f'SELECT count(*) AS n FROM "{name}"')["n"][0]  # noqa: S608
        counts.append(DatasetCount(name, len(lake.files(name)), int(rows)))
    return counts


def abstracts_indexed(runtime: Runtime) -> int:
    """Abstract vectors stored for screening."""
    return runtime.vectors.count()
