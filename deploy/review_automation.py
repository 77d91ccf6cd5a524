"""Create (or replace) the review-overdue automation on the Prefect server; idempotent.

``python deploy/review_automation.py BLOCK_TYPE/BLOCK_NAME`` (e.g. ``slack-webhook/pharmalane-
review``, made beforehand with ``prefect block create`` or in the UI): reads
deploy/automations/review-overdue.yaml, puts that notification block's id in its action and
creates the automation against ``PREFECT_API_URL``; an automation of the same name is replaced.
Prints the automation's id.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.io.orchestrator import apply_automation

AUTOMATION = Path(__file__).parent / "automations" / "review-overdue.yaml"

if __name__ == "__main__":
    if len(sys.argv) != 2 or "/" not in sys.argv[1]:
        sys.exit("usage: python deploy/review_automation.py BLOCK_TYPE/BLOCK_NAME")
    sys.stdout.write(f"{apply_automation(AUTOMATION, sys.argv[1])}\n")
