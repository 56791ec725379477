"""Jobs end to end in a real browser (Debian's Chromium via Playwright), with a real
`latentpedia worker` process: an admin uploads an SAE folder as a zip on /jobs, watches the job's
progress and log on /jobs, and finds the new source on the home page; the home page follows a
running job live. Skipped where /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from latentpedia.store.api import Store
from tests.browser import Session, browser_fixture, needs_chromium, serve  # noqa: F401 (the `browser` fixture)
from tests.community_fixtures import CommunityAtlas, community_atlas
from tests.conftest import BACKENDS
from tests.sae_builders import random_sae, write_saelens
from tests.tiny import D_MODEL

pytestmark = needs_chromium
ROOT = Path(__file__).resolve().parents[1]
NEW_SOURCE = "2-res-from-web"


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[tuple[str, CommunityAtlas, Path]]:
    """The seeded atlas with accounts, served by uvicorn in a thread, and a worker process."""
    from latentpedia.web import create_app

    home = tmp_path_factory.mktemp("jobs-home")
    old_home = os.environ.get("LATENTPEDIA_HOME")
    os.environ["LATENTPEDIA_HOME"] = str(home)  # the server unpacks uploads here, the worker reads them
    with community_atlas(request.param, request, tmp_path_factory) as catlas:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "LATENTPEDIA_PROGRESS_SECONDS": "0"}
        worker = subprocess.Popen([sys.executable, "-m", "latentpedia.cli", "worker", "--db", catlas.url, "--poll-seconds", "0.3",
                                   "--report-seconds", "0.3"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            with serve(create_app(catlas.url, private=False)) as base:
                yield base, catlas, home
        finally:
            worker.kill()
            worker.wait()
            if old_home is None:
                os.environ.pop("LATENTPEDIA_HOME")
            else:
                os.environ["LATENTPEDIA_HOME"] = old_home


@pytest.fixture(scope="module")
def sae_zip(tmp_path_factory) -> Path:
    folder = write_saelens(tmp_path_factory.mktemp("sae") / "web-sae", random_sae("topk", d_in=D_MODEL, d_sae=40, k=4, seed=11),
                           hook_name="blocks.2.hook_resid_post")  # fmt: skip
    path = tmp_path_factory.mktemp("zips") / "web-sae.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"web-sae/{file.name}")
    return path


def test_an_admin_imports_an_sae_from_the_web_and_sees_it_on_home(served, browser, sae_zip):
    base, catlas, _ = served
    admin = Session(browser, base)
    try:
        admin.login("root")
        admin.goto("/jobs")
        form = "#job-upload-sae"
        admin.page.set_input_files(f"{form} input[name=file]", str(sae_zip))
        admin.page.fill(f"{form} [name=name]", NEW_SOURCE)
        admin.page.fill(f"{form} [name=eval_tokens]", "0")
        admin.page.click(f"{form} button[type=submit]")
        admin.page.wait_for_selector(f"{form} .form-error:has-text('queued as job')")
        job_id = int(admin.page.inner_text(f"{form} .form-error").rsplit(" ", 1)[1])
        row = f"#jobs-table tr[data-job-id='{job_id}']"
        admin.page.wait_for_selector(f"{row}[data-status='running'], {row}[data-status='done']", timeout=120_000)
        admin.page.wait_for_selector(f"{row}[data-status='done']", timeout=240_000)
        assert "imported" in admin.page.inner_text(f"{row} .job-message")
        log = admin.page.inner_text(f"#jobs-table tr[data-log-for='{job_id}'] pre.job-log")
        assert "progress: forward pass" not in log and "building" in log  # the pipeline's own log lines
        assert admin.page.inner_text(f"{row} .job-progress").endswith("(100.0%)")
        admin.goto("/")
        link = admin.page.locator(f"a:has-text('{NEW_SOURCE}')")
        assert link.count() >= 1
        link.first.click()
        admin.page.wait_for_url(f"**/{catlas.model}/{NEW_SOURCE}")
        assert admin.alerts == []
    finally:
        admin.close()


def test_home_follows_a_job_live_and_shows_the_new_source(served, browser):
    base, catlas, _ = served
    with Store.open(catlas.url) as store:  # queued through the store, as the API does; watched from home
        job_id = store.enqueue_job("build", f"{catlas.model}: 0-mlp", {"kind": "build", "model": catlas.model, "sources": ["0-mlp"],
                                   "corpus": "atlas", "tokens": 1000, "window": 32, "batch_size": 1})  # fmt: skip
    reader = Session(browser, base)
    try:
        reader.goto("/")
        row = f"table[data-live-jobs='home'] tr[data-job-id='{job_id}']"
        assert reader.page.locator(row).count() == 1
        # the page reloads by itself once the job is done, and then lists the new source
        reader.page.wait_for_selector("table.grid a:text-is('0-mlp')", timeout=240_000)
        with Store.open(catlas.url) as store:
            assert store.get_job(job_id).status == "done"
        assert reader.alerts == []
    finally:
        reader.close()
