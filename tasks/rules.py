"""Rule files beside base.yaml: products, routing, models (prices), policies, budgets.

Data, not code: each file is read and checked here, unknown fields refused, so a typo in a
rule fails loudly at load time. Services read them once per process through the Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import ConfigError
from tasks.settings import Settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Product(_Strict):
    name: str = Field(description="canonical drug name as the dictionary knows it")
    brand: str | None = None


class ProductsFile(_Strict):
    products: list[Product] = Field(min_length=1)


class RouteCondition(_Strict):
    product_mentioned: bool | None = None
    text_matches_any: list[str] = Field(default_factory=list)


class RouteRule(_Strict):
    name: str
    route: Literal["hot", "warm", "cold"]
    when: RouteCondition = RouteCondition()


class RoutingFile(_Strict):
    rules: list[RouteRule] = Field(min_length=1)


class ModelPrice(_Strict):
    backend: str
    model: str
    usd_per_1k_input_tokens: float = Field(ge=0)
    usd_per_1k_output_tokens: float = Field(0.0, ge=0)
    usd_per_gpu_second: float = Field(0.0, ge=0)


class ModelsFile(_Strict):
    tasks: dict[str, str] = Field(description="task name -> model key")
    models: dict[str, ModelPrice]


_M = TypeVar("_M", bound=BaseModel)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path} is missing")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def _load(model: type[_M], path: Path) -> _M:
    try:
        return model.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_products(settings: Settings) -> ProductsFile:
    return _load(ProductsFile, settings.config_dir / "products.yaml")


def load_routing(settings: Settings) -> RoutingFile:
    return _load(RoutingFile, settings.config_dir / "routing.yaml")


def load_models(settings: Settings) -> ModelsFile:
    catalog = _load(ModelsFile, settings.config_dir / "models.yaml")
    unknown = sorted(set(catalog.tasks.values()) - set(catalog.models))
    if unknown:
        raise ConfigError(f"models.yaml: tasks name models with no price: {unknown}")
    return catalog


# --- the persona panel --------------------------------------------------------------------------

PersonaAnswer = Literal["case_processor", "safety_physician", "causality_assessor"]


class PersonaSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]+$")
    task: str = Field(description="the models.yaml task whose model this persona calls")
    answer: PersonaAnswer = Field(description="the answer schema (tasks/core/panel.py)")
    max_tokens: int = Field(160, ge=16, le=4096)
    prompt: str = Field(min_length=20)


class PanelScope(_Strict):
    literature: bool = True
    triage: bool = True
    triage_with_structured_criterion: bool = False


class PanelPriority(_Strict):
    lowered: int = Field(5, ge=1, description="priority of an item the panel agrees is non-serious")
    raised: int = Field(1, ge=1, description="priority of an item the panel disagrees on")


class PersonasFile(_Strict):
    personas: list[PersonaSpec] = Field(min_length=1)
    scope: PanelScope = PanelScope()
    priority: PanelPriority = PanelPriority()
    injection_markers: list[str] = Field(default_factory=list)


def load_personas(settings: Settings, models: ModelsFile) -> PersonasFile:
    """configs/personas.yaml; every persona's task must name a priced model."""
    panel = _load(PersonasFile, settings.config_dir / "personas.yaml")
    names = [p.name for p in panel.personas]
    if len(set(names)) != len(names):
        raise ConfigError(f"personas.yaml: persona names repeat: {names}")
    unmapped = sorted(p.task for p in panel.personas if p.task not in models.tasks)
    if unmapped:
        raise ConfigError(f"personas.yaml: tasks {unmapped} have no model in models.yaml")
    return panel


# --- policies ---------------------------------------------------------------------------------

Operator = Literal["eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "is_true", "is_false"]
Effect = Literal["allow", "deny", "require_review"]


class Condition(_Strict):
    fact: str = Field(description="name of a fact the caller passes to decide()")
    op: Operator
    value: Any = None


class PolicyRule(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]+$", description="stable reason code")
    message: str
    effect: Effect
    workflows: list[str] = Field(default_factory=list, description="empty: every workflow")
    stage: Literal["item", "budget", "panel", "panel_close"] = Field(
        "item",
        description="item: decisions about an item; budget: when a budget is exhausted; "
        "panel / panel_close: what the persona panel may change / close",
    )
    when: list[Condition] = Field(min_length=1, description="all must hold")


class PoliciesFile(_Strict):
    rules: list[PolicyRule] = Field(min_length=1)


def load_policies(settings: Settings) -> PoliciesFile:
    policies = _load(PoliciesFile, settings.config_dir / "policies.yaml")
    codes = [r.code for r in policies.rules]
    duplicated = sorted({c for c in codes if codes.count(c) > 1})
    if duplicated:
        raise ConfigError(f"policies.yaml: duplicate rule codes {duplicated}")
    return policies


# --- budgets and throttles ----------------------------------------------------------------------

Period = Literal["day", "week"]
OnExhaustion = Literal["defer", "route_down", "continue_if_urgent"]


class Budget(_Strict):
    workflow: str
    period: Period
    usd: float = Field(gt=0, description="spend allowed per period (UTC day, ISO week)")
    on_exhaustion: OnExhaustion = Field(
        "defer",
        description="defer to the next window, route down the ladder, or let urgent work on",
    )


class Throttle(_Strict):
    workflow: str
    calls_per_minute: int = Field(ge=1, le=1_000_000)


class BudgetsFile(_Strict):
    budgets: list[Budget] = Field(default_factory=list)
    throttles: list[Throttle] = Field(default_factory=list)

    def budget(self, workflow: str) -> Budget | None:
        return next((b for b in self.budgets if b.workflow == workflow), None)

    def throttle(self, workflow: str) -> Throttle | None:
        return next((t for t in self.throttles if t.workflow == workflow), None)


def load_budgets(settings: Settings) -> BudgetsFile:
    budgets = _load(BudgetsFile, settings.config_dir / "budgets.yaml")
    for kind, names in (
        ("budgets", [b.workflow for b in budgets.budgets]),
        ("throttles", [t.workflow for t in budgets.throttles]),
    ):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"budgets.yaml: {kind} listed twice for {duplicated}")
    return budgets


# --- medically important events ---------------------------------------------------------------


class ImeTerm(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    term: str = Field(min_length=2, description="the preferred term")
    category: str = Field(pattern=r"^[a-z][a-z_]*$")
    synonyms: list[str] = Field(default_factory=list)


class ImeTermsFile(_Strict):
    source: str = Field(min_length=10, description="where the list comes from, and its version")
    version: str
    terms: list[ImeTerm] = Field(min_length=1)


def load_ime_terms(settings: Settings) -> ImeTermsFile:
    """configs/ime_terms.yaml: the medically important events the triage matches."""
    terms = _load(ImeTermsFile, settings.config_dir / "ime_terms.yaml")
    ids = [t.id for t in terms.terms]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ConfigError(f"ime_terms.yaml: duplicate term ids {duplicated}")
    return terms
