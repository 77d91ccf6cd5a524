"""Contracts: the import layers hold, and every shipped config file loads and makes sense."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tasks.io.drug_dictionary import product_variants
from tasks.rules import load_models, load_policies, load_products, load_routing
from tasks.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_import_layers_are_kept():
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_shipped_configs_load_and_cross_reference():
    settings = load_settings()
    products = [p.name for p in load_products(settings).products]
    assert len(products) == len(set(products)) >= 20
    assert set(product_variants(products)) == set(products)  # every product is in the dictionary
    routes = load_routing(settings).rules
    assert routes[-1].when.product_mentioned is None and not routes[-1].when.text_matches_any
    catalog = load_models(settings)
    assert {"ade-screen", "ade-verdict"} <= set(catalog.tasks)
    assert load_policies(settings).rules


def test_environment_file_overrides_base_and_env_vars_override_both(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text("scan:\n  chunk_size: 100\n  embed_batch_size: 8\n")
    (tmp_path / "ci.yaml").write_text("scan:\n  chunk_size: 50\n")
    settings = load_settings(config_dir=tmp_path, env="ci")
    assert (settings.scan.chunk_size, settings.scan.embed_batch_size) == (50, 8)
    monkeypatch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "7")
    assert load_settings(config_dir=tmp_path, env="ci").scan.chunk_size == 7
