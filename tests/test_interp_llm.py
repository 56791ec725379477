"""The LLM path: `llm-serve` with the embedded SmolLM2 as a REAL HTTP server, the client's
retries / cache / error states, the LLM explainer and the LLM scorers stored through the
pipeline, and the JSON fallback of the simulation scorer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from latentpedia.interp import simulate
from latentpedia.interp import judge
from latentpedia.interp.data import AtlasText, load_latent
from latentpedia.interp.llm.client import LLMClient, LLMConfig, LLMError
from latentpedia.interp.llm.explain import explain_llm
from latentpedia.interp.pipeline import ExplainRequest, run_explain
from latentpedia.interp.scoring import score_with_baseline
from latentpedia.interp.simulate import SimulationScorer
from latentpedia.store.api import Store
from tests.interp_planted import Planted, plant_source
from tests.web_atlas import seed_atlas

KEY = "test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`llm-serve`'s app with the embedded model, served by uvicorn on a free port."""
    import uvicorn

    from latentpedia.interp.llm.local import LocalLM
    from latentpedia.models import load_model
    from latentpedia.interp.llm.serve import create_llm_app

    app = create_llm_app(LocalLM(load_model("smollm2-135m")), api_key=KEY)
    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started, "llm-serve did not start"
    yield f"http://127.0.0.1:{port}/v1"
    instance.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Iterator[tuple[Store, Planted]]:
    folder = Path(tmp_path_factory.mktemp("interp-llm"))
    mp = pytest.MonkeyPatch()
    mp.setenv("LATENTPEDIA_HOME", str(folder / "home"))
    atlas = seed_atlas(f"sqlite:///{folder / 'atlas.db'}", folder)
    store = Store.open(atlas.url)
    yield store, plant_source(store, atlas.model)
    store.close()
    mp.undo()


def config(url: str, tmp_path: Path, **kw) -> LLMConfig:
    return LLMConfig(base_url=url, model="smollm2-135m", api_key=KEY, cache_dir=tmp_path / "cache", **kw)


# ---------------------------------------------------------------- the server, over HTTP


@pytest.mark.slow  # the embedded model behind a real server
def test_models_chat_and_completions(server: str, tmp_path: Path) -> None:
    listed = httpx.get(f"{server}/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert listed["data"][0]["id"] == "smollm2-135m"
    assert httpx.get(f"{server}/models").status_code == 401
    client = LLMClient(config(server, tmp_path))
    text = client.chat_text([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert text.strip()
    prompt = "The cat sat on the mat."
    response = client.complete(prompt, max_tokens=0, echo=True, logprobs=5)
    lp = response["choices"][0]["logprobs"]
    assert response["choices"][0]["text"] == prompt
    assert "".join(lp["tokens"]) == prompt
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
    assert all(v <= 0 for v in lp["token_logprobs"]) and all(len(top) == 5 for top in lp["top_logprobs"])
    generated = client.complete("1, 2, 3,", max_tokens=3, logprobs=2)
    assert generated["usage"]["completion_tokens"] <= 3 and generated["choices"][0]["logprobs"]["tokens"]
    bad = httpx.post(f"{server}/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"prompt": "x", "max_tokens": -1})  # fmt: skip
    assert bad.status_code == 422


@pytest.mark.slow
def test_llm_explainer_and_scorers_through_the_pipeline(server, planted, tmp_path, monkeypatch) -> None:
    store, p = planted
    monkeypatch.setattr(simulate, "N_TOP", 2)
    monkeypatch.setattr(simulate, "N_QUANTILE", 1)
    monkeypatch.setattr(judge, "N_EACH", 2)
    model = store.list_models()[0].id
    request = ExplainRequest(model=model, sources=[p.source], explainer="llm", indices=[1],
                             scorers=["simulation", "detection", "fuzzing"], llm=config(server, tmp_path), progress=False)  # fmt: skip
    logs: list[str] = []
    summary = run_explain(store, request, log=logs.append)
    assert summary[p.source]["explained"] == 1, summary
    assert any(line.startswith("estimate for") for line in logs)  # the cost estimate comes first
    (expl,) = store.list_explanations(p.source_id, 1)
    assert expl.method == "llm-examples" and expl.explainer_model == "smollm2-135m"
    assert expl.prompt_version == "llm-examples-v1" and expl.details["prompt"] and "answer" in expl.details
    scores = {s.scorer: s for s in expl.scores}
    assert set(scores) == {"simulation", "detection", "fuzzing"}
    sim = scores["simulation"]
    assert sim.status == "ok", sim.error
    assert sim.details["method"] == "logprobs" and -1 <= sim.score <= 1 and sim.baseline_score is not None
    assert sim.details["baseline"]["latent_index"] != 1  # an offline explanation of another latent
    for name in ("detection", "fuzzing"):
        assert scores[name].status == "ok", scores[name].error
        assert 0 <= scores[name].score <= 1 and "auc" in scores[name].details
    again = run_explain(store, request, log=logs.append)  # resume: nothing left to do
    assert again[p.source]["explained"] == 0 and again[p.source]["skipped"] == 1


@pytest.mark.slow  # the embedded model behind a real server
def test_simulation_reads_predictions_from_prompt_logprobs(server, planted, tmp_path, monkeypatch) -> None:
    store, p = planted
    monkeypatch.setattr(simulate, "N_TOP", 2)
    monkeypatch.setattr(simulate, "N_QUANTILE", 0)
    atlas = AtlasText(store, p.source_id)
    data = load_latent(atlas, 0)
    scorer = SimulationScorer(LLMClient(config(server, tmp_path)), atlas)
    word = p.texts[0].strip()
    right = scorer.score(f'the word "{word}"; every other token is 0', data)
    assert right.status == "ok" and right.details["method"] == "logprobs"
    assert right.details["pooled_tokens"] > 10 and len(right.details["examples"]) == 2


# ---------------------------------------------------------------- failures are error states


@pytest.mark.slow  # the embedded model behind a real server
def test_failures_become_error_states(server, planted, tmp_path) -> None:
    store, p = planted
    atlas = AtlasText(store, p.source_id)
    data = load_latent(atlas, 0)
    wrong_key = LLMClient(LLMConfig(base_url=server, model="m", api_key="nope", cache_dir=None))
    row = score_with_baseline(SimulationScorer(wrong_key, atlas, method="logprobs"), 7, "x", data, (None, "y", 1))
    assert row["status"] == "error" and row["score"] is None and row["baseline_score"] is None
    assert "401" in row["error"]
    down = LLMClient(LLMConfig(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", retries=1, backoff=0.01))
    with pytest.raises(LLMError, match="cannot reach .*after 2 attempts"):
        down.chat_text([{"role": "user", "content": "hi"}])
    broke = LLMClient(LLMConfig(base_url="http://llm.test/v1", model="m"), transport=httpx.MockTransport(
        lambda r: httpx.Response(402, json={"error": {"message": "insufficient credits"}})))  # fmt: skip
    row = score_with_baseline(SimulationScorer(broke, atlas, method="logprobs"), 7, "x", data, None)
    assert row["status"] == "error" and "no credits" in row["error"] and "insufficient credits" in row["error"]
    mumble = LLMClient(LLMConfig(base_url="http://llm.test/v1", model="m"), transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"choices": [{"message": {"content": "   \n..."}}]})))  # fmt: skip
    with pytest.raises(LLMError, match="unparsable"):
        explain_llm(mumble, atlas, data)


def test_retries_with_backoff_then_success(tmp_path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return httpx.Response(503, json={"detail": "busy"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    client = LLMClient(LLMConfig(base_url="http://llm.test/v1", model="m", retries=3, backoff=0.01), transport=httpx.MockTransport(handler))
    assert client.chat_text([{"role": "user", "content": "hi"}]) == "ok"
    assert len(calls) == 3


def test_response_cache(tmp_path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": "answer"}}], "usage": {"prompt_tokens": 3}})

    cfg = LLMConfig(base_url="http://llm.test/v1", model="m", cache_dir=tmp_path / "cache")
    client = LLMClient(cfg, transport=httpx.MockTransport(handler))
    messages = [{"role": "user", "content": "hi"}]
    assert client.chat_text(messages) == client.chat_text(messages) == "answer"
    assert len(calls) == 1 and client.usage.cached == 1 and client.usage.requests == 1
    client.chat_text(messages, max_tokens=5)  # a different request is sent
    assert len(calls) == 2
    fresh = LLMClient(cfg, transport=httpx.MockTransport(handler))  # a new process: the disk cache answers
    assert fresh.chat_text(messages) == "answer" and len(calls) == 2
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2


def test_simulation_json_fallback_is_flagged(planted, monkeypatch) -> None:
    store, p = planted
    monkeypatch.setattr(simulate, "N_TOP", 2)
    monkeypatch.setattr(simulate, "N_QUANTILE", 0)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/completions") and "chat" not in request.url.path:
            return httpx.Response(404, json={"detail": "no legacy completions here"})
        tokens = json.loads(json.loads(request.content)["messages"][0]["content"].split("Tokens: ")[1].split("\n")[0])
        word = p.texts[0]
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps([10 if t == word else 0 for t in tokens])}}]})

    atlas = AtlasText(store, p.source_id)
    client = LLMClient(LLMConfig(base_url="http://llm.test/v1", model="m"), transport=httpx.MockTransport(handler))
    outcome = SimulationScorer(client, atlas).score("x", load_latent(atlas, 0))
    assert outcome.status == "ok" and outcome.details["method"] == "json-fallback"
    assert outcome.score == pytest.approx(1.0)  # a perfect simulator correlates perfectly
