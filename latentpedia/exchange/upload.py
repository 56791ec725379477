"""Neuronpedia's feature upload batch (`POST /api/feature/upload-batch`): up to 128 features of
one source, each with its activations (token texts + values), optional density, top/bottom
logits and explanations, written in ONE transaction.

The target is a source of an existing model that was imported or uploaded (its examples live in
a corpus of their own); a missing source is created when the batch says its width (`dSae`, a
latentpedia extension), as a static source. Uploading a latent again replaces its statistics
and examples; its explanations are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select

from latentpedia.errors import InvalidInputError, NotFoundError
from latentpedia.exchange.np_rows import ExampleIn, TokenMapper, assign_ranks
from latentpedia.exchange.writer import example_batch
from latentpedia.store import codec
from latentpedia.store.api import Store
from latentpedia.store.bulk import bulk_insert
from latentpedia.store.community import check_text
from latentpedia.store.community_schema import Explanation
from latentpedia.store.records import LatentStats
from latentpedia.store.results import EXAMPLE_COLUMNS, LATENT_COLUMNS, example_rows, latent_rows
from latentpedia.store.schema import SOURCE_READY, Corpus, Example, Latent, Source, Vocab, Window, utcnow

UPLOAD_METHOD = "upload"  # explanations.method when the batch names none


class UploadConflictError(InvalidInputError):
    """The source exists but was built from the model (its corpus is shared): 409."""


@dataclass
class UploadResult:
    source_id: int
    features: int
    activations: int
    explanations: int


class _BatchFields:
    """The error site of an upload batch: errors name the field (`features[2].activations[0].tokens[5]`)."""

    def error(self, name: str, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{name}: {problem}")


def _mapper(store: Store, model_id: str) -> TokenMapper:
    model = store.get_model(model_id)
    if model is None:
        raise NotFoundError(f"unknown model {model_id!r}")
    return TokenMapper(store.get_vocab(model_id), growable=bool((model.spec or {}).get("static")))


def _examples(features: list[dict[str, Any]], mapper: TokenMapper) -> list[ExampleIn]:
    errors, out = _BatchFields(), []
    for i, feature in enumerate(features):
        for j, act in enumerate(feature["activations"]):
            where = f"features[{i}].activations[{j}]"
            tokens, values = act["tokens"], [float(v) for v in act["values"]]
            if len(tokens) != len(values):
                raise errors.error(f"{where}.values", f"{len(values)} values for {len(tokens)} tokens")
            ids = mapper.ids_of(tokens, errors, f"{where}.tokens")
            max_pos = int(np.argmax(values))
            bin_min = act.get("quantileMin")
            out.append(ExampleIn(feature["index"], ids, values, values[max_pos], max_pos,
                                 None if bin_min is None or bin_min < 0 else float(bin_min)))  # fmt: skip
    assign_ranks(out, {f["index"]: max(max(a["values"]) for a in f["activations"]) for f in features if f["activations"]})
    return out


def _check_features(features: list[dict[str, Any]], d_sae: int) -> None:
    indices = [f["index"] for f in features]
    if len(set(indices)) != len(indices):
        raise InvalidInputError("features: every index must appear once")
    bad = [i for i in indices if i >= d_sae]
    if bad:
        raise InvalidInputError(f"features: index {bad[0]} is outside the source's {d_sae} latents")


def _stats(features: list[dict[str, Any]], mapper: TokenMapper) -> LatentStats:
    errors = _BatchFields()

    def logits(i: int, feature: dict[str, Any]) -> dict[str, Any]:
        sides = {"pos": feature.get("topLogits") or [], "neg": feature.get("bottomLogits") or []}
        return {"basis": "neuronpedia", "hist": {}, **{
            side: [[mapper.id_of(x["token"], errors, f"features[{i}].{name}"), float(x["value"])]
                   for x in rows] for (side, rows), name in zip(sides.items(), ("topLogits", "bottomLogits"), strict=True)}}  # fmt: skip

    max_act = [max(max(a["values"]) for a in f["activations"]) for f in features]
    density = [np.nan if f.get("density") is None else f["density"] for f in features]
    return LatentStats(
        max_act=np.array(max_act, dtype=np.float64), frac_nonzero=np.array(density, dtype=np.float64),
        mean_act=np.full(len(features), np.nan), hist=[{} for _ in features],
        logits=[logits(i, f) for i, f in enumerate(features)], aligned=[[] for _ in features],
        correlated=[[] for _ in features],
    )  # fmt: skip


def _target(session: Any, model_id: str, name: str, d_sae: int | None, hook_name: str | None, width: int) -> Source:
    """The source to write into (locked), created with its own corpus if missing."""
    source = session.scalars(select(Source).where(Source.model_id == model_id, Source.name == name)
                             .with_for_update()).first()  # fmt: skip
    if source is None:
        if d_sae is None:
            raise NotFoundError(f"model {model_id!r} has no source {name!r} (give dSae to create it)")
        head = name.partition("-")[0]
        layer = int(head) if head.isdigit() else None
        corpus = Corpus(model_id=model_id, name=f"upload:{name}", spec={"format": "neuronpedia", "pad_id": 0},
                        window_len=width, n_windows=0, n_tokens=0, composition={"uploaded": 0},
                        content_hash=f"upload:{name}")  # fmt: skip
        session.add(corpus)
        session.flush()
        source = Source(model_id=model_id, name=name, kind=name.partition("-")[2] or "sae",
                        hook_name=hook_name or f"blocks.{layer or 0}.hook_resid_post", layer=layer, d_in=0,
                        d_sae=d_sae, corpus_id=corpus.id, status=SOURCE_READY, n_tokens=0, format="neuronpedia",
                        meta={"static": True, "upload": True}, built_at=utcnow())  # fmt: skip
        session.add(source)
        session.flush()
        return source
    corpus = session.get(Corpus, source.corpus_id) if source.corpus_id is not None else None
    if corpus is None or (corpus.spec or {}).get("format") != "neuronpedia":
        raise UploadConflictError(f"source {name!r} was built from the model; upload into an imported or new source")
    return source


def _append_windows(session: Any, corpus: Corpus, examples: list[ExampleIn]) -> None:
    """Store each distinct token sequence of the batch as a new window of the source's corpus."""
    start = session.scalar(select(func.coalesce(func.max(Window.idx), -1)).where(Window.corpus_id == corpus.id)) + 1
    pad = int((corpus.spec or {}).get("pad_id", 0))
    seen: dict[tuple[int, ...], int] = {}
    rows = []
    for example in examples:
        if len(example.token_ids) > corpus.window_len:
            raise InvalidInputError(f"features: an activation has {len(example.token_ids)} tokens; this source's "
                                    f"windows hold at most {corpus.window_len}")  # fmt: skip
        key = tuple(example.token_ids)
        if key not in seen:
            seen[key] = start + len(seen)
            padded = list(key) + [pad] * (corpus.window_len - len(key))
            rows.append((corpus.id, seen[key], codec.encode_array(padded, codec.TOKEN_DTYPE)))
        example.window = seen[key]
    bulk_insert(session.connection(), Window.__table__, ("corpus_id", "idx", "tokens"), rows)
    corpus.n_windows += len(rows)
    corpus.n_tokens += sum(len(k) for k in seen)


def upload_batch(store: Store, model_id: str, source_name: str, features: list[dict[str, Any]], *,
                 author_id: int | None = None, d_sae: int | None = None, hook_name: str | None = None) -> UploadResult:  # fmt: skip
    """Write a feature upload batch (dicts shaped like Neuronpedia's) in one transaction."""
    mapper = _mapper(store, model_id)
    examples = _examples(features, mapper)
    stats = _stats(features, mapper)
    texts = [(f["index"], check_text("explanation", x["text"]), x) for f in features for x in f.get("explanations") or []]
    width = max(len(e.token_ids) for e in examples)
    with store._begin() as session:
        source = _target(session, model_id, source_name, d_sae, hook_name, width)
        _check_features(features, source.d_sae)
        source.built_at = utcnow()  # the latents changed: cached feature pages are stale
        _append_windows(session, session.get(Corpus, source.corpus_id), examples)
        batch = example_batch(examples, f"upload-batch {model_id}/{source_name}")
        indices = [f["index"] for f in features]
        session.execute(delete(Example).where(Example.source_id == source.id, Example.latent.in_(indices)))
        session.execute(delete(Latent).where(Latent.source_id == source.id, Latent.idx.in_(indices)))
        rows = [(source.id, index, *row[2:]) for index, row in zip(indices, latent_rows(source.id, stats), strict=True)]
        conn = session.connection()
        bulk_insert(conn, Latent.__table__, LATENT_COLUMNS, rows)
        bulk_insert(conn, Example.__table__, EXAMPLE_COLUMNS, example_rows(source.id, batch, source.d_sae))
        if texts:
            session.execute(insert(Explanation), [dict(
                source_id=source.id, latent_index=index, text=text, method=x.get("methodName") or UPLOAD_METHOD,
                explainer_model=x.get("modelName"), prompt_version=None, author_id=author_id, details={},
            ) for index, text, x in texts])  # fmt: skip
        if mapper.grown:
            session.merge(Vocab(model_id=model_id, tokens=list(mapper.vocab)))
        source_id = source.id
    store._vocab_cache.pop(model_id, None)
    return UploadResult(source_id, len(features), len(examples), len(texts))
