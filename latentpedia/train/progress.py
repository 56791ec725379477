"""Training progress (rich): one bar per SAE with loss, L0, explained variance, dead fraction;
plus tokens done, rate and ETA through dashboards/progress.py (plain lines when stderr is not a
terminal, readings to the job worker)."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from latentpedia.dashboards.progress import ProgressMeter


class TrainProgress:
    """`update(name, steps, metrics)` after each step; silent when disabled."""

    def __init__(self, names: list[str], total_steps: int, *, batch_size: int, enabled: bool = True):
        self.batch_size = batch_size
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} tok/s  loss {task.fields[loss]}  L0 {task.fields[l0]}  "
                       "EV {task.fields[ev]}  dead {task.fields[dead]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled,
        )  # fmt: skip
        blank = dict(rate="-", loss="-", l0="-", ev="-", dead="-")
        self.tasks = {name: self.progress.add_task(name, total=total_steps, **blank) for name in names}
        self.started, self.done = time.perf_counter(), 0
        stage = f"training {', '.join(names)}"
        self.meter = ProgressMeter(stage, total_steps * batch_size, unit="tokens", enabled=enabled, terminal_bar=False)

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        self.meter.__enter__()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.meter.__exit__(*exc)
        self.progress.__exit__(*exc)

    def tokens_per_second(self) -> float:
        return self.done * self.batch_size / max(time.perf_counter() - self.started, 1e-9)

    def step_done(self) -> None:
        self.done += 1

    def update(self, name: str, step: int, metrics: dict[str, float]) -> None:
        gap = step * self.batch_size - self.meter.done  # > one batch only on the first step after a resume
        if gap > self.batch_size:
            self.meter.advance(gap - self.batch_size, resumed=True)
            gap = self.batch_size
        if gap > 0:
            self.meter.advance(gap)
        self.progress.update(
            self.tasks[name], completed=step, rate=f"{self.tokens_per_second():,.0f}",
            loss=f"{metrics['loss']:.4g}", l0=f"{metrics['l0']:.1f}", ev=f"{metrics['ev']:.3f}",
            dead=f"{metrics['dead']:.1%}",
        )  # fmt: skip
