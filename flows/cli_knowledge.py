"""`pharmalane ask` and `pharmalane index`: the knowledge layer from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli_output import console, measures
from flows.environment import prefect_defaults

app = typer.Typer()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, in plain words")],
    product: Annotated[str | None, typer.Option(help="restrict to one watched product")] = None,
    composer: Annotated[
        str | None, typer.Option(help="extractive | model (default: knowledge.composer)")
    ] = None,
) -> None:
    """Answer from the knowledge layer (summary, cache, or retrieval) with citations."""
    prefect_defaults(quiet=True)
    from tasks.services.knowledge import Asker
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    settings = load_settings()
    if composer is not None:
        if composer not in ("extractive", "model"):
            raise typer.BadParameter("--composer is extractive or model")
        knowledge = settings.knowledge.model_copy(update={"composer": composer})
        settings = settings.model_copy(update={"knowledge": knowledge})
    asker = Asker(Runtime.for_settings(settings))
    asked = asker.ask(question, product)
    asker.flush()
    console().print(asked.answer.text)
    for cite in asked.answer.citations:
        console().print(f"  - {cite}")
    if asked.answer.note:
        console().print(f"[yellow]note: {asked.answer.note}[/yellow]")
    share = asked.answer.grounded_share
    grounded = "not checked" if share is None else f"{share:.0%} of sentences"
    refused = "; refusal" if asked.answer.refusal else ""
    console().print(f"[dim]grounded: {grounded}{refused}[/dim]")
    console().print(
        f"[dim]served by: {asked.tier} ({asked.answer.composer}); class {asked.query_class}; "
        f"cost ${asked.cost_usd:.8f}; saved ${asked.cost_saved_usd:.8f}[/dim]"
    )


@app.command()
def index() -> None:
    """Re-index abstracts and reference text, then rebuild the per-product summaries."""
    prefect_defaults(quiet=True)
    from flows.refresh_summaries import refresh_summaries

    console().print(measures("refresh-summaries", refresh_summaries().model_dump()))
