"""The live-inference service: one worker thread, a bounded queue, timeouts, batching."""

from __future__ import annotations

import asyncio
import threading

import pytest

from latentpedia.engine.worker import LiveBusyError, LiveConfig, LiveModels, LiveTimeoutError


async def _until(event: threading.Event) -> None:
    for _ in range(500):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never started the job")


def _service(**config) -> tuple[LiveModels, list[str]]:
    loads: list[str] = []

    def loader(model_id: str) -> str:
        loads.append(model_id)
        return f"model:{model_id}"

    return LiveModels(loader, LiveConfig(**config)), loads


def test_runs_on_one_worker_thread_and_loads_each_model_once():
    live, loads = _service()

    async def main():
        calls = [live.run("m", lambda m: (m, threading.current_thread().name)) for _ in range(5)]
        return await asyncio.gather(*calls, live.run("n", lambda m: m))

    results = asyncio.run(main())
    live.close()
    assert {r for r in results[:5]} == {("model:m", "latentpedia-live")}
    assert results[5] == "model:n"
    assert loads == ["m", "n"]


def test_concurrent_jobs_never_overlap():
    live, _ = _service()
    running, overlaps = [0], []

    def job(_m):
        running[0] += 1
        overlaps.append(running[0])
        threading.Event().wait(0.01)
        running[0] -= 1

    async def main():
        await asyncio.gather(*(live.run("m", job) for _ in range(8)))

    asyncio.run(main())
    live.close()
    assert max(overlaps) == 1


def test_errors_of_fn_reach_the_caller():
    live, _ = _service()

    async def main():
        await live.run("m", lambda m: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        asyncio.run(main())
    live.close()


def test_slow_job_times_out_and_queue_full_is_busy():
    live, _ = _service(max_queue=1)
    gate = threading.Event()

    async def main():
        started = threading.Event()
        slow = asyncio.ensure_future(live.run("m", lambda m: started.set() or gate.wait(5), timeout=0.5))
        await _until(started)  # the slow job is running; the queue is empty
        waiting = asyncio.ensure_future(live.run("m", lambda m: "late", timeout=0.5))
        await asyncio.sleep(0.01)
        with pytest.raises(LiveBusyError):
            await live.run("m", lambda m: "refused")
        with pytest.raises(LiveTimeoutError, match="longer than 0.5 s"):
            await slow
        with pytest.raises(LiveTimeoutError):
            await waiting
        gate.set()
        return await live.run("m", lambda m: "after")

    assert asyncio.run(main()) == "after"
    live.close()


def test_compatible_queued_jobs_run_as_one_batch():
    live, _ = _service()
    gate = threading.Event()
    seen: list[list[int]] = []

    def double(_m, items):
        seen.append(list(items))
        return [2 * i for i in items]

    async def main():
        started = threading.Event()
        blocker = asyncio.ensure_future(live.run("m", lambda m: started.set() or gate.wait(5)))
        await _until(started)
        batched = [asyncio.ensure_future(live.run_batched("m", "double", i, double)) for i in range(4)]
        other = asyncio.ensure_future(live.run_batched("m", "other", 10, double))
        await asyncio.sleep(0.01)
        gate.set()
        await blocker
        return await asyncio.gather(*batched), await other

    values, other = asyncio.run(main())
    live.close()
    assert values == [0, 2, 4, 6] and other == 20
    assert seen == [[0, 1, 2, 3], [10]]
