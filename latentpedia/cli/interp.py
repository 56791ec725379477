"""`latentpedia explain | llm-serve`: automatic interpretation from the command line."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from latentpedia.cli.common import COUNT, NON_NEGATIVE, PORT, AtlasDbOpt, ModelOpt, ProgressOpt, clear_errors, console, log, open_store
from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.interp.registry import EXPLAINERS, SCORERS, LLMExplainer

app = typer.Typer()

LLM_HELP = "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8001/v1 (env LATENTPEDIA_LLM_BASE_URL)"
EXPLAINER_HELP = " | ".join(f"{k.name}{' (LLM)' if k.needs_llm else ' (no LLM)'}" for k in EXPLAINERS.values())
VARIANT_HELP = "LLM prompt: " + " | ".join(f"{name} ({shows})" for name, shows in LLMExplainer.variants.items())
SCORER_HELP = "comma-separated: " + ", ".join(f"{k.name}{' (LLM)' if k.needs_llm else ''}" for k in SCORERS.values()) + " ('' for none)"


def explain(
    source: Annotated[list[str], typer.Option("--source", "-s", help="source id, e.g. 8-mlp; repeatable (default: every built source)")] = [],
    model: Annotated[Optional[str], typer.Option("--model", help=f"model id in the atlas (default: its only model, else {DEFAULT_MODEL_ID})")] = None,
    explainer: Annotated[str, typer.Option(help=EXPLAINER_HELP)] = "offline",
    variant: Annotated[str, typer.Option(help=VARIANT_HELP)] = "examples",
    scorer: Annotated[str, typer.Option(help=SCORER_HELP)] = "embedding",
    limit: Annotated[Optional[int], typer.Option(help="only the first N latents of each source", **COUNT)] = None,
    index: Annotated[list[int], typer.Option("--index", help="only these latents; repeatable", **NON_NEGATIVE)] = [],
    llm_base_url: Annotated[Optional[str], typer.Option(help=LLM_HELP)] = None,
    llm_model: Annotated[Optional[str], typer.Option(help="model name at the endpoint (env LATENTPEDIA_LLM_MODEL)")] = None,
    llm_key: Annotated[Optional[str], typer.Option(help="API key (env LATENTPEDIA_LLM_KEY)")] = None,
    concurrency: Annotated[int, typer.Option(help="LLM requests in flight at once", **COUNT)] = 4,
    ray: Annotated[Optional[str], typer.Option(help="explain and score on Ray workers: auto (the running cluster), local (start one here) or its address; needs latentpedia[ray]")] = None,
    ray_workers: Annotated[int, typer.Option(help="Ray workers (0: one per CPU of the cluster)", **NON_NEGATIVE)] = 0,
    progress: ProgressOpt = True,
    db: AtlasDbOpt = "",
) -> None:
    """Explain latents (offline or with an LLM) and score the explanations beside a random baseline; resumable."""
    from latentpedia.interp import registry
    from latentpedia.interp.llm.client import LLMConfig
    from latentpedia.interp.pipeline import ExplainRequest, run_explain

    with clear_errors():  # unknown names: one line naming the choices, exit 2
        scorers = registry.parse_scorers(scorer)
        registry.explainer(explainer).variant_name(variant)
        needs_llm = registry.needs_llm(explainer, scorers)
        llm = LLMConfig.resolve(llm_base_url, llm_model, llm_key, concurrency=concurrency) if needs_llm else None
        ray_config = None
        if ray is not None:
            from latentpedia.dashboards import ray_build

            ray_config = ray_build.RayConfig(address=ray, workers=ray_workers)
            ray_config.check()
            ray_build.import_ray()  # not installed: how to install it, exit 2
        store = open_store(db)
        models = [m.id for m in store.list_models()]
        model = model or (models[0] if len(models) == 1 else DEFAULT_MODEL_ID)
        request = ExplainRequest(
            model=model, sources=list(source), explainer=explainer, variant=variant, scorers=scorers, limit=limit,
            indices=list(index) or None, llm=llm, progress=progress, ray=ray_config,
        )  # fmt: skip
        summary = run_explain(store, request, log=log)
    total = sum(s["explained"] for s in summary.values())
    console.print(f"[green]done[/]: {total} explanations written over {len(summary)} source(s)")


def llm_serve(
    model: ModelOpt = DEFAULT_MODEL_ID,
    host: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on", **PORT)] = 8001,
    api_key: Annotated[Optional[str], typer.Option(help="require 'Authorization: Bearer KEY'")] = None,
) -> None:
    """Serve a local model over the OpenAI API (/v1/chat/completions, /v1/completions with echo + logprobs, /v1/models)."""
    import uvicorn

    from latentpedia.interp.llm.local import LocalLM
    from latentpedia.models import load_model
    from latentpedia.interp.llm.serve import create_llm_app

    with clear_errors():
        lm = LocalLM(load_model(model))
    console.print(f"serving {lm.name} at [bold]http://{host}:{port}/v1[/] (Ctrl-C to stop)")
    uvicorn.run(create_llm_app(lm, api_key=api_key), host=host, port=port, log_level="warning")


app.command("explain")(explain)
app.command("llm-serve")(llm_serve)
