"""Flow `review-inbox`: a batch of inbox items reviewed in the Prefect UI, one form at a time.

A lane that adds items starts one run for them (``start-review-run``); ``pharmalane`` never
starts one run per item. The run walks its items most urgent first and *suspends* once per
item (``suspend_flow_run``: the run leaves its worker, nothing is held while a reviewer reads)
with a typed form whose description is the item's evidence. The form asks for a decision (the
item kind's outcomes), the reason of record and a one-time review code, which the reviewer
obtains with their API key (``pharmalane review code ITEM`` or ``POST /reviews/{item}/code``);
the form never asks for a name or a key, since Prefect stores run inputs in its database.

A resumed run is executed again from its start. Each answer is judged once and recorded by
(run, attempt key), so the replay reads earlier answers back and changes nothing twice. A
refused answer (blank field, unknown, expired, used or other item's code, a code obtained by
a non-reviewer key) is chained and the run suspends again for the same item, the refusal on
top of the form and the decision and reason typed kept. An item resolved first through the
API or the CLI is skipped: "already resolved", nothing changed.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from typing import Annotated, Any, Literal, cast

import pydantic
from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from flows.runs import run_id
from tasks.core.review_form import form_description
from tasks.schemas import InboxItem
from tasks.services.review_codes import ALREADY_RESOLVED, RESOLVED, decisions
from tasks.services.runtime import utcnow
from tasks.settings import Settings, load_settings
from tasks.steps.review import judge_answer, judged_answers, review_batch, skip_resolved

REASON = Field(
    title="Reason of record",
    max_length=2000,
    description="why: it goes to the case record (the audit chain keeps its hash)",
)
CODE = Field(
    title="Review code",
    max_length=40,
    description="one-time code for this item: `pharmalane review code ITEM` with your key",
)


class LiteratureReview(RunInput):
    """The form of a literature item: is the abstract an ICSR?"""

    decision: Literal["confirmed_icsr", "not_icsr"] = Field(
        title="Decision", description="confirmed_icsr: a valid individual case; not_icsr: not"
    )
    reason: str = REASON
    review_code: str = CODE


class TriageReview(RunInput):
    """The form of a held triage case: accept or reject the triage decision."""

    decision: Literal["accepted", "rejected"] = Field(
        title="Decision", description="accepted: the case proceeds; rejected: it does not"
    )
    reason: str = REASON
    review_code: str = CODE


class DraftReview(RunInput):
    """The form of a periodic-summary draft: accept it, send it back, or reject it."""

    decision: Literal["accepted", "needs_changes", "rejected"] = Field(
        title="Decision",
        description="accepted: goes into the report; needs_changes: redraft; rejected: not used",
    )
    reason: str = REASON
    review_code: str = CODE


FORMS: dict[str, type[RunInput]] = {
    "literature": LiteratureReview,
    "triage": TriageReview,
    "draft": DraftReview,
}
KEPT_FIELDS = ("decision", "reason")  # kept after a refusal: only the code is typed again
FINAL = (RESOLVED, ALREADY_RESOLVED)


class ReviewSummary(BaseModel):
    items: int
    resolved: int
    already_resolved: int
    refused: int


def review_form(item: InboxItem, refusal: str | None, typed: dict[str, Any]) -> type[RunInput]:
    """The item kind's form, its description the evidence, with what was typed kept.

    Like ``RunInput.with_initial_data``, but each field keeps its title and constraints.
    """
    form = FORMS[item.kind]
    fields: dict[str, Any] = {}
    for name in KEPT_FIELDS:
        if name in typed:
            info = copy.copy(form.model_fields[name])
            info.default = typed[name]
            fields[name] = (form.model_fields[name].annotation, info)
    kept = cast(type[RunInput], pydantic.create_model(form.__name__, __base__=form, **fields))
    return kept.with_initial_data(description=form_description(item, decisions(item.kind), refusal))


def pause_key(item: InboxItem, attempt: int) -> str:
    """The suspension's key for ``attempt`` on ``item``: distinct per item and attempt, and in
    Prefect's alphabet (lower case, digits, dashes): kind, source id, a short hash, attempt."""
    slug = re.sub(r"[^a-z0-9]+", "-", item.source_id.lower()).strip("-")[:40]
    digest = hashlib.sha256(item.item_id.encode("utf-8")).hexdigest()[:8]
    return f"{item.kind}-{slug}-{digest}-{attempt}"


def _review_item(
    settings: Settings, run: str, item: InboxItem, done: dict[str, str], timeout_s: int
) -> tuple[str, int]:
    """Ask about ``item`` until an answer resolves it (or another path did); its result and
    the number of refused answers."""
    logger = get_run_logger()
    refusal: str | None = None
    typed: dict[str, Any] = {}
    for n in itertools.count(1):
        attempt = pause_key(item, n)
        result = done.get(attempt)
        replayed = result is not None  # judged before this run was suspended and resumed
        if result is None and item.status != "open":
            result = skip_resolved(settings, item.item_id, run, attempt)
        elif result not in FINAL:  # a new answer, or a refused one whose typed fields are kept
            answer = suspend_flow_run(
                wait_for_input=review_form(item, refusal, typed), key=attempt, timeout=timeout_s
            )
            typed = answer.model_dump(include=set(KEPT_FIELDS))
            result = result or judge_answer(
                settings, item.item_id, run, attempt, answer.model_dump(), utcnow()
            )
        if result in FINAL:
            if not replayed:
                logger.info("%s: %s", item.item_id, result.replace("_", " "))
            return result, n - 1
        refusal = result
        if not replayed:  # the refusal code only: never the code typed or the reason
            logger.warning("%s: answer %d refused (%s)", item.item_id, n, result.split(":")[0])
    raise AssertionError("unreachable")


@flow(name="review-inbox", log_prints=False)
def review_inbox(
    item_ids: list[str] | None = None,
    timeout_hours: Annotated[int, Field(ge=1, le=24 * 90)] = 24 * 30,
) -> ReviewSummary:
    """Review a batch of inbox items in the UI, most urgent first, one suspended form each.

    Args:
        item_ids: the items (a lane's new ones); none given: every open item
        timeout_hours: a form unanswered this long fails the run (the items stay in the inbox)
    """
    settings = load_settings()
    run = run_id()
    items = review_batch(settings, item_ids)
    done = judged_answers(settings, run)
    results = [_review_item(settings, run, i, done, timeout_hours * 3600) for i in items]
    summary = ReviewSummary(
        items=len(items),
        resolved=sum(r == RESOLVED for r, _ in results),
        already_resolved=sum(r == ALREADY_RESOLVED for r, _ in results),
        refused=sum(n for _, n in results),
    )
    get_run_logger().info(
        "review run: %d items, %d resolved here, %d already resolved, %d answers refused",
        summary.items,
        summary.resolved,
        summary.already_resolved,
        summary.refused,
    )
    return summary
