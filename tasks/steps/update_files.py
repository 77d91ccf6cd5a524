"""Prefect tasks of source ``medline-updates`` (tasks/services/update_files.py) and of revised
citations (tasks/services/revisions.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.services import revisions, update_files
from tasks.services.revisions import Withdrawn
from tasks.services.runtime import Runtime
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(
    name="list-update-files",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def pending_update_files(settings: Settings) -> list[str]:
    """The MEDLINE update files listed after the watermark, in file order."""
    names = update_files.pending_files(Runtime.for_settings(settings))
    get_run_logger().info(
        "medline-updates: %d file(s) after %s: %s",
        len(names),
        update_files.watermark(settings) or "no watermark",
        ", ".join(names) or "none",
    )
    return names


@task(
    name="download-update-file",
    retries=1,
    retry_condition_fn=retry_transient_only,  # never a refused md5 or gzip
    cache_policy=NO_CACHE,
)
def download_update_file(settings: Settings, name: str) -> Path:
    """One update file on disk, resumed if cut, md5- and gzip-checked."""
    return update_files.download(Runtime.for_settings(settings), name)


@task(name="withdraw-deleted-citations", cache_policy=NO_CACHE)
def withdraw_deleted(settings: Settings, path: Path, run_id: str, now: datetime) -> Withdrawn:
    """The file's DeleteCitation pmids: decisions withdrawn, inbox items closed, audited."""
    done = update_files.withdraw_deleted(Runtime.for_settings(settings), path, run_id, now)
    get_run_logger().info(
        "%s: %d deleted citation(s), %d decided here (withdrawn), %d inbox item(s) closed",
        done.source_file,
        done.listed,
        done.known,
        done.inbox_closed,
    )
    return done


@task(name="finish-update-file", cache_policy=NO_CACHE)
def finish_update_file(settings: Settings, path: Path, now: datetime) -> str:
    """Every record of the file is decided: the watermark moves to it."""
    return update_files.finish(Runtime.for_settings(settings), path, now)


@task(name="mark-revisions", cache_policy=NO_CACHE)
def mark_revisions(frame: pl.DataFrame, settings: Settings, now: datetime) -> pl.DataFrame:
    """Pending items decided before (a new version or content) carry revised_at, supersedes."""
    return revisions.mark(Runtime.for_settings(settings), frame, now)
