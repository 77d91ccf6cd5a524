"""Adapters and models built once per process and shared by the steps."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from models.embedder import SentenceTransformerEmbedder, default_embedder
from models.llm import LLM
from models.llm.openai_http import FallbackLLM, OpenAICompatibleLLM
from models.scorer import LogisticScorer
from tasks.errors import ConfigError
from tasks.io.audit import MIN_KEY_BYTES, AuditTrail, dev_key
from tasks.io.budget import BudgetStore
from tasks.io.lake import Lake
from tasks.io.reports import read_json
from tasks.io.sealing import sealer_for
from tasks.io.triage_store import TriageStore
from tasks.io.vectors import VectorStore
from tasks.policy.planner import Thresholds
from tasks.rules import load_models
from tasks.settings import Settings

VERDICT_TASK = "ade-verdict"


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


@dataclass(frozen=True)
class ChosenThresholds:
    thresholds: Thresholds
    source: str  # "calibration" | "scorer"
    note: str = ""


def thresholds(settings: Settings) -> ChosenThresholds:
    """The small model's thresholds the planner uses.

    With ``scan.thresholds: calibrated`` (the default), the choice stored by `pharmalane
    calibrate`, but only if it was made for the scorer now in use (its weights' sha256): a
    calibration of another scorer would put its threshold on the wrong probabilities. Otherwise
    the scorer's own thresholds (its calibration target, ``scorer.target_recall``).
    """
    meta = scorer(settings).meta
    own = ChosenThresholds(Thresholds(meta.threshold_low, meta.threshold_high), "scorer")
    if settings.scan.thresholds == "scorer":
        return own
    choice = read_json(settings.ladder.choice_file)
    if choice is None:
        return ChosenThresholds(own.thresholds, "scorer", "no calibration stored")
    if choice.get("scorer_sha256") != meta.weights_sha256:
        return ChosenThresholds(
            own.thresholds,
            "scorer",
            f"{settings.ladder.choice_file} was made for another scorer: "
            "run `pharmalane calibrate`",
        )
    return ChosenThresholds(Thresholds(float(choice["low"]), float(choice["high"])), "calibration")


def lake(settings: Settings) -> Lake:
    return Lake(settings.lake_dir)


def vectors(settings: Settings) -> VectorStore:
    return VectorStore(settings.vectors_dir)


def audit_key(settings: Settings, *, create: bool = True) -> bytes | None:
    """The audit trail's HMAC key: ``PHARMALANE_AUDIT_KEY``, or in env dev a generated key file.

    ``create=False`` (verifying) never makes a dev key: it returns None when there is none.

    Raises:
        ConfigError: the key is too short, or no key is set outside env dev.
    """
    if settings.audit_key is not None:
        key = settings.audit_key.get_secret_value().encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"PHARMALANE_AUDIT_KEY needs at least {MIN_KEY_BYTES} characters")
        return key
    if settings.env != "dev":
        raise ConfigError(
            f"env {settings.env} writes an audit trail: set PHARMALANE_AUDIT_KEY "
            f"(at least {MIN_KEY_BYTES} random characters, e.g. `openssl rand -hex 32`)"
        )
    path = settings.audit_dev_key_file
    if not create and not path.is_file():
        return None
    return dev_key(path)


def triage_store(settings: Settings) -> TriageStore:
    """The triage store, its case payloads sealed with this environment's data key.

    Raises:
        ConfigError: no data key outside env dev, or the store's key is not configured.
    """
    return TriageStore(settings.triage_db, sealer_for(settings))


def audit(settings: Settings) -> AuditTrail:
    """The trail with its key (ConfigError without one, see ``audit_key``)."""
    return AuditTrail(settings.audit_dir, audit_key(settings))


@functools.cache
def _budgets(path: Path, ttl_seconds: int) -> BudgetStore:
    return BudgetStore(path, reservation_ttl=timedelta(seconds=ttl_seconds))


def budgets(settings: Settings) -> BudgetStore:
    """One store per file and process: it keeps a SQLite connection per thread open."""
    return _budgets(
        settings.supervisor_dir / "budget.sqlite", settings.supervisor.reservation_ttl_seconds
    )


def llm(settings: Settings) -> LLM:
    """The verdict model and its fallback chain, from settings.llm and configs/models.yaml.

    Raises:
        ConfigError: a model key has no price or no endpoint, or its API key variable is unset.
    """
    catalog = load_models(settings)
    primary = settings.llm.model or catalog.tasks.get(VERDICT_TASK)
    if primary is None:
        raise ConfigError(f"configs/models.yaml maps no model to the task {VERDICT_TASK}")
    backends: list[OpenAICompatibleLLM] = []
    for key in [primary, *settings.llm.fallback]:
        if key not in catalog.models:
            raise ConfigError(f"model {key} has no price in models.yaml: it would be charged $0")
        endpoint = settings.llm.endpoints.get(key)
        if endpoint is None:
            raise ConfigError(f"model {key} has no endpoint: add it under llm.endpoints")
        api_key = None
        if endpoint.api_key_env:
            api_key = os.environ.get(endpoint.api_key_env)
            if not api_key:
                raise ConfigError(f"model {key} needs its API key in ${endpoint.api_key_env}")
        backends.append(
            OpenAICompatibleLLM(
                endpoint.base_url,
                endpoint.model,
                api_key=api_key,
                name=key,
                structured=endpoint.structured,
                timeout_s=endpoint.timeout_s,
                max_retries=endpoint.max_retries,
            )
        )
    return backends[0] if len(backends) == 1 else FallbackLLM(backends)
