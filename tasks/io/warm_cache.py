"""The warm tier of the knowledge cache: one small Parquet file per exact key.

Files live below ``<lake>/knowledge_cache/index_version=<v>/<key>.parquet`` and are written
atomically. A file that cannot be read, or whose row breaks the schema, is reported as absent:
the caller rebuilds the entry and overwrites it. Dropping an index version removes its folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.io.lake import write_atomic
from tasks.schemas import KNOWLEDGE_CACHE

DATASET = "knowledge_cache"


class WarmCache:
    def __init__(self, lake_root: Path):
        self.root = lake_root / DATASET

    def path(self, key: str, index_version: str) -> Path:
        return self.root / f"index_version={index_version}" / f"{key}.parquet"

    def get(self, key: str, index_version: str) -> dict[str, Any] | None:
        path = self.path(key, index_version)
        if not path.is_file():
            return None
        try:
            table = pq.read_table(path)
            rows = table.append_column(
                "index_version", pa.array([index_version] * table.num_rows)
            ).select(KNOWLEDGE_CACHE.names)
            rows = rows.cast(KNOWLEDGE_CACHE).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, KeyError, ValueError):
            return None
        return rows[0] if len(rows) == 1 else None

    def put(self, entry: dict[str, Any]) -> Path:
        table = pa.Table.from_pylist([entry]).select(KNOWLEDGE_CACHE.names).cast(KNOWLEDGE_CACHE)
        path = self.path(str(entry["key"]), str(entry["index_version"]))
        write_atomic(table.drop_columns(["index_version"]), path)
        return path

    def drop_other_versions(self, index_version: str) -> int:
        """Invalidation: delete every version folder but ``index_version``'s."""
        if not self.root.is_dir():
            return 0
        dropped = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.name != f"index_version={index_version}":
                shutil.rmtree(folder)
                dropped += 1
        return dropped
