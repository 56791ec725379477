"""Neighbours and matching on the default atlas's shapes: what they add to `make demo`.

    flock /tmp/latentpedia-heavy.lock .venv/bin/python bench/matching.py [--windows 128] [--demo-seconds 1360]

Sets up, in a temporary SQLite atlas, what `demo` has when it reaches the families step:
SmolLM2-135M, windows of the default corpus, the four neuron sources (layers 2, 8, 14, 20) and the
four default TopK SAEs (k=32; 4,608 latents at layers 8, 14, 20 and 2,304 at 14; freshly
initialised weights: the cost does not depend on what they learned). Then times, in one run:

- `update_neighbours`: decoder-cosine top-10 of every same-hook source pair (the build step);
- `match_atlas`: the default pairs (14-res-topk-2304 -> 14-res-topk-4.5k, 8 -> 14 -> 20 at 4.5k), decoder cosine
  both ways and activation correlation over `--windows` windows in one forward pass;
- the forward pass alone over the same windows to layer 20, to extrapolate the demo's own pass
  (400k tokens, with every statistic) from the same machine state.

Prints the seconds, and the ratios against the demo's measured total (`--demo-seconds`, README:
22 min 40 s on 2 idle cores) and against the demo pass extrapolated from this run's throughput.

`--synthetic` times only the parts that are not the model (no SmolLM2, under a minute of CPU):
neighbours of random decoders of the default shapes, and the correlation sums and best matches of
the three default pairs over the same number of tokens of random TopK (k = 32) activations.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentpedia.corpus import prepare_corpus  # noqa: E402
from latentpedia.dashboards import defaults  # noqa: E402
from latentpedia.dashboards.neighbours import update_neighbours  # noqa: E402
from latentpedia.dashboards.pipeline import register_model  # noqa: E402
from latentpedia.lab.matching import BATCH_SIZE, match_atlas  # noqa: E402
from latentpedia.models import load_model  # noqa: E402
from latentpedia.models.hooks import run_with_cache  # noqa: E402
from latentpedia.sources import NeuronSource  # noqa: E402
from latentpedia.store.api import Store  # noqa: E402
from latentpedia.store.schema import Source  # noqa: E402
from latentpedia.train.config import TrainConfig  # noqa: E402
from latentpedia.train.export import sae_name, write_saelens  # noqa: E402
from latentpedia.train.saes import make_sae  # noqa: E402
from latentpedia.train import atlas as default_saes  # noqa: E402

QUIET = lambda *_: None  # noqa: E731


def _ready(store: Store, source_id: int, corpus_id: int) -> None:
    with store._begin() as session:
        session.execute(update(Source).where(Source.id == source_id).values(status="ready", corpus_id=corpus_id))


def setup(store: Store, model, folder: Path, windows: int) -> int:
    register_model(store, model)
    corpus = prepare_corpus(model, n_tokens=windows * 127, window_len=128)
    corpus_id = store.add_corpus(model.id, "default", corpus.spec, 128, corpus.windows, corpus.composition,
                                 corpus.content_hash, n_tokens=corpus.n_tokens)  # fmt: skip
    for layer in defaults.NEURON_LAYERS:
        neurons = NeuronSource(model, layer)
        pk = store.add_source(model.id, neurons.id, "mlp", neurons.hook_name, layer, neurons.d_in, neurons.d_sae, corpus_id, "mlp", None, neurons.meta())
        _ready(store, pk, corpus_id)
    config = TrainConfig(activations=folder, out_dir=folder, hooks=[], widths=[], k=default_saes.K)
    generator = torch.Generator().manual_seed(0)
    for hook, width in default_saes.PAIRS:
        sae = make_sae(config.settings(model.d_model, width), generator)
        name = sae_name(hook, sae.name, width)
        path = write_saelens(folder / name, sae, hook=hook, model_id=model.id, scale=1.0, info={})
        layer = int(hook.split(".")[1])
        pk = store.add_source(model.id, name, "sae", hook, layer, model.d_model, width, corpus_id, "saelens", str(path),
                              {"path": str(path), "architecture": "topk"})  # fmt: skip
        _ready(store, pk, corpus_id)
    return corpus_id


def forward_seconds(store: Store, model, corpus_id: int) -> tuple[float, int]:
    corpus = store.get_corpus(corpus_id)
    windows = store.get_windows(corpus_id, list(range(corpus.n_windows)))
    hooks = [f"blocks.{max(defaults.NEURON_LAYERS)}.mlp.hook_post", *defaults.SAE_HOOKS]
    start = time.perf_counter()
    for i in range(0, len(windows), BATCH_SIZE):
        run_with_cache(model, torch.as_tensor(windows[i : i + BATCH_SIZE], dtype=torch.long), hooks)
    return time.perf_counter() - start, len(windows) * 127


def synthetic(windows: int) -> None:
    from latentpedia.dashboards.neighbours import cosine_topk
    from latentpedia.lab.matching import accumulate, default_pairs
    from latentpedia.store.records import SourceRecord

    torch.manual_seed(0)
    saes = {sae_name(hook, "topk", width): (hook, width) for hook, width in default_saes.PAIRS}
    decoders = {name: torch.randn(width, 576) for name, (_, width) in saes.items()}
    decoders.update({f"{layer}-mlp": torch.randn(1536, 576) for layer in defaults.NEURON_LAYERS})
    hooks = {name: hook for name, (hook, _) in saes.items()}
    start, cpu = time.perf_counter(), time.process_time()
    pairs = [(a, b) for a in decoders for b in decoders if hooks.get(a, a) == hooks.get(b, b)]
    for a, b in pairs:
        cosine_topk(decoders[a], decoders[b], 10)
    neighbours, neighbours_cpu = time.perf_counter() - start, time.process_time() - cpu
    records = [SourceRecord(id=i, model_id="m", name=name, kind="sae", hook_name=hook, layer=int(hook.split(".")[1]), d_in=576, d_sae=width,
                            corpus_id=1, status="ready", n_tokens=None, format=None, path=None, meta={}, created_at=None, built_at=None)
               for i, (name, (hook, width)) in enumerate(saes.items())]  # fmt: skip
    matched = default_pairs(records)
    widths = {name: width for name, (_, width) in saes.items()}

    def batches():
        for _ in range(0, windows, BATCH_SIZE):
            n = BATCH_SIZE * 127
            out = {}
            for name, width in widths.items():
                x = torch.zeros(n, width)
                x.scatter_(1, torch.randint(0, width, (n, 32)), torch.rand(n, 32))
                out[name] = x
            yield out

    start, cpu = time.perf_counter(), time.process_time()
    sums = accumulate(batches(), matched, widths)
    for acc in sums.values():
        acc.best(10)
    correlation, correlation_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"synthetic: neighbours of {len(pairs)} same-hook pairs {neighbours:.1f} s wall / {neighbours_cpu:.1f} s CPU; "
          f"correlation sums + best matches of {len(matched)} pairs over {windows * 127:,} tokens {correlation:.1f} s wall / "
          f"{correlation_cpu:.1f} s CPU (random activations drawn inside the timing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=128)
    parser.add_argument("--demo-seconds", type=float, default=22 * 60 + 40, help="measured `make demo` total (README)")
    parser.add_argument("--synthetic", action="store_true", help="time the parts that are not the model only")
    args = parser.parse_args()
    if args.synthetic:
        return synthetic(args.windows)
    model = load_model(defaults.MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/atlas.db")
        corpus_id = setup(store, model, Path(tmp) / "saes", args.windows)
        start, cpu = time.perf_counter(), time.process_time()
        pairs = update_neighbours(store, model, log=QUIET)
        neighbours = time.perf_counter() - start
        start = time.perf_counter()
        report = match_atlas(store, model, n_windows=args.windows, log=QUIET)
        matching, families_cpu = time.perf_counter() - start, time.process_time() - cpu
        cpu = time.process_time()
        forward, tokens = forward_seconds(store, model, corpus_id)
        forward_cpu = time.process_time() - cpu
        store.close()
    demo_pass = forward / tokens * defaults.N_TOKENS
    total = neighbours + matching
    print(f"neighbours: {len(pairs)} same-hook source pairs in {neighbours:.1f} s")
    print(f"matching: {len(report.pairs)} directions (decoder cosine + activation correlation over {report.n_tokens:,} tokens) "
          f"in {matching:.1f} s, of which forward + encode + correlation sums {report.forward_seconds:.1f} s")
    print(f"forward pass alone to layer 20 over the same {tokens:,} tokens: {forward:.1f} s ({tokens / forward:,.0f} tok/s)")
    print(f"CPU seconds (2 cores): neighbours + matching {families_cpu:.1f}, the forward pass alone {forward_cpu:.1f}")
    print(f"| neighbours + matching | {total:.1f} s | {100 * total / args.demo_seconds:.1f}% of make demo ({args.demo_seconds:.0f} s) "
          f"| {100 * total / demo_pass:.1f}% of the demo's {defaults.N_TOKENS:,}-token pass extrapolated from this run ({demo_pass:.0f} s) |")


if __name__ == "__main__":
    main()
