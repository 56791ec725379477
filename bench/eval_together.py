"""The default atlas's four SAEs evaluated together (train/evals.py `evaluate_saes`: one clean pass
for all, one zero-ablated pass per hook) against one by one (`evaluate_sae` each), side by side,
alternating, on the same held-out windows of a built default atlas.

    python bench/eval_together.py --db sqlite:///PATH/atlas.db --saes DIR [--tokens 2048] [--repeats 2]

DIR holds the trained SAE folders (`<data dir>/saes/smollm2-135m`). Prints each run's seconds and
the ratio together / one by one, and checks that both give the same figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from latentpedia.dashboards import defaults
from latentpedia.models.loader import load_model
from latentpedia.sources import load_sae
from latentpedia.store.api import Store
from latentpedia.train.atlas import default_sae_names
from latentpedia.train.evals import evaluate_sae, evaluate_saes
from latentpedia.train.run import eval_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--saes", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = load_model(defaults.MODEL)
    saes = [load_sae(args.saes / name) for name in default_sae_names()]
    with Store.open(args.db) as store:
        windows = eval_windows(store, model, args.tokens)
    print(f"{len(saes)} SAEs, {windows.shape[0] * (windows.shape[1] - 1):,} held-out tokens")
    for repeat in range(args.repeats):
        start = time.perf_counter()
        alone = [evaluate_sae(model, sae, windows) for sae in saes]
        t_alone = time.perf_counter() - start
        start = time.perf_counter()
        together = evaluate_saes(model, saes, windows)
        t_together = time.perf_counter() - start
        same = all(abs(a[k] - b[k]) < 1e-6 for a, b in zip(alone, together) for k in ("explained_variance", "ce_loss_recovered", "kl_div"))
        print(f"run {repeat + 1}: one by one {t_alone:.1f} s, together {t_together:.1f} s, ratio {t_together / t_alone:.2f}, same figures: {same}")


if __name__ == "__main__":
    main()
