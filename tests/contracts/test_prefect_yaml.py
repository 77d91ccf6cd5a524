"""prefect.yaml is a contract: every deployment points at a real flow, with valid parameters."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic import TypeAdapter

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = SPEC["deployments"]


def _flow(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    found = getattr(module, name)
    assert isinstance(found, Flow), f"{entrypoint} is not a Prefect flow"
    return found


def test_every_flow_module_is_deployed():
    deployed = {d["entrypoint"].split(":")[0] for d in DEPLOYMENTS}
    flow_files = {
        f"flows/{p.name}" for p in (REPO / "flows").glob("*.py") if "@flow(" in p.read_text()
    }
    assert flow_files == deployed


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_is_typed_and_its_parameters_fit_the_flow(deployment):
    flow = _flow(deployment["entrypoint"])
    assert deployment["enforce_parameter_schema"] is True
    assert deployment["work_pool"]["name"] in {"batch", "stream"}
    schema = parameter_schema(flow.fn)
    given = deployment.get("parameters", {})
    assert set(given) <= set(schema.properties)
    missing = set(schema.required or []) - set(given)
    # Required parameters without a default are allowed only for ad-hoc (unscheduled) runs.
    assert not (missing and deployment.get("schedules"))
    hints = typing.get_type_hints(flow.fn)
    for name, value in given.items():
        TypeAdapter(hints[name]).validate_python(value)


# The lanes that run unattended, with their cadence in days. Removing a schedule, pausing it,
# or scheduling another deployment fails here, so each such change is made on purpose.
SCHEDULED = {"nightly": 1, "escalate": 1, "refresh": 1, "review-watch": 1, "weekly": 7}
MONTHLY = {"draft-summary": 2}  # day of the month: last month's drafts, after the night's lanes
SCHEDULE_TIMEZONE = "UTC"  # the lake's days, the budgets' periods and FinOps windows are UTC
FOUR_WEEKS_FROM = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def _fires(deployment: dict, weeks: int = 4) -> list[datetime]:
    """When Prefect's scheduler would start this deployment over ``weeks`` (its own code)."""
    from prefect.server.schemas.schedules import CronSchedule

    (spec,) = deployment["schedules"]
    schedule = CronSchedule(cron=spec["cron"], timezone=spec["timezone"])  # validates the cron
    until = FOUR_WEEKS_FROM + timedelta(weeks=weeks)
    dates = asyncio.run(schedule.get_dates(start=FOUR_WEEKS_FROM, end=until))
    return [datetime.fromtimestamp(d.timestamp(), UTC) for d in dates]


def test_unattended_lanes_are_scheduled_in_utc_at_their_cadence():
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    scheduled = {name for name, d in by_name.items() if d.get("schedules")}
    assert scheduled == set(SCHEDULED) | set(MONTHLY)
    for name, every_days in SCHEDULED.items():
        (spec,) = by_name[name]["schedules"]
        assert spec["timezone"] == SCHEDULE_TIMEZONE, name
        assert spec.get("active", True) is True, name
        fires = _fires(by_name[name])
        assert len(fires) == 28 // every_days, name
        assert {b - a for a, b in itertools.pairwise(fires)} == {timedelta(days=every_days)}, name


def test_monthly_lanes_fire_once_a_month_after_the_night():
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    night = max(_fires(by_name[name])[0].time() for name in ("nightly", "escalate", "refresh"))
    for name, day in MONTHLY.items():
        (spec,) = by_name[name]["schedules"]
        assert spec["timezone"] == SCHEDULE_TIMEZONE and spec.get("active", True) is True
        fires = _fires(by_name[name], weeks=13)  # 2026-01-05 to 2026-04-06
        assert [(f.month, f.day) for f in fires] == [(2, day), (3, day), (4, day)], name
        assert fires[0].time() > night, name


def test_the_night_runs_the_scan_first_and_finops_last():
    """Escalation and refresh read what the scan wrote; FinOps reports the night's spend."""
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    at = {name: _fires(by_name[name])[0].time() for name in SCHEDULED}  # UTC time of day
    assert at["nightly"] < at["escalate"] and at["nightly"] < at["refresh"]
    assert max(at["nightly"], at["escalate"], at["refresh"]) < at["weekly"]


def test_kubernetes_job_templates_pin_lanes_to_their_nodes():
    import json

    spot = json.loads((REPO / "deploy/k8s/batch-spot-gpu.json").read_text())
    stream = json.loads((REPO / "deploy/k8s/stream-on-demand.json").read_text())
    spot_pod = spot["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    stream_pod = stream["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert spot_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "cloud.google.com/gke-spot" for t in spot_pod["tolerations"])
    assert stream_pod["nodeSelector"] == {"pharmalane/lane": "stream"}
    assert "nvidia.com/gpu" not in stream_pod["containers"][0]["resources"]["limits"]
    for template in (spot, stream):
        assert set(template["variables"]["properties"]) >= {"image", "env", "namespace"}
