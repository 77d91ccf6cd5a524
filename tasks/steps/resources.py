"""Adapters and models built once per process and shared by the steps."""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

from models.embedder import SentenceTransformerEmbedder, default_embedder
from models.scorer import LogisticScorer
from tasks.io.audit import AuditTrail
from tasks.io.budget import BudgetStore
from tasks.io.lake import Lake
from tasks.io.vectors import VectorStore
from tasks.settings import Settings


def embedder() -> SentenceTransformerEmbedder:
    return default_embedder()


@functools.cache
def _scorer(folder: Path, mtime_ns: int) -> LogisticScorer:
    return LogisticScorer.load(folder)


def scorer(settings: Settings) -> LogisticScorer:
    """The trained scorer; reloaded only when its file changes (after `pharmalane train`)."""
    folder = settings.scorer.artifact_dir
    weights = folder / "weights.npz"
    return _scorer(folder, weights.stat().st_mtime_ns if weights.exists() else 0)


def lake(settings: Settings) -> Lake:
    return Lake(settings.lake_dir)


def vectors(settings: Settings) -> VectorStore:
    return VectorStore(settings.vectors_dir)


def audit(settings: Settings) -> AuditTrail:
    return AuditTrail(settings.audit_dir)


@functools.cache
def _budgets(path: Path, ttl_seconds: int) -> BudgetStore:
    return BudgetStore(path, reservation_ttl=timedelta(seconds=ttl_seconds))


def budgets(settings: Settings) -> BudgetStore:
    """One store per file and process: it keeps a SQLite connection per thread open."""
    return _budgets(
        settings.supervisor_dir / "budget.sqlite", settings.supervisor.reservation_ttl_seconds
    )
