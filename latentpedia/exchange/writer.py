"""Writing one checked `SourcePlan` (exchange.np_import) in ONE transaction: the model (if new)
and its vocabulary, a corpus of the imported windows, the source with its latents and examples,
its explanations, scores and votes. Either all of it is stored or none of it."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.errors import InvalidInputError
from latentpedia.exchange.plan import SourcePlan, check_indices
from latentpedia.exchange.np_layout import EXTRA
from latentpedia.exchange.np_rows import ExampleIn
from latentpedia.store import codec
from latentpedia.store.accounts import CommunityError
from latentpedia.store.api import Store
from latentpedia.store.bulk import bulk_insert
from latentpedia.store.community_schema import Explanation, ExplanationScore, Vote
from latentpedia.store.records import ExampleBatch, LatentStats
from latentpedia.store.results import EXAMPLE_COLUMNS, LATENT_COLUMNS, example_rows, latent_rows
from latentpedia.store.schema import SOURCE_READY, Corpus, Example, Latent, Model, Source, Vocab, Window, utcnow


def model_is_local(model_id: str, spec: dict[str, Any]) -> bool:
    """Whether the model's weights can be loaded here (live features on)."""
    if spec.get("static"):
        return False
    return model_id == DEFAULT_MODEL_ID or spec.get("kind") == "embedded" or \
        bool(spec.get("path") and Path(spec["path"]).exists())  # fmt: skip


def new_model(plan: SourcePlan) -> Model:
    """The Model row of a model the store does not have yet (static unless its weights are here)."""
    row, extra = plan.model_row, plan.model_row.get(EXTRA) or {}
    spec = dict(extra.get("spec") or {})
    if not model_is_local(plan.model_id, spec):
        keep = ("id", "displayName", "layers", "neuronsPerLayer", "dimension", "tlensId", "website")
        spec = {**spec, "static": True, "neuronpedia": {k: row[k] for k in keep if row.get(k) is not None}}
    return Model(
        id=plan.model_id, family=str(extra.get("family") or "neuronpedia"), n_layers=int(row.get("layers") or 0),
        d_model=int(row.get("dimension") or 0), d_mlp=int(extra.get("d_mlp") or row.get("neuronsPerLayer") or 0),
        vocab_size=int(extra.get("vocab_size") or len(plan.mapper.vocab)), bos_id=int(extra.get("bos_id") or 0),
        spec=spec,
    )  # fmt: skip


def latent_stats(plan: SourcePlan, d_sae: int) -> LatentStats:
    """Columnar statistics of every latent (latents without a row: empty panels, NULL numbers)."""
    rows = [plan.latents.get(i) for i in range(d_sae)]
    number = lambda name: np.array([np.nan if r is None or getattr(r, name) is None else getattr(r, name)  # noqa: E731
                                    for r in rows], dtype=np.float64)  # fmt: skip
    return LatentStats(
        max_act=number("max_act"), frac_nonzero=number("frac_nonzero"), mean_act=number("mean_act"),
        hist=[{} if r is None else r.hist for r in rows], logits=[{} if r is None else r.logits for r in rows],
        aligned=[[] if r is None else r.aligned for r in rows], correlated=[[] if r is None else r.correlated for r in rows],
    )  # fmt: skip


def place_windows(plan: SourcePlan) -> dict[int, list[int]]:
    """Window index -> token ids: the carried index when the row has one, else one index per
    distinct token sequence after the carried ones. Sets each example's `window`."""
    windows: dict[int, list[int]] = {}
    for example in plan.examples:
        if example.window is not None:
            if windows.setdefault(example.window, example.token_ids) != example.token_ids:
                raise InvalidInputError(f"window {example.window} is given with two different token sequences", plan.folder)
    seen = {tuple(tokens): idx for idx, tokens in windows.items()}
    next_idx = max(windows, default=-1) + 1
    for example in plan.examples:
        if example.window is None:
            key = tuple(example.token_ids)
            if key not in seen:
                seen[key], windows[next_idx] = next_idx, example.token_ids
                next_idx += 1
            example.window = seen[key]
    return windows


def example_batch(examples: list[ExampleIn], where: str | Path) -> ExampleBatch:
    """The examples as one ExampleBatch (sorted by latent, kind, group, rank; duplicates refused)."""
    ordered = sorted(examples, key=lambda e: (e.index, e.kind, e.group, e.rank))
    keys = [(e.index, e.kind, e.group, e.rank) for e in ordered]
    if len(set(keys)) != len(keys):
        raise InvalidInputError("two activations share a latent, kind, group and rank", where)
    offsets, positions, values = [0], [], []
    for e in ordered:
        dense = np.asarray(e.values, dtype=np.float32)
        nonzero = np.flatnonzero(dense)
        positions.append(nonzero)
        values.append(dense[nonzero])
        offsets.append(offsets[-1] + len(nonzero))
    column = lambda name, dtype: np.array([getattr(e, name) for e in ordered], dtype=dtype)  # noqa: E731
    return ExampleBatch(
        latent=column("index", np.int32), kind=column("kind", np.int8), group=column("group", np.int8),
        rank=column("rank", np.int16), window=column("window", np.int32), max_value=column("max_value", np.float32),
        max_pos=column("max_pos", np.int16), offsets=np.array(offsets, dtype=np.int64),
        positions=np.concatenate(positions or [np.zeros(0)]).astype(np.uint16),
        values=np.concatenate(values or [np.zeros(0)]).astype(np.float16),
    )  # fmt: skip


def ensure_users(store: Store, plan: SourcePlan) -> dict[str, int]:
    """Accounts of the authors and voters latentpedia exports name: existing ones by username,
    missing ones created disabled (no one can sign in as them). Idempotent."""
    names = {x.author for x in plan.explanations if x.author} | {u for x in plan.explanations for u, _ in x.votes}
    ids = {}
    for name in sorted(names):
        user = store.get_user(name)
        if user is None:
            try:
                store.add_user(name, secrets.token_urlsafe(24))
            except CommunityError as err:
                raise InvalidInputError(f"explanation author or voter: {err}", plan.folder) from None
            user = store.set_user(name, disabled=True)
        ids[name] = user.id
    return ids


def write_plan(store: Store, plan: SourcePlan, identity: dict[str, Any]) -> int:
    """Store the source of `plan` in one transaction; returns its id."""
    d_sae = int(identity["d_sae"])
    check_indices(plan, d_sae)
    users = ensure_users(store, plan)
    windows = place_windows(plan)
    batch = example_batch(plan.examples, plan.folder)
    stats = latent_stats(plan, d_sae)
    with store._begin() as session:
        model = session.get(Model, plan.model_id)
        created = model is None
        if created:
            model = new_model(plan)
            session.add(model)
        pad = plan.mapper.pad_id(model.bos_id) if len({len(t) for t in windows.values()}) > 1 else 0
        if created or plan.mapper.grown:
            session.merge(Vocab(model_id=plan.model_id, tokens=list(plan.mapper.vocab)))
            model.vocab_size = len(plan.mapper.vocab) if plan.mapper.growable else model.vocab_size
        session.flush()
        corpus_id = _corpus(session, plan, windows, pad)
        source = _source(session, plan, identity, corpus_id, model_is_local(model.id, model.spec or {}))
        conn = session.connection()
        bulk_insert(conn, Latent.__table__, LATENT_COLUMNS, latent_rows(source.id, stats))
        bulk_insert(conn, Example.__table__, EXAMPLE_COLUMNS, example_rows(source.id, batch, d_sae))
        _explanations(session, plan, source.id, users)
    store._vocab_cache.pop(plan.model_id, None)
    return source.id


def _corpus(session: Any, plan: SourcePlan, windows: dict[int, list[int]], pad: int) -> int:
    """The corpus of the imported windows (padded to the longest with `pad`); reused if the
    model already has one with the same windows."""
    width = max((len(t) for t in windows.values()), default=1)
    digest = hashlib.sha256(f"neuronpedia-import:{width}:{pad}".encode())
    for idx in sorted(windows):
        digest.update(np.array([idx, *windows[idx]], dtype="<i4").tobytes())
    content_hash = digest.hexdigest()
    found = session.scalar(select(Corpus.id).where(Corpus.model_id == plan.model_id, Corpus.content_hash == content_hash))
    if found is not None:
        return found
    corpus = Corpus(model_id=plan.model_id, name=f"neuronpedia:{plan.name}", window_len=width,
                    spec={"format": "neuronpedia", "pad_id": pad, "folder": str(plan.folder)},
                    n_windows=len(windows), n_tokens=sum(len(t) for t in windows.values()),
                    composition={"imported": len(windows)}, content_hash=content_hash)  # fmt: skip
    session.add(corpus)
    session.flush()
    rows = ((corpus.id, idx, codec.encode_array(tokens + [pad] * (width - len(tokens)), codec.TOKEN_DTYPE))
            for idx, tokens in sorted(windows.items()))  # fmt: skip
    bulk_insert(session.connection(), Window.__table__, ("corpus_id", "idx", "tokens"), rows)
    return corpus.id


def _source(session: Any, plan: SourcePlan, identity: dict[str, Any], corpus_id: int, model_local: bool) -> Source:
    extra = plan.source_row.get(EXTRA) or {}
    path = extra.get("path")
    live = model_local and (identity["kind"] == "mlp" or bool(path and Path(path).exists()))
    n_tokens = extra.get("n_tokens")
    if n_tokens is None:
        n_tokens = int(plan.source_row.get("num_prompts") or 0) * int(plan.source_row.get("num_tokens_in_prompt") or 0) or None
    meta = {**(extra.get("meta") or {}), "static": not live,
            "import": {"format": "neuronpedia", "digest": plan.digest, "folder": str(plan.folder)}}  # fmt: skip
    source = Source(model_id=plan.model_id, name=plan.name, status=SOURCE_READY, corpus_id=corpus_id,
                    n_tokens=n_tokens, format=extra["format"] if "format" in extra else "neuronpedia", path=path, meta=meta,
                    built_at=utcnow(), **identity)  # fmt: skip
    session.add(source)
    session.flush()
    return source


def _explanations(session: Any, plan: SourcePlan, source_id: int, users: dict[str, int]) -> None:
    """Explanations in (latent, ordinal) order, then their scores (baselines resolved within the
    source) and votes."""
    ordered = sorted(enumerate(plan.explanations), key=lambda p: (p[1].index, p[1].ordinal if p[1].ordinal is not None else p[0]))
    values = [dict(source_id=source_id, latent_index=x.index, text=x.text, method=x.method,
                   explainer_model=x.explainer_model, prompt_version=x.prompt_version,
                   author_id=users.get(x.author) if x.author else None, details=x.details)
              for _, x in ordered]  # fmt: skip
    if not values:
        return
    ids = list(session.scalars(insert(Explanation).returning(Explanation.id, sort_by_parameter_order=True), values))
    ref, counts = {}, {}
    for (_, x), new_id in zip(ordered, ids, strict=True):
        ordinal = counts.get(x.index, 0)
        counts[x.index] = ordinal + 1
        ref[(x.index, ordinal)] = new_id
    scores, votes = [], []
    for (_, x), new_id in zip(ordered, ids, strict=True):
        scores += [_score_values(s, new_id, ref) for s in x.scores]
        votes += [dict(user_id=users[u], explanation_id=new_id, value=v) for u, v in x.votes]
    if scores:
        session.execute(insert(ExplanationScore), scores)
    if votes:
        session.execute(insert(Vote), votes)


def _score_values(score: dict[str, Any], explanation_id: int, ref: dict[tuple[int, int], int]) -> dict[str, Any]:
    baseline = score.get("baseline")
    keys = ("scorer", "scorer_model", "prompt_version", "status", "score", "baseline_score", "error")
    return {
        **{k: score.get(k) for k in keys}, "explanation_id": explanation_id, "details": score.get("details") or {},
        "baseline_explanation_id": ref.get(tuple(baseline)) if isinstance(baseline, list) and len(baseline) == 2 else None,
    }  # fmt: skip
