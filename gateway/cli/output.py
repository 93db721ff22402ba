"""What every command prints with: results on stdout, progress, warnings and errors on stderr."""

from __future__ import annotations

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# What tables show of an exchange id (a prefix `visionrag forget` takes): 8 random hex digits are
# unique among 10^5 exchanges but for about one id in 40 000.
SHORT_ID = 8

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


def table(title: str, columns: tuple[str, ...], *, no_wrap: tuple[str, ...] = ()) -> Table:
    """A results table whose long cells wrap instead of being cut, except the `no_wrap` columns' (ids,
    times: a broken id cannot be copied), which keep their width however narrow the terminal."""
    # Lines under the header only, one space between columns: the text gets the width borders would take.
    result = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in columns:
        if column in no_wrap:
            result.add_column(column, no_wrap=True)
        else:
            result.add_column(column, overflow="fold", ratio=1)
    return result


def print_table(result: Table) -> None:
    """Print a `table`, its no_wrap columns as wide as their widest cell: rich would otherwise shorten
    them with an ellipsis when the terminal is narrow, and the other columns fold instead."""
    for column in result.columns:
        if column.no_wrap:
            column.min_width = max((cell_len(str(cell)) for cell in (column.header, *column.cells)), default=0)
    console.print(result)


def short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
