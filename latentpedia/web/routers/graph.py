"""Attribution graphs: `POST /api/graph/generate` (compute), `GET /api/graph/{id}` (the graph
JSON in Neuronpedia's schema), `POST /api/graph/upload` and `POST /api/graph/{id}/subgraph`
(writes: a user), and the pages `/graph` (recent graphs, a form) and `/graph/{id}`.

Generation runs `experiments.graph.generate_graph` on the live worker thread with the model's
transcoder sources, labels latents with their best explanation and saves the graph.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from latentpedia.errors import InvalidInputError, LatentpediaError
from latentpedia.experiments.common import prompt_ids
from latentpedia.experiments.graph import AttributionConfig, generate_graph, parse_graph
from latentpedia.store.api import Store
from latentpedia.web import graph_schemas as S
from latentpedia.web.auth import CurrentUser, OptionalUser
from latentpedia.web.deps import StoreDep
from latentpedia.web.live import LiveDep
from latentpedia.web.pages.common import NotFoundError
from latentpedia.web.ratelimit import PromptLimitsDep, check_text, check_tokens, compute_route
from latentpedia.web.render import render_page

router = APIRouter(tags=["graphs"])
COMPUTE = compute_route(too_long="prompt over the character or token limit", invalid="invalid input: no transcoders, bad thresholds, unsupported model")
GENERATE_TIMEOUT = 900.0  # seconds: attribution is many backward passes on the CPU


def _saved(record) -> S.GraphSaved:
    data = record.data
    return S.GraphSaved(id=record.public_id, url=f"/graph/{record.public_id}", json_url=f"/api/graph/{record.public_id}",
                        title=record.title, n_nodes=len(data["nodes"]), n_links=len(data["links"]))


def _transcoder_records(store: Store, model_id: str, names: list[str] | None) -> list:
    if store.get_model(model_id) is None:
        raise NotFoundError(f"unknown model {model_id!r}")
    records = [s for s in store.list_sources(model_id) if s.kind == "transcoder"]
    if names is not None:
        by_name = {s.name: s for s in store.list_sources(model_id)}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise NotFoundError(f"unknown source {missing[0]!r} of {model_id}")
        records = [by_name[n] for n in names]
    if not records:
        raise InvalidInputError(f"{model_id} has no transcoder sources: train some with `latentpedia train-transcoders`")
    return records


def _label(store: Store, model_id: str, graph: dict[str, Any]) -> None:
    """Each latent node's `clerp`: its best explanation (if any), read once per source."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for node in graph["nodes"]:
        if node.get("source"):
            wanted[node["source"]].add(int(node["feature"]))
    texts = {}
    for name, indices in wanted.items():
        record = store.get_source(model_id, name)
        if record is not None:
            texts[name] = store.top_explanations(record.id, indices)
    for node in graph["nodes"]:
        text = texts.get(node.get("source"), {}).get(int(node["feature"]))
        if text:
            node["clerp"] = text


@router.post("/api/graph/generate", response_model=S.GraphSaved, summary="Generate and save an attribution graph", **COMPUTE)
async def generate_route(body: S.GraphGenerateRequest, store: StoreDep, live: LiveDep, limits: PromptLimitsDep,
                         user: OptionalUser) -> S.GraphSaved:
    """Which transcoder latents, error terms and tokens drive the next-token logits of `prompt`:
    the pruned attribution graph, saved; open it at the returned `url`."""
    check_text(body.prompt, limits)
    try:
        records = await run_in_threadpool(_transcoder_records, store, body.modelId, body.sources)
        config = AttributionConfig(max_n_logits=body.maxNLogits, desired_logit_prob=body.desiredLogitProb,
                                   max_feature_nodes=body.maxFeatureNodes)

        def work(m):
            check_tokens(len(prompt_ids(m, body.prompt, max_tokens=10**9)), limits)  # 413 over the live limit
            sources = [live.source(m, record) for record in records]
            return generate_graph(m, body.prompt, sources, slug=body.slug, node_threshold=body.nodeThreshold,
                                  edge_threshold=body.edgeThreshold, config=config)

        graph = await live.run(body.modelId, work, timeout=GENERATE_TIMEOUT)
    except NotFoundError:
        raise
    except LatentpediaError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    await run_in_threadpool(_label, store, body.modelId, graph)
    owner = user.id if user is not None else None
    return _saved(await run_in_threadpool(lambda: store.add_graph(graph, origin="generated", owner_id=owner)))


@router.get("/api/graph/{graph_id}", summary="A saved graph (Neuronpedia graph JSON)")
async def graph_json_route(graph_id: str, store: StoreDep) -> dict[str, Any]:
    """The graph document: `metadata`, `qParams` (pinned ids, supernodes), `nodes`, `links`."""
    return (await run_in_threadpool(store.get_graph, graph_id)).data


@router.post("/api/graph/upload", response_model=S.GraphSaved, summary="Upload a graph made elsewhere")
async def upload_route(body: dict[str, Any], store: StoreDep, user: CurrentUser) -> S.GraphSaved:
    """Store a graph JSON document in Neuronpedia's schema (checked: every link names nodes)."""
    try:
        graph = parse_graph(body)
    except InvalidInputError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    return _saved(await run_in_threadpool(lambda: store.add_graph(graph, origin="uploaded", owner_id=user.id)))


def _check_subgraph(graph: dict[str, Any], body: S.SubgraphRequest) -> None:
    ids = {node["node_id"] for node in graph["nodes"]}
    for node_id in body.pinnedIds + [n for group in body.supernodes for n in group[1:]]:
        if node_id not in ids:
            raise HTTPException(status_code=422, detail=f"node {node_id!r} is not in this graph")
    for group in body.supernodes:
        if len(group) < 2 or not group[0].strip():
            raise HTTPException(status_code=422, detail="a supernode is [name, node id, ...] with a name and at least one node")


@router.post("/api/graph/{graph_id}/subgraph", response_model=S.GraphSaved, summary="Save pinned nodes and supernodes as a new graph")
async def subgraph_route(graph_id: str, body: S.SubgraphRequest, store: StoreDep, user: CurrentUser) -> S.GraphSaved:
    """A copy of the graph whose `qParams` hold these pins and supernodes, under a new id to share."""
    parent = await run_in_threadpool(store.get_graph, graph_id)
    _check_subgraph(parent.data, body)
    qparams = {**parent.data.get("qParams", {}), "pinnedIds": body.pinnedIds, "supernodes": body.supernodes}
    data = {**parent.data, "qParams": qparams}
    title = body.title or f"{parent.title} (subgraph)"
    saved = await run_in_threadpool(lambda: store.add_graph(data, origin="subgraph", owner_id=user.id,
                                                             parent_id=parent.id, title=title))
    return _saved(saved)


@router.get("/api/graphs", response_model=S.GraphIndexPage, summary="Recent graphs")
async def graphs_json(store: StoreDep) -> S.GraphIndexPage:
    return await run_in_threadpool(_index_page, store)


def _index_page(store: Store) -> S.GraphIndexPage:
    graphs = [S.GraphListItem(id=g.public_id, url=f"/graph/{g.public_id}", title=g.title, model_id=g.model_id,
                              origin=g.origin, created_at=g.created_at.isoformat()) for g in store.list_graphs()]
    models = [m.id for m in store.list_models() if any(s.kind == "transcoder" for s in store.list_sources(m.id))]
    return S.GraphIndexPage(graphs=graphs, models=models)


@router.get("/graph", response_class=HTMLResponse, include_in_schema=False)
async def graphs_page(request: Request, store: StoreDep) -> HTMLResponse:
    page = await run_in_threadpool(_index_page, store)
    return render_page(request, "graphs.html", page, "/api/graphs")


def _graph_page(store: Store, graph_id: str) -> S.GraphPage:
    record = store.get_graph(graph_id)
    parent = store.graph_public_id(record.parent_id) if record.parent_id is not None else None
    data = record.data
    return S.GraphPage(id=record.public_id, title=record.title, model_id=record.model_id, prompt=record.prompt,
                       origin=record.origin, json_url=f"/api/graph/{record.public_id}", n_nodes=len(data["nodes"]),
                       n_links=len(data["links"]), parent_url=f"/graph/{parent}" if parent else None,
                       info=(data.get("metadata") or {}).get("info") or {})


@router.get("/graph/{graph_id}", response_class=HTMLResponse, include_in_schema=False)
async def graph_page(request: Request, graph_id: str, store: StoreDep) -> HTMLResponse:
    page = await run_in_threadpool(_graph_page, store, graph_id)
    return render_page(request, "graph.html", page, page.json_url)
