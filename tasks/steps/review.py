"""Prefect tasks of the review run (flows/review_inbox.py); the work is in
tasks/services/review_codes.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tasks.io.orchestrator import run_logger
from tasks.schemas import InboxItem
from tasks.services import review_codes
from tasks.services.runtime import Runtime, utcnow
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(
    name="review-batch", retries=1, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def review_batch(settings: Settings, item_ids: list[str] | None) -> list[InboxItem]:
    """The run's items, most urgent first (every open item when none are named)."""
    return review_codes.review_batch(Runtime.for_settings(settings), item_ids)


@task(name="judged-answers", cache_policy=NO_CACHE)
def judged_answers(settings: Settings, run: str) -> dict[str, str]:
    """What this run judged before it was suspended and resumed: attempt key -> result."""
    return review_codes.judged(Runtime.for_settings(settings), run)


@task(name="judge-review-answer", cache_policy=NO_CACHE)
def judge_answer(
    settings: Settings, item_id: str, run: str, attempt: str, form: dict[str, Any], now: datetime
) -> str:
    """Judge one form answer once: resolved, already resolved, or the refusal (chained)."""
    fields = {k: str(v) for k, v in form.items() if k in ("decision", "reason", "review_code")}
    return review_codes.judge(
        Runtime.for_settings(settings), item_id, run_id=run, attempt=attempt, form=fields, now=now
    )


@task(name="skip-resolved-item", cache_policy=NO_CACHE)
def skip_resolved(settings: Settings, item_id: str, run: str, attempt: str) -> str:
    """Record that an item resolved on another path is not asked about: already resolved."""
    runtime = Runtime.for_settings(settings)
    return review_codes.skipped(runtime, item_id, run_id=run, attempt=attempt, now=utcnow())


@task(name="start-review-run", cache_policy=NO_CACHE)
def start_review_run(settings: Settings, now: datetime) -> str | None:
    """Start one `review-inbox` run for the open items no review run has yet; its run id.

    Through the deployment (``review.deployment``, ``run_deployment(timeout=0)``: the lane does
    not wait), so a worker runs it and the run can suspend. Nothing is started when
    ``review.start_runs`` is off or the deployment does not exist (``make run``, tests): the
    items wait in the inbox for the API, the CLI or a later run.
    """
    logger = run_logger("pharmalane.review")  # a lane's run, or a test calling .fn
    if not settings.review.start_runs:
        logger.info("review runs are off (review.start_runs): items wait for API and CLI")
        return None
    runtime = Runtime.for_settings(settings)
    item_ids = review_codes.unscheduled(runtime)
    if not item_ids:
        return None
    try:
        run = cast(
            FlowRun,  # the sync dispatch: this task is not async
            run_deployment(
                settings.review.deployment,
                parameters={"item_ids": item_ids},
                timeout=0,
                as_subflow=False,
            ),
        )
    except ObjectNotFound:
        logger.info(
            "no deployment %s: %d review items wait for API, CLI or a later run",
            settings.review.deployment,
            len(item_ids),
        )
        return None
    review_codes.mark_scheduled(runtime, item_ids, str(run.id), now)
    logger.info("review run %s started for %d items", run.id, len(item_ids))
    return str(run.id)
