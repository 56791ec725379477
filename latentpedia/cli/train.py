"""`latentpedia train-sae | eval-sae`: train SAEs on an atlas's cached activations, evaluate SAEs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentpedia.cli.common import COUNT, NON_NEGATIVE, NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, DbOpt, ModelOpt, ProgressOpt
from latentpedia.cli.common import clear_errors, console, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID

app = typer.Typer()


@app.command("train-sae")
def train_sae(
    hook: Annotated[list[str], typer.Option("--hook", help="hook point to train on, e.g. blocks.14.hook_resid_post; repeatable")],
    width: Annotated[list[int], typer.Option("--width", help="latents per SAE; repeatable (one SAE per hook x width)", **COUNT)] = [4608],
    architecture: Annotated[str, typer.Option(help="topk | batchtopk | jumprelu | relu (ReLU + L1)")] = "topk",
    k: Annotated[int, typer.Option(help="TopK / BatchTopK: active latents per token", **COUNT)] = 32,
    l1: Annotated[Optional[float], typer.Option("--l1", help="ReLU: L1 coefficient (5); JumpReLU: L0 coefficient (0.5)", **NON_NEGATIVE_FLOAT)] = None,
    tokens: Annotated[int, typer.Option(help="training tokens (the cache is replayed if it holds fewer)", **COUNT)] = 200_000,
    batch_size: Annotated[int, typer.Option(help="tokens per optimizer step", **COUNT)] = 1024,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: 2e-4 / sqrt(width / 16384))", **POSITIVE_FLOAT)] = None,
    seed: Annotated[int, typer.Option(help="seed of the initialisation and the shuffle")] = 0,
    activations: Annotated[Optional[Path], typer.Option(help="folder of cached activation shards (default: the atlas's)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="where the SAE folders go (default: <data dir>/saes/<model>)")] = None,
    do_import: Annotated[bool, typer.Option("--import/--no-import", help="add the trained SAEs to the atlas and build their dashboards")] = True,
    eval_tokens: Annotated[int, typer.Option(help="tokens to evaluate each SAE on after training (0: skip)", **NON_NEGATIVE)] = 8192,
    model: ModelOpt = DEFAULT_MODEL_ID,
    progress: ProgressOpt = True,
    db: DbOpt = "",
) -> None:
    """Train SAEs on cached activations (SAELens format), evaluate them, add them to the atlas."""
    from latentpedia.config import data_dir
    from latentpedia.train.run import TrainRequest, train_saes

    knobs = dict(architecture=architecture, k=k, l1_coefficient=l1, n_tokens=tokens, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    request = TrainRequest(
        model=model, hooks=list(hook), widths=list(width), out_dir=out or data_dir() / "saes" / Path(model).name,
        activations=activations, import_to_atlas=do_import, eval_tokens=eval_tokens, train=knobs,
    )
    with clear_errors():
        results = train_saes(open_store(db), request, log=log)
    console.print(f"[green]done[/]: trained {', '.join(r['name'] for r in results)}")


@app.command("eval-sae")
def eval_sae(
    target: Annotated[str, typer.Argument(help="an SAE folder, or the name of an SAE source in the atlas")],
    model: ModelOpt = DEFAULT_MODEL_ID,
    tokens: Annotated[int, typer.Option(help="tokens to evaluate on (the atlas corpus's last windows)", **COUNT)] = 8192,
    db: DbOpt = "",
) -> None:
    """L0, explained variance, MSE, CE-loss recovered, KL, dead/dense latents; stored if in the atlas."""
    from latentpedia.train.run import eval_sae as run_eval

    with clear_errors():
        run_eval(open_store(db), target, model=model, n_tokens=tokens, log=log)
