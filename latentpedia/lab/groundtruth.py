"""Ground-truth benchmark: train every SAE architecture on synthetic data with known features
and measure how much of the truth each recovers.

    rows = benchmark_saes(GroundTruthBench(), workdir)   # one dict per architecture

Each architecture is trained by the real trainer (train/trainer.py, the same code as
`latentpedia train-sae`) on a synthetic activation cache, exported and loaded back as an SAE
source, so the benchmark measures what users get. Metrics:

- `mean_max_cosine`: mean over true features of the best cosine between the feature's direction
  and any decoder row (1 = every feature has an exact latent);
- `fraction_recovered`: share of true features with a decoder row at cosine >= RECOVERED_COSINE;
- `absorption`: with a hierarchy, how often the latent that tracks a parent stays silent when a
  child fires although it fires for the parent alone (the child latent "absorbed" the parent):
  mean over children of max(0, P(silent | child) - P(silent | parent without child));
- `l0`, `explained_variance`, `dead_fraction` on held-out samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentpedia.lab.synthetic import HOOK, GroundTruth, SyntheticConfig, config_dict, make_ground_truth, sample_activations, write_activation_cache
from latentpedia.lab.toy import one_thread
from latentpedia.sources import load_sae
from latentpedia.train.config import TrainConfig
from latentpedia.train.trainer import Trainer

RECOVERED_COSINE = 0.9


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def feature_recovery(decoder: torch.Tensor, truth: GroundTruth, threshold: float = RECOVERED_COSINE) -> dict[str, Any]:
    """Best cosine per true feature over decoder rows [d_sae, d]: mean, fraction >= threshold."""
    cosines = truth.directions @ unit_rows(decoder.float()).T  # [F, d_sae]
    best = cosines.max(dim=1).values
    return {"mean_max_cosine": float(best.mean()), "fraction_recovered": float((best >= threshold).float().mean()),
            "best_cosines": [round(v, 4) for v in best.tolist()]}


def absorption(acts: torch.Tensor, coefficients: torch.Tensor, decoder: torch.Tensor, truth: GroundTruth) -> dict[str, Any]:
    """Absorption of children into parents (module docstring); None without a hierarchy."""
    if not truth.parent_of:
        return {"absorption": None, "absorption_per_child": {}}
    cosines = truth.directions @ unit_rows(decoder.float()).T
    on = coefficients > 0
    per_child = {}
    for child, parent in truth.parent_of.items():
        latent = int(cosines[parent].argmax())
        silent = acts[:, latent] <= 0
        children = [c for c, p in truth.parent_of.items() if p == parent]
        alone = on[:, parent] & ~on[:, children].any(1)
        with_child = on[:, child]
        if alone.sum() == 0 or with_child.sum() == 0:
            continue
        gap = float(silent[with_child].float().mean() - silent[alone].float().mean())
        per_child[child] = max(0.0, gap)
    values = list(per_child.values())
    return {"absorption": sum(values) / len(values) if values else None, "absorption_per_child": per_child}


def reconstruction_metrics(sae, x: torch.Tensor, acts: torch.Tensor) -> dict[str, float]:
    """L0, explained variance and dead fraction of an SAE source on x."""
    recon = acts @ sae.decoder() + sae.weights.b_dec.float()
    err = (recon - x).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
    return {"l0": float((acts > 0).sum(-1).float().mean()), "explained_variance": float(1 - err / total),
            "dead_fraction": float(((acts > 0).sum(0) == 0).float().mean())}


@dataclass
class GroundTruthBench:
    """One benchmark: data shape, SAE width (default: the number of true features), budget."""

    synthetic: SyntheticConfig = field(default_factory=lambda: SyntheticConfig(n_parents=4))
    architectures: tuple[str, ...] = ("topk", "batchtopk", "jumprelu", "relu")
    width: int | None = None
    k: int | None = None  # default: the data's expected number of active features, rounded up
    n_tokens: int = 400_000
    eval_tokens: int = 20_000
    batch_size: int = 1024
    lr: float | None = None
    seed: int = 0

    def expected_l0(self, truth: GroundTruth) -> float:
        """Expected number of active true features per sample (empirical, 20k samples)."""
        _, coefficients = sample_activations(truth, 20_000, seed=self.seed + 7)
        return float((coefficients > 0).sum(-1).float().mean())


def benchmark_saes(bench: GroundTruthBench, workdir: Path, *, log=print) -> list[dict[str, Any]]:
    """Train and score every architecture of `bench`; one row per architecture."""
    truth = make_ground_truth(bench.synthetic)
    x_train, _ = sample_activations(truth, min(bench.n_tokens, 200_000), seed=bench.seed + 1)
    cache = write_activation_cache(Path(workdir) / "activations", x_train, meta=config_dict(bench.synthetic))
    held_out = sample_activations(truth, bench.eval_tokens, seed=bench.seed + 2)
    width = bench.width or bench.synthetic.total_features
    k = bench.k or max(1, math.ceil(bench.expected_l0(truth)))
    rows = []
    with one_thread():  # tiny SAEs: a second thread only spins (lab/toy.py)
        for architecture in bench.architectures:
            config = TrainConfig(activations=cache, out_dir=Path(workdir) / "saes", hooks=[HOOK], widths=[width],
                                 architecture=architecture, model_id="synthetic", k=k, n_tokens=bench.n_tokens,
                                 batch_size=bench.batch_size, lr=bench.lr, seed=bench.seed, outlier_factor=None,
                                 progress=False, buffer_tokens=65_536)  # fmt: skip
            rows.append(train_and_score(config, truth, held_out))
            log(summary_line(rows[-1]))
    return rows


def train_and_score(config: TrainConfig, truth: GroundTruth, held_out: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """Train one SAE with the real trainer, load it back as a source, score it on held-out data."""
    started = time.perf_counter()
    result = Trainer(config, log=lambda *_: None).run()[0]
    seconds = time.perf_counter() - started
    sae = load_sae(result["path"])
    x, coefficients = held_out
    acts = sae.encode(x)
    decoder = sae.decoder()
    return {"architecture": config.architecture, "width": config.widths[0], "k": config.k, "train_seconds": round(seconds, 1),
            "l1_coefficient": result["l1_coefficient"], **reconstruction_metrics(sae, x, acts),
            **feature_recovery(decoder, truth), **absorption(acts, coefficients, decoder, truth)}


def summary_line(row: dict[str, Any]) -> str:
    absorbed = "—" if row.get("absorption") is None else f"{row['absorption']:.2f}"
    return (f"{row['architecture']:>9}: L0 {row['l0']:.2f}  EV {row['explained_variance']:.3f}  MMCS {row['mean_max_cosine']:.3f}  "
            f"recovered {row['fraction_recovered']:.0%}  absorption {absorbed}  dead {row['dead_fraction']:.0%}  ({row['train_seconds']} s)")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark as a Markdown table (for bench/RESULTS.md)."""
    lines = ["| architecture | L0 | EV | mean max cosine | recovered (cos ≥ 0.9) | absorption | dead | coefficient | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        absorbed = "—" if r.get("absorption") is None else f"{r['absorption']:.2f}"
        coef = "—" if r["architecture"] in ("topk", "batchtopk") else f"{r['l1_coefficient']:.3g}"
        lines.append(f"| {r['architecture']} | {r['l0']:.2f} | {r['explained_variance']:.3f} | {r['mean_max_cosine']:.3f} | "
                     f"{r['fraction_recovered']:.0%} | {absorbed} | {r['dead_fraction']:.0%} | {coef} | {r['train_seconds']} |")
    return "\n".join(lines)
