"""The game under load (issue 12's latency goals), on SQLite and PostgreSQL: concurrent players'
embeddings share one embedder call, players arriving together on a new latent make its held-out
set once, a puzzle page never waits on the torch worker (a shown latent's held-out set is made in
the background), and an LLM's score of a submitted explanation arrives in the background through
a real OpenAI-compatible HTTP endpoint and shows on the player's page afterwards."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentpedia.interp.embedding import shared_embedder
from latentpedia.interp.game import play as game_play
from latentpedia.interp.game.batching import EmbedBatcher
from latentpedia.interp.game.play import Game
from latentpedia.store.api import Store
from latentpedia.store.game import GameStore
from tests.conftest import BACKENDS
from tests.test_game import GameAtlas, game_atlas

WAIT = 60.0  # seconds a background step may take on a loaded 2-core machine (a bound, not a measurement)


def _until(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------- the micro-batcher (no database)


def test_batcher_merges_concurrent_requests_and_gives_each_its_rows() -> None:
    calls: list[list[str]] = []
    players = 16
    batcher: EmbedBatcher

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 1:  # the torch worker is busy: the others queue up meanwhile
            _until(lambda: batcher.queued() >= players - batcher.sizes[0], "the other players to queue")
        return np.stack([_vector(t) for t in texts])

    batcher = EmbedBatcher(embed, window=0.0)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(players)

    def player(n: int) -> None:
        start.wait()
        results[n] = batcher([f"explanation {n}", "shared text"])

    threads = [threading.Thread(target=player, args=(n,)) for n in range(players)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(calls) <= 2, [len(c) for c in calls]  # those who came within the window, then everyone who queued behind them
    assert sum(len(c) for c in calls) < 2 * players  # the shared text is embedded once per call
    for n in range(players):
        assert np.allclose(results[n], np.stack([_vector(f"explanation {n}"), _vector("shared text")]))


def test_background_work_runs_in_pieces_behind_players_and_never_mixes_with_them() -> None:
    """A held-out set's chunks (background) are embedded a piece at a time; a player's text queued
    meanwhile goes in the very next call, alone, and every caller gets its own rows in order."""
    calls: list[list[str]] = []
    first_running, player_queued = threading.Event(), threading.Event()

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 1:
            first_running.set()
            assert player_queued.wait(WAIT)
        return np.stack([_vector(t) for t in texts])

    batcher = EmbedBatcher(embed, window=0.0, piece=4)
    chunks = [f"chunk {i}" for i in range(10)]
    found: dict[str, np.ndarray] = {}
    worker = threading.Thread(target=lambda: found.update(background=batcher.background(chunks)))
    worker.start()
    assert first_running.wait(WAIT)
    player = threading.Thread(target=lambda: found.update(player=batcher(["closing brackets"])))
    player.start()
    _until(lambda: batcher.queued() >= 3, "the player's request behind the background pieces")
    player_queued.set()
    for t in (worker, player):
        t.join(WAIT)
    assert calls == [chunks[:4], ["closing brackets"], chunks[4:8], chunks[8:]]
    assert np.allclose(found["background"], np.stack([_vector(c) for c in chunks]))
    assert np.allclose(found["player"], _vector("closing brackets")[None, :])
    assert batcher.background([]).shape == (0, 384)


def test_batcher_hands_an_embedder_error_to_every_waiting_caller() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("the torch worker is gone")

    batcher = EmbedBatcher(broken)
    with pytest.raises(RuntimeError, match="torch worker is gone"):
        batcher(["anything"])
    assert batcher([]).shape == (0, 384)  # nothing to embed: no call


# ---------------------------------------------------------------- the game over a store


@pytest.fixture(scope="module", params=BACKENDS)
def gatlas(request, tmp_path_factory) -> Iterator[GameAtlas]:
    with game_atlas(request.param, request, tmp_path_factory) as found:
        yield found


@pytest.fixture
def store(gatlas) -> Iterator[Store]:
    opened = Store.open(gatlas.url)
    try:
        yield opened
    finally:
        opened.close()


def _live_neurons(store: Store, gatlas: GameAtlas) -> tuple[int, list[int]]:
    source = store.get_source(gatlas.model, "1-mlp").id
    return source, [r["idx"] for r in store.list_latents(source, limit=None) if r["max_act"] > 0]


def test_players_arriving_together_make_a_held_out_set_once(store, gatlas, monkeypatch) -> None:
    source, live = _live_neurons(store, gatlas)
    index = live[-1]  # a latent no other test plays
    made = []
    real = game_play.reference_scores

    def counted(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(game_play, "reference_scores", counted)
    game = Game(store, EmbedBatcher(shared_embedder()))
    results = [None] * 8
    start = threading.Barrier(len(results))

    def player(n: int) -> None:
        start.wait()
        results[n] = game.reference(source, index)

    threads = [threading.Thread(target=player, args=(n,)) for n in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(made) == 1
    assert all(r is not None and r["holdout"] == results[0]["holdout"] for r in results)
    assert all(r["baseline_score"] == results[0]["baseline_score"] for r in results)


def test_a_server_makes_the_first_latents_of_its_active_campaigns_ahead(store, gatlas) -> None:
    from datetime import UTC, datetime, timedelta

    source, live = _live_neurons(store, gatlas)
    first, second, future = live[-4], live[-3], live[-5]  # latents no other test plays
    games = GameStore(store)
    games.add_campaign("warm-up", "Warm-up", source, order="index", latents=[second, first])
    games.add_campaign("not-yet", "Not yet", source, order="index", latents=[future],
                       starts_at=datetime.now(UTC) + timedelta(days=1))  # fmt: skip
    try:
        game = Game(store, EmbedBatcher(shared_embedder()))
        assert all(games.get_game_latent(source, i) is None for i in (first, second, future))
        game.prepare_campaigns(count=1).join(WAIT)
        assert games.get_game_latent(source, first)["holdout"]["positives"]  # the campaign's first, in its order
        assert games.get_game_latent(source, second) is None  # beyond `count`: made as players near it
        assert games.get_game_latent(source, future) is None  # not open yet
    finally:
        games.delete_campaign("warm-up")
        games.delete_campaign("not-yet")


def test_puzzle_page_never_waits_on_the_torch_worker(store, gatlas) -> None:
    """With the embedder blocked (a busy torch worker), a never-played latent's puzzle page and
    JSON answer a player at once; its held-out set is made in the background once the worker is free."""
    from latentpedia.web import create_app

    source, live = _live_neurons(store, gatlas)
    index = live[-2]
    assert store.get_latent(source, index) is not None
    free = threading.Event()
    asked = []

    def busy_worker(texts: list[str]) -> np.ndarray:
        asked.append(len(texts))
        assert free.wait(WAIT), "the test never freed the worker"
        return shared_embedder()(texts)

    app = create_app(gatlas.url)
    with TestClient(app) as client:
        game = app.state.game = Game(app.state.store, EmbedBatcher(busy_worker), prefetch=True)
        assert game.games.get_game_latent(source, index) is None
        alice = gatlas.catlas.key("alice")
        page = client.get("/play/c/neurons", params={"index": index}, headers={**alice, "accept": "text/html"})
        assert page.status_code == 200 and f'data-index="{index}"' in page.text
        twin = client.get("/api/play/puzzle", params={"campaign": "neurons", "index": index}, headers=alice)
        assert twin.status_code == 200 and twin.json()["clues"]
        _until(lambda: asked, "the background maker to reach the embedder")
        assert game.games.get_game_latent(source, index) is None  # still waiting on the worker
        free.set()
        made = _until(lambda: game.games.get_game_latent(source, index), "the held-out set")
        assert made["holdout"]["positives"] and made["baseline_score"] > 0


# ---------------------------------------------------------------- an LLM's score, in the background


class FakeJudge:
    """An OpenAI-compatible chat endpoint over real HTTP: a judge answering Yes when the
    explanation's word is in the text. It holds every answer until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.prompts: list[str] = []

    def app(self):
        from fastapi import FastAPI

        app = FastAPI()

        @app.post("/v1/chat/completions")
        def chat(body: dict) -> dict:
            prompt = body["messages"][0]["content"]
            self.prompts.append(prompt)
            self.release.wait(WAIT)
            found = re.search(r"fires on: (.*)\n\nText: (.*)\n\n", prompt, re.S)
            said = "Yes" if found and found.group(1).strip().lower() in found.group(2).lower() else "No"
            return {"choices": [{"message": {"role": "assistant", "content": said}}], "usage": {"prompt_tokens": 1}}

        return app


@pytest.fixture
def judge(monkeypatch, tmp_path) -> Iterator[FakeJudge]:
    import uvicorn

    fake = FakeJudge()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started, "the fake LLM endpoint to start")
    monkeypatch.setenv("LATENTPEDIA_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("LATENTPEDIA_LLM_MODEL", "fake-judge")
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))  # its own LLM response cache
    yield fake
    fake.release.set()
    server.should_exit = True
    thread.join(10)


def test_llm_score_arrives_after_the_submit_and_shows_on_the_player_page(gatlas, judge) -> None:
    from latentpedia.web import create_app

    concept = gatlas.planted.texts[2].strip()
    body = {"modelId": gatlas.model, "layer": gatlas.planted.source, "index": 2, "campaign": "planted", "text": concept}
    with TestClient(create_app(gatlas.url)) as client:
        answer = client.post("/api/play/submit", json=body, headers=gatlas.catlas.key("bob"))
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["action"] == "explain" and result["score"] is not None  # the offline score, at once
        assert result["scoring_later"] == ["detection"]
        _until(lambda: judge.prompts, "the LLM to be asked")
        assert any(concept in p for p in judge.prompts)

        def mine() -> dict:
            rows = client.get("/api/play/player/bob").json()["explanations"]
            return next(e for e in rows if e["id"] == result["explanation_id"])

        assert mine()["other_scores"] == []  # the submit did not wait for the LLM
        judge.release.set()
        scored = _until(lambda: mine()["other_scores"], "the LLM's score on the player page")
        assert [s["scorer"] for s in scored] == ["detection"] and scored[0]["status"] == "ok"
        assert 0.0 <= scored[0]["score"] <= 1.0 and mine()["score"] == result["score"]
        page = client.get("/play/player/bob", headers={"accept": "text/html"}).text
        assert "detection" in page
        feature = client.get(f"/api/feature/{gatlas.model}/{gatlas.planted.source}/2").json()
        explanation = next(e for e in feature["explanations"] if e["text"] == concept)
        assert "detection" in str(explanation)
