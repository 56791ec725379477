"""The game's embeddings on one torch thread against the process's default (every core), side by side.

    nice -n 19 .venv/bin/python bench/game_embed.py [--repeats 3]

What the game embeds: one player's explanation, 32 players' explanations in one batched call,
and a held-out set's worth of corpus-like chunks (60 of ~32 tokens). For each, with 1 thread and with
the default (torch's own: every core), the best of `--repeats` of the process's CPU time and of
the wall time, and their ratios. CPU time is this process's own (meaningful on a loaded machine);
wall time is not, unless the machine is quiet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(texts: list[str], threads: int, repeats: int) -> tuple[float, float]:
    from latentpedia.interp.game.batching import embed_on_few_threads

    runs = []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        embed_on_few_threads(texts, threads)
        runs.append((time.process_time() - cpu, time.perf_counter() - wall))
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    import torch

    from latentpedia.interp.embedding import shared_embedder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    default = torch.get_num_threads()
    shared_embedder()(["load the model"])
    code = Path(__file__).read_text().split()
    chunks = [" ".join(code[i * 24 : i * 24 + 24]) for i in range(60)]  # this file's words, ~32 tokens a chunk
    cases = {"1 explanation": ["numbers in code 3"], "32 explanations": [f"numbers in code {n}" for n in range(32)],
             "60 chunks": chunks}  # fmt: skip
    print(f"torch default threads: {default}; {args.repeats} repeats, best of each")
    for label, texts in cases.items():
        one, many = measure(texts, 1, args.repeats), measure(texts, default, args.repeats)
        print(f"{label:16s} 1 thread cpu {one[0] * 1000:7.1f} ms wall {one[1] * 1000:7.1f} ms | {default} threads cpu "
              f"{many[0] * 1000:7.1f} ms wall {many[1] * 1000:7.1f} ms | 1 thread / {default}: cpu {one[0] / many[0]:.2f}x "
              f"wall {one[1] / many[1]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
