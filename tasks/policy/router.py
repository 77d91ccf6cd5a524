"""Router: tag each item hot, warm or cold from rules that are data (configs/routing.yaml).

Rules are evaluated in their declared order and the first that matches wins; the name of the
winning rule is kept as the reason of record. An item no rule matches is cold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from tasks.rules import RouteRule


def _condition(rule: RouteRule, text: pl.Expr, products: pl.Expr) -> pl.Expr:
    test = pl.lit(True)
    if rule.when.product_mentioned is not None:
        mentioned = products.list.len() > 0
        test = test & (mentioned if rule.when.product_mentioned else ~mentioned)
    if rule.when.text_matches_any:
        words = "|".join(re.escape(w) for w in rule.when.text_matches_any)
        test = test & text.str.contains(rf"(?i)\b(?:{words})\b")
    return test


def route(frame: pl.DataFrame, rules: Sequence[RouteRule]) -> pl.DataFrame:
    """Add ``route`` and ``route_rule`` from the first matching rule."""
    text = pl.concat_str(
        [pl.col("title").fill_null(""), pl.col("abstract").fill_null("")], separator=" "
    )
    products = pl.col("products")
    route_expr: pl.Expr = pl.lit("cold")
    rule_expr: pl.Expr = pl.lit("no-rule-matched")
    for rule in reversed(rules):
        matched = _condition(rule, text, products)
        route_expr = pl.when(matched).then(pl.lit(rule.route)).otherwise(route_expr)
        rule_expr = pl.when(matched).then(pl.lit(rule.name)).otherwise(rule_expr)
    return frame.with_columns(route_expr.alias("route"), rule_expr.alias("route_rule"))
