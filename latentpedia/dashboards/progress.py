"""Progress of long work (build passes, training, explanations): units done, rate and ETA.

Shown three ways, all from one `ProgressMeter`:
- on a terminal, a rich progress bar on stderr;
- when stderr is not a terminal (`nohup`, `> build.log 2>&1`, a pipe), one plain line every
  `$LATENTPEDIA_PROGRESS_SECONDS` seconds (default 30) and one at the end:
  `progress: forward pass 12,288/500,000 tokens (2.5%), 851 tokens/s, ETA 9m33s`;
- to every `progress_listener` of the process (the job worker stores the readings, and stops
  the work between batches when a job is cancelled by raising from its listener).
The rate covers only units processed in this run (not ones restored from a checkpoint).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PROGRESS_SECONDS_ENV = "LATENTPEDIA_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 30.0


@dataclass(frozen=True)
class ProgressReading:
    """Where a stage of long work stands."""

    stage: str
    done: int
    total: int | None
    unit: str
    rate: float | None  # units per second in this run; None before any unit was processed here
    eta_seconds: float | None

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(self.done / self.total, 1.0)

    def line(self) -> str:
        """One plain log line (no markup)."""
        count = f"{self.done:,}/{self.total:,}" if self.total else f"{self.done:,}"
        parts = [f"progress: {self.stage} {count} {self.unit}"]
        if self.fraction is not None:
            parts[0] += f" ({self.fraction:.1%})"
        parts.append(f"{self.rate:,.0f} {self.unit}/s" if self.rate else f"- {self.unit}/s")
        parts.append(f"ETA {format_seconds(self.eta_seconds)}" if self.eta_seconds is not None else "ETA -")
        return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    """3725 -> "1h02m05s", 95 -> "1m35s", 4 -> "4s"."""
    whole = int(round(max(seconds, 0.0)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


Listener = Callable[[ProgressReading], None]
_listeners: list[Listener] = []


@contextmanager
def progress_listener(listener: Listener) -> Iterator[None]:
    """Call `listener(reading)` at every advance of every meter of this process within the block.
    An exception it raises stops the work (the worker's cancel)."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def plain_interval() -> float:
    """Seconds between plain progress lines ($LATENTPEDIA_PROGRESS_SECONDS, default 30)."""
    try:
        value = float(os.environ.get(PROGRESS_SECONDS_ENV, DEFAULT_PROGRESS_SECONDS))
    except ValueError:
        return DEFAULT_PROGRESS_SECONDS
    return value if value >= 0 else DEFAULT_PROGRESS_SECONDS


class ProgressMeter:
    """Counts units of one stage; a bar on a terminal, plain lines otherwise, readings to listeners."""

    def __init__(self, stage: str, total: int | None, *, unit: str = "tokens", enabled: bool = True,
                 console: Console | None = None, terminal_bar: bool = True):  # fmt: skip
        """`terminal_bar` False: the caller draws its own bars on a terminal (plain lines and
        listeners still get the readings)."""
        self.stage, self.total, self.unit = stage, total, unit
        self.console = console or Console(stderr=True)  # stdout is for results (`info`)
        self.bar = enabled and terminal_bar and self.console.is_terminal
        self.plain = enabled and not self.console.is_terminal
        self.interval = plain_interval()
        self.done = self.done_here = 0
        self.started = self.last_line = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(f"{unit} {{task.fields[rate]}} {unit}/s"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), disable=not self.bar, console=self.console,
        )  # fmt: skip
        self.task = None

    def __enter__(self) -> ProgressMeter:
        self.progress.__enter__()
        self.task = self.progress.add_task(self.stage, total=self.total, rate="-")
        self.started = self.last_line = time.perf_counter()
        return self

    def reading(self) -> ProgressReading:
        elapsed = time.perf_counter() - self.started
        rate = self.done_here / elapsed if self.done_here and elapsed > 0 else None
        eta = max(self.total - self.done, 0) / rate if rate and self.total is not None else None
        return ProgressReading(self.stage, self.done, self.total, self.unit, rate, eta)

    def advance(self, units: int, *, resumed: bool = False) -> None:
        """`units` more are done (`resumed`: restored from a checkpoint, not counted in the rate)."""
        self.done += units
        if not resumed:
            self.done_here += units
        reading = self.reading()
        self.progress.update(self.task, advance=units, rate=f"{reading.rate:,.0f}" if reading.rate else "-")
        if self.plain and time.perf_counter() - self.last_line >= self.interval:
            self._print(reading)
        for listener in list(_listeners):
            listener(reading)

    def _print(self, reading: ProgressReading) -> None:
        print(reading.line(), file=sys.stderr, flush=True)
        self.last_line = time.perf_counter()

    def __exit__(self, exc_type, *exc) -> None:
        self.progress.__exit__(exc_type, *exc)
        if self.plain and exc_type is None:
            self._print(self.reading())


class BuildProgress(ProgressMeter):
    """The build pass: tokens of the corpus."""

    def __init__(self, total_tokens: int, *, enabled: bool = True, description: str = "forward pass"):
        super().__init__(description, total_tokens, unit="tokens", enabled=enabled)
