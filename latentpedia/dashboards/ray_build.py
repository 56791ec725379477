"""The build pass sharded over a Ray cluster (`latentpedia build --ray auto|ADDRESS|local`).

The token windows are cut into contiguous shards of whole `SHARD_ALIGN` batches. One actor per
worker loads the model and the sources the way the store records them (engine/resolve), runs
the ordinary pass (runner.BuildRun) over each shard it is given, numbering batches as in the
whole stream, and returns every accumulator's state. The driver merges the states in shard
order (SourceAccumulator.merge) and finalises exactly as a local build does, so the store is
the same as a single-process build of the same windows (tests/test_ray_build.py compares the
canonical dumps). Finished shards are saved in the build's work folder: a driver killed and
started again only runs the shards that are missing.

Ray is an optional extra (`pip install 'latentpedia[ray]'`); nothing imports it unless a
build asks for it.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.dashboards.accumulator import SourceAccumulator
from latentpedia.dashboards.checkpoint import atomic_save
from latentpedia.dashboards.correlation import FOLD
from latentpedia.dashboards.runner import BuildPlan, BuildRun
from latentpedia.errors import InvalidInputError

SHARD_ALIGN = FOLD  # batches: shard starts fall where a single pass folds its Gram sums
SHARDS_PER_WORKER = 2  # a few shards per worker even out uneven speeds
INSTALL_HINT = "Ray is not installed: pip install 'latentpedia[ray]' (or pip install 'ray>=2.9')"


def import_ray():
    """The ray module, or InvalidInputError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise InvalidInputError(INSTALL_HINT) from err
    return ray


@dataclass(frozen=True)
class RayConfig:
    address: str = "auto"  # "auto": a running cluster; "local": start one in this process; or host:port / ray://...
    workers: int = 0  # actors; 0 = one per CPU of the cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def check(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise InvalidInputError(f"--ray needs an address: auto, local, or host:port, got {self.address!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise InvalidInputError(f"the number of Ray workers must be an integer of at least 0, got {self.workers!r}")
        for name in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"{name} must be a number of at least 0, got {value!r}")


def check_request(request: Any, config: RayConfig) -> None:
    """InvalidInputError for what a Ray build cannot do, before anything is loaded or written."""
    config.check()
    if request.cache_hooks:
        raise InvalidInputError("--ray cannot cache activations for SAE training (--cache-acts): build the cache locally")
    if request.from_cache:
        raise InvalidInputError("--ray reads activations from a forward pass, not from the atlas's activation cache")
    import_ray()


def model_load_spec(model: Any) -> str:
    """What a worker passes to load_model to get the same model (as engine.worker does from the
    stored model record)."""
    spec = model.spec or {}
    if model.id == DEFAULT_MODEL_ID or spec.get("kind") == "embedded":
        return model.id
    if spec.get("path"):
        return str(spec["path"])
    raise InvalidInputError(f"model {model.id!r} cannot be loaded by a Ray worker (spec {spec}): give a model folder or file")


def source_record(source: Any) -> dict:
    """A plain record of a source, as the store keeps it (engine.resolve rebuilds it from this)."""
    meta = source.meta()
    return {
        "name": source.id, "kind": source.kind, "layer": source.layer, "hook_name": source.hook_name,
        "path": meta.get("path"), "meta": meta, "d_sae": source.d_sae,
    }  # fmt: skip


def shard_ranges(n_batches: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous [first, end) batch ranges, every start a multiple of SHARD_ALIGN."""
    blocks = -(-n_batches // SHARD_ALIGN)
    n_shards = max(1, min(n_shards, blocks))
    cuts = [round(i * blocks / n_shards) * SHARD_ALIGN for i in range(n_shards)] + [n_batches]
    return [(a, min(b, n_batches)) for a, b in zip(cuts, cuts[1:]) if a < min(b, n_batches)]


class ShardRun(BuildRun):
    """The ordinary pass over batches [first, end) of the plan's windows (global window ids and
    batch numbers), with no checkpoint: its states go back to the driver."""

    def __init__(self, plan: BuildPlan, work_dir: Path, first: int, end: int):
        super().__init__(plan, work_dir, checkpoint_seconds=math.inf, progress=False)
        self.cursor, self.end = first, end
        for acc in self.accs.values():
            acc.start_at(first)

    @property
    def n_batches(self) -> int:
        return self.end

    def _checkpoint(self) -> None:
        pass

    def states(self) -> dict[str, dict]:
        self._forward_pass()
        return {sid: acc.state() for sid, acc in self.accs.items()}


class ShardWorker:
    """Body of a Ray actor: loads the model and sources once, then runs shards."""

    def __init__(self, model_spec: str, records: list[dict], threads: int):
        import torch

        from latentpedia.engine.resolve import source_from_record
        from latentpedia.models.loader import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model_spec)
        self.sources = [source_from_record(self.model, SimpleNamespace(id=None, built_at=None, **r)) for r in records]
        for source, record in zip(self.sources, records):
            if (source.id, source.hook_name, source.d_sae) != (record["name"], record["hook_name"], record["d_sae"]):
                raise InvalidInputError(f"a Ray worker loaded source {record['name']} differently: {source.id} at {source.hook_name}, {source.d_sae} latents")

    def run(self, windows: np.ndarray, corpus_hash: str, batch_size: int, stats: Any, first: int, end: int) -> dict[str, dict]:
        plan = BuildPlan(model=self.model, sources=self.sources, windows=windows, corpus_hash=corpus_hash, batch_size=batch_size, stats=stats)
        with tempfile.TemporaryDirectory(prefix="latentpedia-shard-") as tmp:
            return ShardRun(plan, Path(tmp), first, end).states()


class RayBuildRun(BuildRun):
    """A BuildRun whose pass runs on Ray workers; results, meta and cleanup are BuildRun's."""

    def __init__(self, plan: BuildPlan, work_dir: Path, config: RayConfig, *, checkpoint_seconds: float = 60.0, progress: bool = True, log=print):
        if plan.cache_hooks or plan.activations is not None:
            raise InvalidInputError("a Ray build runs the forward pass only (no activation cache)")
        super().__init__(plan, work_dir, checkpoint_seconds=checkpoint_seconds, progress=progress)
        self.config, self.log = config, log

    def run(self) -> dict:
        import time

        start = time.perf_counter()
        self._merge_shards()
        self.forward_seconds = time.perf_counter() - start
        self.cursor = self.n_batches
        return {s.id: self._results(s) for s in self.plan.sources}

    def _merge_shards(self) -> None:
        import torch

        ray = connect(self.config)
        n_workers = self.config.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.config.cpus_per_worker, 1e-9)))
        ranges = shard_ranges(self.n_batches, n_workers * SHARDS_PER_WORKER)
        pending = {i: r for i, r in enumerate(ranges) if not self._shard_path(r).exists()}
        self.log(f"ray: {len(ranges)} shards of the pass on {n_workers} workers ({len(ranges) - len(pending)} already done)")
        futures, workers = self._launch(ray, pending, n_workers) if pending else ({}, [])
        try:
            for i, shard in enumerate(ranges):
                if i in futures:
                    states = _result(ray, futures.pop(i))
                    atomic_save({"key": self.key, "states": states}, self._shard_path(shard))
                else:
                    states = torch.load(self._shard_path(shard), weights_only=False)["states"]
                self._merge(states, first=(i == 0))
        finally:
            for worker in workers:  # free their CPUs and memory now, also when the driver fails
                ray.kill(worker)

    def _launch(self, ray, pending: dict[int, tuple[int, int]], n_workers: int) -> tuple[dict, list]:
        plan = self.plan
        actor = ray.remote(num_cpus=self.config.cpus_per_worker, num_gpus=self.config.gpus_per_worker)(ShardWorker)
        records = [source_record(s) for s in plan.sources]
        threads = max(1, int(self.config.cpus_per_worker))
        workers = [actor.remote(model_load_spec(plan.model), records, threads) for _ in range(min(n_workers, len(pending)))]
        windows = ray.put(plan.windows)
        futures = {
            i: workers[n % len(workers)].run.remote(windows, plan.corpus_hash, plan.batch_size, plan.stats, first, end)
            for n, (i, (first, end)) in enumerate(sorted(pending.items()))
        }
        return futures, workers

    def _merge(self, states: dict[str, dict], *, first: bool) -> None:
        for sid, acc in self.accs.items():
            if first:
                acc.load(states[sid])
                continue
            part = SourceAccumulator(acc.d, acc.window_len, acc.config)
            part.load(states[sid])
            acc.merge(part)

    def _shard_path(self, shard: tuple[int, int]) -> Path:
        """Where a finished shard's states are kept (named by its batches: a resumed build with
        another number of workers reuses the shards that still fit)."""
        return self.work_dir / f"shard-{shard[0]:08d}-{shard[1]:08d}.pt"


def _result(ray, future):
    """ray.get, re-raising our own errors from a worker as themselves (one clear line)."""
    from latentpedia.errors import LatentpediaError

    try:
        return ray.get(future)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, LatentpediaError):
            raise err.cause from None
        raise


def connect(config: RayConfig):
    """The ray module, connected: the running session, a new local one ("local"), or the
    cluster at `config.address` ("auto" = the one this machine belongs to)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        if config.address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=config.address, log_to_driver=False)
    except ConnectionError as err:
        raise InvalidInputError(f"cannot reach a Ray cluster at {config.address!r} ({err}); start one with `ray start --head` or use --ray local") from err
    return ray


def runner(config: RayConfig, log=print):
    """A BuildRun factory for pipeline.build: the same pass on Ray."""

    def make(plan: BuildPlan, work_dir: Path, *, checkpoint_seconds: float, progress: bool) -> RayBuildRun:
        return RayBuildRun(plan, work_dir, config, checkpoint_seconds=checkpoint_seconds, progress=progress, log=log)

    return make
