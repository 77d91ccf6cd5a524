"""`pharmalane ask` and `pharmalane index`: the knowledge layer from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer()
console = Console()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, in plain words")],
    product: Annotated[str | None, typer.Option(help="restrict to one watched product")] = None,
) -> None:
    """Answer from the knowledge layer (summary, cache, or retrieval) with citations."""
    from flows.cli import _prefect_defaults

    _prefect_defaults()
    from tasks.settings import load_settings
    from tasks.steps.knowledge import Asker

    asker = Asker(load_settings())
    asked = asker.ask(question, product)
    asker.flush()
    console.print(asked.answer.text)
    for cite in asked.answer.citations:
        console.print(f"  - {cite}")
    console.print(
        f"[dim]served by: {asked.tier} ({asked.answer.composer}); class {asked.query_class}; "
        f"cost ${asked.cost_usd:.8f}; saved ${asked.cost_saved_usd:.8f}[/dim]"
    )


@app.command()
def index() -> None:
    """Re-index abstracts and reference text, then rebuild the per-product summaries."""
    from flows.cli import _prefect_defaults

    _prefect_defaults()
    from flows.refresh_summaries import refresh_summaries

    summary = refresh_summaries()
    table = Table(title="refresh-summaries")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.model_dump().items():
        table.add_row(key, str(value))
    console.print(table)
