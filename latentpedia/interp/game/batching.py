"""Concurrent players' embedding requests answered by one embedder call per batch, ahead of
background work.

Every submit embeds the player's explanation; most of a MiniLM call's cost is fixed per call (the
hop to the torch worker, tokenizer and model overhead), so 32 players submitting together would
queue 32 calls on the server's one torch worker. `EmbedBatcher` sits in front of the embedder:
the first request waits `window` seconds for company, then one call embeds every distinct text
queued, and each caller gets its own rows back. Requests that arrive while a call runs go
together into the next one, so under load batches grow by themselves.

Background work (a latent's held-out set made ahead of its first submit: ~60 corpus chunks of
64 tokens, and the baseline's texts) goes through `background`: cut into pieces of `piece`
(16) texts, each run only when no player's request waits, and never in one call with players' texts
(MiniLM pads a batch to its longest text). A submit then waits for at most one piece of it, not
for the whole set (measured under 32 players: bench/RESULTS.md).

    embed = EmbedBatcher(on_worker)           # on_worker(texts) -> [n, 384] unit vectors
    vectors = embed(["closing brackets"])    # from any thread; blocks until its batch is done
    chunks = embed.background(snippets)      # low priority, same rows

Its thread starts on the first request and stops after `idle` seconds without one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Embed = Callable[[list[str]], np.ndarray]
DIM = 384
_Request = tuple[list[str], Future]


class EmbedBatcher:
    """An `Embed` that merges concurrent calls and runs background work between them (see the
    module doc). Thread-safe."""

    def __init__(self, embed: Embed, *, window: float = 0.003, max_texts: int = 512, idle: float = 10.0, piece: int = 16):
        self.embed = embed
        self.window, self.max_texts, self.idle, self.piece = window, max_texts, idle, piece
        self.sizes: list[int] = []  # requests per embedder call, the last 100 (for tests and stats)
        self._players: deque[_Request] = deque()
        self._later: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return self._put(list(texts), self._players).result()

    def background(self, texts: list[str]) -> np.ndarray:
        """`texts` embedded at low priority, `piece` at a time (rows in order)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        futures = [self._put(list(texts[i : i + self.piece]), self._later) for i in range(0, len(texts), self.piece)]
        return np.concatenate([f.result() for f in futures])

    def queued(self) -> int:
        """Requests waiting (players' and background pieces), not counting the running call."""
        with self._cond:
            return len(self._players) + len(self._later)

    def _put(self, texts: list[str], line: deque[_Request]) -> Future:
        future: Future = Future()
        with self._cond:
            line.append((texts, future))
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="latentpedia-embed-batcher", daemon=True)
                self._thread.start()
        return future

    def _loop(self) -> None:
        while (batch := self._collect()) is not None:
            self._run(batch)

    def _collect(self) -> list[_Request] | None:
        """The next call's requests: players' (those within `window` of the first), else one
        background piece; None after `idle` seconds without any (the thread then stops)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._players or self._later, timeout=self.idle):
                self._thread = None
                return None
            if not self._players:
                return [self._later.popleft()]
        time.sleep(self.window)  # company for the first player's request
        batch, size = [], 0
        with self._cond:
            while self._players and size < self.max_texts:
                batch.append(self._players.popleft())
                size += len(batch[-1][0])
        return batch

    def _run(self, batch: list[_Request]) -> None:
        distinct = list(dict.fromkeys(t for texts, _ in batch for t in texts))
        self.sizes = [*self.sizes[-99:], len(batch)]
        try:
            vectors = np.asarray(self.embed(distinct))
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller
            for _, future in batch:
                future.set_exception(err)
            return
        row = {text: i for i, text in enumerate(distinct)}
        for texts, future in batch:
            future.set_result(vectors[[row[t] for t in texts]])


def background_embedder(embed: Embed) -> Embed:
    """`embed`'s low-priority side when it has one (an EmbedBatcher), else `embed` itself."""
    return getattr(embed, "background", embed)


GAME_TORCH_THREADS = 1


def embed_on_few_threads(texts: list[str], threads: int = GAME_TORCH_THREADS) -> np.ndarray:
    """The shared embedder on `texts` with `threads` torch threads, the caller's setting restored
    after (call it on the torch worker). MiniLM on the game's short texts gains nothing from a
    second thread, and its OpenMP threads spinning for work cost the core that serves pages:
    measured on the 2-core machine under load, 32 explanations took 50 ms of CPU on one thread
    against 238-491 ms on two, and a held-out set's chunks 0.5-0.7x the CPU (bench/game_embed.py,
    bench/RESULTS.md)."""
    import torch

    from latentpedia.interp.embedding import shared_embedder

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return shared_embedder()(texts)
    finally:
        torch.set_num_threads(before)
