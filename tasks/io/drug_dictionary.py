"""The drug dictionary shipped by ``drug-named-entity-recognition`` (DrugBank open, MeSH).

Only the package's own data file is read; nothing is fetched. A product name that the
dictionary does not know is a configuration error, not an empty match.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from tasks.errors import ConfigError


@functools.cache
def _variants_by_canonical() -> Mapping[str, tuple[str, ...]]:
    # The raw mapping the package loads from its own data file; its reset_drugs_data() would
    # also build an n-gram index for fuzzy search that exact matching does not need (~20 s).
    from drug_named_entity_recognition import drugs_finder

    grouped: dict[str, set[str]] = {}
    for variant, canonicals in drugs_finder.d["drug_variant_to_canonical"].items():
        for canonical in canonicals:
            grouped.setdefault(canonical, set()).add(variant)
    return {name: tuple(sorted(variants)) for name, variants in grouped.items()}


def product_variants(products: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Every name variant (generic, brand, salt, spelling) of each product.

    Raises:
        ConfigError: a product is not a canonical name in the dictionary.
    """
    known = _variants_by_canonical()
    out: dict[str, tuple[str, ...]] = {}
    for product in products:
        key = product.strip().lower()
        if key not in known:
            raise ConfigError(
                f"configs/products.yaml: '{product}' is not a drug the dictionary knows; "
                "use its canonical generic name (e.g. 'warfarin', not 'Coumadin')"
            )
        out[key] = (key, *known[key])
    return out
