"""The experiment queries behind routers/experiments.py: validate, run the pure-torch engine
(`latentpedia.experiments`) on the live worker thread, shape the answer.

Store reads run in the thread pool; torch runs through `LiveModels.run` (one worker thread,
bounded queue, timeouts). Engine errors (`InvalidInputError`, `UnknownHookError`) become 422,
unknown model/source/latent 404, prompts over the live token limit 413.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from latentpedia.errors import LatentpediaError
from latentpedia.experiments import ablation, lens, patching, steering
from latentpedia.experiments.common import Latent, check_positions, prompt_ids, token_id
from latentpedia.experiments.resolve import corpus_windows, stored_mean
from latentpedia.store.api import Store
from latentpedia.web import experiment_schemas as S
from latentpedia.web.deps import token_text_for
from latentpedia.engine.worker import LiveModels
from latentpedia.web.pages.common import NotFoundError, feature_url, source_record
from latentpedia.web.ratelimit import PromptLimits, check_text, check_tokens

DECOMPOSITION = (
    "final norm frozen at this run: logit = s_p * (g * r) . W_U[target] with s_p = 1/rms of the final "
    "residual at the position; contributions + others + remainder = the model's target logit"
)


class ExperimentContext:
    """What an experiment query needs from the app."""

    def __init__(self, store: Store, live: LiveModels, limits: PromptLimits, texts: dict):
        self.store, self.live, self.limits, self.texts = store, live, limits, texts

    def strs(self, model: str, ids: list[int]) -> list[str]:
        return token_text_for(self.store, self.texts, model).many(ids)

    async def check(self, model: str, *texts: str) -> None:
        for text in texts:
            check_text(text, self.limits)
        if await run_in_threadpool(self.store.get_model, model) is None:
            raise NotFoundError(f"unknown model {model!r}")

    async def record(self, model: str, source: str):
        return await run_in_threadpool(source_record, self.store, model, source)

    async def run(self, model: str, fn: Callable, timeout: float | None = None) -> Any:
        try:
            return await self.live.run(model, fn, timeout=timeout)
        except NotFoundError:
            raise
        except LatentpediaError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None

    def ids(self, m, text: str) -> list[int]:
        ids = prompt_ids(m, text, max_tokens=10**9)
        check_tokens(len(ids), self.limits)
        return ids

    def latent(self, m, record, index: int) -> Latent:
        source = self.live.source(m, record)
        if not 0 <= index < source.d_sae:
            raise NotFoundError(f"latent {index} does not exist: {record.name} has latents 0..{source.d_sae - 1}")
        return Latent(source, index)


# ---------------------------------------------------------------------------- steering


def _steer_timeout(body: S.SteerRequest) -> float:
    return 30.0 + 0.5 * body.n_completion_tokens * len(body.types)


async def _steer_plan(ctx: ExperimentContext, body: S.SteerRequest) -> Callable:
    """Validate and read the store; return `events(m)` (runs on the worker thread)."""
    await ctx.check(body.modelId, body.prompt)
    if body.steer_method not in S.STEER_METHODS:
        raise HTTPException(422, f"unknown steer_method {body.steer_method!r}; choose one of {', '.join(S.STEER_METHODS)}")
    for f in body.features:
        if f.modelId not in (None, body.modelId):
            raise HTTPException(422, f"feature {f.layer}/{f.index} is of model {f.modelId}, not {body.modelId}")
    records = [await ctx.record(body.modelId, f.layer) for f in body.features]
    config = steering.SteerConfig(
        method=S.STEER_METHODS[body.steer_method], normalize=body.normalize_steering, positions=body.positions,
        n_tokens=body.n_completion_tokens, temperature=body.temperature, seed=body.seed,
        freq_penalty=body.freq_penalty, strength_multiplier=body.strength_multiplier, types=list(dict.fromkeys(body.types)),
    )  # fmt: skip

    def events(m):
        ids = ctx.ids(m, body.prompt)
        steers = [steering.Steer.from_latent(ctx.latent(m, r, f.index), f.strength) for r, f in zip(records, body.features)]
        for i, v in enumerate(body.vectors):
            steers.append(steering.Steer.from_vector(v.hook, v.vector, v.strength, f"vector {i}"))
        return steering.steer_stream(m, ids, steers, config)

    return events


async def steer_query(ctx: ExperimentContext, body: S.SteerRequest) -> S.SteerResult:
    events = await _steer_plan(ctx, body)
    done = await ctx.run(body.modelId, lambda m: [e for e in events(m) if e.get("done")], _steer_timeout(body))
    outputs = [
        S.Completion(type=e["type"], text=e["text"], tokens=ctx.strs(body.modelId, e["tokens"]), token_ids=e["tokens"])
        for e in done
    ]
    texts = {o.type: body.prompt + o.text for o in outputs}
    settings = body.model_dump(exclude={"prompt", "features", "vectors", "modelId"})
    return S.SteerResult(modelId=body.modelId, prompt=body.prompt, outputs=outputs, settings=settings, **texts)


async def steer_stream_query(ctx: ExperimentContext, body: S.SteerRequest) -> AsyncIterator[bytes]:
    """NDJSON lines: {"type", "token", "token_str", "text"} per token, {"type", "done": true,
    "text", ...} per completion, {"event": "end"} last (or {"error": detail}). Validation errors
    are raised before the first line, so they still get a 4xx status."""
    events = await _steer_plan(ctx, body)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def work(m) -> None:
        for event in events(m):
            if stop.is_set():
                return
            if "token" in event:
                event["token_str"] = ctx.strs(body.modelId, [event["token"]])[0]
            loop.call_soon_threadsafe(queue.put_nowait, ("event", event))

    task = asyncio.create_task(ctx.run(body.modelId, work, _steer_timeout(body)))
    task.add_done_callback(lambda t: queue.put_nowait(("end", t)))
    first = await queue.get()
    if first[0] == "end" and first[1].exception() is not None:
        raise first[1].exception()

    async def lines() -> AsyncIterator[bytes]:
        item = first
        try:
            while True:
                if item[0] == "end":
                    error = item[1].exception()
                    detail = getattr(error, "detail", None) or (str(error) if error else None)
                    yield (json.dumps({"error": detail} if error else {"event": "end"}) + "\n").encode()
                    return
                yield (json.dumps(item[1]) + "\n").encode()
                item = await queue.get()
        finally:
            stop.set()

    return lines()


# ---------------------------------------------------------------------------- ablation


async def ablate_query(ctx: ExperimentContext, body: S.AblateRequest) -> S.AblateResult:
    await ctx.check(body.modelId, body.prompt)
    record = await ctx.record(body.modelId, body.layer)
    mean = windows = None
    if body.mode == "mean":
        mean = await run_in_threadpool(stored_mean, ctx.store, body.modelId, body.layer, body.index)
    if body.mode == "resample" or (body.mode == "mean" and mean is None):
        windows = await run_in_threadpool(corpus_windows, ctx.store, body.modelId, body.layer, seed=body.seed)
        if windows is None:
            raise HTTPException(422, f"{body.mode} ablation needs the atlas corpus, and model {body.modelId} has none")
    replacement = {"zero": "zero", "mean": "stored mean_act" if mean is not None else "mean over corpus windows"}
    replacement["resample"] = "activations at random tokens of corpus windows"

    def work(m):
        latent = ctx.latent(m, record, body.index)
        targets = [token_id(m, t) for t in body.target_tokens]
        ids = ctx.ids(m, body.prompt)
        kw = dict(mode=body.mode, mean=mean, resample_from=windows, targets=targets, positions=body.positions, seed=body.seed)
        return ablation.ablate(m, latent, ids, **kw)

    r = await ctx.run(body.modelId, work)
    targets = [
        S.TargetEffect(token=ctx.strs(body.modelId, [t])[0], token_id=t, before=v["before"], after=v["after"])
        for t, v in r.targets.items()
    ]
    return S.AblateResult(
        modelId=body.modelId, layer=body.layer, index=body.index, mode=r.mode, replacement=replacement[r.mode],
        tokens=ctx.strs(body.modelId, r.tokens), token_ids=r.tokens, activations=r.activations, replaced=r.replaced,
        loss_before=r.loss_before, loss_after=r.loss_after, mean_loss_before=r.mean_loss_before,
        mean_loss_after=r.mean_loss_after, targets=targets,
    )  # fmt: skip


# ---------------------------------------------------------------------------- patching


async def patch_query(ctx: ExperimentContext, body: S.PatchRequest) -> S.PatchResult:
    await ctx.check(body.modelId, body.clean_prompt, body.corrupted_prompt)
    record = None
    if body.hook == "latent":
        if body.layer is None or body.index is None:
            raise HTTPException(422, "hook 'latent' needs `layer` (the source id) and `index`")
        record = await ctx.record(body.modelId, body.layer)

    def work(m):
        clean, corrupted = ctx.ids(m, body.clean_prompt), ctx.ids(m, body.corrupted_prompt)
        answer, foil = token_id(m, body.answer_token), token_id(m, body.foil_token)
        if record is not None:
            latent = ctx.latent(m, record, body.index)
            return patching.patch_latent(m, latent, clean, corrupted, answer, foil, batch_size=body.batch_size)
        kw = dict(kind=body.hook, layers=body.layers, batch_size=body.batch_size)
        return patching.patch_sweep(m, clean, corrupted, answer, foil, **kw)

    r = await ctx.run(body.modelId, work, timeout=120.0)
    return S.PatchResult(
        modelId=body.modelId, hook=body.hook, layers=r.layers, clean_tokens=ctx.strs(body.modelId, r.clean),
        corrupted_tokens=ctx.strs(body.modelId, r.corrupted), scores=[[round(v, 5) for v in row] for row in r.scores],
        logit_diff_clean=r.ld_clean, logit_diff_corrupted=r.ld_corrupted, n_forward=r.n_forward,
        n_patched=r.n_patched, batch_size=r.batch_size, seconds=round(r.seconds, 3),
    )  # fmt: skip


# ---------------------------------------------------------------------------- lens and DLA


async def lens_query(ctx: ExperimentContext, body: S.LensRequest) -> S.LensResult:
    await ctx.check(body.modelId, body.prompt)

    def work(m):
        target = None if body.target_token is None else token_id(m, body.target_token)
        return lens.logit_lens(m, ctx.ids(m, body.prompt), k=body.k, target=target, layers=body.layers)

    r = await ctx.run(body.modelId, work)
    vocab = token_text_for(ctx.store, ctx.texts, body.modelId)
    top = [
        [[S.LensToken(token=vocab.many([i])[0], id=i, prob=p) for i, p in zip(ids, probs)] for ids, probs in zip(li, lp)]
        for li, lp in zip(r.top_ids, r.top_probs)
    ]
    target = None if r.target is None else vocab.many([r.target])[0]
    return S.LensResult(
        modelId=body.modelId, tokens=ctx.strs(body.modelId, r.tokens), layers=r.layers, top=top,
        target=target, target_probs=r.target_probs, target_ranks=r.target_ranks,
    )  # fmt: skip


async def dla_query(ctx: ExperimentContext, body: S.DLARequest) -> S.DLAResult:
    await ctx.check(body.modelId, body.prompt)
    if body.index is not None and body.layer is None:
        raise HTTPException(422, "`index` needs `layer` (the source id)")
    record = None if body.layer is None else await ctx.record(body.modelId, body.layer)

    def work(m):
        ids, target = ctx.ids(m, body.prompt), token_id(m, body.target_token)
        if record is None:
            return "components", lens.dla_components(m, ids, target, position=body.position)
        if body.index is None:
            return "source", lens.dla_source(m, ctx.live.source(m, record), ids, target, position=body.position, top=body.top)
        position = check_positions([body.position], len(ids))[0]
        return "latent", (position, lens.dla_latent(m, ctx.latent(m, record, body.index), ids, target))

    kind, r = await ctx.run(body.modelId, work)
    common = dict(modelId=body.modelId, kind=kind, decomposition=DECOMPOSITION)
    if kind == "latent":
        p, r = r
        target = r["target"]
        item = S.DLAItem(label=f"{body.layer}/{body.index}", contribution=r["contributions"][p], per_unit=r["per_unit"],
                         activation=r["activations"][p], url=feature_url(body.modelId, body.layer, body.index))  # fmt: skip
        return S.DLAResult(
            **common, tokens=ctx.strs(body.modelId, r["tokens"]), target=ctx.strs(body.modelId, [target])[0], target_id=target,
            position=p, target_logit=r["target_logits"][p], items=[item], remainder=r["target_logits"][p] - item.contribution, activations=r["activations"],
            contributions=r["contributions"], target_logits=r["target_logits"],
        )  # fmt: skip
    items = []
    for it in r.items:
        url = None
        if kind == "source":
            url = feature_url(body.modelId, body.layer, int(it.label.rsplit("/", 1)[1]))
        items.append(S.DLAItem(label=it.label, contribution=it.contribution, activation=it.activation, per_unit=it.per_unit, url=url))
    return S.DLAResult(
        **common, tokens=ctx.strs(body.modelId, r.tokens), target=ctx.strs(body.modelId, [r.target])[0], target_id=r.target,
        position=r.position, target_logit=r.target_logit, items=items, others=r.others, remainder=r.remainder,
    )  # fmt: skip
