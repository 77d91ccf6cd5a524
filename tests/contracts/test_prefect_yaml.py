"""prefect.yaml is a contract: every deployment points at a real flow, with valid parameters."""

from __future__ import annotations

import importlib
import typing
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


def test_scheduled_deployments_use_valid_cron():
    from prefect.client.schemas.schedules import CronSchedule

    for deployment in DEPLOYMENTS:
        for schedule in deployment.get("schedules", []):
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])


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
