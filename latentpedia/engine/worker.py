"""The torch worker: models loaded once, ALL torch work of a process on ONE worker thread.

The web app keeps one `LiveModels` on `app.state.live` (web/live.py gives it to routes as
`LiveDep`). Callers never touch torch on the event loop; they hand a function to the service
and await its result:

    async def handler(live: LiveDep):
        values = await live.run("smollm2-135m", lambda m: run_with_cache(m, ids, [hook]), timeout=10)

`fn(model)` runs on the worker thread with the `LoadedModel` of `model_id` (loaded on first use
and kept). Inside `fn`, `live.source(model, record)` gives the `Source` of a stored source record
(neurons or an SAE read from its path; cached too). Requests wait in one bounded FIFO queue:

- queue full -> `LiveBusyError` (the app answers 503 with `Retry-After`);
- not finished within `timeout` seconds -> `LiveTimeoutError` (504). A job that has not started
  is dropped; a running one finishes in the background and its result is discarded;
- an exception raised by `fn` propagates to the awaiting caller unchanged.

Batching: `await live.run_batched(model_id, key, item, batch_fn)` queues `item`; when the worker
picks it up it also takes every queued job with the same `(model_id, key)` (up to `max_batch`)
and calls the first job's `batch_fn(model, items)` once, which must return one result per item,
in order. The key must say the items are compatible (same function, hooks and settings).

torch runs with `threads` intra-op threads (default: every core), one job at a time, so
concurrent requests are serialised rather than thrashing the cores. With `latentpedia serve
--workers N` each worker process has its own service and its own copy of each model.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from latentpedia.errors import InvalidInputError, LatentpediaError

if TYPE_CHECKING:
    from latentpedia.models import LoadedModel
    from latentpedia.sources import Source
    from latentpedia.store.api import Store
    from latentpedia.store.records import SourceRecord

T = TypeVar("T")
ModelLoader = Callable[[str], "LoadedModel"]


class LiveBusyError(LatentpediaError):
    """The live-inference queue is full (HTTP 503)."""


class LiveTimeoutError(LatentpediaError):
    """A live-inference request did not finish in time (HTTP 504)."""


@dataclass
class LiveConfig:
    """Tunables of the live service (each also read from a `LATENTPEDIA_LIVE_*` variable)."""

    max_queue: int = 32  # jobs waiting (not counting the running one)
    timeout: float = 30.0  # seconds a request may wait + run
    max_batch: int = 8  # jobs merged into one `batch_fn` call
    threads: int = 0  # torch intra-op threads; 0 = os.cpu_count()

    @classmethod
    def from_env(cls) -> LiveConfig:
        env = os.environ.get
        return cls(
            max_queue=int(env("LATENTPEDIA_LIVE_QUEUE", cls.max_queue)),
            timeout=float(env("LATENTPEDIA_LIVE_TIMEOUT", cls.timeout)),
            max_batch=int(env("LATENTPEDIA_LIVE_BATCH", cls.max_batch)),
            threads=int(env("LATENTPEDIA_LIVE_THREADS", cls.threads)),
        )


@dataclass(eq=False)
class _Job:
    model_id: str
    fn: Callable[..., Any]  # fn(model) or, batched, batch_fn(model, items)
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    key: Hashable | None = None
    item: Any = None
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def store_model_loader(store_of: Callable[[], Store]) -> ModelLoader:
    """A loader that finds how a stored model was loaded (its `spec`) and loads it again."""
    from latentpedia.models import DEFAULT_MODEL_ID, load_model

    def load(model_id: str) -> LoadedModel:
        record = store_of().get_model(model_id)
        if record is None:
            raise InvalidInputError(f"unknown model {model_id!r}")
        spec = record.spec or {}
        if model_id == DEFAULT_MODEL_ID or spec.get("kind") == "embedded":
            return load_model(model_id)
        if spec.get("path"):
            return load_model(spec["path"])
        raise InvalidInputError(f"model {model_id!r} cannot be loaded for live inference (spec {spec})")

    return load


class LiveModels:
    """Models loaded once, torch work serialised on one worker thread (see the module doc)."""

    def __init__(self, loader: ModelLoader, config: LiveConfig | None = None):
        self.loader = loader
        self.config = config or LiveConfig()
        self._models: dict[str, LoadedModel] = {}
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches: list[int] = []  # sizes of the last batches run (for tests and stats)

    # ------------------------------------------------------------------ public API (event loop)

    async def run(self, model_id: str | None, fn: Callable[[LoadedModel], T], *, timeout: float | None = None) -> T:
        """`fn(model)` on the worker thread; its result (or exception) comes back here.
        `model_id` None: torch work that needs no model (the lab's toy models); `fn(None)`."""
        return await self._await(self._submit(model_id, fn, None, None), timeout)

    async def run_batched(
        self, model_id: str, key: Hashable, item: Any, batch_fn: Callable[[LoadedModel, list], list], *, timeout: float | None = None
    ) -> Any:
        """`item`'s result from `batch_fn(model, items)`, run over every queued compatible item."""
        return await self._await(self._submit(model_id, batch_fn, key, item), timeout)

    @property
    def queued(self) -> int:
        """Jobs waiting to start."""
        return len(self._pending)

    def close(self) -> None:
        """Stop the worker after the running job; jobs still queued fail with LiveBusyError."""
        with self._cond:
            self._closed = True
            dropped = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for job in dropped:
            job.settle(error=LiveBusyError("the server is shutting down"))

    # ------------------------------------------------------------------ worker-thread helpers

    def model(self, model_id: str) -> LoadedModel:
        """The loaded model (call from inside a job: loading runs torch)."""
        if model_id not in self._models:
            self._models[model_id] = self.loader(model_id)
        return self._models[model_id]

    def source(self, model: LoadedModel, record: SourceRecord) -> Source:
        """The `Source` of a stored source record: its neurons, or its SAE loaded from disk
        (call from inside a job). Cached per record and build."""
        from latentpedia.engine.resolve import source_from_record

        return source_from_record(model, record)

    # ------------------------------------------------------------------ internals

    def _submit(self, model_id: str, fn: Callable, key: Hashable | None, item: Any) -> _Job:
        loop = asyncio.get_running_loop()
        job = _Job(model_id, fn, loop.create_future(), loop, None if key is None else (model_id, key), item)
        with self._cond:
            if self._closed:
                raise LiveBusyError("the server is shutting down")
            if len(self._pending) >= self.config.max_queue:
                raise LiveBusyError(f"live inference is busy ({len(self._pending)} requests queued); retry shortly")
            self._pending.append(job)
            self._ensure_worker()
            self._cond.notify()
        return job

    async def _await(self, job: _Job, timeout: float | None) -> Any:
        limit = self.config.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(job.future, limit)
        except TimeoutError:
            self._drop(job)
            raise LiveTimeoutError(f"live inference took longer than {limit:g} s; try a shorter text") from None
        except asyncio.CancelledError:  # the client went away
            self._drop(job)
            raise

    def _drop(self, job: _Job) -> None:
        """Forget a job nobody waits for: unqueue it, or let its result be discarded."""
        with self._cond:
            job.cancelled = True
            if job in self._pending:
                self._pending.remove(job)

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="latentpedia-live", daemon=True)
            self._thread.start()

    def _next_jobs(self) -> list[_Job] | None:
        """The next job plus its queued compatible jobs (None once closed)."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._pending.popleft()
            jobs = [first]
            if first.key is not None:
                for job in list(self._pending):
                    if len(jobs) >= self.config.max_batch:
                        break
                    if job.key == first.key:
                        self._pending.remove(job)
                        jobs.append(job)
            return [job for job in jobs if not job.cancelled]

    def _work(self) -> None:
        import torch

        torch.set_num_threads(self.config.threads or os.cpu_count() or 1)
        while (jobs := self._next_jobs()) is not None:
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        first = jobs[0]
        try:
            model = None if first.model_id is None else self.model(first.model_id)
            if first.key is None:
                first.settle(first.fn(model))
                return
            self.batches = [*self.batches[-99:], len(jobs)]
            results = first.fn(model, [job.item for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"batch_fn returned {len(results)} results for {len(jobs)} items")
            for job, result in zip(jobs, results, strict=True):
                job.settle(result)
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller
            for job in jobs:
                job.settle(error=err)
