"""`latentpedia demo` in stages (jobs/demo.py) on the tiny model, SQLite and PostgreSQL: the first
slice is served, every missing stage is queued once as a `demo` job, and a real worker completes
them into exactly the atlas the foreground build (`demo --no-serve`) writes — the slice's
sources replaced by the full-budget ones, the SAEs trained, matched and every latent explained."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latentpedia.errors import InvalidInputError
from latentpedia.jobs import demo as staged
from latentpedia.jobs.kinds import DemoJob, parse_request
from latentpedia.store import families
from latentpedia.store.api import Store
from latentpedia.store.jobs import JOB_DONE, JOB_QUEUED
from tests.test_build_pipeline import dump, tiny_dir  # noqa: F401 (fixture)
from tests.test_jobs_worker import finish, worker

STAGES = ["neurons", "saes", "families", "explain"]
FIRST_TOKENS = 1200


def plan(tiny_dir: Path, stage: str = "explain") -> DemoJob:
    saes = [["blocks.1.hook_resid_post", 128], ["blocks.1.hook_resid_post", 64], ["blocks.2.hook_resid_post", 128]]
    return DemoJob(stage=stage, model=str(tiny_dir), layers=[1, 2], saes=saes, tokens=5000, cache_tokens=4000, sae_tokens=6000)


def atlas(url: str) -> dict:
    """What `dump` holds plus each source's explanations, SAE quality and match pairs."""
    out = dump(url)
    with Store.open(url) as store:
        for src in store.list_sources():
            texts = {i: sorted(e.text for e in store.list_explanations(src.id, i)) for i in sorted(store.explained_indices(src.id))}
            quality = {k: round(v, 4) for k, v in (src.meta.get("quality") or {}).items() if isinstance(v, float)}
            pairs = sorted((p.method, p.other, p.median and round(p.median, 4)) for p in families.list_pairs(store, src.id))
            out[src.name].update(explanations=texts, quality=quality, pairs=pairs, corpus_tokens=store.get_corpus(src.corpus_id).spec["max_tokens"])
    return out


@pytest.fixture(scope="module")
def foreground(tiny_dir, tmp_path_factory) -> dict:  # noqa: F811
    """`demo --no-serve`: every stage in the foreground, on SQLite."""
    home = tmp_path_factory.mktemp("foreground")
    old = os.environ.get("LATENTPEDIA_HOME")
    os.environ["LATENTPEDIA_HOME"] = str(home)
    try:
        url = f"sqlite:///{home}/ref.db"
        with Store.open(url) as store:
            assert staged.missing_stages(store, plan(tiny_dir)) == STAGES
            staged.build_all(store, plan(tiny_dir), log=lambda *_: None)
            assert staged.missing_stages(store, plan(tiny_dir)) == []
        return atlas(url)
    finally:
        if old is None:
            os.environ.pop("LATENTPEDIA_HOME")
        else:
            os.environ["LATENTPEDIA_HOME"] = old


def test_the_staged_demo_queues_its_stages_and_a_worker_completes_the_same_atlas(db_url, tmp_path, monkeypatch, tiny_dir, foreground):  # noqa: F811
    home = tmp_path / "home"
    monkeypatch.setenv("LATENTPEDIA_HOME", str(home))
    the_plan = plan(tiny_dir)
    with Store.open(db_url) as store:
        staged.build_slice(store, the_plan, FIRST_TOKENS, log=lambda *_: None)
        assert staged.slice_done(store, the_plan) and staged.missing_stages(store, the_plan) == STAGES
        sliced = {s.name: s.n_tokens for s in store.list_sources()}
        assert sorted(sliced) == ["1-mlp", "2-mlp"] and all(0 < n <= FIRST_TOKENS for n in sliced.values())
        jobs = staged.queue_missing(store, the_plan)
        assert list(jobs) == STAGES and staged.queue_missing(store, the_plan) == jobs  # queued once
        queued = sorted(store.list_queued_jobs(), key=lambda q: q.job.id)
        assert [(q.job.kind, q.params["stage"], q.job.status) for q in queued] == [("demo", s, JOB_QUEUED) for s in STAGES]
        assert "SAEs trained" in queued[1].job.target
    code, out = finish(worker(db_url, home), timeout=600)
    assert code == 0, out
    with Store.open(db_url) as store:
        done = {q.params["stage"]: q for q in store.list_queued_jobs()}
        assert all(done[s].job.status == JOB_DONE for s in STAGES), {s: (q.job.status, q.job.message) for s, q in done.items()}
        assert done["neurons"].unit == "tokens" and done["neurons"].total  # progress was reported
        assert staged.missing_stages(store, the_plan) == [] and staged.queue_missing(store, the_plan) == {}
    assert atlas(db_url) == foreground


def test_a_stage_job_first_runs_the_stages_the_atlas_lacks(store, tmp_path, monkeypatch, tiny_dir):  # noqa: F811
    monkeypatch.setenv("LATENTPEDIA_HOME", str(tmp_path / "home"))
    the_plan = plan(tiny_dir, stage="saes").model_copy(update={"explain": False})
    assert staged.missing_stages(store, the_plan) == ["neurons", "saes", "families"]
    assert staged.run_stage(store, the_plan, log=lambda *_: None) == "default atlas: neurons, saes built"
    assert staged.missing_stages(store, the_plan) == ["families"]
    assert staged.run_stage(store, the_plan.model_copy(update={"stage": "explain"}), log=lambda *_: None).startswith("stage explain is not")


def test_demo_job_requests_are_checked():
    assert parse_request({"kind": "demo", "stage": "saes"}).stages() == STAGES
    assert parse_request({"kind": "demo", "stage": "neurons", "saes": [], "explain": False}).stages() == ["neurons"]
    for bad in ({"kind": "demo", "stage": "everything"}, {"kind": "demo", "layers": []}, {"kind": "demo", "tokens": 0},
                {"kind": "demo", "saes": [["blocks.1.hook_resid_post", 0]]}, {"kind": "demo", "extra": 1}):  # fmt: skip
        with pytest.raises(InvalidInputError):
            parse_request(bad)


def test_home_shows_the_stages_still_arriving(db_url):
    from fastapi.testclient import TestClient

    from latentpedia.web import create_app

    with Store.open(db_url) as store:
        stages = [DemoJob(stage=s) for s in ("neurons", "saes")]
        ids = [store.enqueue_job("demo", job.target(), job.model_dump(mode="json")) for job in stages]
        other = store.enqueue_job("build", "tiny: 1-mlp", {"kind": "build", "sources": ["1-mlp"]})
    with TestClient(create_app(db_url, private=False)) as client:
        home = client.get("/api/home").json()
        assert [j["id"] for j in home["arriving"]] == ids and other in [j["id"] for j in home["jobs"]]
        page = client.get("/").text
        assert "Still arriving" in page and stages[1].target() in page and page.count(f'data-job-id="{ids[0]}"') == 1
        with Store.open(db_url) as store:
            for job_id in ids:
                store.cancel_job(job_id)
        assert client.get("/api/home").json()["arriving"] == [] and "Still arriving" not in client.get("/").text
