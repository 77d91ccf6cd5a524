"""Compare two PHARMALANE_HOME lakes after `pharmalane scan`: decisions, escalations, digest.

Reads each dataset with DuckDB (hive partitions), drops run/time columns, sorts every row by
all remaining columns, and compares row for row. Exit 0 when all three are identical.

usage: python compare_scan.py BASELINE_HOME NEW_HOME
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

DATASETS = {
    "decisions": "decisions",
    "escalations": "escalations",
    "product_digest": "summaries/product_digest",
}
VOLATILE = {
    "run_id",
    "decided_at",
    "escalated_at",
    "created_at",
    "refreshed_at",
    "chunk_id",
    "first_seen_at",
}


def rows(home: Path, dataset: str) -> tuple[list[str], list[tuple[object, ...]]]:
    glob = home / "lake" / dataset / "**" / "*.parquet"
    con = duckdb.connect()
    rel = con.sql(
        "SELECT * FROM read_parquet($1, hive_partitioning=true, union_by_name=true)",
        params=[str(glob)],
    )
    columns = sorted(c for c in rel.columns if c not in VOLATILE)
    quoted = ", ".join(f'"{c}"' for c in columns)
    data = con.sql(f"SELECT {quoted} FROM rel").fetchall()  # noqa: S608 (column names)
    return columns, sorted((tuple(_settled(v) for v in row) for row in data), key=repr)


def _settled(value: object) -> object:
    """Floats to 6 decimals: a different batch make-up pads the embedder's inputs differently,
    which moves a probability in its 7th decimal without moving any decision."""
    return round(value, 6) if isinstance(value, float) else value


def main(base: Path, new: Path) -> int:
    failed = 0
    for name, dataset in DATASETS.items():
        cols_a, a = rows(base, dataset)
        cols_b, b = rows(new, dataset)
        same = cols_a == cols_b and a == b
        failed += not same
        print(
            f"{name}: baseline {len(a)} rows, new {len(b)} rows, columns "
            f"{'same' if cols_a == cols_b else f'{cols_a} vs {cols_b}'}: "
            f"{'IDENTICAL' if same else 'DIFFERENT'}"
        )
        if not same and cols_a == cols_b:
            only_a = {repr(r) for r in a} - {repr(r) for r in b}
            only_b = {repr(r) for r in b} - {repr(r) for r in a}
            print(f"  only in baseline: {len(only_a)}, only in new: {len(only_b)}")
            for row in sorted(only_a)[:3]:
                print("  -", row)
            for row in sorted(only_b)[:3]:
                print("  +", row)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
