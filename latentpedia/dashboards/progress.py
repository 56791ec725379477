"""A progress bar with tokens/s and ETA (rich); silent when disabled."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class BuildProgress:
    """Counts tokens; the rate covers only tokens processed in this run (not resumed ones)."""

    def __init__(self, total_tokens: int, *, enabled: bool = True, description: str = "forward pass"):
        self.total, self.description = total_tokens, description
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tokens {task.fields[rate]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not enabled,
            console=Console(stderr=True),  # stdout is for results (`info`), progress goes to stderr
        )
        self.task = None
        self.started = time.perf_counter()
        self.done = 0

    def __enter__(self) -> BuildProgress:
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=self.total, rate="-")
        self.started = time.perf_counter()
        return self

    def advance(self, tokens: int, *, resumed: bool = False) -> None:
        if not resumed:
            self.done += tokens
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=tokens, rate=f"{rate:,.0f}" if self.done else "-")

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)
