"""Explanations and scores fanned out over a Ray cluster (`latentpedia explain --ray auto|ADDRESS|local`).

The driver does what a local run does (pipeline.py): reads the latents to explain and score in
the same batches, plans the embedding scorer's chunk embeddings in the same pieces, and writes
every result itself in batch order (one writer). Only the computing moves: one actor per worker
builds a `Work` once (explainer, LLM clients, the MiniLM embedder) and runs the batches it is
given. Each batch's content is the same as in a local run and its result depends on nothing
else, so the store is the same as a local run's (tests/test_ray_explain.py compares them).
Resumable like a local run: what a killed run wrote is skipped when it is started again.

Ray is an optional extra (`pip install 'latentpedia[ray]'`); nothing imports it unless asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from latentpedia.dashboards.ray_build import RayConfig, connect
from latentpedia.errors import InvalidInputError
from latentpedia.interp import registry

IN_FLIGHT_PER_WORKER = 2  # batches queued per actor: the next one is ready when one ends


class WorkActor:
    """Body of a Ray actor: one `Work` for the whole run."""

    def __init__(self, request: Any, threads: int):
        import torch

        from latentpedia.interp.work import Work

        torch.set_num_threads(max(1, threads))
        self.work = Work(request)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.work, method)(*args)

    def usage(self) -> Any:
        return self.work.usage()


def check(request: Any) -> None:
    """InvalidInputError for what a Ray run cannot do (before anything is started)."""
    if request.scorer_backend is not None or request.on_torch is not None:
        raise InvalidInputError("a Ray run builds its own models on the workers: no in-process scorer backend or torch runner")
    if not isinstance(request.ray, RayConfig):
        raise InvalidInputError(f"ExplainRequest.ray must be a RayConfig, got {request.ray!r}")
    request.ray.check()


class RayExecutor:
    """The pipeline's executor on Ray actors: `map` keeps every actor busy and yields results in order."""

    def __init__(self, request: Any, log: Any):
        check(request)
        config: RayConfig = request.ray
        self.ray = ray = connect(config)
        self.request = request
        kind = registry.explainer(request.explainer)
        stored = kind.stored_as(request.variant)
        self.kind, self.method, self.version = kind, stored.method, stored.version
        self.model_name = request.llm.model if kind.needs_llm and request.llm else None
        n = config.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(config.cpus_per_worker, 1e-9)))
        actor = ray.remote(num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker)(WorkActor)
        plain = replace(request, ray=None, progress=False)
        self.actors = [actor.remote(plain, max(1, int(config.cpus_per_worker))) for _ in range(n)]
        self.chunks: dict[tuple, dict] = {}
        self._shared: dict[int, Any] = {}
        log(f"ray: explaining and scoring on {n} workers")

    def share(self, atlas: Any) -> Any:
        """The source's text, put in the object store once (workers read it from there)."""
        if atlas.source.id not in self._shared:
            self._shared[atlas.source.id] = self.ray.put(atlas.detached())
        return self._shared[atlas.source.id]

    def map(self, method: str, calls: Iterable[tuple]) -> Iterator[Any]:
        from latentpedia.dashboards.ray_build import _result

        pending: deque = deque()
        limit = IN_FLIGHT_PER_WORKER * len(self.actors)
        for n, args in enumerate(calls):
            pending.append(self.actors[n % len(self.actors)].call.remote(method, *args))
            if len(pending) >= limit:
                yield _result(self.ray, pending.popleft())
        while pending:
            yield _result(self.ray, pending.popleft())

    def usage(self) -> Any:
        if not self.kind.needs_llm and not any(s.needs_llm for s in registry.scorers(self.request.scorers)):
            return None
        usages = [u for u in self.ray.get([a.usage.remote() for a in self.actors]) if u is not None]
        if not usages:
            return None
        total = usages[0]
        for other in usages[1:]:
            for name in ("requests", "cached", "prompt_tokens", "completion_tokens"):
                setattr(total, name, getattr(total, name) + getattr(other, name))
        return total

    def close(self) -> None:
        for actor in self.actors:  # free their CPUs and memory now, also when the driver fails
            self.ray.kill(actor)
        self.actors = []
