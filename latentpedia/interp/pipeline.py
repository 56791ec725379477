"""Explain and score the latents of an atlas, resumably, through the store's API.

    explain_atlas(store, "smollm2-135m", explainer="offline", scorers=["embedding"])   # make demo
    run_explain(store, ExplainRequest(model=..., sources=["6-mlp"], explainer="llm", llm=config,
                                      scorers=["simulation", "detection"]), log=print)

Per source, latents go in batches: explain the ones without an explanation by this method,
prompt version and model (a rerun skips them), store each batch in one transaction with the
texts' search vectors; then run each scorer on every stored explanation it has not scored yet,
beside a baseline (the same scorer on a random other latent's explanation, drawn from the
explanations stored by then, over the same held-out examples), a batch per transaction. Killing
a run loses at most one batch. The embedding scorer is given its vectors: the explanations'
stored search vectors, and the corpus chunks it needs embedded once per run in one planned,
length-sorted list. The driver alone reads and writes the store; what a batch computes
(work.py) runs here or on Ray workers (`ExplainRequest.ray`, ray_explain.py) with the same
result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from latentpedia.dashboards.progress import ProgressMeter
from latentpedia.errors import LatentpediaError
from latentpedia.interp import offline, registry
from latentpedia.interp.data import TOP, AtlasText, load_latent, read_latents
from latentpedia.interp.embedding import MODEL_NAME, negative_chunks, positive_chunks
from latentpedia.interp.llm.client import LLMConfig, estimate_tokens
from latentpedia.interp.registry import EXPLAINERS, LLM_SCORERS, SCORERS, TorchRunner
from latentpedia.interp.storage import StoredExplanation, stored_explanations, stored_vectors
from latentpedia.interp.work import Work
from latentpedia.store.api import Store
from latentpedia.store.explanation_search import put_embeddings
from latentpedia.store.schema import Example as ExampleRow

__all__ = ["EXPLAINERS", "LLM_SCORERS", "SCORERS", "ExplainRequest", "baseline_for", "explain_atlas", "run_explain"]
Log = Callable[[str], None]


@dataclass
class ExplainRequest:
    model: str
    sources: list[str] = field(default_factory=list)  # empty: every built source of the model
    explainer: str = "offline"  # a name in registry.EXPLAINERS
    variant: str = "examples"  # the LLM explainer's prompt variant (registry.LLMExplainer.variants)
    scorers: list[str] = field(default_factory=lambda: ["embedding"])
    limit: int | None = None  # latents per source (the first N)
    indices: list[int] | None = None  # exactly these latents
    llm: LLMConfig | None = None  # the explainer's endpoint
    scorer_llm: LLMConfig | None = None  # the scorers' endpoint (default: llm)
    scorer_backend: Any = None  # an in-process backend (LocalLM) for LLM scorers instead
    batch_size: int = 256
    seed: int = 0
    progress: bool = True
    on_torch: TorchRunner | None = None  # runs the scorers' torch steps (default: on this thread)
    ray: Any = None  # a dashboards.ray_build.RayConfig: explain and score on a Ray cluster (ray_explain.py)

    def check(self) -> None:
        kind = registry.explainer(self.explainer)
        kind.stored_as(self.variant)
        llm_scorers = [s.name for s in registry.scorers(self.scorers) if s.needs_llm]
        if kind.needs_llm and self.llm is None:
            raise LatentpediaError(f"the {kind.name} explainer needs an endpoint: --llm-base-url and --llm-model")
        if llm_scorers and self.scorer_backend is None and (self.scorer_llm or self.llm) is None:
            raise LatentpediaError(f"the {'/'.join(llm_scorers)} scorer(s) need an LLM endpoint: --llm-base-url and --llm-model")


def explain_atlas(store: Store, model_id: str, explainer: str = "offline", scorers: list[str] | tuple[str, ...] = ("embedding",),
                  *, progress: bool = True, log: Log | None = None, **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """Explain (and score) every built source of `model_id`; what `make demo` calls at the end."""
    request = ExplainRequest(model=model_id, explainer=explainer, scorers=list(scorers), progress=progress, **kwargs)
    return run_explain(store, request, log=log or (lambda _m: None))


def run_explain(store: Store, request: ExplainRequest, log: Log) -> dict[str, Any]:
    """Explain and score as `request` says; a summary {source: {"explained", "scored", "errors"}}."""
    request.check()
    sources = _sources(store, request)
    executor = _executor(request, log)
    summary: dict[str, Any] = {}
    try:
        for source in sources:
            summary[source.name] = _run_source(store, executor, source, log)
        usage = executor.usage()
    finally:
        executor.close()
    if usage is not None:
        log(f"LLM: {usage.requests} requests sent, {usage.cached} answered from the cache, "
            f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion tokens")  # fmt: skip
    return summary


def _executor(request: ExplainRequest, log: Log) -> Any:
    if request.ray is None:
        return LocalExecutor(Work(request))
    from latentpedia.interp.ray_explain import RayExecutor

    return RayExecutor(request, log)


class LocalExecutor:
    """Runs the Work's calls in this process, one after the other."""

    def __init__(self, work: Work):
        self.work, self.request = work, work.request
        self.kind, self.method, self.version, self.model_name = work.kind, work.method, work.version, work.model_name
        self.chunks: dict[tuple, dict[tuple[int, int], np.ndarray]] = {}  # corpus -> chunk vectors of this run

    def share(self, atlas: AtlasText) -> Any:
        return atlas

    def map(self, method: str, calls: Iterable[tuple]) -> Iterator[Any]:
        for args in calls:
            yield getattr(self.work, method)(*args)

    def usage(self) -> Any:
        return self.work.usage()

    def close(self) -> None:
        self.work.close()


def _sources(store: Store, request: ExplainRequest) -> list[Any]:
    if store.get_model(request.model) is None:
        raise LatentpediaError(f"the atlas has no model {request.model!r}")
    if not request.sources:
        return [s for s in store.list_sources(request.model) if s.status == "ready"]
    out = []
    for name in request.sources:
        source = store.get_source(request.model, name)
        if source is None:
            raise LatentpediaError(f"model {request.model!r} has no source {name!r}")
        out.append(source)
    return out


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def _run_source(store: Store, executor: Any, source: Any, log: Log) -> dict[str, Any]:
    """Explain every latent without an explanation (batch by batch, each stored in one
    transaction), then run each scorer over every stored explanation it has not scored, beside a
    baseline drawn from the explanations stored by then (the same pool however the run was split
    or resumed)."""
    request = executor.request
    atlas = AtlasText(store, source.id)
    indices = request.indices if request.indices is not None else list(range(source.d_sae))[: request.limit]
    bad = [i for i in indices if not 0 <= i < source.d_sae]
    if bad:
        raise LatentpediaError(f"source {source.name!r} has latents 0..{source.d_sae - 1}, not {bad[0]}")
    stored = stored_explanations(store, source.id, executor.method, executor.version, executor.model_name)
    alive = {row["idx"] for row in store.list_latents(source.id, limit=None) if (row["max_act"] or 0) > 0}
    todo = [i for i in indices if i not in stored or (i in alive and any(s not in stored[i].scorers for s in request.scorers))]
    new = [i for i in todo if i not in stored]
    if executor.kind.needs_llm and new:
        _print_estimate(atlas, request, new, log)
    counts: dict[str, Any] = {"explained": 0, "scored": 0, "errors": [], "skipped": len(indices) - len(todo)}
    shared = executor.share(atlas) if todo else None
    with _progress(request.progress, f"explain {source.name}", len(new)) as meter:
        batches = _batches(new, request.batch_size)
        calls = ((shared, read_latents(store, source.id, batch)) for batch in batches)
        for batch, results in zip(batches, executor.map("explain", calls)):
            _write_explanations(store, source.id, results, stored, counts)
            meter.advance(len(batch))
    pool = sorted(stored)
    for name in [kind.name for kind in registry.scorers(request.scorers)]:
        wanted = [i for i in indices if i in stored and name not in stored[i].scorers and i in alive]
        if wanted:
            _score_source(store, executor, atlas, shared, name, wanted, stored, pool, counts)
    log(f"{source.name}: {counts['explained']} explained, {counts['scored']} scores, "
        f"{counts['skipped']} already done, {len(counts['errors'])} errors")  # fmt: skip
    return counts


def _write_explanations(store: Store, source_id: int, results: list[tuple[int, Any, Any]],
                        stored: dict[int, StoredExplanation], counts: dict[str, Any]) -> None:  # fmt: skip
    rows, vectors = [], []
    for index, result, vector in results:
        if isinstance(result, str):
            counts["errors"].append(f"latent {index}: {result}")
            continue
        rows.append({**result, "source_id": source_id, "latent_index": index})
        vectors.append(vector)
    ids = store.add_explanations_bulk(rows)
    put_embeddings(store, [(eid, v) for eid, v in zip(ids, vectors, strict=True) if v is not None], MODEL_NAME)  # for search
    for row, eid in zip(rows, ids, strict=True):
        stored[row["latent_index"]] = StoredExplanation(eid, row["latent_index"], row["text"])
    counts["explained"] += len(rows)


def _score_source(store: Store, executor: Any, atlas: AtlasText, shared: Any, name: str, wanted: list[int],
                  stored: dict[int, StoredExplanation], pool: list[int], counts: dict[str, Any]) -> None:  # fmt: skip
    request = executor.request
    items = {i: (stored[i].id, stored[i].text, baseline_for(i, stored, request.seed, atlas, pool)) for i in wanted}
    inputs = _vector_inputs(store, executor, atlas, shared, name, items) if _uses_vectors(name) else None
    batches = _batches(wanted, request.batch_size)

    def calls() -> Iterator[tuple]:
        for batch in batches:
            part = {i: items[i] for i in batch}
            yield shared, name, read_latents(store, atlas.source.id, batch), part, inputs.subset(part) if inputs else None

    with _progress(request.progress, f"score {atlas.source.name} ({name})", len(wanted)) as meter:
        for batch, scored in zip(batches, executor.map("score", calls())):
            rows = [row for _, row in scored]
            store.add_scores_bulk(rows)
            for index, _ in scored:
                stored[index].scorers.add(name)
            counts["scored"] += sum(r["status"] == "ok" for r in rows)
            counts["errors"] += [r["error"] for r in rows if r["status"] != "ok"][:5]
            meter.advance(len(batch))


def _uses_vectors(name: str) -> bool:
    """Whether the scorer takes precomputed MiniLM vectors (`provide`): the embedding scorer."""
    return hasattr(registry.SCORERS[name].implementation(), "provide")


class _VectorInputs:
    """The chunk and text vectors an embedding scorer needs, computed once for a source's run."""

    def __init__(self, chunks: dict[tuple[int, int], np.ndarray], positives: dict[int, list[tuple[int, int]]],
                 negatives: list[tuple[int, int]], texts: dict[str, np.ndarray]):  # fmt: skip
        self.chunks, self.positives, self.negatives, self.texts = chunks, positives, negatives, texts

    def subset(self, items: dict[int, Any]) -> tuple[dict, dict]:
        keys = {k for i in items for k in self.positives.get(i, [])} | set(self.negatives)
        texts = {t for i in items for t in (items[i][1], items[i][2][1] if items[i][2] else None) if t is not None}
        return {k: self.chunks[k] for k in keys}, {t: self.texts[t] for t in texts}


CHUNK_CALL = 2048  # corpus chunks per embedding call (one planned, sorted list cut in these pieces)


def _vector_inputs(store: Store, executor: Any, atlas: AtlasText, shared: Any, name: str, items: dict[int, Any]) -> _VectorInputs:
    """Chunk vectors (the run's cache, then the missing ones embedded in planned pieces) and
    text vectors (the explanations' stored search vectors; texts without one are embedded)."""
    request = executor.request
    positives = _positive_chunks(store, atlas, sorted(items))
    negatives = negative_chunks(atlas, request.seed)
    cache = executor.chunks.setdefault(atlas.corpus_key, {})
    missing = sorted({k for keys in positives.values() for k in keys} | set(negatives) - set(cache))
    pieces = _batches(missing, CHUNK_CALL)
    for piece, vectors in zip(pieces, executor.map("embed_chunks", ((shared, piece) for piece in pieces))):
        cache.update(zip(piece, vectors, strict=True))
    ids = {eid: text for eid, text, _ in items.values()} | {b[0]: b[1] for _, _, b in items.values() if b and b[0] is not None}
    texts: dict[str, np.ndarray] = {}
    for eid, vector in sorted(stored_vectors(store, sorted(ids)).items()):
        texts.setdefault(ids[eid], vector)
    new_ids = sorted(eid for eid in ids if ids[eid] not in texts)
    loose = sorted({b[1] for _, _, b in items.values() if b and b[0] is None} - set(texts))
    wanted = sorted({ids[eid] for eid in new_ids} | set(loose))
    if wanted:
        (vectors,) = executor.map("embed", [(wanted,)])
        texts.update(zip(wanted, vectors, strict=True))
        put_embeddings(store, [(eid, texts[ids[eid]]) for eid in new_ids], MODEL_NAME)
    return _VectorInputs(cache, positives, negatives, texts)


def _positive_chunks(store: Store, atlas: AtlasText, indices: list[int]) -> dict[int, list[tuple[int, int]]]:
    """Each latent's held-out top examples' chunks, from the example rows' (kind, rank, window, max_pos)."""
    out: dict[int, list[tuple[int, int]]] = {i: [] for i in indices}
    for part in _batches(indices, 4096):
        query = (select(ExampleRow.latent, ExampleRow.kind, ExampleRow.rank, ExampleRow.window, ExampleRow.max_pos)
                 .where(ExampleRow.source_id == atlas.source.id, ExampleRow.latent.in_(part), ExampleRow.kind == TOP))  # fmt: skip
        with store._read() as session:
            rows = session.execute(query).all()
        by_latent: dict[int, list[tuple[int, int, int, int]]] = {}
        for latent, kind, rank, window, max_pos in rows:
            by_latent.setdefault(latent, []).append((kind, rank, window, max_pos))
        for latent, examples in by_latent.items():
            out[latent] = positive_chunks(atlas.window_len, examples)
    return out


def baseline_for(index: int, stored: dict[int, StoredExplanation], seed: int, atlas: AtlasText,
                 pool: list[int] | None = None) -> tuple[int | None, str, int] | None:  # fmt: skip
    """(explanation id, text, latent) of a random other latent: a stored explanation of the same
    method if there is one (`pool`: the sorted stored indices), else an offline explanation made
    on the spot (id None)."""
    rng = np.random.default_rng([seed, index])
    pool = sorted(stored) if pool is None else pool
    if len(pool) > 1 or (pool and pool[0] != index):
        k = int(rng.integers(len(pool)))
        if pool[k] == index:
            k = (k + 1) % len(pool)
        other = stored[pool[k]]
        return other.id, other.text, other.latent_index
    d = atlas.source.d_sae
    if d < 2:
        return None
    j = int((index + 1 + rng.integers(d - 1)) % d)
    return None, offline.explain_offline(atlas, load_latent(atlas, j))["text"], j


def _print_estimate(atlas: AtlasText, request: ExplainRequest, new: list[int], log: Log) -> None:
    """Requests and tokens the explainer will need, from the first latent's prompt."""
    from latentpedia.interp.llm.explain import prompt_for

    if not new:
        return
    sample = load_latent(atlas, new[0])
    if not sample.explain_top:
        return
    one = estimate_tokens([prompt_for(request.variant, atlas, sample)], 40)
    log(f"estimate for {atlas.source.name}: {len(new)} explainer requests, ~{one['prompt_tokens'] * len(new):,} prompt "
        f"tokens + ~{40 * len(new):,} completion tokens (LLM scorers add ~10-20 requests per latent, x2 with baselines)")


class _progress:
    """Latents done (dashboards/progress.py: a bar on a terminal, plain lines with rate and ETA
    otherwise, readings to the job worker)."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.meter = ProgressMeter(description, total, unit="latents", enabled=enabled)

    def __enter__(self) -> _progress:
        self.meter.__enter__()
        return self

    def advance(self, n: int) -> None:
        self.meter.advance(n)

    def __exit__(self, *exc: Any) -> None:
        self.meter.__exit__(*exc)
