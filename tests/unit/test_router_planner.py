import polars as pl
import pytest

from tasks.policy.planner import Thresholds, plan
from tasks.policy.router import route
from tasks.rules import RouteCondition, RouteRule
from tasks.tools.products import match_products, product_pattern

RULES = [
    RouteRule(
        name="serious",
        route="hot",
        when=RouteCondition(product_mentioned=True, text_matches_any=["fatal", "death"]),
    ),
    RouteRule(name="product", route="warm", when=RouteCondition(product_mentioned=True)),
    RouteRule(name="rest", route="cold"),
]


def test_products_match_whole_words_and_synonyms_case_insensitively():
    variants = {"aspirin": ["aspirin", "acetylsalicylic acid"], "lithium": ["lithium", "li"]}
    texts = pl.DataFrame(
        {
            "text": [
                "Acetylsalicylic acid and LITHIUM",
                "aspirinate is not aspirin-free? aspirin",
                "Li-ion",
                "",
            ]
        }
    )
    out = texts.select(match_products(pl.col("text"), variants)).to_series().to_list()
    assert out == [["aspirin", "lithium"], ["aspirin"], [], []]


def test_words_end_where_unicode_says_and_a_missing_text_matches_nothing():
    """The fast pre-filter must not change what a whole word is (Unicode letters included)."""
    variants = {"aspirin": ["aspirin"], "propranolol": ["β-propranolol", "propranolol"]}
    texts = pl.DataFrame(
        {"text": ["aspirinä", "Äaspirin", "ASPIRIN’s", "β-Propranolol", None, "naspirin aspirin"]}
    )
    out = texts.select(match_products(pl.col("text"), variants)).to_series().to_list()
    assert out == [[], [], ["aspirin"], ["propranolol"], [], ["aspirin"]]
    empty = texts.clear().select(match_products(pl.col("text"), variants)).to_series()
    assert empty.dtype == pl.List(pl.String) and empty.len() == 0


def test_product_pattern_refuses_only_short_variants():
    with pytest.raises(ValueError, match="shorter than 4"):
        product_pattern(["li", "asa"])


def test_router_first_matching_rule_wins():
    frame = pl.DataFrame(
        {
            "title": ["Fatal outcome", "A study", "Death rates"],
            "abstract": ["after aspirin", "of aspirin", "in general"],
            "products": [["aspirin"], ["aspirin"], []],
        }
    )
    out = route(frame, RULES)
    assert out["route"].to_list() == ["hot", "warm", "cold"]
    assert out["route_rule"].to_list() == ["serious", "product", "rest"]


def test_planner_paths_and_reasons():
    frame = pl.DataFrame(
        {
            "products": [[], ["a"], ["a"], ["a"], ["a"], ["a"]],
            "route": ["cold", "warm", "warm", "warm", "hot", "warm"],
            "probability": [None, 0.9, 0.001, 0.2, 0.001, None],
        },
        schema_overrides={"probability": pl.Float64},
    )
    out = plan(frame, Thresholds(low=0.01, high=0.5))
    assert out["path"].to_list() == ["tool", "small", "small", "escalate", "escalate", "escalate"]
    assert out["decision"].to_list() == [
        "closed_out_of_scope",
        "case_candidate",
        "closed_negative",
        "escalated",
        "escalated",
        "escalated",
    ]
    assert "never closed by the small model" in out["reason"][4]


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        Thresholds(low=0.6, high=0.5)
