"""What a reviewer reads above the review form: the item's evidence, as markdown.

The suspended ``review-inbox`` run shows this as its form's description in the Prefect UI, so
it must carry everything a reviewer judges from: what the item is and where it came from, the
product or suspect drugs, the reactions, the abstract or the narrative excerpt the inbox keeps,
the clock, the models' verdicts with their rationale and the reason codes. Pure: the item in,
text out.
"""

from __future__ import annotations

from typing import Any

from tasks.schemas import InboxItem

EXCERPT_CHARS = 1500


def _excerpt(text: Any) -> str:
    plain = " ".join(str(text or "").split())
    return plain if len(plain) <= EXCERPT_CHARS else plain[:EXCERPT_CHARS] + " [...]"


def _listed(values: Any) -> str:
    return ", ".join(str(v) for v in values or []) or "none stated"


def _reactions(values: Any) -> str:
    terms = [v.get("term", v) if isinstance(v, dict) else v for v in values or []]
    return _listed(terms)


def _head(item: InboxItem) -> list[str]:
    return [
        f"### Review {item.item_id}",
        f"**{item.kind}** item, {item.reason.replace('_', ' ')} from `{item.source}`; "
        f"priority {item.priority} (1 most urgent)",
        "",
        f"- **Day 0:** {item.day_zero}  **Clock:** {item.clock_days} days  "
        f"**Due:** {item.due_date}",
    ]


def _literature(evidence: dict[str, Any]) -> list[str]:
    case = evidence.get("case") or {}
    reference = evidence.get("reference") or {}
    lines = [
        f"- **Reference:** PMID {reference.get('item_id')} (published {reference.get('pub_date')})",
        f"- **Products matched:** {_listed(evidence.get('products'))}",
        f"- **Suspect drugs:** {_listed(case.get('suspect_drugs'))}",
        f"- **Reactions:** {_reactions(case.get('reactions'))}",
        f"- **Seriousness:** {_listed(case.get('seriousness'))}",
        "",
        f"**Title:** {_excerpt(evidence.get('title')) or 'not kept'}",
        "",
        f"**Abstract:** {_excerpt(evidence.get('abstract')) or 'not kept'}",
    ]
    if case.get("summary"):
        lines += ["", f"**Extracted summary:** {_excerpt(case['summary'])}"]
    return lines


def _triage(evidence: dict[str, Any]) -> list[str]:
    case = evidence.get("case") or {}
    decision = evidence.get("decision") or {}
    patient = case.get("patient") or {}
    shown_patient = ", ".join(f"{k} {v}" for k, v in patient.items() if v is not None)
    reporter = case.get("reporter") or {}
    return [
        f"- **Case id:** {(evidence.get('reference') or {}).get('case_id')}",
        f"- **Suspect drugs:** {_listed(case.get('suspect_drugs'))}",
        f"- **Reactions:** {_reactions(case.get('reactions'))}",
        f"- **Patient:** {shown_patient or 'not identified'}",
        f"- **Reporter:** {reporter.get('qualification') or ('given' if reporter else 'none')}",
        f"- **Outcome:** {_listed(k for k, v in (case.get('outcome') or {}).items() if v)}",
        f"- **Valid ICSR:** {decision.get('valid')} (missing: {_listed(decision.get('missing'))})",
        f"- **Seriousness:** {_listed(decision.get('seriousness'))}; possible: "
        f"{_listed(decision.get('possible_seriousness'))}; severity {decision.get('severity')}",
        f"- **Narrative flags:** {_listed(decision.get('narrative_flags'))} "
        f"(score {decision.get('narrative_score')})",
        "",
        f"**Narrative excerpt:** {_excerpt(evidence.get('narrative_excerpt')) or 'none'}",
    ]


def _verdicts(evidence: dict[str, Any]) -> list[str]:
    rows = evidence.get("verdicts") or []
    if not rows:
        return []
    lines = ["", "**Model verdicts:**"]
    for v in rows:
        probability = v.get("probability")
        shown = f" p={probability:.3f}" if isinstance(probability, float) else ""
        lines.append(
            f"- {v.get('workflow')} / {v.get('path')} / {v.get('model')}{shown}: "
            f"**{v.get('decision')}**: {_excerpt(v.get('reason'))}"
        )
    return lines


def _draft(evidence: dict[str, Any]) -> list[str]:
    """A periodic-summary draft: how it was made, then the draft itself (it is short)."""
    return [
        f"- **Product:** {evidence.get('product')}  **Period:** "
        f"{(evidence.get('reference') or {}).get('period')}",
        f"- **Composer:** {evidence.get('composer')} {evidence.get('model') or ''}  "
        f"**Grounded share:** {evidence.get('grounded_share')}",
        "",
        str(evidence.get("markdown") or ""),
    ]


def form_description(item: InboxItem, decisions: list[str], refusal: str | None = None) -> str:
    """The markdown shown above the review form of ``item``; ``refusal`` first when set."""
    evidence = item.evidence
    body = {"literature": _literature, "draft": _draft}.get(item.kind, _triage)(evidence)
    lines = (
        ([f"**Refused: {refusal}.** Nothing was recorded; answer again.", ""] if refusal else [])
        + _head(item)
        + body
        + _verdicts(evidence)
        + [
            "",
            f"**Reason codes:** {_listed(evidence.get('reason_codes'))}",
            "",
            f"Decide {' or '.join(decisions)}, give the reason of record, and type a one-time "
            f"review code: `pharmalane review code {item.item_id}` or "
            f"`POST /reviews/{item.item_id}/code` with your reviewer key.",
        ]
    )
    return "\n".join(lines)
