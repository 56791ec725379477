"""`latentpedia toy | bench-saes | saebench`: the lab (latentpedia/lab): toy models of
superposition, SAE architectures benchmarked on synthetic ground truth, SAEBench-style metrics
for the atlas's own SAEs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from latentpedia.cli.common import COUNT, NON_NEGATIVE, NON_NEGATIVE_FLOAT, AtlasDbOpt, ModelOpt, clear_errors, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID

app = typer.Typer()
OUT = Console(soft_wrap=True)
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="also write the full results as JSON to this file")]


@app.command("toy")
def toy(
    features: Annotated[int, typer.Option("--features", "-n", help="input features n", **COUNT)] = 100,
    hidden: Annotated[int, typer.Option("--hidden", "-m", help="hidden dimensions m (< n)", **COUNT)] = 20,
    decay: Annotated[float, typer.Option(help="importance decay: I_i = decay^i (1 = uniform)", **NON_NEGATIVE_FLOAT)] = 1.0,
    sparsity: Annotated[list[float], typer.Option("--sparsity", "-s", help="sparsity S in [0, 1); repeatable (default: a sweep of 20)")] = [],
    steps: Annotated[int, typer.Option(help="training steps", **COUNT)] = 4000,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    json_out: JsonOpt = None,
) -> None:
    """Train the toy model of superposition for each sparsity; print dimensions per feature and
    how many features sit on each sticky fraction (1, 3/4, 2/3, 1/2, 2/5, 3/8)."""
    from latentpedia.lab.toy import STICKY_FRACTIONS, ToyConfig, config_dict, default_sparsities, describe, train_toy

    config = ToyConfig(n_features=features, n_hidden=hidden, importance_decay=decay,
                       sparsities=tuple(sparsity or default_sparsities()), steps=steps, seed=seed)
    with clear_errors():
        config.validate()
        log(f"training {len(config.sparsities)} toy models ({features} features in {hidden} dims, {steps} steps)")
        instances = describe(train_toy(config))
    table = Table("S", "1/(1-S)", "loss", "dims/feature", *[str(f) for f in STICKY_FRACTIONS], "other", "off")
    for row in instances:
        g = row.geometry
        table.add_row(f"{row.sparsity:.4f}", f"{row.density_inverse:.1f}", f"{row.loss:.4f}", f"{row.dims_per_feature:.3f}",
                      *[str(g[str(f)]) for f in STICKY_FRACTIONS], str(g["other"]), str(g["not represented"]))
    OUT.print(table)
    if json_out:
        json_out.write_text(json.dumps({"config": config_dict(config), "instances": [vars(r) for r in instances]}, indent=1))


@app.command("bench-saes")
def bench_saes(
    architecture: Annotated[list[str], typer.Option("--architecture", help="repeatable (default: every trainable architecture)")] = [],
    d_model: Annotated[int, typer.Option(help="dimensions of the synthetic activations", **COUNT)] = 32,
    features: Annotated[int, typer.Option(help="independent true features", **COUNT)] = 96,
    parents: Annotated[int, typer.Option(help="parent features, each with --children children (hierarchy)", **NON_NEGATIVE)] = 4,
    children: Annotated[int, typer.Option(help="children per parent", **COUNT)] = 3,
    correlation: Annotated[float, typer.Option(help="firing correlation within groups of 4 features, in [0, 1)", **NON_NEGATIVE_FLOAT)] = 0.0,
    density: Annotated[float, typer.Option(help="typical firing probability of a feature", **NON_NEGATIVE_FLOAT)] = 0.02,
    tokens: Annotated[int, typer.Option(help="training tokens per SAE", **COUNT)] = 400_000,
    seed: Annotated[int, typer.Option(help="seed of the data and the SAEs")] = 0,
    workdir: Annotated[Optional[Path], typer.Option(help="where the cache and SAEs go (default: a temporary folder)")] = None,
    json_out: JsonOpt = None,
) -> None:
    """Train each SAE architecture on synthetic data with known features; print recovery
    (mean max cosine, fraction recovered), absorption, L0, EV as a Markdown table."""
    from latentpedia.lab.groundtruth import GroundTruthBench, benchmark_saes, markdown_table
    from latentpedia.lab.synthetic import SyntheticConfig
    from latentpedia.train.saes import TRAINABLE

    synthetic = SyntheticConfig(d_model=d_model, n_features=features, n_parents=parents, children_per_parent=children,
                                correlation=correlation, density=density, seed=seed)
    bench = GroundTruthBench(synthetic=synthetic, architectures=tuple(architecture or TRAINABLE), n_tokens=tokens, seed=seed)
    with clear_errors(), tempfile.TemporaryDirectory() as tmp:
        rows = benchmark_saes(bench, workdir or Path(tmp), log=log)
    print(markdown_table(rows))
    if json_out:
        json_out.write_text(json.dumps({"synthetic": vars(synthetic), "rows": rows}, indent=1))


@app.command("saebench")
def saebench(
    source: Annotated[list[str], typer.Option("--source", help="SAE source of the atlas; repeatable (default: all of the model's SAEs)")] = [],
    metric: Annotated[list[str], typer.Option("--metric", help="absorption | sparse_probing | autointerp; repeatable (default: all)")] = [],
    explain: Annotated[int, typer.Option(help="explain and score this many latents of an SAE that has no explanations (0: only read stored scores)", **NON_NEGATIVE)] = 0,
    model: ModelOpt = DEFAULT_MODEL_ID,
    db: AtlasDbOpt = "",
) -> None:
    """SAEBench-style metrics of the atlas's SAEs (first-letter absorption, sparse probing,
    auto-interp vs baseline), each timed and stored with the source (shown on /benchmarks)."""
    from latentpedia.lab.saebench import METRICS, bench_atlas

    with clear_errors():
        results = bench_atlas(open_store(db), model, sources=list(source), metrics=tuple(metric or METRICS), explain_limit=explain, log=log)
    for name, bench in results.items():
        log(f"{name}: absorption {bench.get('absorption')}, probing top-1 {bench.get('sparse_probing_top1')}, "
            f"auto-interp {bench.get('autointerp_score')} (beats baseline {bench.get('autointerp_beats_baseline')})")
