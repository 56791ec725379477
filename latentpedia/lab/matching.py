"""Cross-SAE matching: which latent of source B is latent i of source A, by decoder cosine and by
activation correlation over the same corpus tokens (feature splitting, universality, depth).

`match_sources(store, model, pairs)` runs ONE forward pass over `n_windows` windows of the
atlas's corpus feeding every source of every pair (`engine`-style encoding after the cached
hook), and accumulates, per pair, the sums a streaming Pearson correlation needs:
sum a, sum a², sum b, sum b² and the cross products Aᵀ B ([da, db], float64). Activations
are never held beyond one batch. BOS and outlier tokens (norm over `outlier_factor` x the
batch median, the attention sinks) are left out, as in training and dashboards. Each direction
of each pair is stored (store/families.py) with its median best match and histogram: for two
SAEs of one config trained with different seeds that median is the universality figure (the
monosemanticity paper reports 0.72 for its pair).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from latentpedia.dashboards.neighbours import TOP_K, best_match_summary, cosine_topk
from latentpedia.engine.resolve import source_from_record
from latentpedia.errors import InvalidInputError
from latentpedia.models.hooks import run_with_cache
from latentpedia.sources.base import Source
from latentpedia.store import families
from latentpedia.store.records import SourceRecord
from latentpedia.train.evals import inlier_mask

N_WINDOWS = 128
BATCH_SIZE = 8
DENSE_FRACTION = 0.2  # above this fraction of non-zeros a batch is multiplied dense
MAX_PAIRS_PER_TOKEN = 4096  # up to this many (active a, active b) products a token: add them one by one


@dataclass
class Prepared:
    """One source's activations of one batch with what every pair it is in needs, computed once:
    column sums, sums of squares and each token's active latents (values, indices)."""

    x: torch.Tensor  # [n, d] float32
    total: torch.Tensor  # [d] float64
    squares: torch.Tensor  # [d] float64
    active: int  # most latents active on one token
    values: torch.Tensor  # [n, active] signed values at the active places
    indices: torch.Tensor  # [n, active]

    @classmethod
    def of(cls, x: torch.Tensor) -> Prepared:
        x = x.float()
        active = int((x != 0).sum(1).max()) if x.numel() else 0
        indices = torch.topk(x.abs(), max(active, 1), dim=1).indices if x.numel() else torch.zeros(0, 1, dtype=torch.long)
        return cls(x, x.sum(0).double(), (x * x).sum(0).double(), active, torch.gather(x, 1, indices), indices)


class CorrelationSums:
    """Streaming Pearson correlation between every latent of A and every latent of B."""

    def __init__(self, d_a: int, d_b: int):
        self.n = 0
        self.sum_a, self.sq_a = torch.zeros(d_a, dtype=torch.float64), torch.zeros(d_a, dtype=torch.float64)
        self.sum_b, self.sq_b = torch.zeros(d_b, dtype=torch.float64), torch.zeros(d_b, dtype=torch.float64)
        self.cross = torch.zeros(d_a, d_b, dtype=torch.float64)

    def add(self, a: torch.Tensor | Prepared, b: torch.Tensor | Prepared) -> None:
        """One batch of tokens: a [n, d_a], b [n, d_b] (the same tokens, row for row)."""
        a = a if isinstance(a, Prepared) else Prepared.of(a)
        b = b if isinstance(b, Prepared) else Prepared.of(b)
        self.n += a.x.shape[0]
        self.sum_a += a.total
        self.sq_a += a.squares
        self.sum_b += b.total
        self.sq_b += b.squares
        if not a.x.numel():
            return
        if a.active * b.active <= MAX_PAIRS_PER_TOKEN:  # TopK SAEs: 32 x 32 products a token
            products = (a.values[:, :, None] * b.values[:, None, :]).double().flatten()
            flat = (a.indices[:, :, None] * self.cross.shape[1] + b.indices[:, None, :]).flatten()
            self.cross.view(-1).index_add_(0, flat, products)
        elif a.active < DENSE_FRACTION * a.x.shape[1]:
            self.cross += torch.sparse.mm(a.x.T.to_sparse(), b.x).double()
        else:
            self.cross += (a.x.T @ b.x).double()

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """Latents of A and of B that varied over the tokens seen."""
        return (self._var(self.sum_a, self.sq_a) > 0).numpy(), (self._var(self.sum_b, self.sq_b) > 0).numpy()

    def _var(self, total: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
        return (squares / max(self.n, 1) - (total / max(self.n, 1)) ** 2).clamp_min(0)

    def correlation(self) -> torch.Tensor:
        """[d_a, d_b] Pearson correlation (0 where a latent never varied)."""
        n = max(self.n, 1)
        mean_a, mean_b = self.sum_a / n, self.sum_b / n
        std_a, std_b = self._var(self.sum_a, self.sq_a).sqrt(), self._var(self.sum_b, self.sq_b).sqrt()
        out = torch.empty(self.cross.shape, dtype=torch.float32)
        for start in range(0, out.shape[0], 512):  # row blocks: float64 temporaries stay small
            rows = slice(start, start + 512)
            cov = self.cross[rows] / n - mean_a[rows, None] * mean_b[None, :]
            denom = std_a[rows, None] * std_b[None, :]
            out[rows] = torch.where(denom > 0, cov / denom.clamp_min(1e-30), torch.zeros_like(cov)).float()
        return out

    def best(self, k: int = TOP_K) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Top-k correlated latents of B for each latent of A, and of A for each latent of B."""
        corr = self.correlation()
        ab = torch.topk(corr, min(k, corr.shape[1]), dim=1)
        ba = torch.topk(corr.T, min(k, corr.shape[0]), dim=1)
        return ((ab.indices.to(torch.int32).numpy(), ab.values.numpy()),
                (ba.indices.to(torch.int32).numpy(), ba.values.numpy()))  # fmt: skip


@dataclass
class PairReport:
    """One matched direction: A -> B, by `method`."""

    source: str
    other: str
    method: str
    median: float | None
    hist: dict
    seconds: float
    n_tokens: int = 0


@dataclass
class MatchReport:
    pairs: list[PairReport] = field(default_factory=list)
    n_tokens: int = 0
    forward_seconds: float = 0.0


def accumulate(batches: Iterable[dict[str, torch.Tensor]], pairs: Sequence[tuple[str, str]], widths: dict[str, int]) -> dict[tuple[str, str], CorrelationSums]:
    """Correlation sums of each (a, b) pair over `batches` of {source: [n, width]} activations
    of the same tokens (a pure function of activations: no model)."""
    sums = {(a, b): CorrelationSums(widths[a], widths[b]) for a, b in pairs}
    for batch in batches:
        prepared = {name: Prepared.of(x) for name, x in batch.items()}
        for (a, b), acc in sums.items():
            acc.add(prepared[a], prepared[b])
    return sums


def encoded_batches(model, sources: Sequence[Source], windows: np.ndarray, *, batch_size: int = BATCH_SIZE,
                    outlier_factor: float | None = 10.0) -> Iterable[dict[str, torch.Tensor]]:  # fmt: skip
    """{source id: [tokens, d_sae]} per batch of windows: one forward pass for every source, BOS
    and outlier tokens (at any hook read) dropped."""
    hooks = list(dict.fromkeys(s.hook_name for s in sources))
    for start in range(0, len(windows), batch_size):
        ids = torch.as_tensor(np.asarray(windows[start : start + batch_size], dtype=np.int64))
        cache = run_with_cache(model, ids, hooks, stop_early=True)
        keep = torch.ones(ids.shape, dtype=torch.bool)
        for act in cache.values():
            keep &= inlier_mask(act, outlier_factor)
        with torch.inference_mode():
            yield {s.id: s.encode(cache[s.hook_name][keep]).float() for s in sources}


def _windows(store, records: Sequence[SourceRecord], n_windows: int) -> np.ndarray:
    corpus_ids = {r.corpus_id for r in records}
    if len(corpus_ids) != 1 or None in corpus_ids:
        raise InvalidInputError("sources to match must be built over the same stored corpus")
    corpus = store.get_corpus(corpus_ids.pop())
    rng = np.random.default_rng(0)
    picks = np.sort(rng.choice(corpus.n_windows, size=min(n_windows, corpus.n_windows), replace=False))
    return store.get_windows(corpus.id, picks)


def _record(store, model_id: str, name: str) -> SourceRecord:
    from latentpedia.engine.resolve import source_record

    record = source_record(store, model_id, name)
    if record.status != "ready":
        raise InvalidInputError(f"source {name!r} is not built yet (status {record.status})")
    return record


def match_sources(store, model, pairs: Sequence[tuple[str, str]], *, n_windows: int = N_WINDOWS, k: int = TOP_K,
                  batch_size: int = BATCH_SIZE, rebuild: bool = True, log: Callable[[str], None] = print) -> MatchReport:  # fmt: skip
    """Match every (A, B) pair of source names both ways, by decoder cosine (when the decoders
    share a space) and by activation correlation over one forward pass; store and report it."""
    if not pairs:
        return MatchReport()
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    records = {n: _record(store, model.id, n) for n in names}
    for a, b in pairs:
        if a == b:
            raise InvalidInputError(f"match a source with another one, not with itself ({a!r})")
    if not rebuild:
        pairs = [(a, b) for a, b in pairs if not families.has_pair(store, records[a].id, records[b].id, "act_corr")]
    report = MatchReport()
    if not pairs:
        return report
    sources = {n: source_from_record(model, records[n]) for n in names}
    for a, b in pairs:
        report.pairs += _decoder_pairs(store, records[a], records[b], sources[a], sources[b], k)
    windows = _windows(store, list(records.values()), n_windows)
    start = time.perf_counter()
    used = [sources[n] for n in dict.fromkeys(n for pair in pairs for n in pair)]
    batches = encoded_batches(model, used, windows, batch_size=batch_size)
    sums = accumulate(batches, pairs, {n: s.d_sae for n, s in sources.items()})
    report.forward_seconds = time.perf_counter() - start
    for (a, b), acc in sums.items():
        report.n_tokens = acc.n
        report.pairs += _correlation_pairs(store, records[a], records[b], acc, k, report.forward_seconds / len(sums))
    for pair in report.pairs:
        log(f"  {pair.method:11s} {pair.source} -> {pair.other}: median best match {_fmt(pair.median)} over {pair.hist.get('n', 0):,} latents")
    return report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _decoder_pairs(store, ra: SourceRecord, rb: SourceRecord, sa: Source, sb: Source, k: int) -> list[PairReport]:
    """Decoder cosine both ways, when both decoders live in the same space."""
    da, db = sa.decoder(), sb.decoder()
    if da.shape[1] != db.shape[1] or sa.output_hook.split(".")[-1] != sb.output_hook.split(".")[-1]:
        return []
    out = []
    for (r1, d1), (r2, d2) in (((ra, da), (rb, db)), ((rb, db), (ra, da))):
        start = time.perf_counter()
        indices, values = cosine_topk(d1, d2, k)
        median, hist = best_match_summary(values)
        seconds = time.perf_counter() - start
        families.write_pair(store, r1.id, r2.id, "decoder_cos", indices, values, median=median,
                            meta={"hist": hist, "seconds": round(seconds, 3), "self_first": False})  # fmt: skip
        out.append(PairReport(r1.name, r2.name, "decoder_cos", median, hist, seconds))
    return out


def _correlation_pairs(store, ra: SourceRecord, rb: SourceRecord, acc: CorrelationSums, k: int, seconds: float) -> list[PairReport]:
    """Activation correlation both ways; medians over latents that fired."""
    (ab_idx, ab_val), (ba_idx, ba_val) = acc.best(k)
    live_a, live_b = acc.live()
    out = []
    for r1, r2, idx, val, live in ((ra, rb, ab_idx, ab_val, live_a), (rb, ra, ba_idx, ba_val, live_b)):
        median, hist = best_match_summary(val, live)
        meta = {"hist": hist, "seconds": round(seconds, 3), "n_tokens": acc.n, "live": int(live.sum())}
        families.write_pair(store, r1.id, r2.id, "act_corr", idx, val, median=median, meta=meta)
        out.append(PairReport(r1.name, r2.name, "act_corr", median, hist, seconds, acc.n))
    return out


def default_pairs(records: Sequence[SourceRecord]) -> list[tuple[str, str]]:
    """The pairs worth matching in an atlas: SAEs at the same hook (coarse, fine: widths), and
    each residual SAE with the SAE of the same width at the next deeper layer that has one."""
    saes = [r for r in records if r.status == "ready" and r.kind != "mlp" and r.layer is not None]
    pairs = []
    for a in saes:
        for b in saes:
            if a.hook_name == b.hook_name and a.d_sae < b.d_sae:
                pairs.append((a.name, b.name))
    for a in saes:
        deeper = [b for b in saes if b.d_sae == a.d_sae and b.layer > a.layer and _hook_kind(b) == _hook_kind(a)]
        if deeper:
            nxt = min(deeper, key=lambda r: (r.layer, r.name))
            pairs.append((a.name, nxt.name))
    return pairs


def _hook_kind(record: SourceRecord) -> str:
    return record.hook_name.split(".", 2)[-1]


def match_atlas(store, model, *, n_windows: int = N_WINDOWS, log: Callable[[str], None] = print) -> MatchReport:
    """Match the atlas's `default_pairs` that are not matched yet (what `demo` runs; resumable
    pair by pair)."""
    pairs = default_pairs(store.list_sources(model.id))
    start = time.perf_counter()
    report = match_sources(store, model, pairs, n_windows=n_windows, rebuild=False, log=log)
    if report.pairs:
        log(f"matched {len(report.pairs)} source direction(s) in {time.perf_counter() - start:.1f} s")
    return report
