"""Config files of the supervisor refuse unknown fields and duplicates with a ConfigError."""

from __future__ import annotations

import shutil

import pytest

from tasks.errors import ConfigError
from tasks.rules import load_budgets, load_policies
from tasks.settings import DEFAULT_CONFIG_DIR, load_settings


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, folder)
    return folder


def test_shipped_budgets_load():
    budgets = load_budgets(load_settings())
    scan = budgets.budget("nightly-literature-scan")
    assert scan is not None and scan.period == "day" and scan.usd > 0
    assert budgets.throttle("nightly-literature-scan") is not None


def test_policy_file_with_an_unknown_field_is_a_config_error(config_dir):
    path = config_dir / "policies.yaml"
    path.write_text(
        path.read_text().replace(
            "effect: require_review", "effect: require_review\n    priority: 1", 1
        )
    )
    with pytest.raises(ConfigError, match=r"(?s)policies\.yaml.*rules\.0\.priority.*Extra inputs"):
        load_policies(load_settings(config_dir=config_dir))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("budgets:\n  - {workflow: a, period: day, usd: 1, currency: EUR}\n", "currency"),
        ("budgets:\n  - {workflow: a, period: month, usd: 1}\n", "period"),
        ("budgets:\n  - {workflow: a, period: day, usd: 0}\n", "usd"),
        (
            "budgets:\n  - {workflow: a, period: day, usd: 1, on_exhaustion: drop}\n",
            "on_exhaustion",
        ),
        (
            "budgets:\n  - {workflow: a, period: day, usd: 1}\n"
            "  - {workflow: a, period: week, usd: 5}\n",
            "listed twice",
        ),
    ],
)
def test_bad_budget_files_are_config_errors(config_dir, text, match):
    (config_dir / "budgets.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_budgets(load_settings(config_dir=config_dir))
