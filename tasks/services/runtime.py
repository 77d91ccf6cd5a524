"""One Runtime per process and settings: adapters built once, rule files read once.

``Settings`` is what crosses process boundaries (a task's parameters, a distributed runner's
payload); a step turns it into its process's ``Runtime`` with ``Runtime.for_settings``. The
runtime is keyed by the settings (secrets included) and the rule files' modification times,
so an edited budgets.yaml is read again on the next step, and never on every call inside one.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from models.embedder import SentenceTransformerEmbedder, default_embedder, packaged_embedder
from models.llm import LLM
from models.llm.openai_http import FallbackLLM, OpenAICompatibleLLM
from models.scorer import LogisticScorer
from tasks.errors import ConfigError
from tasks.io.audit import MIN_KEY_BYTES, AuditTrail, dev_key
from tasks.io.budget import Budgets
from tasks.io.call_journal import PaidCallJournal
from tasks.io.inbox import InboxStore
from tasks.io.knowledge import KnowledgeStore
from tasks.io.lake import LakeStore
from tasks.io.reports import read_json
from tasks.io.sealing import sealer_for
from tasks.io.shared_state import (
    open_audit_trail,
    open_budgets,
    open_inbox,
    open_journal,
    open_triage_store,
)
from tasks.io.storage import open_lake, vectors_location
from tasks.io.triage_store import TriageCases
from tasks.io.vectors import VectorStore
from tasks.policy.planner import Thresholds
from tasks.rules import (
    BudgetsFile,
    ModelsFile,
    PersonasFile,
    PoliciesFile,
    ProductsFile,
    RoutingFile,
    load_budgets,
    load_models,
    load_personas,
    load_policies,
    load_products,
    load_routing,
)
from tasks.settings import Settings

VERDICT_TASK = "ade-verdict"
RULE_FILES = (
    "products.yaml",
    "routing.yaml",
    "models.yaml",
    "policies.yaml",
    "budgets.yaml",
    "personas.yaml",
)
KEPT_RUNTIMES = 32  # distinct settings alive in one process (tests build many); oldest leaves


def utcnow() -> datetime:
    """The wall clock, in UTC: the one place services and flows read it."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Rules:
    """Every rule file of ``settings.config_dir``, read and checked once."""

    products: ProductsFile
    routing: RoutingFile
    models: ModelsFile
    policies: PoliciesFile
    budgets: BudgetsFile
    personas: PersonasFile

    @classmethod
    def load(cls, settings: Settings) -> Rules:
        models = load_models(settings)
        return cls(
            load_products(settings),
            load_routing(settings),
            models,
            load_policies(settings),
            load_budgets(settings),
            load_personas(settings, models),
        )

    @property
    def watched(self) -> list[str]:
        """Watched product names, lower case, sorted."""
        return sorted(p.name.lower() for p in self.products.products)


@dataclass(frozen=True)
class ChosenThresholds:
    thresholds: Thresholds
    source: str  # "calibration" | "scorer"
    note: str = ""


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


@functools.cache
def _budgets(url: str | None, path: Path, ttl_seconds: int) -> Budgets:
    return open_budgets(url, path, reservation_ttl=timedelta(seconds=ttl_seconds))


@functools.cache
def _journal(url: str | None, path: Path) -> PaidCallJournal:
    return open_journal(url, path)


@functools.cache
def _trail(url: str | None, folder: Path, key: bytes | None) -> AuditTrail:
    return open_audit_trail(url, folder, key)


@functools.cache
def _scorer(folder: Path, mtime_ns: int) -> LogisticScorer:
    return LogisticScorer.load(folder)


class Runtime:
    """The adapters, models and rules one process uses for one ``Settings``.

    Adapters that open files or connections are built on first use, so a command that needs
    only the lake never opens LanceDB or asks for an audit key.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.rules = Rules.load(settings)
        self.lake: LakeStore = open_lake(settings)
        self._clients: dict[str, LLM] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> Runtime:
        """This process's runtime for ``settings`` (built on first use, then shared)."""
        key = _fingerprint(settings)
        with _LOCK:
            runtime = _RUNTIMES.get(key)
            if runtime is None:
                runtime = _RUNTIMES[key] = cls(settings)
                while len(_RUNTIMES) > KEPT_RUNTIMES:
                    _RUNTIMES.popitem(last=False)
            else:
                _RUNTIMES.move_to_end(key)
            return runtime

    @functools.cached_property
    def vectors(self) -> VectorStore:
        return VectorStore(vectors_location(self.settings))

    @functools.cached_property
    def knowledge(self) -> KnowledgeStore:
        return KnowledgeStore(vectors_location(self.settings))

    @property
    def audit(self) -> AuditTrail:
        """The trail with its key (ConfigError without one, see ``audit_key``).

        The key is looked up on each use (a dev key file deleted and regenerated must sign
        with the new key); the trail for a given key is built once.
        """
        s = self.settings
        return _trail(s.shared_database, s.audit_dir, audit_key(s))

    @property
    def triage_store(self) -> TriageCases:
        """The triage store, its case payloads sealed with this environment's data key.

        Opened on each use, not kept: opening checks the configured data keys against the
        store, so a rotation by another process (`pharmalane triage rotate-key`) is seen. The
        intake service keeps the one its ``Triager`` opened.

        Raises:
            ConfigError: no data key outside env dev, or the store's key is not configured.
        """
        s = self.settings
        return open_triage_store(s.shared_database, s.triage_db, sealer_for(s))

    @property
    def inbox(self) -> InboxStore:
        """The review inbox, its evidence sealed with this environment's data key.

        Raises:
            ConfigError: no data key outside env dev.
        """
        s = self.settings
        return open_inbox(s.shared_database, s.inbox_db, sealer_for(s))

    @property
    def budgets(self) -> Budgets:
        """One store per database and process: it keeps a connection per thread open.

        PostgreSQL when ``PHARMALANE_DATABASE_URL`` is set, else SQLite under home.
        """
        s = self.settings
        return _budgets(
            s.shared_database,
            s.supervisor_dir / "budget.sqlite",
            s.supervisor.reservation_ttl_seconds,
        )

    @property
    def journal(self) -> PaidCallJournal:
        """The paid-call journal; one per database and process (a connection per thread)."""
        s = self.settings
        return _journal(s.shared_database, s.supervisor_dir / "llm_calls.sqlite")

    @property
    def embedder(self) -> SentenceTransformerEmbedder:
        return default_embedder()

    @property
    def screen_embedder(self) -> SentenceTransformerEmbedder:
        """The screening (scan, training, evaluation) embedder at ``scan.embed_max_tokens``."""
        return packaged_embedder(self.settings.scan.embed_max_tokens)

    def scorer(self) -> LogisticScorer:
        """The trained scorer; reloaded only when its file changes (after `pharmalane train`)."""
        folder = self.settings.scorer.artifact_dir
        weights = folder / "weights.npz"
        return _scorer(folder, weights.stat().st_mtime_ns if weights.exists() else 0)

    def thresholds(self) -> ChosenThresholds:
        """The small model's thresholds the planner uses.

        With ``scan.thresholds: calibrated`` (the default), the choice stored by `pharmalane
        calibrate`, but only if it was made for the scorer now in use (its weights' sha256): a
        calibration of another scorer would put its threshold on the wrong probabilities.
        Otherwise the scorer's own thresholds (its calibration target, ``scorer.target_recall``).
        """
        meta, ladder = self.scorer().meta, self.settings.ladder
        own = ChosenThresholds(Thresholds(meta.threshold_low, meta.threshold_high), "scorer")
        if self.settings.scan.thresholds == "scorer":
            return own
        choice = read_json(ladder.choice_file)
        if choice is None:
            return ChosenThresholds(own.thresholds, "scorer", "no calibration stored")
        if choice.get("scorer_sha256") != meta.weights_sha256:
            return ChosenThresholds(
                own.thresholds,
                "scorer",
                f"{ladder.choice_file} was made for another scorer: run `pharmalane calibrate`",
            )
        low, high = float(choice["low"]), float(choice["high"])
        return ChosenThresholds(Thresholds(low, high), "calibration")

    @functools.cached_property
    def llm(self) -> LLM:
        """The verdict model and its fallback chain, from settings.llm and configs/models.yaml.

        Raises:
            ConfigError: a model key has no price or no endpoint, or its API key is unset.
        """
        catalog = self.rules.models
        primary = self.settings.llm.model or catalog.tasks.get(VERDICT_TASK)
        if primary is None:
            raise ConfigError(f"configs/models.yaml maps no model to the task {VERDICT_TASK}")
        backends = [self._backend(key) for key in [primary, *self.settings.llm.fallback]]
        return backends[0] if len(backends) == 1 else FallbackLLM(backends)

    def model(self, key: str) -> LLM:
        """The served model of one models.yaml key (a persona's), built once per runtime.

        Raises:
            ConfigError: the key has no price or no endpoint, or its API key is unset.
        """
        with _LOCK:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._backend(key)
            return client

    def _backend(self, key: str) -> OpenAICompatibleLLM:
        if key not in self.rules.models.models:
            raise ConfigError(f"model {key} has no price in models.yaml: it would be charged $0")
        endpoint = self.settings.llm.endpoints.get(key)
        if endpoint is None:
            raise ConfigError(f"model {key} has no endpoint: add it under llm.endpoints")
        api_key = None
        if endpoint.api_key_env:
            api_key = os.environ.get(endpoint.api_key_env)
            if not api_key:
                raise ConfigError(f"model {key} needs its API key in ${endpoint.api_key_env}")
        return OpenAICompatibleLLM(
            endpoint.base_url,
            endpoint.model,
            api_key=api_key,
            name=key,
            structured=endpoint.structured,
            timeout_s=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
        )


_LOCK = threading.Lock()
_RUNTIMES: OrderedDict[str, Runtime] = OrderedDict()


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _fingerprint(settings: Settings) -> str:
    """What makes two settings need different runtimes: every value and the rule files' age."""
    folder = settings.config_dir
    ages = [(folder / n).stat().st_mtime_ns if (folder / n).is_file() else 0 for n in RULE_FILES]
    values = settings.model_dump(mode="python")
    return json.dumps([values, ages], default=_reveal, sort_keys=True)
