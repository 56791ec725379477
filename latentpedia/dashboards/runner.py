"""One forward pass over the corpus feeds every source; resumable; then one write per source.

The pass stops after the last layer any source (or the activation cache) needs. A checkpoint of
every accumulator and the batch cursor is saved atomically every `checkpoint_seconds`; a build
killed at any point and started again resumes from it and ends with exactly the same store.
Nothing is written to the store until a source's statistics are final, and each source is
written in one transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import shutil

import numpy as np
import torch

from latentpedia.dashboards.accumulator import SourceAccumulator, StatsConfig
from latentpedia.dashboards.actcache import ActivationCache
from latentpedia.dashboards.cached import CachedActivations
from latentpedia.dashboards.checkpoint import atomic_save, build_key, crash_point, load_checkpoint
from latentpedia.dashboards.finalize import aligned_entries, example_batch, latent_stats, logit_effects
from latentpedia.dashboards.progress import BuildProgress
from latentpedia.models.hooks import run_with_cache, unembed, write_matrix
from latentpedia.sources.base import Source
from latentpedia.store.records import SourceResults


@dataclass
class BuildPlan:
    model: Any  # LoadedModel
    sources: list[Source]
    windows: np.ndarray  # [n, T] int32, BOS first
    corpus_hash: str
    batch_size: int = 8
    stats: StatsConfig = field(default_factory=StatsConfig)
    cache_hooks: list[str] = field(default_factory=list)
    cache_tokens: int = 0
    activations: CachedActivations | None = None  # read the hooks from here, not from the model

    def key(self) -> str:
        return build_key(
            {
                "model": self.model.id,
                "corpus": self.corpus_hash,
                "windows": list(self.windows.shape),
                "sources": [(s.id, s.hook_name, s.d_sae, s.meta()) for s in self.sources],
                "batch": self.batch_size,
                "stats": asdict(self.stats),
                "cache": [sorted(self.cache_hooks), self.cache_tokens],
                **({"from_cache": self.activations.fingerprint()} if self.activations else {}),
            }
        )

    def hooks(self) -> list[str]:
        return sorted({s.hook_name for s in self.sources} | set(self.cache_hooks))


class BuildRun:
    def __init__(self, plan: BuildPlan, work_dir: Path, *, checkpoint_seconds: float = 60.0, progress: bool = True):
        self.plan, self.key = plan, plan.key()
        self.work_dir = Path(work_dir) / f"build-{self.key}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.work_dir / "checkpoint.pt"
        plan_file = {"model": plan.model.id, "corpus": plan.corpus_hash, "sources": [s.id for s in plan.sources]}
        (self.work_dir / "plan.json").write_text(json.dumps(plan_file))
        self.checkpoint_seconds = checkpoint_seconds
        self.show_progress = progress
        T = plan.windows.shape[1]
        self.accs = {s.id: SourceAccumulator(s.d_sae, T, plan.stats) for s in plan.sources}
        self.cache = ActivationCache(self.work_dir / "activations", plan.cache_hooks, plan.cache_tokens) if plan.cache_hooks else None
        self.cursor, self.forward_seconds = 0, 0.0

    @property
    def n_batches(self) -> int:
        return -(-len(self.plan.windows) // self.plan.batch_size)

    def run(self) -> dict[str, SourceResults]:
        """Run (or resume) the pass; return the final results per source id."""
        self._restore()
        self._forward_pass()
        return {s.id: self._results(s) for s in self.plan.sources}

    def _restore(self) -> None:
        state = load_checkpoint(self.ckpt_path, self.key)
        if state is None:
            return
        self.cursor, self.forward_seconds = state["cursor"], state["forward_seconds"]
        for sid, acc_state in state["accs"].items():
            self.accs[sid].load(acc_state)
        if self.cache:
            self.cache.resume(self.cursor, state["cache_tokens"])

    def _checkpoint(self) -> None:
        if self.cache:
            self.cache.flush(self.cursor)
        crash_point("checkpoint")
        state = {
            "key": self.key,
            "cursor": self.cursor,
            "forward_seconds": self.forward_seconds,
            "accs": {sid: acc.state() for sid, acc in self.accs.items()},
            "cache_tokens": self.cache.tokens if self.cache else 0,
        }
        atomic_save(state, self.ckpt_path)

    def _forward_pass(self) -> None:
        plan, hooks = self.plan, self.plan.hooks()
        bs, T = plan.batch_size, plan.windows.shape[1]
        last_save = time.monotonic()
        label = "encoding cached activations" if plan.activations is not None else "forward pass"
        with BuildProgress(len(plan.windows) * (T - 1), enabled=self.show_progress, description=label) as bar:
            bar.advance(min(self.cursor * bs, len(plan.windows)) * (T - 1), resumed=True)
            while self.cursor < self.n_batches:
                lo, hi = self.cursor * bs, min((self.cursor + 1) * bs, len(plan.windows))
                start = time.perf_counter()
                self._step(torch.from_numpy(plan.windows[lo:hi]).long(), torch.arange(lo, hi), hooks)
                self.forward_seconds += time.perf_counter() - start
                self.cursor += 1
                bar.advance((hi - lo) * (T - 1))
                crash_point("batch")
                if time.monotonic() - last_save >= self.checkpoint_seconds and self.cursor < self.n_batches:
                    self._checkpoint()
                    last_save = time.monotonic()
        self._checkpoint()  # cursor == n_batches: a crash from here on skips the forward pass
        if self.cache:
            self.cache.finish({"model": plan.model.id, "corpus": plan.corpus_hash, "dtype": "float16"})

    def _step(self, input_ids: torch.Tensor, window_ids: torch.Tensor, hooks: list[str]) -> None:
        with torch.inference_mode():
            if self.plan.activations is not None:
                acts = self.plan.activations.windows(int(window_ids[0]), int(window_ids[-1]) + 1)
            else:
                acts = run_with_cache(self.plan.model, input_ids, hooks, stop_early=True)
            outliers = {hook: outlier_tokens(acts[hook], self.plan.stats.outlier_factor) for hook in {s.hook_name for s in self.plan.sources}}
            for source in self.plan.sources:
                x = acts[source.hook_name]
                latents = source.encode(x)
                if latents.data_ptr() == x.data_ptr():  # identity encoders (neurons): keep x intact
                    latents = latents.clone()
                if outliers[source.hook_name] is not None:
                    latents[outliers[source.hook_name]] = 0
                self.accs[source.id].update(latents, window_ids, in_place=True)
            if self.cache:
                self.cache.add(acts)

    def _results(self, source: Source) -> SourceResults:
        acc = self.accs[source.id]
        with torch.inference_mode():
            decoder = source.decoder().float()
            mapping = write_matrix(self.plan.model, source.output_hook)
            residual = decoder if mapping is None else decoder @ mapping.float()
            norm_weight, W_U = unembed(self.plan.model)
            logits = logit_effects(residual, norm_weight, W_U, n=acc.config.n_logits, bins=acc.config.hist_bins)
            aligned = aligned_entries(decoder, acc.config.n_aligned)
            stats, note = latent_stats(acc, logits, aligned)
            examples = example_batch(acc)
        meta = {
            **note,
            "build_key": self.key,
            "aligned_space": source.output_hook,
            "logits_basis": logits[0]["basis"] if logits else None,
            "values_stored": "activations > 0 (float16)",
            "stats": asdict(acc.config),
        }
        return SourceResults(stats=stats, examples=examples, n_tokens=acc.n_tokens, meta=meta)

    def cleanup(self) -> None:
        """Remove the checkpoint once every result is in the store."""
        self.ckpt_path.unlink(missing_ok=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)


def outlier_tokens(x: torch.Tensor, factor: float | None) -> torch.Tensor | None:
    """[B, T] mask of tokens (BOS excluded) whose activation norm exceeds `factor` x the batch's
    median norm; None when there are none (or no factor)."""
    if factor is None:
        return None
    norms = x[:, 1:].float().norm(dim=-1)
    mask = norms > factor * norms.median()
    if not bool(mask.any()):
        return None
    return torch.cat([torch.zeros_like(mask[:, :1]), mask], dim=1)


def interrupted_plan(work_root: Path, model_id: str, corpus_hash: str, todo: set[str], requested: set[str]) -> list[str] | None:
    """Source ids of an interrupted build that can finish `todo`: same model and corpus, every
    source of `todo` in it and nothing that was not requested now. None if there is none."""
    for plan_file in sorted(Path(work_root).glob("build-*/plan.json")):
        if not (plan_file.parent / "checkpoint.pt").exists():
            continue
        plan = json.loads(plan_file.read_text())
        ids = plan["sources"]
        if plan["model"] == model_id and plan["corpus"] == corpus_hash and todo <= set(ids) <= requested:
            return ids
    return None
