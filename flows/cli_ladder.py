"""`pharmalane` commands of the model ladder: escalate, calibrate, ladder-eval, llm-serve."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Annotated, Literal

import typer

from flows.cli_output import console, measures, records
from flows.environment import prefect_defaults

app = typer.Typer()
LocalModel = Literal["smollm2", "qwen"]
ENDPOINT_OF = {"smollm2": "local-smollm2", "qwen": "local-qwen"}


ServeOption = Annotated[str | None, typer.Option(help="start a local model first: smollm2 | qwen")]


def endpoint_key(model: str | None) -> str | None:
    """The configs model key a packaged model is served as (None: the configured one)."""
    return None if model is None else ENDPOINT_OF[model]


def _serving(model: str | None) -> AbstractContextManager[object]:
    """Start llama.cpp's server for a packaged model on its configured port, if asked."""
    if model is None:
        return nullcontext()
    from urllib.parse import urlparse

    from models.llm.local import llama_server, qwen_gguf, smollm2_gguf
    from tasks.settings import load_settings

    key = ENDPOINT_OF[model]
    settings = load_settings()
    port = urlparse(settings.llm.endpoints[key].base_url).port
    path = smollm2_gguf() if model == "smollm2" else qwen_gguf(settings.cache_dir)
    console().print(f"serving {path.name} on port {port}")
    return llama_server(path, port=port, log=settings.cache_dir / "llama_server.log")


def _print(title: str, rows: dict[str, object]) -> None:
    console().print(measures(title, rows))


@app.command()
def escalate(
    limit: Annotated[int | None, typer.Option(min=1, help="at most N escalations")] = None,
    serve: ServeOption = None,
) -> None:
    """Run the escalation lane: large-model verdicts on the scan's escalations."""
    prefect_defaults(quiet=True)
    from flows.escalation_lane import escalation_lane

    with _serving(serve):
        summary = escalation_lane(limit=limit, model=endpoint_key(serve))
    _print("escalation-lane", summary.model_dump())


@app.command()
def calibrate() -> None:
    """Choose the small model's escalation threshold for the target recall (calibration split)."""
    prefect_defaults(quiet=True)
    from flows.calibrate_ladder import calibrate_ladder

    _print("calibrate-ladder", calibrate_ladder().model_dump())


@app.command("ladder-eval")
def ladder_eval_command(
    split: Annotated[str, typer.Option(help="test | calibration")] = "test",
    sample: Annotated[int | None, typer.Option(min=0, help="items the large model judges")] = None,
    serve: ServeOption = None,
) -> None:
    """All-small vs all-large vs cascade: recall, precision, cost; JSON and PNG in bench/results."""
    prefect_defaults(quiet=True)
    from flows.ladder_eval import LadderEvalParams, ladder_eval

    params = LadderEvalParams.model_validate({"split": split, "sample": sample})
    with _serving(serve):
        result = ladder_eval(split=params.split, sample=params.sample, model=endpoint_key(serve))
    print_ladder_result(result)


def print_ladder_result(result: dict[str, object]) -> None:
    """The side-by-side tables of a ladder-eval result (as written to ladder_eval.json)."""
    shown = {k: v for k, v in result.items() if k not in ("curve", "estimated_all_in_scope")}
    measured = shown.pop("measured_sample", {})
    _print("ladder-eval", shown)
    _paths_table(
        "every in-scope item (large path on estimated tokens, verdicts assumed right)",
        result["estimated_all_in_scope"],
    )
    if isinstance(measured, dict) and measured.get("paths"):
        served = ", ".join(measured.get("served_by", []))
        _paths_table(
            f"sample of {measured['sample']} judged by {served} (measured tokens and verdicts)",
            measured["paths"],
        )


def _paths_table(title: str, paths: object) -> None:
    assert isinstance(paths, dict)
    columns = ["recall", "precision", "usd_per_1k_items", "usd_per_positive_found", "flagged"]
    rows = [
        [name, *(f"{m[c]:.4g}" if m[c] is not None else "-" for c in columns)]
        for name, m in paths.items()
    ]
    console().print(records(title, ["path", *columns], rows))


@app.command("llm-serve")
def llm_serve(
    model: Annotated[str, typer.Argument(help="smollm2 | qwen")] = "qwen",
) -> None:
    """Serve a packaged GGUF model with llama.cpp on its configured port until Ctrl-C."""
    import time

    with _serving(model):
        console().print("ready; Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
