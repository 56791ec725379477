"""`Store`: the atlas database (SQLite or PostgreSQL) behind one small API.

    store = Store.open("sqlite:///atlas.db")        # or postgresql://…; migrates to head
    store.upsert_model("smollm2-135m", "llama", 30, 576, 1536, 49152, 0, {...})
    corpus_id = store.add_corpus(model_id, name, spec, 128, windows, composition, content_hash)
    source_id = store.add_source(model_id, "6-mlp", "mlp", "blocks.6.mlp.hook_post", 6, 1536, 1536, corpus_id)
    store.write_source_results(source_id, results)  # records.SourceResults, atomically
    store.get_latent(source_id, 42); store.get_examples(source_id, 42)

Methods (records are frozen dataclasses from records.py, readable as `rec.x` or `rec["x"]`):
  models   upsert_model, get_model -> ModelRecord | None, list_models, set_vocab, get_vocab -> list[str]
  corpora  add_corpus -> id (idempotent on content_hash), get_corpus, find_corpus, list_corpora,
           get_windows(corpus_id, idxs) -> int32 [n, T], iter_windows(corpus_id, start, stop)
  sources  add_source -> id, get_source(model_id, name), get_source_by_id, list_sources, delete_source,
           set_source_quality(source_id, metrics) (merged into meta["quality"])
  results  write_source_results, get_latent -> dict | None, get_examples -> list[dict],
           list_latents(order_by, desc, offset, limit, min_density, max_density), count_latents,
           count_examples
  jobs     start_job -> id (pid, host, heartbeat), update_job, finish_job, get_job, list_jobs;
           jobs.job_state(job): "interrupted" / "stalled" for a running job whose process died
  accounts users, login sessions, API keys (accounts.py)
  community explanations + scores (add_explanation[s_bulk], list_explanations, add_score[s_bulk],
           explained_indices), votes, comments (community.py), lists (lists.py)

Corpus methods live in corpora.py, build results in results.py, jobs in jobs.py; this
module adds models, vocabularies and sources. Every write is one transaction. No build logic.
"""

from __future__ import annotations

from typing import Any, Self

from sqlalchemy import Engine, delete, select
from sqlalchemy.engine import URL

from latentpedia.config import default_db_url
from latentpedia.errors import LatentpediaError
from latentpedia.store.accounts import AccountMethods
from latentpedia.store.base import make_engine, to_record
from latentpedia.store.corpora import CorpusMethods
from latentpedia.store.jobs import JobMethods
from latentpedia.store.graphs import GraphMethods
from latentpedia.store.lists import ListMethods
from latentpedia.store.maps import MapMethods
from latentpedia.store.migrate import upgrade
from latentpedia.store.records import ModelRecord, SourceRecord
from latentpedia.store.results import ResultMethods
from latentpedia.store.schema import SOURCE_PENDING, Example, Latent, Model, Source, Vocab
from latentpedia.store.textcheck import install_text_check

SOURCE_IDENTITY = ("kind", "hook_name", "layer", "d_in", "d_sae")  # what a source name stands for


class SourceConflictError(LatentpediaError):
    """A source name already used for a different hook, width, corpus or file."""


class Store(CorpusMethods, ResultMethods, JobMethods, AccountMethods, ListMethods, GraphMethods, MapMethods):
    """An atlas database. Open with `Store.open(url)`; close with `close()` or `with`."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        install_text_check(engine)  # NUL / lone surrogates: InvalidTextError on every backend
        self._vocab_cache: dict[str, list[str]] = {}

    @classmethod
    def open(cls, url: str | URL | None = None, *, migrate: bool = True) -> Self:
        """Connect to `url` (default: config.default_db_url()) and migrate it to the newest
        schema. A SQLite file's folder is created; `postgresql://` uses psycopg 3."""
        engine = make_engine(url or default_db_url())
        if migrate:
            upgrade(engine)
        return cls(engine)

    # models and vocabularies

    def upsert_model(
        self,
        id: str,
        family: str,
        n_layers: int,
        d_model: int,
        d_mlp: int,
        vocab_size: int,
        bos_id: int,
        spec: dict[str, Any] | None = None,
    ) -> None:
        """Insert the model, or update its fields if `id` exists."""
        values = dict(
            family=family, n_layers=n_layers, d_model=d_model, d_mlp=d_mlp,
            vocab_size=vocab_size, bos_id=bos_id, spec=spec or {},
        )  # fmt: skip
        with self._begin() as session:
            model = session.get(Model, id)
            if model is None:
                session.add(Model(id=id, **values))
                return
            for name, value in values.items():
                setattr(model, name, value)

    def get_model(self, id: str) -> ModelRecord | None:
        """The model with this id, or None."""
        with self._read() as session:
            model = session.get(Model, id)
            return None if model is None else to_record(ModelRecord, model)

    def list_models(self) -> list[ModelRecord]:
        """All models, by id."""
        with self._read() as session:
            return [to_record(ModelRecord, m) for m in session.scalars(select(Model).order_by(Model.id))]

    def set_vocab(self, model_id: str, tokens: list[str]) -> None:
        """Store the model's token strings (index = token id), replacing any previous ones."""
        tokens = [str(t) for t in tokens]
        with self._begin() as session:
            vocab = session.get(Vocab, model_id)
            if vocab is None:
                session.add(Vocab(model_id=model_id, tokens=tokens))
            else:
                vocab.tokens = tokens
        self._vocab_cache.pop(model_id, None)

    def get_vocab(self, model_id: str) -> list[str]:
        """The model's token strings (cached in memory); [] if none were stored."""
        if model_id not in self._vocab_cache:
            with self._read() as session:
                tokens = session.scalar(select(Vocab.tokens).where(Vocab.model_id == model_id))
            if tokens is None:
                return []
            self._vocab_cache[model_id] = tokens
        return self._vocab_cache[model_id]

    # sources

    def add_source(
        self,
        model_id: str,
        name: str,
        kind: str,
        hook_name: str,
        layer: int | None,
        d_in: int,
        d_sae: int,
        corpus_id: int | None = None,
        format: str | None = None,
        path: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Register a source (status "pending") and return its id.

        If the model already has a source `name` with the same identity (SOURCE_IDENTITY),
        return its id: `format`/`path` are updated when given; `corpus_id` is adopted only
        by a pending source (a built one keeps the corpus its examples point into until
        `write_source_results(..., corpus_id=...)` switches both at once). A different
        identity raises SourceConflictError (delete the old source first to replace it).
        """
        identity = dict(kind=kind, hook_name=hook_name, layer=layer, d_in=d_in, d_sae=d_sae)
        path = None if path is None else str(path)
        with self._begin() as session:
            existing = session.scalars(
                select(Source).where(Source.model_id == model_id, Source.name == name)
            ).first()
            if existing is not None:
                _check_same_identity(existing, identity)
                _refresh_source(existing, corpus_id, format, path)
                return existing.id
            source = Source(
                model_id=model_id, name=name, status=SOURCE_PENDING, meta=meta or {},
                corpus_id=corpus_id, format=format, path=path, **identity,
            )  # fmt: skip
            session.add(source)
            session.flush()
            return source.id

    def get_source(self, model_id: str, name: str) -> SourceRecord | None:
        """The model's source `name` (e.g. "6-mlp"), or None."""
        query = select(Source).where(Source.model_id == model_id, Source.name == name)
        with self._read() as session:
            source = session.scalars(query).first()
            return None if source is None else to_record(SourceRecord, source)

    def get_source_by_id(self, source_id: int) -> SourceRecord | None:
        """The source with this id, or None."""
        with self._read() as session:
            source = session.get(Source, source_id)
            return None if source is None else to_record(SourceRecord, source)

    def list_sources(self, model_id: str | None = None) -> list[SourceRecord]:
        """All sources (of one model if given), by model, layer, name."""
        query = select(Source).order_by(Source.model_id, Source.layer, Source.name)
        if model_id is not None:
            query = query.where(Source.model_id == model_id)
        with self._read() as session:
            return [to_record(SourceRecord, s) for s in session.scalars(query)]

    def set_source_quality(self, source_id: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Merge `metrics` (JSON-able, e.g. SAE evals) into the source's `meta["quality"]`;
        returns the merged quality dict. LatentpediaError if the source does not exist."""
        with self._begin() as session:
            source = session.get(Source, source_id)
            if source is None:
                raise LatentpediaError(f"no source with id {source_id}")
            quality = {**(source.meta or {}).get("quality", {}), **metrics}
            source.meta = {**(source.meta or {}), "quality": quality}  # a new dict: JSON change tracked
            return quality

    def delete_source(self, model_id: str, name: str) -> bool:
        """Delete a source with its latents and examples; False if there was none."""
        with self._begin() as session:
            source_id = session.scalar(
                select(Source.id).where(Source.model_id == model_id, Source.name == name)
            )
            if source_id is None:
                return False
            session.execute(delete(Example).where(Example.source_id == source_id))
            session.execute(delete(Latent).where(Latent.source_id == source_id))
            session.execute(delete(Source).where(Source.id == source_id))
            return True


def _refresh_source(source: Source, corpus_id: int | None, format: str | None, path: str | None) -> None:
    """Update what may change under a source name (see `Store.add_source`)."""
    if format is not None:
        source.format = format
    if path is not None:
        source.path = path
    if corpus_id is not None and source.status == SOURCE_PENDING:
        source.corpus_id = corpus_id


def _check_same_identity(existing: Source, identity: dict[str, Any]) -> None:
    """SourceConflictError naming the fields where `existing` differs from `identity`."""
    diffs = [
        f"{k}: {getattr(existing, k)!r} != {v!r}" for k, v in identity.items() if getattr(existing, k) != v
    ]
    if diffs:
        raise SourceConflictError(
            f"source {existing.name!r} of model {existing.model_id!r} exists with a different spec "
            f"({'; '.join(diffs)}); delete it first to replace it"
        )
