"""A source with planted latents for the interpretation tests: latent i fires only on one token.

`plant_source(store, model)` adds source "0-planted" (over the atlas's corpus) whose latent i
fires with value 5 on every occurrence of token PLANTED[i] and nowhere else (a chosen frequent
word token of the corpus), promotes the same token, and has top examples and quantile samples
like a real build. The last latent is dead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentpedia.store.api import Store
from latentpedia.store.records import ExampleBatch, LatentStats, SourceResults
from latentpedia.engine.tokens import TokenText

NAME = "0-planted"


@dataclass(frozen=True)
class Planted:
    source: str
    source_id: int
    tokens: dict[int, int]  # latent -> token id it fires on
    texts: dict[int, str]  # latent -> token text
    dead: int


def _word_tokens(store: Store, model: str, windows: np.ndarray, avoid: set[int], n: int) -> list[int]:
    """The `n` word tokens (5+ letters) present in the most windows."""
    text = TokenText(store.get_vocab(model))
    presence = np.zeros(len(text.texts), dtype=np.int64)
    for row in windows:
        presence[np.unique(row[1:])] += 1
    order = np.argsort(-presence, kind="stable")
    out = []
    for t in order:
        word = text(int(t)).strip()
        if int(t) not in avoid and len(word) >= 5 and word.isalpha() and presence[t] >= 8:
            out.append(int(t))
        if len(out) == n:
            return out
    raise AssertionError("the corpus has too few frequent word tokens")


def plant_source(store: Store, model: str, n_latents: int = 3) -> Planted:
    base = store.list_sources(model)[0]
    windows = np.stack(list(store.iter_windows(base.corpus_id)))
    vocab = store.get_vocab(model)
    avoid = {i for i, tok in enumerate(vocab) if "<" in tok}
    tokens = _word_tokens(store, model, windows, avoid, n_latents)
    d = n_latents + 1
    ex = {k: [] for k in ("latent", "kind", "group", "rank", "window", "max_value", "max_pos")}
    positions, values, offsets = [], [], [0]
    for latent, token in enumerate(tokens):
        hits = [w for w in range(len(windows)) if (windows[w, 1:] == token).any()]
        chosen = [(0, -1, r, w) for r, w in enumerate(hits[:32])] + [(1, 9, r, w) for r, w in enumerate(hits[32:37])]
        for kind, group, rank, w in chosen:
            pos = np.flatnonzero(windows[w] == token)
            pos = pos[pos > 0]
            for key, value in zip(ex, (latent, kind, group, rank, w, 5.0, int(pos[0])), strict=True):
                ex[key].append(value)
            positions.append(pos.astype(np.uint16))
            values.append(np.full(len(pos), 5.0, dtype=np.float16))
            offsets.append(offsets[-1] + len(pos))
    n_tokens = windows[:, 1:].size
    freq = np.array([(windows[:, 1:] == t).sum() / n_tokens for t in tokens] + [0.0], dtype=np.float32)
    hist = {"edges": np.linspace(0, 5, 51).tolist(), "counts": [0] * 49 + [1]}
    logits = [{"pos": [[t, 2.0]], "neg": [[tokens[(i + 1) % n_latents], -2.0]], "hist": hist, "basis": "W_U"} for i, t in enumerate(tokens)]
    logits.append({"pos": [], "neg": [], "hist": hist, "basis": "W_U"})
    stats = LatentStats(
        max_act=np.array([5.0] * n_latents + [0.0], dtype=np.float32), frac_nonzero=freq, mean_act=freq * 5,
        hist=[hist] * d, logits=logits, aligned=[[] for _ in range(d)], correlated=[[] for _ in range(d)],
    )  # fmt: skip
    batch = ExampleBatch(
        latent=np.array(ex["latent"], np.int32), kind=np.array(ex["kind"], np.int8), group=np.array(ex["group"], np.int8),
        rank=np.array(ex["rank"], np.int16), window=np.array(ex["window"], np.int32),
        max_value=np.array(ex["max_value"], np.float32), max_pos=np.array(ex["max_pos"], np.int16),
        offsets=np.array(offsets, np.int64), positions=np.concatenate(positions), values=np.concatenate(values),
    )  # fmt: skip
    source_id = store.add_source(model, NAME, "mlp", "blocks.0.mlp.hook_post", 0, base.d_in, d, base.corpus_id)
    store.write_source_results(source_id, SourceResults(stats, batch, int(n_tokens)), corpus_id=base.corpus_id)
    text = TokenText(vocab)
    return Planted(NAME, source_id, dict(enumerate(tokens)), {i: text(t) for i, t in enumerate(tokens)}, n_latents)
