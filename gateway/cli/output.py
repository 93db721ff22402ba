"""What every command prints with: results on stdout, progress, warnings and errors on stderr."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print the error; the caller raises what this returns (`raise fail(...)`), which exits with 1."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    )


def table(title: str, columns: tuple[str, ...]) -> Table:
    """A results table whose long cells wrap instead of being cut."""
    result = Table(title=title)
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
