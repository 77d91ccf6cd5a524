"""What the knowledge cache may keep. Pure: decide(kind) -> Decision.

Retrieval results and materialised summaries are facts about the corpus and may be reused; a
safety judgement (causality, seriousness, a case decision) is made fresh every time, by the
lane that owns it, and is never written to or served from a cache.
"""

from __future__ import annotations

from dataclasses import dataclass

CACHEABLE = frozenset({"retrieval", "summary"})
NEVER_CACHED = frozenset({"safety_judgement", "case_decision", "causality", "seriousness"})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str
    reason: str


def decide(kind: str) -> Decision:
    if kind in NEVER_CACHED:
        return Decision(False, "CACHE_SAFETY_JUDGEMENT", f"a {kind} is never cached")
    if kind not in CACHEABLE:
        return Decision(False, "CACHE_UNKNOWN_KIND", f"'{kind}' is not a cacheable kind")
    return Decision(True, "CACHE_OK", f"{kind} results may be reused")
