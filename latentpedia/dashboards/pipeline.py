"""Atlas-level orchestration: model + corpus + sources -> statistics in the store.

`build` handles `latentpedia build` / `demo`; `import_sae` handles `latentpedia import-sae`.
Both resolve sources (validated before anything is written), register the model and its
vocabulary, store the corpus windows once, run one resumable pass for every source that is not
built yet, and write each source's results in one transaction.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentpedia.dashboards.accumulator import StatsConfig
from latentpedia.dashboards.cached import CachedActivations
from latentpedia.dashboards.checkpoint import crash_point
from latentpedia.dashboards.runner import BuildPlan, BuildRun, interrupted_plan
from latentpedia.config import data_dir
from latentpedia.corpus import DEFAULT_CORPUS, TokenizedCorpus, check_window_budget, prepare_corpus
from latentpedia.engine.resolve import resolve_source
from latentpedia.errors import InvalidInputError
from latentpedia.models.hooks import hook_width
from latentpedia.models.loader import DEFAULT_MODEL_ID, LoadedModel, load_model
from latentpedia.sources.base import Source, layer_of
from latentpedia.store.api import Store

ATLAS_CORPUS = "atlas"  # reuse the corpus the atlas already holds for this model


@dataclass
class BuildRequest:
    """What `latentpedia build` was asked for."""

    model: str = DEFAULT_MODEL_ID
    sources: list[str] = field(default_factory=list)  # "6-mlp" or a path to an SAE folder/file
    corpus: str = DEFAULT_CORPUS
    n_tokens: int = 500_000
    window_len: int = 128
    batch_size: int = 8
    cache_hooks: list[str] = field(default_factory=list)
    cache_tokens: int = 0
    text_field: str = "text"
    rebuild: bool = False
    progress: bool = True
    checkpoint_seconds: float = 60.0
    stats: StatsConfig = field(default_factory=StatsConfig)
    # Build from the atlas's cached activations when they hold every source's hook (no forward
    # pass; only the windows the cache covers): how freshly trained SAEs get their dashboards.
    from_cache: bool = False
    maps: bool = True  # after the statistics, a 2-D map of each source's decoder directions (dashboards/maps.py)

    def check(self) -> None:
        """InvalidInputError for the first setting out of range (called before anything is
        loaded or written, so the CLI, the API and jobs refuse the same requests)."""
        for name, minimum in (("n_tokens", 1), ("window_len", 2), ("batch_size", 1), ("cache_tokens", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidInputError(f"{name} must be an integer of at least {minimum}, got {value!r}")
        if isinstance(self.checkpoint_seconds, bool) or not isinstance(self.checkpoint_seconds, (int, float)) \
                or not math.isfinite(self.checkpoint_seconds) or self.checkpoint_seconds < 0:
            raise InvalidInputError(f"checkpoint_seconds must be a number of at least 0, got {self.checkpoint_seconds!r}")
        if self.corpus != ATLAS_CORPUS:
            check_window_budget(self.window_len, self.n_tokens)
        for name in ("sources", "cache_hooks"):
            if not all(isinstance(item, str) and item for item in getattr(self, name)):
                raise InvalidInputError(f"{name} must be a list of non-empty strings, got {getattr(self, name)!r}")


def register_model(store: Store, model: LoadedModel) -> None:
    store.upsert_model(
        id=model.id, family=model.family, n_layers=model.n_layers, d_model=model.d_model,
        d_mlp=model.d_mlp, vocab_size=model.vocab_size, bos_id=model.bos_id, spec=model.spec,
    )  # fmt: skip
    if not store.get_vocab(model.id):
        tokens = model.tokenizer.convert_ids_to_tokens(list(range(len(model.tokenizer))))
        store.set_vocab(model.id, [t if t is not None else "" for t in tokens])


def activation_dir(model_id: str, corpus_hash: str) -> Path:
    """Where the activations cached by a build pass live (read by SAE training)."""
    return data_dir() / "activations" / f"{model_id}-{corpus_hash[:12]}"


def _corpus(store: Store, model: LoadedModel, request: BuildRequest, log) -> tuple[TokenizedCorpus, int | None]:
    """The atlas's own corpus with its id, or the requested one tokenized (id None: not stored yet)."""
    if request.corpus == ATLAS_CORPUS:
        corpora = store.list_corpora(model.id)
        if corpora:
            record = corpora[-1]
            windows = store.get_windows(record.id, np.arange(record.n_windows))
            log(f"corpus: the atlas's corpus {record.name!r} ({record.n_tokens:,} tokens)")
            return TokenizedCorpus(windows, record.composition, record.spec), record.id
        request.corpus = DEFAULT_CORPUS
    log(f"corpus: tokenizing {request.corpus!r} up to {request.n_tokens:,} tokens")
    corpus = prepare_corpus(model, request.corpus, n_tokens=request.n_tokens, window_len=request.window_len, text_field=request.text_field)
    return corpus, None


def _store_corpus(store: Store, model: LoadedModel, corpus: TokenizedCorpus) -> int:
    return store.add_corpus(
        model.id, corpus.spec["name"], corpus.spec, corpus.windows.shape[1], corpus.windows,
        corpus.composition, corpus.content_hash, n_tokens=corpus.n_tokens,
    )  # fmt: skip


def build(store: Store, request: BuildRequest, *, model: LoadedModel | None = None, sources: list[Source] | None = None, log=print, runner=None) -> dict:
    """Build (or resume, or extend) the atlas for `request`; returns a summary. Everything the
    request names (settings, sources, hooks, corpus) is checked before the store is written.
    `runner` makes the pass (default runner.BuildRun; ray_build.runner shards it over Ray)."""
    request.check()
    model = model or load_model(request.model)
    sources = sources if sources is not None else [resolve_source(model, spec) for spec in request.sources]
    if not sources and not request.cache_hooks:
        raise InvalidInputError("no source to build: pass --source (e.g. 6-mlp or an SAE folder)")
    for hook in request.cache_hooks:
        hook_width(model, hook)
    corpus, corpus_id = _corpus(store, model, request, log)
    register_model(store, model)
    corpus_id = corpus_id if corpus_id is not None else _store_corpus(store, model, corpus)
    registered = [(s, _register_source(store, model, s, corpus_id)) for s in sources]
    todo = [(s, pk) for s, pk in registered if request.rebuild or _needs_build(store, pk, corpus_id)]
    todo = _resume_superset(model, corpus.content_hash, registered, todo)
    cache_ready = (activation_dir(model.id, corpus.content_hash) / "manifest.json").exists()
    if not todo and (cache_ready or not request.cache_hooks):
        log("every requested source is already built over this corpus (use --rebuild to redo)")
        return {"built": [], "corpus_id": corpus_id, "mapped": _maps(store, request, registered, [], log),
                "neighbours": _neighbours(store, model, registered, [], log)}
    summary = _run(store, request, model, corpus, corpus_id, todo, cache=not cache_ready, log=log, runner=runner)
    redo = [pk for _, pk in todo] if request.rebuild else []
    return {**summary, "mapped": _maps(store, request, registered, redo, log),
            "neighbours": _neighbours(store, model, registered, [s.id for s, _ in todo] if request.rebuild else [], log)}


def _neighbours(store: Store, model: LoadedModel, registered: list, redo: list[str], log) -> list:
    """The finalisation step: decoder-cosine neighbours of every same-hook source pair not stored
    yet (dashboards/neighbours.py; pairs of rebuilt sources `redo` are recomputed)."""
    from latentpedia.dashboards.neighbours import update_neighbours

    if redo:
        update_neighbours(store, model, names=redo, rebuild=True, log=log)
    return update_neighbours(store, model, names=[s.id for s, _ in registered], log=log)


def _maps(store: Store, request: BuildRequest, registered: list, redo: list[int], log) -> list[str]:
    """The finalisation step: maps of the sources that have none (a resumed build computes
    the ones a killed build did not reach)."""
    from latentpedia.dashboards.maps import ensure_maps

    return ensure_maps(store, registered, redo=redo, log=log) if request.maps else []


def _resume_superset(model: LoadedModel, corpus_hash: str, registered: list, todo: list) -> list:
    """If a build killed while writing results left some sources written and others not,
    finish it with its original source set, so its checkpoint (not a new pass) is used."""
    if not todo:
        return todo
    by_id = {s.id: (s, pk) for s, pk in registered}
    ids = interrupted_plan(data_dir() / "work", model.id, corpus_hash, {s.id for s, _ in todo}, set(by_id))
    return [by_id[i] for i in ids] if ids else todo


def _register_source(store: Store, model: LoadedModel, source: Source, corpus_id: int) -> int:
    meta = source.meta()
    return store.add_source(
        model.id, source.id, source.kind, source.hook_name, source.layer, source.d_in, source.d_sae,
        corpus_id, meta.get("format", source.kind), meta.get("path"), meta,
    )  # fmt: skip


def _needs_build(store: Store, source_pk: int, corpus_id: int) -> bool:
    row = store.get_source_by_id(source_pk)
    return row.status != "ready" or row.corpus_id != corpus_id


def _cached_activations(request: BuildRequest, model: LoadedModel, corpus, todo) -> CachedActivations | None:
    """The atlas's activation cache, if asked for and it holds every source's hook."""
    folder = activation_dir(model.id, corpus.content_hash)
    hooks = [s.hook_name for s, _ in todo]
    if not (request.from_cache and todo and CachedActivations.covers(folder, hooks)):
        return None
    return CachedActivations(folder, hooks, corpus.windows.shape[1])


def _run(store: Store, request: BuildRequest, model: LoadedModel, corpus, corpus_id: int, todo, *, cache: bool, log, runner=None) -> dict:
    cached = _cached_activations(request, model, corpus, todo)
    cache_hooks = list(request.cache_hooks) if cache and cached is None else []
    windows = corpus.windows if cached is None else corpus.windows[: cached.n_windows]
    plan = BuildPlan(
        model=model, sources=[s for s, _ in todo], windows=windows, corpus_hash=corpus.content_hash,
        batch_size=request.batch_size, stats=request.stats, cache_hooks=cache_hooks,
        cache_tokens=request.cache_tokens if cache_hooks else 0, activations=cached,
    )  # fmt: skip
    run = (runner or BuildRun)(plan, data_dir() / "work", checkpoint_seconds=request.checkpoint_seconds, progress=request.progress)
    names = ", ".join(s.id for s, _ in todo) or "activation cache only"
    n_tokens = len(windows) * (windows.shape[1] - 1)
    if cached is not None:
        log(f"building {names} from the cached activations of {n_tokens:,} tokens ({len(windows):,} windows), no forward pass")
    else:
        last = max(layer_of(h) for h in plan.hooks())
        log(f"building {names} over {n_tokens:,} tokens ({len(windows):,} windows), stopping after layer {last}")
    job = store.start_job("build", f"{model.id}: {names}")
    try:
        results = run.run()
        for source, source_pk in todo:
            crash_point("write")
            store.write_source_results(source_pk, results[source.id], corpus_id=corpus_id)
            log(f"  wrote {source.id}: {source.d_sae:,} latents, {len(results[source.id].examples.latent):,} examples")
    except BaseException as err:
        store.finish_job(job, "failed", f"{type(err).__name__}: {err}")
        raise
    if cache_hooks:
        _publish_activations(run, activation_dir(model.id, corpus.content_hash), log)
    store.finish_job(job, "done")
    run.cleanup()
    return {"built": [s.id for s, _ in todo], "corpus_id": corpus_id, "forward_seconds": run.forward_seconds}


def _publish_activations(run: BuildRun, target: Path, log) -> None:
    """Move the pass's activation shards to their lasting place (one rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    (run.work_dir / "activations").rename(target)
    log(f"  cached activations for SAE training in {target}")


def import_sae(
    store: Store,
    path: str | Path,
    *,
    model: str = DEFAULT_MODEL_ID,
    name: str | None = None,
    hook: str | None = None,
    n_tokens: int = 500_000,
    progress: bool = True,
    log=print,
) -> dict:
    """Add the SAE at `path` to the atlas and build its dashboards over the atlas's corpus."""
    loaded = load_model(model)
    source = resolve_source(loaded, str(path), name=name, hook=hook)
    log(f"{Path(path).name}: {source.meta().get('format')} {source.meta().get('architecture')} SAE, {source.d_sae:,} latents at {source.hook_name} -> source {source.id}")
    request = BuildRequest(model=model, corpus=ATLAS_CORPUS, n_tokens=n_tokens, progress=progress)
    return build(store, request, model=loaded, sources=[source], log=log)
