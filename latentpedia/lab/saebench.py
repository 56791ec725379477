"""SAE benchmarks on a real model, per SAE of the atlas (the SAEBench metrics Neuronpedia shows):

- `absorption` (first-letter task, after Chanin et al. 2024): single-token words are read after a
  fixed prefix; a linear probe on the hook activations learns each word's first letter; for each
  letter the latent that best detects it is its "main" latent. A word is *absorbed* when the
  probe gets its letter right, the main latent stays silent, and another active latent whose
  decoder points along the letter's probe direction (cosine >= ABSORBING_COSINE) carries it.
  Reported: the mean absorbed fraction over letters, and the main latents' miss rate.
- `sparse_probing` (lab/probing.py): accuracy of probes on 1 and 5 latents for offline tasks.
- `autointerp`: per scorer, the mean stored explanation score, its random baseline and the
  fraction of explained latents whose explanation beats the baseline (`latentpedia explain`
  writes them; `explain_sample` explains and scores a sample first when none are stored).

Each metric's wall time is stored beside it (`bench_seconds`), and all of it is merged into the
source's `meta["quality"]` under `bench`, next to L0 / EV / CE.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from typing import Any

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.lab.probing import WORD, offline_tasks, sparse_probe, train_logistic

PREFIX = " The word:"  # the context every first-letter word is read in
ABSORBING_COSINE = 0.1
MIN_WORDS_PER_LETTER = 4
METRICS = ("absorption", "sparse_probing", "autointerp")


def hook_activations(model, windows: list[list[int]], hook: str, positions: list[int] | None, *, batch: int = 64) -> torch.Tensor:
    """[n, d] activations at `hook`: at `positions` (one per window) or mean-pooled over each
    window (BOS, position 0, left out). Windows must have equal length."""
    from latentpedia.models.hooks import run_with_cache

    rows = []
    for start in range(0, len(windows), batch):
        ids = torch.tensor([[model.bos_id, *w] for w in windows[start:start + batch]])
        acts = run_with_cache(model, ids, [hook])[hook].float()
        if positions is None:
            rows.append(acts[:, 1:].mean(1))
        else:
            pos = torch.tensor(positions[start:start + batch]) + 1  # +1: the BOS we prepended
            rows.append(acts[torch.arange(len(ids)), pos])
    return torch.cat(rows)


# ---------------------------------------------------------------------------- first-letter absorption


def letter_words(token_text: Callable[[int], str], vocab_size: int, *, limit: int = 2000) -> list[tuple[int, str]]:
    """Single-token words " word" (leading space, letters only, >= 2 letters): (id, word)."""
    out = []
    for token_id in range(vocab_size):
        text = token_text(token_id)
        word = text[1:] if text.startswith(" ") else ""
        if len(word) >= 2 and WORD.match(word):
            out.append((token_id, word.lower()))
    step = max(1, len(out) // limit)
    return out[::step][:limit]


def _main_latent(acts: torch.Tensor, positive: torch.Tensor) -> int:
    """The latent whose firing best matches `positive` (F1)."""
    fires = acts > 0
    tp = (fires & positive[:, None]).sum(0).float()
    precision = tp / fires.sum(0).clamp_min(1)
    recall = tp / positive.sum().clamp_min(1)
    return int((2 * precision * recall / (precision + recall).clamp_min(1e-9)).argmax())


def first_letter_absorption(hook_acts: torch.Tensor, latent_acts: torch.Tensor, decoder: torch.Tensor,
                            letters: list[str], *, seed: int = 0) -> dict[str, Any]:
    """Absorption figures from word activations (module docstring); letters[i] is word i's."""
    alphabet = [c for c in string.ascii_lowercase if letters.count(c) >= 2 * MIN_WORDS_PER_LETTER]
    keep = torch.tensor([c in alphabet for c in letters])
    x, acts = hook_acts[keep], latent_acts[keep]
    y = torch.tensor([alphabet.index(c) for c, k in zip(letters, keep.tolist(), strict=True) if k])
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = perm[: len(y) // 2], perm[len(y) // 2:]
    unit_dec = decoder / decoder.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    per_letter = {}
    for i, letter in enumerate(alphabet):
        w, b = train_logistic(x[train], (y[train] == i).long())
        direction = w / w.norm().clamp_min(1e-8)
        main = _main_latent(acts[train], y[train] == i)
        words = test[(y[test] == i) & (x[test] @ w + b > 0)]
        if len(words) == 0:
            continue
        missed = acts[words, main] <= 0
        along = (unit_dec @ direction) >= ABSORBING_COSINE  # [d_sae]
        absorbed = missed & ((acts[words] > 0) & along).any(1)
        per_letter[letter] = {"main_latent": main, "words": len(words), "miss_rate": float(missed.float().mean()),
                              "absorption": float(absorbed.float().mean())}
    if not per_letter:
        return {"absorption": None, "absorption_miss_rate": None, "letters": {}}
    mean = lambda key: sum(v[key] for v in per_letter.values()) / len(per_letter)  # noqa: E731
    return {"absorption": mean("absorption"), "absorption_miss_rate": mean("miss_rate"), "letters": per_letter}


def absorption_metric(model, source, token_text, *, words: int = 2000, seed: int = 0) -> dict[str, Any]:
    """First-letter absorption of `source` on `model`."""
    from latentpedia.models.loader import encode_text

    prefix = encode_text(model, PREFIX, add_bos=False)
    found = letter_words(token_text, model.vocab_size, limit=words)
    windows = [[*prefix, token_id] for token_id, _ in found]
    positions = [len(prefix)] * len(windows)
    hook_acts = hook_activations(model, windows, source.hook_name, positions)
    result = first_letter_absorption(hook_acts, source.encode(hook_acts), source.decoder(), [w[0] for _, w in found], seed=seed)
    return result | {"absorption_words": len(found)}


# ---------------------------------------------------------------------------- sparse probing


def probing_metric(model, source, token_text, *, seed: int = 0, per_class: int = 64) -> dict[str, Any]:
    """Sparse-probing accuracies of `source` per offline task, and their means."""
    from latentpedia.models.loader import encode_text

    encode = lambda text: encode_text(model, text, add_bos=False)  # noqa: E731
    tasks = {}
    for task in offline_tasks(encode, token_text, seed=seed, per_class=per_class):
        if len(set(task.labels)) < 2:
            continue
        hook_acts = hook_activations(model, task.windows, source.hook_name, task.positions)
        tasks[task.name] = sparse_probe(source.encode(hook_acts), hook_acts, task.labels, seed=seed)
    mean = lambda key: sum(t[key] for t in tasks.values()) / len(tasks) if tasks else None  # noqa: E731
    return {"sparse_probing_top1": mean("top1"), "sparse_probing_top5": mean("top5"), "sparse_probing_hook": mean("hook"),
            "sparse_probing": tasks}


# ---------------------------------------------------------------------------- auto-interp


def autointerp_metric(store, source_id: int) -> dict[str, Any]:
    """Per scorer over the stored automatic explanations of a source: n, mean score, mean
    baseline and the fraction beating the baseline; the embedding scorer's figures on top."""
    from sqlalchemy import select

    from latentpedia.store.community_schema import Explanation, ExplanationScore

    query = (select(ExplanationScore.scorer, ExplanationScore.score, ExplanationScore.baseline_score)
             .join(Explanation, Explanation.id == ExplanationScore.explanation_id)
             .where(Explanation.source_id == source_id, Explanation.author_id.is_(None), ExplanationScore.status == "ok"))
    pairs: dict[str, list[tuple[float, float]]] = {}
    with store._read() as session:
        for scorer, score, baseline in session.execute(query):
            if score is not None and baseline is not None:
                pairs.setdefault(scorer, []).append((float(score), float(baseline)))
    scorers = {name: {"n": len(rows), "score": sum(s for s, _ in rows) / len(rows), "baseline": sum(b for _, b in rows) / len(rows),
                      "beats_baseline": sum(s > b for s, b in rows) / len(rows)} for name, rows in pairs.items()}
    main = scorers.get("embedding") or next(iter(scorers.values()), None)
    return {"autointerp_score": main and main["score"], "autointerp_beats_baseline": main and main["beats_baseline"],
            "autointerp": scorers}


def explain_sample(store, model_id: str, source_name: str, limit: int, log) -> None:
    """Offline explanations with embedding scores for up to `limit` latents of a source."""
    from latentpedia.interp.pipeline import ExplainRequest, run_explain

    run_explain(store, ExplainRequest(model=model_id, sources=[source_name], explainer="offline", scorers=["embedding"], limit=limit), log)


# ---------------------------------------------------------------------------- one SAE


def model_token_text(model):
    """A `TokenText` of the model's tokenizer (ids past the tokenizer's end decode to '')."""
    from latentpedia.engine.tokens import TokenText

    tokens = model.tokenizer.convert_ids_to_tokens(list(range(min(model.vocab_size, len(model.tokenizer)))))
    return TokenText([t or "" for t in tokens])


def bench_source(store, model, record, *, metrics=METRICS, explain_limit: int = 0, seed: int = 0, log=print) -> dict[str, Any]:
    """Every asked metric of one stored SAE source, timed; merged into its quality under `bench`."""
    from latentpedia.engine.resolve import source_from_record

    source = source_from_record(model, record)
    token_text = model_token_text(model)
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for metric in metrics:
        started = time.perf_counter()
        if metric == "absorption":
            results.update(absorption_metric(model, source, token_text, seed=seed))
        elif metric == "sparse_probing":
            results.update(probing_metric(model, source, token_text, seed=seed))
        elif metric == "autointerp":
            if explain_limit and not store.explained_indices(record.id):
                explain_sample(store, model.id, record.name, explain_limit, log)
            results.update(autointerp_metric(store, record.id))
        else:
            raise InvalidInputError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        seconds[metric] = round(time.perf_counter() - started, 2)
        log(f"  {record.name}: {metric} in {seconds[metric]} s")
    bench = {**results, "bench_seconds": seconds}
    quality = (record.meta or {}).get("quality", {})
    store.set_source_quality(record.id, {"bench": {**quality.get("bench", {}), **bench}})
    return bench


def bench_atlas(store, model_spec: str, *, sources: list[str] = (), metrics=METRICS, explain_limit: int = 0, seed: int = 0,
                log=print) -> dict[str, dict[str, Any]]:
    """`bench_source` for the named SAE sources of the model `model_spec` loads (default: all of them)."""
    from latentpedia.engine.resolve import source_record
    from latentpedia.models.loader import load_model

    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise InvalidInputError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(METRICS)}")
    model = load_model(model_spec)
    model_id = model.id
    records = [source_record(store, model_id, name) for name in sources] or [
        r for r in store.list_sources(model_id) if r.kind == "sae" and r.status == "ready"]
    if not records:
        raise InvalidInputError(f"the atlas has no SAE source of {model_id} to benchmark")
    not_sae = [r.name for r in records if r.kind == "mlp"]
    if not_sae:
        raise InvalidInputError(f"{', '.join(not_sae)}: neurons, not an SAE; benchmarks need an SAE source")
    return {r.name: bench_source(store, model, r, metrics=metrics, explain_limit=explain_limit, seed=seed, log=log) for r in records}
