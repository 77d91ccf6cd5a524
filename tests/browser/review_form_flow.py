"""A small flow that suspends with a form shaped like the review form, served for the browser test.

`python -m tests.browser.review_form_flow OUT_DIR` serves it (a runner process that also runs the
resumed run); each run suspends with ReviewForm and, once resumed, writes the typed answer to
OUT_DIR/<flow run id>.json so the test can read what the browser submitted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.context import get_run_context
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

DEPLOYMENT = "browser-form"


class ReviewForm(RunInput):
    decision: Literal["confirm_icsr", "not_icsr"] = Field(description="the reviewer's decision")
    reason: str = Field(min_length=3, max_length=2000, description="the reason of record")
    code: str = Field(min_length=6, max_length=64, description="one-time review code")


@flow(name="browser-form-review", persist_result=True)
def browser_form_review(out_dir: str) -> str:
    """Suspend until the form is submitted; keep the answer where the test can read it."""
    answer = suspend_flow_run(
        wait_for_input=ReviewForm.with_initial_data(description="Item PMID 1: a test item"),
        timeout=600,
    )
    run_id = get_run_context().flow_run.id  # type: ignore[union-attr]
    Path(out_dir, f"{run_id}.json").write_text(json.dumps(answer.model_dump()))
    return answer.decision


if __name__ == "__main__":
    browser_form_review.serve(name=DEPLOYMENT, parameters={"out_dir": sys.argv[1]})
