"""`latentpedia build | import-sae | info | demo | serve`: make an atlas, look at it, serve it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from latentpedia.cli.common import COUNT, NON_NEGATIVE, NON_NEGATIVE_FLOAT, PORT, WINDOW, AtlasDbOpt, DbOpt, ModelOpt
from latentpedia.cli.common import ProgressOpt, clear_errors, console, layer_numbers, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID, default_db_url

app = typer.Typer()


@app.command()
def build(
    source: Annotated[list[str], typer.Option("--source", "-s", help="'<layer>-mlp' or an SAE folder; repeatable")] = [],
    layers: Annotated[Optional[str], typer.Option(help="shorthand for neuron sources, e.g. 2,8,14", callback=layer_numbers)] = None,
    model: ModelOpt = DEFAULT_MODEL_ID,
    corpus: Annotated[str, typer.Option(help="'default' or a .txt/.jsonl/.parquet file, folder, or saved dataset")] = "default",
    tokens: Annotated[int, typer.Option(help="tokens of corpus to read (BOS excluded)", **COUNT)] = 500_000,
    window: Annotated[int, typer.Option(help="window length in tokens, BOS included", **WINDOW)] = 128,
    batch_size: Annotated[int, typer.Option(help="windows per forward batch", **COUNT)] = 8,
    cache_acts: Annotated[list[str], typer.Option("--cache-acts", help="hook whose activations to cache for SAE training")] = [],
    cache_tokens: Annotated[int, typer.Option(help="tokens of activations to cache per hook", **COUNT)] = 250_000,
    text_field: Annotated[str, typer.Option(help="text field of .jsonl/.parquet/dataset corpora")] = "text",
    rebuild: Annotated[bool, typer.Option(help="rebuild sources that are already built")] = False,
    progress: ProgressOpt = True,
    checkpoint_seconds: Annotated[float, typer.Option(help="seconds between resumable checkpoints", **NON_NEGATIVE_FLOAT)] = 60.0,
    ray: Annotated[Optional[str], typer.Option(help="shard the pass over Ray: auto (the running cluster), local (start one here) or its address; needs latentpedia[ray]")] = None,
    ray_workers: Annotated[int, typer.Option(help="Ray workers (0: one per CPU of the cluster)", **NON_NEGATIVE)] = 0,
    db: DbOpt = "",
) -> None:
    """Build (or resume, or extend) an atlas: dashboards for every latent of every source."""
    from latentpedia.dashboards.pipeline import BuildRequest
    from latentpedia.dashboards.pipeline import build as run_build

    specs = list(source) + ([f"{int(x)}-mlp" for x in layers.split(",")] if layers else [])
    request = BuildRequest(
        model=model, sources=specs, corpus=corpus, n_tokens=tokens, window_len=window, batch_size=batch_size,
        cache_hooks=list(cache_acts), cache_tokens=cache_tokens if cache_acts else 0, rebuild=rebuild,
        progress=progress, text_field=text_field, checkpoint_seconds=checkpoint_seconds,
    )
    with clear_errors():
        runner = None
        if ray is not None:
            from latentpedia.dashboards import ray_build

            config = ray_build.RayConfig(address=ray, workers=ray_workers)
            ray_build.check_request(request, config)
            runner = ray_build.runner(config, log=log)
        summary = run_build(open_store(db), request, log=log, runner=runner)
    console.print(f"[green]done[/]: built {', '.join(summary['built']) or 'nothing new'}")


@app.command("import-sae")
def import_sae(
    path: Annotated[Path, typer.Argument(help="an SAE folder or file (SAELens, sparsify, dictionary_learning, Gemma Scope)")],
    model: ModelOpt = DEFAULT_MODEL_ID,
    name: Annotated[Optional[str], typer.Option(help="source id to use (default: derived, e.g. 6-res-topk-4k)")] = None,
    hook: Annotated[Optional[str], typer.Option(help="hook name, when the SAE files do not say")] = None,
    tokens: Annotated[int, typer.Option(help="tokens to build over when the atlas has no corpus yet", **COUNT)] = 500_000,
    progress: ProgressOpt = True,
    eval_tokens: Annotated[int, typer.Option(help="tokens to evaluate the SAE on after the import (0: skip)", **NON_NEGATIVE)] = 8192,
    db: DbOpt = "",
) -> None:
    """Detect an SAE's format, validate it against the model, add it, build its dashboards and
    evaluate it (L0, explained variance, CE-loss recovered, ... stored with the source)."""
    from latentpedia.dashboards.pipeline import import_sae as run_import
    from latentpedia.train.run import eval_sae as run_eval

    with clear_errors():
        store = open_store(db)
        summary = run_import(store, path, model=model, name=name, hook=hook, n_tokens=tokens, progress=progress, log=log)
        for source in summary["built"] if eval_tokens else []:
            run_eval(store, source, model=model, n_tokens=eval_tokens, log=log)
    console.print(f"[green]done[/]: imported {', '.join(summary['built'])}")


@app.command()
def info(db: AtlasDbOpt = "") -> None:
    """What an atlas holds: models, corpora, sources."""
    store = open_store(db)
    out = Console()
    for model in store.list_models():
        out.print(f"[bold]{model['id']}[/] ({model['family']}, {model['n_layers']} layers, d_model {model['d_model']}, vocab {model['vocab_size']:,})")
        table = Table("source", "kind", "hook", "latents", "tokens", "status")
        for src in store.list_sources(model["id"]):
            table.add_row(src["name"], src["kind"], src["hook_name"], f"{src['d_sae']:,}", f"{src['n_tokens'] or 0:,}", src["status"])
        out.print(table)
    if not store.list_models():
        out.print("the atlas is empty: run `latentpedia demo` or `latentpedia build`")


@app.command()
def demo(
    tokens: Annotated[Optional[int], typer.Option(help="override the default token budget", **COUNT)] = None,
    saes: Annotated[bool, typer.Option("--saes/--no-saes", help="train the default SAEs on the cached activations")] = True,
    sae_tokens: Annotated[Optional[int], typer.Option(help="training tokens of the default SAEs", **COUNT)] = None,
    explain: Annotated[bool, typer.Option("--explain/--no-explain", help="offline explanations and embedding scores for every latent")] = True,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="serve the atlas (a first slice at once, the rest arriving as jobs); --no-serve: build everything, then stop")] = True,
    first_tokens: Annotated[Optional[int], typer.Option(help="tokens of the first slice served while the rest is built", **COUNT)] = None,
    host: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on", **PORT)] = 8000,
    db: DbOpt = "",
) -> None:
    """Build the default atlas (SmolLM2-135M neurons over the offline corpus, SAEs trained on its
    residual stream) and serve it: a first slice within minutes, the rest arriving as jobs
    (latentpedia/jobs/demo.py); a built atlas is served at once."""
    from latentpedia.dashboards import defaults
    from latentpedia.jobs import demo as staged
    from latentpedia.jobs.kinds import DemoJob

    plan = DemoJob(stage="explain", tokens=tokens or defaults.N_TOKENS, sae_tokens=sae_tokens or defaults.SAE_TOKENS,
                   saes=[list(p) for p in defaults.SAE_PAIRS] if saes else [], explain=explain)  # fmt: skip
    with clear_errors():
        store = open_store(db)
        missing = staged.missing_stages(store, plan)
        if not missing:
            log("the default atlas is already built")
        elif not serve_after:
            staged.build_all(store, plan, log=log)
        else:
            first = min(first_tokens or defaults.FIRST_TOKENS, plan.tokens)
            if not staged.slice_done(store, plan):
                staged.build_slice(store, plan, first, log=log)
            queued = staged.queue_missing(store, plan)
            log(f"serving the first slice while {len(queued)} stage(s) arrive as jobs {', '.join(f'#{i} {s}' for s, i in queued.items())} "
                "(progress on / and /jobs)")  # fmt: skip
    info(db)
    if serve_after:
        serve(db=db, host=host, port=port)


def _signup_mode(value: str) -> str:
    if value not in ("open", "invite", "closed"):
        raise typer.BadParameter(f"--signup is open, invite or closed, not {value!r}")
    return value


@app.command()
def serve(
    db: DbOpt = "",
    host: Annotated[str, typer.Option(help="address to serve on (0.0.0.0 exposes it to the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on", **PORT)] = 8000,
    private: Annotated[bool, typer.Option("--private", help="refuse anonymous reads (also $LATENTPEDIA_PRIVATE=1)")] = False,
    workers: Annotated[int, typer.Option(min=1, help="worker processes (each keeps its own caches and model copies)")] = 1,
    trusted_proxy: Annotated[list[str], typer.Option("--trusted-proxy", help="a reverse proxy (IP or network) whose X-Forwarded-For / -Proto to believe; repeatable (also $LATENTPEDIA_TRUSTED_PROXIES; default none)")] = [],
    no_worker: Annotated[bool, typer.Option("--no-worker", help="do not start a `latentpedia worker` process for the jobs queued from the web")] = False,
    signup: Annotated[str, typer.Option(help="self sign-up for the game: open, invite (codes from `latentpedia campaign invite`) or closed", callback=_signup_mode)] = "closed",
) -> None:
    """Serve the web atlas (feature pages and the JSON API) at http://HOST:PORT, with a job
    worker process beside it unless --no-worker."""
    from latentpedia.cli.worker import start_worker_process

    os.environ["LATENTPEDIA_SIGNUP"] = signup  # read by web/routers/play.py (every worker)
    job_worker = None if no_worker else start_worker_process(db or default_db_url())
    try:
        _serve(db, host, port, private, workers, trusted_proxy)
    finally:
        if job_worker is not None:
            job_worker.terminate()
            job_worker.wait(timeout=30)


def _serve(db: str, host: str, port: int, private: bool, workers: int, trusted_proxy: list[str]) -> None:
    import uvicorn

    from latentpedia.web import create_app
    from latentpedia.web.proxies import TRUSTED_PROXIES_ENV, parse_proxies

    proxies = ",".join([os.environ.get(TRUSTED_PROXIES_ENV, ""), *trusted_proxy]).strip(",")
    with clear_errors():
        parse_proxies([proxies])
    os.environ[TRUSTED_PROXIES_ENV] = proxies  # the app (each worker's too) reads it; uvicorn's own proxy headers stay off
    console.print(f"serving the atlas at [bold]http://{host}:{port}[/] with {workers} worker(s) (Ctrl-C to stop)")
    if workers > 1:
        from latentpedia.web.workers import DB_VARIABLE

        os.environ[DB_VARIABLE] = db or default_db_url()
        if private:
            os.environ["LATENTPEDIA_PRIVATE"] = "1"
        uvicorn.run("latentpedia.web.workers:app_from_env", factory=True, workers=workers, host=host, port=port, log_level="info", proxy_headers=False)
        return
    uvicorn.run(create_app(db or default_db_url(), private=True if private else None), host=host, port=port, log_level="info", proxy_headers=False)
