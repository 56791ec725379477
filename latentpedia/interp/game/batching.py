"""Concurrent players' embedding requests answered by one embedder call per batch.

Every submit embeds the player's explanation; most of a MiniLM call's cost is fixed per call (the
hop to the torch worker, tokenizer and model overhead), so 32 players submitting together would
queue 32 calls on the server's one torch worker. `EmbedBatcher` sits in front of the embedder:
the first request waits `window` seconds for company, then one call embeds every distinct text
queued, and each caller gets its own rows back. Requests that arrive while a call runs go
together into the next one, so under load batches grow by themselves.

    embed = EmbedBatcher(on_worker)           # on_worker(texts) -> [n, 384] unit vectors
    vectors = embed(["closing brackets"])    # from any thread; blocks until its batch is done

Its thread starts on the first request and stops after `idle` seconds without one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Embed = Callable[[list[str]], np.ndarray]
DIM = 384


class EmbedBatcher:
    """An `Embed` that merges concurrent calls (see the module doc). Thread-safe."""

    def __init__(self, embed: Embed, *, window: float = 0.003, max_texts: int = 512, idle: float = 10.0):
        self.embed = embed
        self.window, self.max_texts, self.idle = window, max_texts, idle
        self.sizes: list[int] = []  # requests per embedder call, the last 100 (for tests and stats)
        self._queue: queue.SimpleQueue[tuple[list[str], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        future: Future = Future()
        with self._lock:
            self._queue.put((list(texts), future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="latentpedia-embed-batcher", daemon=True)
                self._thread.start()
        return future.result()

    def _loop(self) -> None:
        while (batch := self._collect()) is not None:
            self._run(batch)

    def _collect(self) -> list[tuple[list[str], Future]] | None:
        """The next batch: the first request, then whatever else comes within `window`."""
        try:
            first = self._queue.get(timeout=self.idle)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._thread = None
                    return None
            first = self._queue.get()
        batch, size = [first], len(first[0])
        deadline = time.monotonic() + self.window
        while size < self.max_texts:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(item)
            size += len(item[0])
        return batch

    def _run(self, batch: list[tuple[list[str], Future]]) -> None:
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
